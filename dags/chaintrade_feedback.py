# mypy: disable-error-code="arg-type,index"
# (TaskFlow passes XComArg placeholders where the task functions declare their values.)
"""
### Chaintrade feedback: live model metrics → retraining

Every 30 minutes, `assess` runs the monitoring package's live assessment
(`chaintrade.monitoring.feedback.assess`, the same one as `chaintrade feedback`) over the last
`window_hours` of `chain_history`: each prediction is labelled by the next bar's close in
`market_data`, giving live accuracy per model version and per symbol, plus feature drift
(PSI). A model version or a symbol whose live accuracy falls below `min_accuracy` on at least
`min_predictions` predictions (or, with `retrain_on_drift`, drifted features) asks for
retraining: `trigger_training` starts `chaintrade_training` with conf
`{"reason": ..., "symbols": [...]}` (the degraded symbols, else every symbol of the window);
otherwise the run stops after `assess`. The other thresholds (drift PSI, ...) are
`CHAINTRADE_MONITOR_*` settings.
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
        "timeframe": Param("H1", type="string"),
        "retrain_on_drift": Param(False, type="boolean"),
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
