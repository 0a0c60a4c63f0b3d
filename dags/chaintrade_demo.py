# mypy: disable-error-code="arg-type"
# (TaskFlow passes XComArg placeholders where the task functions declare their values.)
"""
### Chaintrade demo: bars → features → model → serving → agent, every part real

Ingests the real EURUSD H1 history plus a synthetic symbol, validates it with Great
Expectations, builds features and labels with Spark, publishes them through Feast,
trains and registers an XGBoost model in MLflow (alias `champion`), serves it with
`bentoml serve` and replays the hold-out through the live agent and the MT5 simulator.
Every closed bar of the replay is one chain in `chain_history`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

from chaintrade.orchestration import notify_failure


@dag(
    dag_id="chaintrade_demo",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["chaintrade", "demo"],
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=10),
        "on_failure_callback": notify_failure,
    },
    params={
        "holdout_bars": 300,
        "horizon_bars": 1,
        "max_bars": None,
        "buy_threshold": None,
        "close_band": None,
    },
)
def chaintrade_demo() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def ingest() -> dict[str, Any]:
        from chaintrade.pipeline import ingest_step

        ctx = get_current_context()
        return ingest_step(dict(ctx["params"]), run_name=ctx["run_id"])

    @task(execution_timeout=timedelta(minutes=15))
    def build_features(info: dict[str, Any]) -> dict[str, int]:
        from chaintrade.settings import get_settings
        from spark_jobs.build_features import run

        s = get_settings()
        return run(
            str(s.lake_dir / "bars"),
            str(s.offline_dir),
            timeframe=info["params"]["timeframe"],
            horizon_bars=info["params"]["horizon_bars"],
            master=s.spark_master,
        )

    @task(execution_timeout=timedelta(minutes=10))
    def publish_features(info: dict[str, Any], built: dict[str, int]) -> dict[str, Any]:
        from chaintrade.pipeline import publish_features_step

        return {**built, **publish_features_step(info)}

    @task(execution_timeout=timedelta(minutes=15))
    def train(info: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
        from chaintrade.pipeline import train_step

        return train_step(info)

    @task(execution_timeout=timedelta(minutes=15), retries=0)
    def serve_and_replay(info: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
        from chaintrade.pipeline import replay_step

        return replay_step(info, model)

    @task
    def summarize(
        info: dict[str, Any],
        published: dict[str, Any],
        model: dict[str, Any],
        replay: dict[str, Any],
    ) -> dict[str, Any]:
        from chaintrade.pipeline import summary_step

        return summary_step(info, published, model, replay)

    info = ingest()
    published = publish_features(info, build_features(info))
    model = train(info, published)
    replay = serve_and_replay(info, model)
    summarize(info, published, model, replay)


chaintrade_demo()
