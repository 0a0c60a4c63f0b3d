"""``dag.test()`` of every DAG on tiny data (the last 600 real EURUSD H1 bars plus one
synthetic symbol), in the order the assets chain them: ingest → features (spark-submit,
local master) → training → feedback (degraded live accuracy → triggers training). Each
stage is a module fixture, so any test can run alone.

Real parts throughout: PostgreSQL, Great Expectations, spark-submit, Feast, MLflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from psycopg.types.json import Jsonb

from chaintrade.db import connect
from chaintrade.errors import DataValidationError
from chaintrade.orchestration import check_training_inputs, feedback_decision, spark_connection_env
from chaintrade.settings import get_settings
from tests.support.dag_test import dag_test_env, migrate_airflow, run_dag_test

pytestmark = pytest.mark.integration

SHARED_CSV = Path("/work/shared/data/EURUSD_H1_2017-04_2018-02.csv")
REPO_CSV = Path(__file__).resolve().parents[2] / "data" / SHARED_CSV.name
TINY_BARS = 600


@dataclass(frozen=True)
class Platform:
    env: dict[str, str]
    home: Path
    db_url: str
    source: Path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Platform]:
    """A private Chaintrade home, database and Airflow metadata DB for the module."""
    from chaintrade.db import with_database

    root = tmp_path_factory.mktemp("dags")
    name = f"ct_test_dags_{uuid.uuid4().hex[:8]}"
    with connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    csv = SHARED_CSV if SHARED_CSV.exists() else REPO_CSV
    lines = csv.read_text().splitlines()
    source = root / "EURUSD_H1_tiny.csv"
    source.write_text("\n".join([lines[0], *lines[-TINY_BARS:]]) + "\n")
    db_url = with_database(pg_url, name)
    env = dag_test_env(
        root / "airflow",
        {
            "CHAINTRADE_HOME": str(root / "var"),
            "CHAINTRADE_DB_URL": db_url,
            **spark_connection_env("local[2]"),
        },
    )
    env.pop("CHAINTRADE_MLFLOW_TRACKING_URI", None)
    (root / "airflow").mkdir()
    migrate_airflow(env)
    try:
        yield Platform(env, root / "var", db_url, source)
    finally:
        with connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ok(report: dict[str, object], dag_id: str) -> None:
    tail = str(report["output"])[-8000:]
    assert report["state"] == "success", f"{dag_id}: {report['tasks']}\n{tail}"


def _seed_predictions(db_url: str, *, wrong: bool, n: int = 60) -> None:
    """Chains as the agent writes them (collector + prediction metadata) for the last ``n``
    bars of EURUSD, predicting each next bar's direction rightly or, with ``wrong``, wrongly."""
    with connect(db_url) as conn:
        bars = pd.DataFrame(
            conn.execute(
                "SELECT time, close FROM market_data WHERE symbol = 'EURUSD' ORDER BY time"
            ).fetchall(),
            columns=["time", "close"],
        )
        bars["move"] = bars["close"].shift(-1) - bars["close"]
        bars = bars[bars["move"].fillna(0) != 0].tail(n)
        now = datetime.now(UTC) - timedelta(minutes=30)
        with conn.cursor() as cur:
            for time, move in zip(bars["time"], bars["move"], strict=True):
                chain = uuid.uuid4()
                sign = 1.0 if move > 0 else -1.0
                strength = -0.4 * sign if wrong else 0.4 * sign
                for service, meta in (
                    ("collector", {"symbol": "EURUSD", "bar_time": time.isoformat()}),
                    (
                        "prediction",
                        {
                            "symbol": "EURUSD",
                            "prediction": (strength + 1) / 2,
                            "strength": strength,
                            "model_name": "chaintrade-direction",
                            "model_version": "1",
                        },
                    ),
                ):
                    cur.execute(
                        "INSERT INTO chain_history (event_id, chain_id, request_id, service_name,"
                        ' event_type, "timestamp", metadata) VALUES (%s, %s, %s, %s, %s, %s, %s)',
                        (uuid.uuid4(), chain, chain, service, "complete", now, Jsonb(meta)),
                    )
        conn.commit()


@pytest.fixture(scope="module")
def ingested(platform: Platform) -> dict[str, Any]:
    return run_dag_test("chaintrade_ingest", platform.env, {"source": str(platform.source)})


@pytest.fixture(scope="module")
def featured(platform: Platform, ingested: dict[str, Any]) -> dict[str, Any]:
    _ok(ingested, "chaintrade_ingest")
    conf = {"timeframes": ["H1"], "horizon_bars": 1}
    return run_dag_test("chaintrade_features", platform.env, conf)


@pytest.fixture(scope="module")
def trained(platform: Platform, featured: dict[str, Any]) -> dict[str, Any]:
    _ok(featured, "chaintrade_features")
    conf = {"reason": "test", "symbols": ["EURUSD"]}
    return run_dag_test("chaintrade_training", platform.env, conf)


