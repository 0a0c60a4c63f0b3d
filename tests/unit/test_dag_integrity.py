"""Every DAG imports without errors, has tags and retries, and parses fast (no heavy top level)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chaintrade.settings import PROJECT_ROOT

SCRIPT = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
t = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - t
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "elapsed": elapsed,
    "files": len({d.fileloc for d in bag.dags.values()}),
    "dags": {
        d.dag_id: {
            "tags": sorted(d.tags),
            "doc": bool(d.doc_md),
            "retries": [t.retries for t in d.tasks],
        } for d in bag.dags.values()
    },
}))
"""


def test_dags_import_cleanly_with_tags_docs_and_retries(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PROJECT_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert "chaintrade_demo" in report["dags"]
    for dag_id, dag in report["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert dag["doc"], f"{dag_id} has no doc_md"
        # every task retries except those that must not run twice (replay trades)
        assert sum(r >= 1 for r in dag["retries"]) >= len(dag["retries"]) - 1, dag_id
    assert report["elapsed"] / max(report["files"], 1) < 2.0, report["elapsed"]
