"""Done-when of the monitoring issue, end to end with the simulator.

A replay through the MT5 simulator runs healthy, then its model turns bad (predicts the wrong
direction) and slow (serving latency). The performance monitor and the feedback loop must:
fire alerts on a (fake, local) Telegram Bot API server, show them on the web dashboard (checked
in headless Chromium, screenshots kept), and trigger a ``chaintrade_training`` DAG run on a
real Airflow. Real parts: PostgreSQL (chain_history, market_data, monitoring tables), MLflow
(SQLite store), Airflow (api-server, scheduler, dag-processor), uvicorn + Chromium.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from chaintrade.chain_store import write_events
from chaintrade.db import connect
from chaintrade.market_store import load_bars
from chaintrade.monitoring.dashboard import create_app
from chaintrade.monitoring.feedback import run_feedback
from chaintrade.monitoring.monitor import Monitor, MonitorGauges
from chaintrade.monitoring.settings import DashboardSettings, MonitorSettings, TelegramSettings
from chaintrade.monitoring.store import DatabaseAlertSink, recent_alerts
from chaintrade.monitoring.telegram import TelegramAlertSink
from chaintrade.monitoring.testing import FakeBotApi, serve_in_thread
from chaintrade.schemas import BarIn, Prediction
from chaintrade.settings import PROJECT_ROOT, Settings
from live_agent.agent import Agent
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, prediction_for, synthetic_bars
from tests.support.airflow import running_airflow

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts" / "monitoring"
TOKEN, CHAT = "777:fake-bot-token", 5151
MODEL = "chaintrade-direction"


class Oracle:
    """A model that knows the next bar (healthy), until ``bad`` turns it wrong and slow."""

    def __init__(self, bars: pd.DataFrame) -> None:
        closes = bars.set_index("time")["close"]
        self.up = dict(
            zip(closes.index[:-1], closes.to_numpy()[1:] > closes.to_numpy()[:-1], strict=True)
        )
        self.bad = False
        self.k = 0

    def __call__(self, bar: BarIn) -> Prediction:
        self.k += 1
        sign = 1.0 if self.up[pd.Timestamp(bar.time)] else -1.0
        if self.bad:
            sign = -sign
            time.sleep(0.04)  # serving got slow
        # open on even bars (|s| > 0.7), close on odd ones (|s| < 0.3): trades close every bar
        strength = sign * (0.9 if self.k % 2 else 0.1)
        return prediction_for(bar, strength).model_copy(
            update={"model_name": MODEL, "model_version": "1"}
        )


def register_model(settings: Settings) -> None:
    """A registered version with validation metrics, as training leaves it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_uri)
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(settings.mlflow_uri)
    exp = client.create_experiment(
        "chaintrade", artifact_location=settings.mlflow_artifacts.as_uri()
    )
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metrics({"valid_accuracy": 0.56, "valid_auc": 0.58})
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", version.version)


