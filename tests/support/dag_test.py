"""``dag.test()`` of one DAG file in a child process with its own environment.

Airflow reads its configuration once per process, so each run gets a fresh interpreter
(this module, run with ``python -m``);
the metadata database (SQLite under ``airflow_home``) is migrated once and shared, so a
run can see DAGs that earlier runs registered (e.g. a ``TriggerDagRunOperator`` target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaintrade.settings import PROJECT_ROOT


def migrate_airflow(env: Mapping[str, str], timeout_s: float = 300.0) -> None:
    """``airflow db migrate`` for the home in ``env``."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=dict(env),
        check=True,
        capture_output=True,
        timeout=timeout_s,
    )


def dag_test_env(airflow_home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a ``dag.test()`` child: ours, a private Airflow home, ``extra``."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def run_dag_test(
    dag_id: str,
    env: Mapping[str, str],
    conf: Mapping[str, Any] | None = None,
    *,
    watch: tuple[str, ...] = (),
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """``dag.test(run_conf=conf)`` of ``dags/<dag_id>.py`` with retries off; returns the run's
    state, its task states and the runs of the ``watch`` DAGs afterwards (and the output).
    Raises with the output on a crash."""
    # A module with a file as __main__ (pyspark's doctest guard exits a ``python -c``
    # process), run with -m so that tests/support/airflow.py cannot shadow ``airflow``.
    cmd = [sys.executable, "-m", "tests.support.dag_test"]
    cmd += [str(PROJECT_ROOT / "dags" / f"{dag_id}.py"), dag_id]
    cmd += [json.dumps(dict(conf or {})), *watch]
    proc = subprocess.run(
        cmd, env=dict(env), capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT
    )
    output = proc.stdout + proc.stderr
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("DAG-TEST-REPORT "):
            report: dict[str, Any] = json.loads(line.removeprefix("DAG-TEST-REPORT "))
            report["output"] = output
            return report
    raise AssertionError(f"dag.test of {dag_id} crashed ({proc.returncode}):\n{output[-6000:]}")


def _main(argv: list[str]) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import DagRun

    dag_file, dag_id, conf, watch = argv[0], argv[1], json.loads(argv[2]), argv[3:]
    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    for t in dag.tasks:  # a failure shows at once instead of after the retry delays
        t.retries = 0
    run = dag.test(run_conf=conf)
    report = {
        "state": str(run.state),
        "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
        "runs": {
            d: [
                {"run_id": r.run_id, "state": str(r.state), "conf": r.conf}
                for r in DagRun.find(dag_id=d)
            ]
            for d in watch
        },
    }
    print("DAG-TEST-REPORT " + json.dumps(report, default=str))


if __name__ == "__main__":
    _main(sys.argv[1:])
