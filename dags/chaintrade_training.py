# mypy: disable-error-code="arg-type"
# (TaskFlow passes XComArg placeholders where the task functions declare their values.)
"""
### Chaintrade training: walk-forward train, evaluate, register, promotion gate

Runs when the **features** asset is updated, when the feedback loop asks for it
(`chaintrade_feedback`, conf `{"reason": ..., "symbols": [...]}`), or by hand: *Trigger DAG*
in the UI shows the params below. `check_inputs` refuses unknown timeframes or symbols before
anything trains; `train` builds Feast's point-in-time set, fits the ensemble on purged and
embargoed walk-forward splits, evaluates it (metrics, backtest, baselines), registers it in
MLflow as `challenger` and lets the promotion gate decide whether it becomes `champion`.

REST: `POST /api/v2/dags/chaintrade_training/dagRuns` with
`{"logical_date": null, "conf": {"reason": "manual", "horizon_bars": 1}}`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from chaintrade.orchestration import FEATURES_ASSET, default_args


@dag(
    dag_id="chaintrade_training",
    schedule=[Asset(name="chaintrade_features", uri=FEATURES_ASSET)],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chaintrade", "training", "mlflow"],
    default_args=default_args(),
    params={
        "reason": Param("manual", type="string", description="why this run (kept in logs)"),
        "symbols": Param([], type="array", items={"type": "string"}, description="checked"),
        "timeframe": Param("H1", enum=["M1", "M5", "M15", "H1"]),
        "horizon_bars": Param(1, type="integer", minimum=1),
        "cutoff": Param(None, type=["null", "string"], description="UTC; empty: now"),
    },
)
def chaintrade_training() -> None:
    @task(execution_timeout=timedelta(minutes=5))
    def check_inputs() -> dict[str, Any]:
        from chaintrade.orchestration import check_training_inputs

        return check_training_inputs(dict(get_current_context()["params"]))

    @task(execution_timeout=timedelta(hours=1))
    def train(checked: dict[str, Any]) -> dict[str, Any]:
        from chaintrade.orchestration import train_model

        return train_model(checked)

    train(check_inputs())


chaintrade_training()