def test_a_model_that_turns_bad_alerts_shows_on_the_dashboard_and_triggers_retraining(
    tmp_path: Path, clean_db: str
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (apt install chromium)"
        )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running_airflow(tmp_path, {"CHAINTRADE_HOME": str(tmp_path / "var")}) as airflow:
        airflow.wait_for_dags("chaintrade_training")
        settings = Settings(
            home=tmp_path / "var",
            db_url=clean_db,
            airflow_url=airflow.url,
            airflow_username=airflow.username,
            airflow_password=airflow.password,
        )
        register_model(settings)
        bars = synthetic_bars(("EURUSD",), n=150, seed=5)
        load_bars(clean_db, bars)
        oracle = Oracle(bars)
        sink = ListSink()
        agent = Agent(
            Mt5Simulator(bars, start_bar=16),
            ScriptedServing([oracle]),
            sink,
            AgentSettings(magic=4711, state_dir=tmp_path / "agent"),
        )
        agent.start()
        mon = MonitorSettings(
            min_samples=10, window_s=3600, min_trades=5, retrain_cooldown_s=0,
            stale_data_after_s=10 * 365 * 86400,  # the replayed bars are from 2024
        )  # fmt: skip
        with FakeBotApi(TOKEN) as bot:
            telegram = TelegramAlertSink(
                TelegramSettings(token=TOKEN, api_url=bot.url, chat_ids=str(CHAT))
            )
            sinks = [DatabaseAlertSink(clean_db), telegram]
            monitor = Monitor(
                mon, clean_db, tmp_path / "docs", tmp_path / "quarantine", sinks, MonitorGauges()
            )

            # phase 1: healthy
            t0 = datetime.now(UTC)
            healthy = agent.run_replay(["EURUSD"], n_bars=60)
            with connect(clean_db) as conn:
                write_events(conn, sink.events)
            sink.events.clear()
            _, first_alerts = monitor.cycle()
            good = run_feedback(settings, mon, clean_db, since=t0, sinks=sinks)
            assert healthy.orders_filled > 10
            assert first_alerts == [] and good.alerts == () and good.retrain_run_id is None
            ((key, live),) = good.metrics.items()
            assert key == (MODEL, "1") and live["accuracy"] == 1.0 and live["profit_factor"] > 1

            # phase 2: the model turns bad and slow
            oracle.bad = True
            t1 = datetime.now(UTC)
            agent.run_replay(["EURUSD"], n_bars=60)
            with connect(clean_db) as conn:
                write_events(conn, sink.events)
            _, spikes = monitor.cycle()
            bad = run_feedback(settings, mon, clean_db, since=t1, sinks=sinks)

            assert ("latency_spike", "prediction") in [(a.reason.value, a.subject) for a in spikes]
            assert bad.metrics[(MODEL, "1")]["accuracy"] == 0.0
            reasons = {a.reason.value for a in bad.alerts}
            assert {"model_degraded", "retraining_triggered"} <= reasons
            texts = [m["text"] for m in bot.wait_sent(4)]
            assert all(m["chat_id"] == CHAT for m in bot.sent)
            for expected in ("latency_spike", "model_degraded", "retraining_triggered"):
                assert any(expected in t for t in texts), (expected, texts)
            assert "chaintrade_monitor_alerts_total" in (
                monitor.gauges.exposition() if monitor.gauges else ""
            )

        # the retraining run exists on the real Airflow, with the feedback loop's conf
        assert bad.retrain_run_id is not None
        run = (
            airflow.client()
            ._request("GET", f"/api/v2/dags/chaintrade_training/dagRuns/{bad.retrain_run_id}")
            .json()
        )
        assert (
            run["conf"]["symbols"] == ["EURUSD"] and "live accuracy 0.00" in run["conf"]["reason"]
        )
        assert run["state"] in {"queued", "running", "success", "failed"}

        # MLflow holds the live metrics on a run and as tags of the model version
        from mlflow.tracking import MlflowClient

        version = MlflowClient(settings.mlflow_uri).get_model_version(MODEL, "1")
        assert float(version.tags["live.accuracy"]) == 0.0
        assert len(recent_alerts(clean_db)) >= 4

        # the dashboard shows it (headless Chromium)
        dash = DashboardSettings(token="dash-secret", refresh_s=0)
        app = create_app(clean_db, dash, platform=settings, kill_file=tmp_path / "agent" / "KILL")
        with serve_in_thread(app) as url:
            assert httpx.get(url).status_code == 401
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(f"{url}/?token=dash-secret")
                    alerts = page.locator("#alerts").inner_text()
                    models = page.locator("#models").inner_text()
                    page.screenshot(path=str(ARTIFACTS / "dashboard_full.png"), full_page=True)
                    page.locator("#alerts").screenshot(path=str(ARTIFACTS / "dashboard_alerts.png"))
                finally:
                    browser.close()
        for expected in ("model_degraded", "latency_spike", "retraining_triggered"):
            assert expected in alerts
        assert "champion" in models and "live" in models.lower() and "accuracy 0" in models
