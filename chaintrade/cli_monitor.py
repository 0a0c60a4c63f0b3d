"""``chaintrade dashboard | report | monitor | feedback | telegram``: monitoring commands."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chaintrade.monitoring.events import AlertSink
from chaintrade.settings import get_settings

monitor_app = typer.Typer(help="Monitoring: dashboard, run report, monitor, feedback, Telegram.")
console = Console()


def _since(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


@monitor_app.command()
def dashboard(
    host: Annotated[str | None, typer.Option(help="Default CHAINTRADE_DASHBOARD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default CHAINTRADE_DASHBOARD_PORT.")] = None,
) -> None:
    """Serve the web dashboard (auth from CHAINTRADE_DASHBOARD_TOKEN / _PASSWORD)."""
    import uvicorn

    from chaintrade.db import database_url, migrate
    from chaintrade.monitoring.dashboard import create_app
    from chaintrade.monitoring.settings import DashboardSettings, MonitorSettings

    settings, dash, mon = get_settings(), DashboardSettings(), MonitorSettings()
    targets = {"serving": mon.serving_metrics_url, "live_agent": mon.agent_metrics_url}
    with database_url(settings) as url:
        migrate(url)
        app = create_app(
            url, dash, platform=settings, scrape_targets={k: v for k, v in targets.items() if v}
        )
        console.print(f"dashboard on http://{host or dash.host}:{port or dash.port}/")
        uvicorn.run(app, host=host or dash.host, port=port or dash.port, log_level="warning")


@monitor_app.command()
def report(
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("var/report.html"),
    since_hours: Annotated[float, typer.Option(help="Chains of the last N hours.")] = 24.0,
    summary: Annotated[Path | None, typer.Option(help="A JSON summary shown on top.")] = None,
    title: Annotated[str, typer.Option()] = "Chaintrade run report",
) -> None:
    """Write the self-contained HTML run report (trades, PnL, chains, latency, data quality)."""
    from chaintrade.db import database_url, migrate
    from chaintrade.report import write_run_report

    settings = get_settings()
    data = json.loads(summary.read_text()) if summary else None
    with database_url(settings) as url:
        migrate(url)
        path = write_run_report(
            url, out, since=_since(since_hours), title=title, summary=data, settings=settings
        )
    console.print(f"report: {path.resolve()}")


def _sinks(url: str) -> list[AlertSink]:
    from chaintrade.monitoring.settings import TelegramSettings
    from chaintrade.monitoring.store import DatabaseAlertSink
    from chaintrade.monitoring.telegram import TelegramAlertSink

    sinks: list[AlertSink] = [DatabaseAlertSink(url)]
    telegram = TelegramSettings()
    if telegram.configured:
        sinks.append(TelegramAlertSink(telegram))
    else:
        console.print("Telegram not configured (CHAINTRADE_TELEGRAM_TOKEN / _CHAT_IDS): no alerts")
    return sinks


@monitor_app.command()
def monitor(
    cycles: Annotated[int | None, typer.Option(help="Stop after N cycles.")] = None,
) -> None:
    """Run the performance monitor every CHAINTRADE_MONITOR_INTERVAL_S seconds; it also fills
    chain_metrics (the last 15 minutes, every minute) for Grafana."""
    from chaintrade.chain_metrics import MetricsAggregator
    from chaintrade.db import database_url, migrate
    from chaintrade.monitoring.monitor import Monitor, MonitorGauges
    from chaintrade.monitoring.settings import MonitorSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings, mon = get_settings(), MonitorSettings()
    gauges = MonitorGauges()
    if mon.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(mon.metrics_port, addr="127.0.0.1", registry=gauges.registry)
    with database_url(settings) as url:
        migrate(url)
        m = Monitor(
            mon,
            url,
            settings.data_docs_dir,
            settings.lake_dir / "quarantine" / "bars",
            sinks=_sinks(url),
            gauges=gauges,
        )
        with MetricsAggregator(url, interval_s=60.0):
            try:
                m.run(max_cycles=cycles)
            except KeyboardInterrupt:
                m.stop()


@monitor_app.command()
def feedback(
    since_hours: Annotated[float, typer.Option(help="Chains of the last N hours.")] = 24.0,
    timeframe: Annotated[str, typer.Option()] = "H1",
    mlflow: Annotated[bool, typer.Option(help="Log live metrics to MLflow.")] = True,
) -> None:
    """Live model metrics, drift, degradation rules; triggers retraining when needed."""
    from chaintrade.db import database_url, migrate
    from chaintrade.monitoring.feedback import run_feedback
    from chaintrade.monitoring.settings import MonitorSettings

    settings = get_settings()
    with database_url(settings) as url:
        migrate(url)
        result = run_feedback(
            settings,
            MonitorSettings(),
            url,
            since=_since(since_hours),
            timeframe=timeframe,
            sinks=_sinks(url)[1:],
            use_mlflow=mlflow,
        )
    for (name, version), metrics in result.metrics.items():
        console.print(
            f"{name} v{version}: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())
        )
    for alert in result.alerts:
        console.print(alert.text())
    if result.retrain_run_id:
        console.print(f"retraining run: {result.retrain_run_id}")


@monitor_app.command()
def telegram() -> None:
    """Answer /status, /positions, /pnl and a guarded /halt (getUpdates long-poll)."""
    from chaintrade.db import database_url, migrate
    from chaintrade.monitoring.settings import TelegramSettings
    from chaintrade.monitoring.telegram import TelegramCommands
    from chaintrade.monitoring.view import ViewStatus

    settings, tg = get_settings(), TelegramSettings()
    with database_url(settings) as url:
        migrate(url)
        bot = TelegramCommands(tg, ViewStatus(url, kill_file=tg.kill_file, state_dir=None))
        thread = threading.Thread(target=bot.run, daemon=True)
        thread.start()
        try:
            thread.join()
        except KeyboardInterrupt:
            bot.stop()
