"""Every DAG imports without errors, has docs, tags, retries, timeouts and a failure alert,
parses fast (under 2 s per file) and does no heavy work at import (no data or ML library
loaded by parsing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaintrade.settings import PROJECT_ROOT

SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = ["pandas", "numpy", "pyspark", "great_expectations", "mlflow", "xgboost", "feast",
         "psycopg", "sklearn", "bentoml", "chaintrade.training", "chaintrade.pipeline"]
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "parse_s": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
    "heavy_loaded": [m for m in heavy if m in sys.modules],
    "dags": {
        d.dag_id: {
            "file": d.fileloc,
            "tags": sorted(d.tags),
            "doc": bool(d.doc_md),
            "schedule": repr(d.timetable),
            "params": sorted(d.params.keys()),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                    "on_failure": [getattr(c, "__qualname__", str(c))
                                   for c in (t.on_failure_callback or [])]
                    if isinstance(t.on_failure_callback, list)
                    else [getattr(t.on_failure_callback, "__qualname__", None)],
                    "outlets": [getattr(o, "uri", str(o)) for o in t.outlets],
                    "type": type(t).__name__,
                } for t in d.tasks
            },
        } for d in bag.dags.values()
    },
}))
"""

PLATFORM_DAGS = ("chaintrade_ingest", "chaintrade_features", "chaintrade_training")
ALL_DAGS = ("chaintrade_demo", *PLATFORM_DAGS, "chaintrade_feedback")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    }
    script = home / "parse_dags.py"  # a file: pyspark's doctest guard exits `python -c`
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(PROJECT_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_dags_import_cleanly_with_tags_docs_and_retries(report: dict[str, Any]) -> None:
    assert report["errors"] == {}
    assert set(ALL_DAGS) <= set(report["dags"])
    for dag_id, dag in report["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert "chaintrade" in dag["tags"], dag_id
        assert dag["doc"], f"{dag_id} has no doc_md"
        # every task retries except those that must not run twice (the demo's replay trades)
        retries = [t["retries"] for t in dag["tasks"].values()]
        assert sum(r >= 1 for r in retries) >= len(retries) - 1, dag_id
        assert Path(dag["file"]).name == f"{dag_id}.py", "one DAG per file, named after it"


def test_platform_dags_have_timeouts_failure_alerts_and_params(report: dict[str, Any]) -> None:
    for dag_id in (*PLATFORM_DAGS, "chaintrade_feedback"):
        dag = report["dags"][dag_id]
        for task_id, task in dag["tasks"].items():
            where = f"{dag_id}.{task_id}"
            assert task["retries"] >= 1, where
            assert task["timeout"] and task["timeout"] > 0, where
            assert "notify_failure" in task["on_failure"], where
    params = {d: set(report["dags"][d]["params"]) for d in report["dags"]}
    assert {"source", "symbols", "timeframe", "start_date", "end_date"} <= params[
        "chaintrade_ingest"
    ]
    assert {"timeframes", "horizon_bars"} <= params["chaintrade_features"]
    assert {"reason", "symbols", "timeframe", "horizon_bars", "cutoff"} <= params[
        "chaintrade_training"
    ]
    assert {"window_hours", "min_predictions", "min_accuracy", "retrain_on_drift"} <= params[
        "chaintrade_feedback"
    ]  # the monitoring thresholds the feedback DAG's assess maps them onto


def test_assets_chain_ingest_to_features_to_training(report: dict[str, Any]) -> None:
    dags = report["dags"]
    ingest_out = {u for t in dags["chaintrade_ingest"]["tasks"].values() for u in t["outlets"]}
    features_out = {u for t in dags["chaintrade_features"]["tasks"].values() for u in t["outlets"]}
    assert ingest_out == {"chaintrade://lake/bars"}
    assert features_out == {"chaintrade://offline/features"}
    assert "chaintrade_bars" in dags["chaintrade_features"]["schedule"]
    assert "chaintrade_features" in dags["chaintrade_training"]["schedule"]
    assert dags["chaintrade_features"]["tasks"]["build_features"]["type"] == "SparkSubmitOperator"
    feedback = dags["chaintrade_feedback"]["tasks"]["trigger_training"]
    assert feedback["type"] == "TriggerDagRunOperator"


def test_dag_files_parse_fast_without_heavy_imports(report: dict[str, Any]) -> None:
    slow = {f: s for f, s in report["parse_s"].items() if s >= 2.0}
    assert not slow, f"DAG files taking 2 s or more to parse: {slow}"
    assert len(report["parse_s"]) >= len(ALL_DAGS)
    assert report["heavy_loaded"] == [], "parsing DAGs imported heavy libraries"
