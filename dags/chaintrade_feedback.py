# mypy: disable-error-code="arg-type,index"
# (TaskFlow passes XComArg placeholders where the task functions declare their values.)
"""
### Chaintrade feedback: live model metrics and chain health → retraining

Every 30 minutes, `assess` measures the live direction hit rate per symbol (each prediction
in `chain_history` against the next bar's close in `market_data`) and the share of chains
with an error. When a symbol's hit rate falls below `min_accuracy` on at least
`min_predictions` predictions, `trigger_training` starts `chaintrade_training` with conf
`{"reason": ..., "symbols": [...]}`; otherwise the run stops after `assess`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from chaintrade.orchestration import TRAINING_DAG, default_args


@dag(
    dag_id="chaintrade_feedback",
    schedule=timedelta(minutes=30),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chaintrade", "monitoring", "feedback"],
    default_args=default_args(execution_timeout=timedelta(minutes=10)),
    params={
        "window_hours": Param(24.0, type="number", exclusiveMinimum=0),
        "min_predictions": Param(50, type="integer", minimum=1),
        "min_accuracy": Param(0.5, type="number", minimum=0, maximum=1),
        "max_error_rate": Param(0.05, type="number", minimum=0, maximum=1),
        "timeframe": Param("H1", type="string"),
    },
)
def chaintrade_feedback() -> None:
    @task(multiple_outputs=True)
    def assess() -> dict[str, Any]:
        from chaintrade.orchestration import assess_feedback

        return assess_feedback(dict(get_current_context()["params"]))

    @task.short_circuit
    def degraded(retrain: bool) -> bool:
        return retrain

    decision = assess()
    trigger = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id=TRAINING_DAG,
        conf=decision["conf"],
        wait_for_completion=False,
    )
    degraded(decision["retrain"]) >> trigger


chaintrade_feedback()
