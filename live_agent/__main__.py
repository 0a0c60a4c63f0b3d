from live_agent.cli import app

app(prog_name="live-agent")
