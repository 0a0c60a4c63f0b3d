"""PostgreSQL tables of monitoring (migration 005): alerts and live model metrics."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from chaintrade.db import connect
from chaintrade.errors import ChaintradeError
from chaintrade.monitoring.events import AlertRaised, AlertReason, Severity

log = logging.getLogger(__name__)


def write_alerts(url: str, alerts: Iterable[AlertRaised]) -> int:
    """Insert alerts (idempotent on their id); returns rows written."""
    rows = [
        (
            a.alert_id,
            a.raised_at,
            a.reason.value,
            a.severity.value,
            a.subject[:255],
            a.message,
            a.value,
            a.threshold,
            json.dumps(dict(a.details), default=str),
        )
        for a in alerts
    ]
    if not rows:
        return 0
    with connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO monitoring_alerts (alert_id, raised_at, reason, severity, subject, "
            "message, value, threshold, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            rows,
        )
    return len(rows)


def recent_alerts(url: str, limit: int = 50) -> list[AlertRaised]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT alert_id, raised_at, reason, severity, subject, message, value, threshold, "
            "details FROM monitoring_alerts ORDER BY raised_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [
        AlertRaised(
            AlertReason(r[2]),
            Severity(r[3]),
            r[4],
            r[5],
            r[6],
            r[7],
            r[8] or {},
            r[1],
            uuid.UUID(str(r[0])),
        )
        for r in rows
    ]


def last_alert_at(url: str, reason: AlertReason, subject: str | None = None) -> datetime | None:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT max(raised_at) FROM monitoring_alerts WHERE reason = %s "
            "AND (%s::text IS NULL OR subject = %s)",
            (reason.value, subject, subject),
        ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True, slots=True)
class LiveMetric:
    model_name: str
    model_version: str
    metric_name: str
    measured_at: datetime
    metric_value: float
    window_start: datetime | None
    window_end: datetime | None
    samples: int


def write_live_metrics(url: str, metrics: Iterable[LiveMetric]) -> int:
    rows = [
        (
            m.model_name,
            m.model_version,
            m.metric_name,
            m.measured_at,
            m.metric_value,
            m.window_start,
            m.window_end,
            m.samples,
        )
        for m in metrics
    ]
    if not rows:
        return 0
    with connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO live_model_metrics (model_name, model_version, metric_name, "
            "measured_at, metric_value, window_start, window_end, samples) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )
    return len(rows)


def latest_live_metrics(url: str) -> dict[tuple[str, str], dict[str, float]]:
    """The newest value of each live metric per (model name, version)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (model_name, model_version, metric_name) model_name, "
            "model_version, metric_name, metric_value FROM live_model_metrics "
            "ORDER BY model_name, model_version, metric_name, measured_at DESC"
        ).fetchall()
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, version, metric, value in rows:
        out.setdefault((name, version), {})[metric] = float(value)
    return out


class DatabaseAlertSink:
    """Alerts into ``monitoring_alerts``; a database that is down is logged, never raised."""

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, alert: AlertRaised) -> bool:
        try:
            return write_alerts(self.url, [alert]) == 1
        except ChaintradeError as exc:
            log.warning("alert %s not stored: %s", alert.reason, exc)
            return False
