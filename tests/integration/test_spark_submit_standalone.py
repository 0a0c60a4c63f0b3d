"""The features DAG's SparkSubmitOperator submits the feature job to a standalone cluster
named by the Airflow connection (``AIRFLOW_CONN_SPARK_DEFAULT``), not to a local master."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from chaintrade.market_data import synthetic_bars
from chaintrade.orchestration import spark_connection_env
from chaintrade.pipeline import write_lake
from tests.support.dag_test import dag_test_env, migrate_airflow, run_dag_test
from tests.support.spark import standalone_cluster

pytestmark = pytest.mark.integration


def test_features_dag_runs_its_spark_job_on_a_standalone_cluster(tmp_path: Path) -> None:
    home = tmp_path / "var"
    bars = pd.concat(
        [
            synthetic_bars(s, timeframe="H1", start="2024-01-01", n=300, seed=5)
            for s in ("EURUSD", "GBPUSD")
        ],
        ignore_index=True,
    )
    write_lake(bars, home / "lake")
    with standalone_cluster(tmp_path / "spark") as cluster:
        env = dag_test_env(
            tmp_path / "airflow",
            {"CHAINTRADE_HOME": str(home), **spark_connection_env(cluster.url)},
        )
        (tmp_path / "airflow").mkdir()
        migrate_airflow(env)
        report = run_dag_test("chaintrade_features", env, {"timeframes": ["H1"]})
        worker_log = cluster.worker_log()
    assert report["state"] == "success", f"{report['tasks']}\n{report['output'][-6000:]}"
    assert f"spark-submit --master {cluster.url}" in report["output"]
    assert "Asked to launch executor app-" in worker_log  # the job ran on the cluster
    built = pd.read_parquet(home / "offline" / "bar_features" / "timeframe=H1")
    assert set(built["symbol"].astype(str)) == {"EURUSD", "GBPUSD"}
    labels = pd.read_parquet(home / "offline" / "bar_labels" / "timeframe=H1")
    assert len(labels) > 500
