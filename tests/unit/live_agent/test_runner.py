"""The live loop (off the event loop), its metrics, graceful stop and settings loading."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from live_agent.agent import Agent
from live_agent.cli import load_agent_settings
from live_agent.runner import Runner
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, synthetic_bars


def agent(n: int = 40) -> tuple[Agent, Mt5Simulator]:
    sim = Mt5Simulator(synthetic_bars(n=n), start_bar=16)
    return Agent(sim, ScriptedServing([0.9, 0.5]), ListSink(), AgentSettings(magic=9)), sim


_METRICS_SCRIPT = """
import asyncio
from live_agent.agent import Agent
from live_agent.runner import AgentMetrics, Runner
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, synthetic_bars

sim = Mt5Simulator(synthetic_bars(n=40), start_bar=16)
agent = Agent(sim, ScriptedServing([0.9, 0.5]), ListSink(), AgentSettings(magic=9))
metrics = AgentMetrics()
outcomes = asyncio.run(Runner(agent, ["EURUSD"], metrics=metrics, max_bars=5).run())
assert len(outcomes) == 5 and not sim.positions_get(), outcomes
print(metrics.exposition())
"""


def test_runner_drives_the_agent_and_exports_metrics() -> None:
    # in a child process: importing prometheus_client here would fix its value backend for
    # this test process, before a BentoML server in a later test configures it
    out = subprocess.run(
        [sys.executable, "-c", _METRICS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert 'agent_bars_total{symbol="EURUSD"} 5.0' in text
    assert 'agent_orders_total{reason="filled"} 1.0' in text
    assert 'agent_risk_denials_total{reason="no_order"} 4.0' in text
    assert "agent_trading_state 0.0" in text and "agent_reconciled 1.0" in text


def test_the_runner_without_metrics_does_not_import_prometheus() -> None:
    code = (
        "import sys, asyncio, live_agent.runner, live_agent.cli\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_runner_stops_at_the_end_of_the_replay_and_on_stop() -> None:
    a, _ = agent(n=20)
    assert len(asyncio.run(Runner(a, ["EURUSD"]).run())) == 3  # 19 closed bars, 16 already seen

    async def stopped() -> int:
        b, _ = agent()
        runner = Runner(b, ["EURUSD"])
        runner.stop()
        return len(await runner.run())

    assert asyncio.run(stopped()) == 0


def test_settings_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\nmagic = 11\nlot_size = 0.05\nrisk_pct = 0.5\n")
    monkeypatch.setenv("CHAINTRADE_AGENT_LOT_SIZE", "0.02")
    s = load_agent_settings(path, risk_pct=1.0)
    assert (s.magic, s.lot_size, s.risk_pct) == (11, 0.02, 1.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nmagik = 1\n")
    with pytest.raises(ValueError):
        load_agent_settings(bad)
