"""The agent stays light: importing it pulls in no heavy platform module."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pyspark", "feast", "mlflow", "xgboost", "bentoml", "airflow", "great_expectations")


def test_importing_the_agent_loads_no_heavy_module() -> None:
    code = (
        "import sys, live_agent.agent, live_agent.simulator, live_agent.serving_client\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
