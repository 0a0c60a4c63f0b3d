# mypy: disable-error-code="arg-type,index"
# (TaskFlow passes XComArg placeholders where the task functions declare their values.)
"""
### Chaintrade features: Spark feature + label build, then Feast apply and materialize

Runs when the **bars** asset is updated (or by hand). `build_features` submits
`spark_jobs/build_features.py` with the Spark provider's `SparkSubmitOperator` to the master
of the `spark_default` connection (`local[2]` by default, from `CHAINTRADE_SPARK_MASTER`;
set `AIRFLOW_CONN_SPARK_DEFAULT` or the connection in the UI for a cluster). Then
`publish_features` registers the Feast definitions and materializes every offline feature
row into the online store.

Updates the **features** asset, which schedules `chaintrade_training`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, Param, dag, get_current_context, task

from chaintrade.orchestration import (
    BARS_ASSET,
    FEATURES_ASSET,
    FEATURES_JOB,
    SPARK_CONN_ID,
    default_args,
    spark_conf,
)


@dag(
    dag_id="chaintrade_features",
    schedule=[Asset(name="chaintrade_bars", uri=BARS_ASSET)],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chaintrade", "features", "spark", "feast"],
    default_args=default_args(),
    params={
        "timeframes": Param(["H1"], type="array", items={"type": "string"}, minItems=1),
        "horizon_bars": Param(1, type=["null", "integer"], minimum=1),
    },
)
def chaintrade_features() -> None:
    @task(multiple_outputs=True)
    def plan_features() -> dict[str, Any]:
        from chaintrade.orchestration import feature_job

        params = get_current_context()["params"]
        return feature_job(params["timeframes"], params["horizon_bars"])

    plan = plan_features()
    build = SparkSubmitOperator(
        task_id="build_features",
        conn_id=SPARK_CONN_ID,
        application=str(FEATURES_JOB),
        name="chaintrade-build-features",
        application_args=plan["args"],
        env_vars=plan["env"],
        conf=spark_conf(),
        execution_timeout=timedelta(hours=2),
    )

    @task(outlets=[Asset(name="chaintrade_features", uri=FEATURES_ASSET)])
    def publish_features() -> dict[str, Any]:
        from chaintrade.orchestration import publish_features

        return publish_features(get_current_context()["params"]["timeframes"])

    build >> publish_features()


chaintrade_features()