def test_ingest_dag_validates_and_loads_the_bars(
    platform: Platform, ingested: dict[str, Any]
) -> None:
    _ok(ingested, "chaintrade_ingest")
    with connect(platform.db_url) as conn:
        counts = dict(
            conn.execute("SELECT symbol, count(*) FROM market_data GROUP BY 1").fetchall()
        )
    assert counts == {"EURUSD": TINY_BARS, "SYNTHUSD": TINY_BARS}
    assert any((platform.home / "data_docs").rglob("index.html"))


def test_features_dag_submits_the_spark_job_and_publishes_to_feast(
    platform: Platform, featured: dict[str, Any]
) -> None:
    _ok(featured, "chaintrade_features")
    assert "spark-submit --master local[2]" in featured["output"]  # through the Spark provider
    built = pd.read_parquet(platform.home / "offline" / "bar_features" / "timeframe=H1")
    assert set(built["symbol"].astype(str)) == {"EURUSD", "SYNTHUSD"}
    assert 2 * (TINY_BARS - 60) < len(built) < 2 * TINY_BARS  # warm-up rows left out
    assert (platform.home / "feast" / "online_store.db").exists(), list(
        (platform.home / "feast").iterdir()
    )


def test_training_dag_trains_registers_and_gates_a_model(
    platform: Platform, trained: dict[str, Any]
) -> None:
    _ok(trained, "chaintrade_training")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{platform.home / 'mlflow' / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'chaintrade-direction'")
    assert len(versions) == 1
    assert versions[0].tags["gate.decision"] == "promoted"  # first model: no champion yet


def test_training_inputs_refuse_an_unknown_symbol_with_a_reason(
    platform: Platform, featured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAINTRADE_HOME", str(platform.home))
    get_settings.cache_clear()
    try:
        with pytest.raises(DataValidationError) as refused:
            check_training_inputs({"symbols": ["EURUSD", "NOPE"]})
        assert refused.value.counts == {"unknown_symbol": 1}
        ok = check_training_inputs({"symbols": ["EURUSD"]})
        assert ok["available_symbols"] == ["EURUSD", "SYNTHUSD"]
    finally:
        get_settings.cache_clear()


def test_training_inputs_refuse_labels_built_before_the_next_open_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels_dir = tmp_path / "offline" / "bar_labels" / "timeframe=H1"
    labels_dir.mkdir(parents=True)
    old = pd.DataFrame({"symbol": ["EURUSD"], "forward_return": [0.001], "label": [1]})
    old.to_parquet(labels_dir / "part-0.parquet")
    monkeypatch.setenv("CHAINTRADE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        with pytest.raises(DataValidationError, match="run chaintrade_features") as refused:
            check_training_inputs({"symbols": ["EURUSD"]})
        assert refused.value.counts == {"missing_columns": 1}
    finally:
        get_settings.cache_clear()


def test_feedback_dag_triggers_training_only_when_live_accuracy_degrades(
    platform: Platform, trained: dict[str, Any]
) -> None:
    _seed_predictions(platform.db_url, wrong=False)
    params = {"window_hours": 24.0, "min_predictions": 50, "min_accuracy": 0.5}
    healthy = feedback_decision(platform.db_url, params)  # the DAG's assess, DB given
    assert (healthy["retrain"], healthy["reason"], healthy["symbols"]) == (False, "healthy", [])
    assert healthy["per_symbol"]["EURUSD"]["predictions"] == 60.0
    assert healthy["per_symbol"]["EURUSD"]["accuracy"] == 1.0
    assert healthy["metrics"]["chaintrade-direction v1"]["accuracy"] == 1.0
    # the 60 live bars drift from the bars before them: reported, a retrain only when asked
    assert healthy["drift"]
    drift_retrain = feedback_decision(platform.db_url, {**params, "retrain_on_drift": True})
    assert drift_retrain["retrain"] and drift_retrain["symbols"] == ["EURUSD"]
    assert "features drifted" in drift_retrain["reason"]
    assert feedback_decision(platform.db_url, {**params, "window_hours": 0.25})["per_symbol"] == {}

    _seed_predictions(platform.db_url, wrong=True, n=200)  # 60 of 260 right: accuracy 0.23
    assert feedback_decision(platform.db_url, params)["symbols"] == ["EURUSD"]
    # the DAG params are the thresholds of the one degradation rule
    assert not feedback_decision(platform.db_url, {**params, "min_predictions": 261})["retrain"]
    assert not feedback_decision(platform.db_url, {**params, "min_accuracy": 0.2})["retrain"]
    report = run_dag_test("chaintrade_feedback", platform.env, watch=("chaintrade_training",))
    _ok(report, "chaintrade_feedback")
    assert report["tasks"] == {
        "assess": "success",
        "degraded": "success",
        "trigger_training": "success",
    }
    queued = [r for r in report["runs"]["chaintrade_training"] if r["state"] == "queued"]
    assert len(queued) == 1, report["runs"]
    assert queued[0]["conf"]["symbols"] == ["EURUSD"]
    assert queued[0]["conf"]["reason"] == "live accuracy 0.23 over 260 predictions (limit 0.50)"
