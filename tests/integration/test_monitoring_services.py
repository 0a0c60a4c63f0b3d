"""The monitor, the feedback store and the run report against the real PostgreSQL, with the
agent's real Prometheus endpoint scraped over HTTP."""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chaintrade.chain_store import write_events
from chaintrade.db import connect
from chaintrade.monitoring.events import AlertReason
from chaintrade.monitoring.monitor import Monitor, MonitorGauges
from chaintrade.monitoring.settings import MonitorSettings
from chaintrade.monitoring.store import DatabaseAlertSink, recent_alerts
from chaintrade.report import write_run_report
from chaintrade.schemas import BarIn, Prediction
from live_agent.agent import Agent
from live_agent.runner import AgentMetrics
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, prediction_for, synthetic_bars

pytestmark = pytest.mark.integration


def alternating() -> Callable[[BarIn], Prediction]:
    """Open long, close, open short, close, ... (the seed rule's thresholds)."""
    cycle = itertools.cycle([0.9, 0.1, -0.9, -0.1])
    return lambda bar: prediction_for(bar, next(cycle))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replay(url: str, n: int = 30) -> tuple[Agent, AgentMetrics]:
    """A short paper session recorded in chain_history, its metrics in an agent registry."""
    sink = ListSink()
    agent = Agent(
        Mt5Simulator(synthetic_bars(n=n + 20), start_bar=16),
        ScriptedServing([alternating()]),
        sink,
        AgentSettings(magic=99),
    )
    agent.start()
    metrics = AgentMetrics()
    for outcome in agent.run_replay(["EURUSD"], n_bars=n).outcomes:
        metrics.observe(agent, outcome)
    with connect(url) as conn:
        write_events(conn, sink.events)
    return agent, metrics


def test_monitor_scrapes_the_agent_and_flags_serving_down(clean_db: str, tmp_path: Path) -> None:
    from prometheus_client import start_http_server

    _, metrics = replay(clean_db)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        port = server.server_address[1]
        settings = MonitorSettings(
            agent_metrics_url=f"http://127.0.0.1:{port}/metrics",
            serving_metrics_url=f"http://127.0.0.1:{closed_port()}/metrics",
            stale_data_after_s=10 * 365 * 86400,
        )
        gauges = MonitorGauges()
        monitor = Monitor(
            settings, clean_db, tmp_path, tmp_path, [DatabaseAlertSink(clean_db)], gauges
        )
        snap, alerts = monitor.cycle()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    services = {h.name: h for h in snap.services}
    assert services["live_agent"].up and services["database"].up
    assert services["live_agent"].metrics["agent_bars_total"] == 30
    assert not services["serving"].up and "ConnectError" in services["serving"].detail
    c = snap.chains
    assert c is not None and c.error_chains == 0
    assert c.latency_ms["prediction"].n == 30  # one bar chain per bar (+ the start-up chain)
    assert c.chains in (30, 31) and len(c.strengths) == 30
    assert set(snap.chains.latency_ms) >= {"collector", "prediction", "execution"}
    assert [(a.reason, a.subject) for a in alerts] == [(AlertReason.SERVICE_DOWN, "serving")]
    (stored,) = recent_alerts(clean_db)
    assert stored.alert_id == alerts[0].alert_id and stored.reason == AlertReason.SERVICE_DOWN
    text = gauges.exposition()
    assert 'chaintrade_monitor_service_up{service="serving"} 0.0' in text
    assert 'chaintrade_monitor_service_up{service="live_agent"} 1.0' in text
    assert re.search(rf"chaintrade_monitor_chains {c.chains}\.0", text)


def test_a_database_that_is_down_is_an_alert_not_a_crash(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing"
    monitor = Monitor(MonitorSettings(http_timeout_s=1), url, tmp_path, tmp_path)
    snap, alerts = monitor.cycle()
    assert snap.chains is None and snap.db_error is not None
    assert [(a.reason, a.subject) for a in alerts] == [(AlertReason.SERVICE_DOWN, "database")]


def test_the_run_report_is_one_self_contained_file(clean_db: str, tmp_path: Path) -> None:
    replay(clean_db, n=40)
    out = write_run_report(
        clean_db,
        tmp_path / "report.html",
        since=datetime.now(UTC) - timedelta(hours=1),
        summary={"replay": {"orders_filled": 40}, "chains_this_run": 40},
    )
    html = out.read_text()
    assert html.count("<svg") >= 4 and re.search(r"Chains: 4[01]\b", html)
    assert "replay.orders_filled" in html and "realized PnL" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "collector → validator → prediction → decision → risk → execution" in html


def test_the_grafana_dashboard_queries_real_metrics_and_tables(clean_db: str) -> None:
    import json

    from chaintrade.settings import PROJECT_ROOT

    dashboard = json.loads((PROJECT_ROOT / "infra/grafana/dashboards/monitoring.json").read_text())
    replay(clean_db, n=20)
    monitor = Monitor(MonitorSettings(), clean_db, Path("/nonexistent"), Path("/nonexistent"))
    monitor.gauges = MonitorGauges()
    monitor.cycle()
    text = monitor.gauges.exposition()  # declared families and the samples of this cycle
    exposed = set(re.findall(r"^# TYPE (chaintrade_\w+)", text, re.M))
    exposed |= set(re.findall(r"^(chaintrade_\w+?)(?:\{| )", text, re.M))
    targets = [t for p in dashboard["panels"] for t in p["targets"]]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    with connect(clean_db) as conn:
        for target in targets:
            if "expr" in target:
                names = set(re.findall(r"chaintrade_\w+", target["expr"]))
                assert names <= exposed, (names - exposed, target["expr"])
            else:  # Grafana's time macro, as a plain predicate
                query = re.sub(r"\$__timeFilter\(([^)]+)\)", r"\1 > now() - interval '1 day'",
                               target["rawSql"])  # fmt: skip
                conn.execute(query).fetchall()


def test_chaintrade_report_command_writes_the_report(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from chaintrade.cli_monitor import monitor_app
    from chaintrade.settings import get_settings

    replay(clean_db, n=12)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"replay": {"orders_filled": 12}}))
    monkeypatch.setenv("CHAINTRADE_DB_URL", clean_db)
    monkeypatch.setenv("CHAINTRADE_HOME", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        out = tmp_path / "report.html"
        result = CliRunner().invoke(
            monitor_app, ["report", "--out", str(out), "--summary", str(summary)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "replay.orders_filled" in out.read_text() and str(out) in result.output.replace("\n", "")


def test_chaintrade_monitor_command_runs_cycles_and_stores_alerts(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from chaintrade.cli_monitor import monitor_app
    from chaintrade.settings import get_settings

    monkeypatch.setenv("CHAINTRADE_DB_URL", clean_db)
    monkeypatch.setenv("CHAINTRADE_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("CHAINTRADE_MONITOR_INTERVAL_S", "0.2")
    monkeypatch.setenv(
        "CHAINTRADE_MONITOR_SERVING_METRICS_URL", f"http://127.0.0.1:{closed_port()}/m"
    )
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(monitor_app, ["monitor", "--cycles", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Telegram not configured" in result.output
    stored = recent_alerts(clean_db)
    assert [(a.reason, a.subject) for a in stored] == [(AlertReason.SERVICE_DOWN, "serving")] * 2
