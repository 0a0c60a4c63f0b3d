"""A real Airflow (api-server, scheduler and dag-processor as separate processes) runs the
training DAG when the REST API asks, through chaintrade's own client, with auth.

The offline store is prepared beforehand (synthetic bars → the Spark feature job → Feast),
so the triggered run trains, registers and gates a real model in MLflow.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from chaintrade.airflow_api import AirflowClient
from chaintrade.errors import ConfigError, FatalError
from chaintrade.market_data import synthetic_bars
from chaintrade.pipeline import write_lake
from chaintrade.settings import PROJECT_ROOT, get_settings
from tests.support.airflow import running_airflow

pytestmark = pytest.mark.integration

DAG_ID = "chaintrade_training"


@pytest.fixture
def home_with_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Chaintrade home whose offline and online stores hold H1 features of two symbols."""
    from chaintrade.orchestration import publish_features
    from spark_jobs.build_features import run

    home = tmp_path / "var"
    monkeypatch.setenv("CHAINTRADE_HOME", str(home))
    monkeypatch.delenv("CHAINTRADE_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    bars = pd.concat(
        [
            synthetic_bars(s, timeframe="H1", start="2024-01-01", n=600, seed=3)
            for s in ("EURUSD", "GBPUSD")
        ],
        ignore_index=True,
    )
    write_lake(bars, home / "lake")
    run(str(home / "lake" / "bars"), str(home / "offline"), timeframe="H1", horizon_bars=1)
    publish_features(["H1"])
    yield home
    get_settings.cache_clear()


def test_training_dag_triggered_over_rest_trains_and_gates_a_model(
    tmp_path: Path, home_with_features: Path
) -> None:
    dags = tmp_path / "dags"  # only the DAG under test: nothing else competes for 2 cores
    dags.mkdir()
    shutil.copy(PROJECT_ROOT / "dags" / f"{DAG_ID}.py", dags)
    env = {"CHAINTRADE_HOME": str(home_with_features), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    with running_airflow(tmp_path, env) as airflow:
        airflow.wait_for_dags(DAG_ID)
        with pytest.raises(ConfigError):
            AirflowClient(airflow.url, airflow.username, "wrong-password").token()
        client = airflow.client()
        with pytest.raises(FatalError) as refused:  # params are validated before a run exists
            client.trigger(DAG_ID, {"horizon_bars": 0})
        assert refused.value.reason == "airflow_refused"

        run_id = client.trigger(DAG_ID, {"reason": "rest test", "symbols": ["EURUSD"]})
        state = client.wait(DAG_ID, run_id, timeout_s=480, poll_s=3)
        assert state == "success", airflow.logs_tail()

    from mlflow.tracking import MlflowClient

    registry = MlflowClient(f"sqlite:///{home_with_features / 'mlflow' / 'mlflow.db'}")
    (version,) = registry.search_model_versions("name = 'chaintrade-direction'")
    assert version.tags["gate.decision"] == "promoted"
    assert registry.get_model_version_by_alias("chaintrade-direction", "champion").version == (
        version.version
    )
