"""``chain_metrics``: per-chain and per-service performance metrics from ``chain_history``.

:func:`aggregate_chain_metrics` recomputes a time window and replaces what an earlier run
wrote for it (delete + insert in one transaction), so running it again, or over an
overlapping window, never doubles a metric; late events are picked up by the next run
that covers their chain. :class:`MetricsAggregator` runs it periodically over a trailing
window.

Rows written (seed columns; ``metric_unit`` is ``ms``, ``count``, ``ratio`` or ``score``):

- ``aggregation_period = 'chain'``, one set per chain started in the window, at the
  chain's first event: ``chain_duration_ms`` (span, as the query engine computes it),
  ``chain_events``, ``chain_errors``, ``chain_services``, ``chain_health_score`` (0-100,
  against the best-matching registered definition; tags name it and the bottlenecks);
  per service of the chain (``service_name`` set): ``service_duration_ms``,
  ``service_self_ms`` (its time minus nested steps), ``service_errors`` (tags: whether it
  is on the critical path).
- ``aggregation_period = '1m' | '1h'`` (configurable), per service and time bucket, with
  ``chain_id`` the nil UUID (all chains): ``service_latency_p50_ms`` / ``_p95_ms`` /
  ``_p99_ms``, ``service_events``, ``service_errors``, ``service_error_rate``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chaintrade.chain_definitions import best_definition, list_definitions
from chaintrade.chain_query import ChainAnalysis, analyze_steps
from chaintrade.db import connect
from chaintrade.errors import RetryableError

log = logging.getLogger(__name__)

ALL_CHAINS = uuid.UUID(int=0)  # chain_id of the per-period service metrics
PERIODS: Mapping[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's origin, as in the 004 views

# Chains that started in [since, until): candidates are chains with an event near the
# window (``slack`` bounds how long a chain may run), then their first event decides.
_CHAIN_EVENTS_SQL = """
WITH candidates AS (
    SELECT DISTINCT chain_id FROM chain_history
    WHERE "timestamp" >= %(lo)s AND "timestamp" < %(hi)s
), started AS (
    SELECT h.chain_id FROM chain_history h JOIN candidates USING (chain_id)
    GROUP BY h.chain_id
    HAVING min(h."timestamp") >= %(since)s AND min(h."timestamp") < %(until)s
)
SELECT h.chain_id, h.service_name, h.event_type, h."timestamp", h.duration_ms,
       h.error_context, h.dependencies
FROM chain_history h JOIN started USING (chain_id)
ORDER BY h.chain_id, h."timestamp", h.service_name
"""

_DELETE_CHAINS_SQL = (
    "DELETE FROM chain_metrics WHERE aggregation_period = 'chain' AND chain_id = ANY(%s)"
)

_COPY_SQL = (
    "COPY chain_metrics (chain_id, metric_name, metric_value, metric_unit, service_name, "
    '"timestamp", aggregation_period, tags) FROM STDIN'
)

_DELETE_PERIOD_SQL = """
DELETE FROM chain_metrics
WHERE aggregation_period = %(period)s AND chain_id = %(all)s
  AND "timestamp" >= %(lo)s AND "timestamp" < %(hi)s
"""

_INSERT_PERIOD_SQL = """
INSERT INTO chain_metrics (chain_id, metric_name, metric_value, metric_unit, service_name,
                           "timestamp", aggregation_period, tags)
SELECT %(all)s, m.name, m.value, m.unit, s.service_name, s.bucket, %(period)s,
       '{"scope": "all_chains"}'::jsonb
FROM (
    SELECT date_bin(%(width)s, "timestamp", %(origin)s) AS bucket, service_name,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms) AS pct,
           count(*) AS events,
           count(*) FILTER (WHERE event_type = 'error') AS errors
    FROM chain_history
    WHERE "timestamp" >= %(lo)s AND "timestamp" < %(hi)s
    GROUP BY 1, 2
) s,
LATERAL (VALUES
    ('service_latency_p50_ms', s.pct[1], 'ms'),
    ('service_latency_p95_ms', s.pct[2], 'ms'),
    ('service_latency_p99_ms', s.pct[3], 'ms'),
    ('service_events', s.events::float8, 'count'),
    ('service_errors', s.errors::float8, 'count'),
    ('service_error_rate', s.errors::float8 / s.events, 'ratio')
) AS m(name, value, unit)
WHERE m.value IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class MetricsResult:
    """What one aggregation wrote."""

    chains: int
    chain_metrics: int
    period_metrics: int


def floor_time(ts: datetime, width: timedelta) -> datetime:
    """The start of ``ts``'s bucket of ``width`` (the same bins as ``date_bin`` in SQL)."""
    return _ORIGIN + ((ts - _ORIGIN) // width) * width


def _chain_rows(
    chain_id: uuid.UUID, analysis: ChainAnalysis, events: Sequence[Mapping[str, Any]]
) -> Iterable[tuple[Any, ...]]:
    started = analysis.started_at or events[0]["timestamp"]
    errors = sum(1 for e in events if e["event_type"] == "error")
    health = analysis.health
    yield (chain_id, "chain_duration_ms", analysis.total_duration_ms, "ms", None, started, None)
    yield (chain_id, "chain_events", float(len(events)), "count", None, started, None)
    yield (chain_id, "chain_errors", float(errors), "count", None, started, None)
    n_services = float(len(analysis.services))
    yield (chain_id, "chain_services", n_services, "count", None, started, None)
    if health is not None:
        tags = {
            "definition": health.definition,
            "healthy": health.healthy,
            "bottlenecks": [b.service_name for b in analysis.bottlenecks],
        }
        yield (chain_id, "chain_health_score", health.score, "score", None, started, tags)
    duration: dict[str, float] = defaultdict(float)
    self_ms: dict[str, float] = defaultdict(float)
    failed: dict[str, int] = defaultdict(int)
    for step in analysis.steps:
        duration[step.service_name] += step.duration_ms
        self_ms[step.service_name] += step.self_ms
        failed[step.service_name] += step.status == "error"
    critical = set(analysis.critical_path)
    for service in duration:
        tags = {"critical_path": service in critical}
        yield (chain_id, "service_duration_ms", duration[service], "ms", service, started, tags)
        yield (chain_id, "service_self_ms", self_ms[service], "ms", service, started, tags)
        yield (chain_id, "service_errors", float(failed[service]), "count", service, started, tags)


def aggregate_chain_metrics(
    conn: psycopg.Connection[Any],
    since: datetime,
    until: datetime,
    *,
    periods: Sequence[str] = ("1m", "1h"),
    max_chain_span: timedelta = timedelta(hours=1),
) -> MetricsResult:
    """Recompute ``chain_metrics`` for chains started in ``[since, until)`` and for the
    ``periods`` buckets that overlap it; replaces earlier rows for them (idempotent)."""
    unknown = [p for p in periods if p not in PERIODS]
    if unknown:
        raise ValueError(f"unknown aggregation period(s) {unknown}; known: {sorted(PERIODS)}")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            _CHAIN_EVENTS_SQL,
            {
                "lo": since - max_chain_span,
                "hi": until + max_chain_span,
                "since": since,
                "until": until,
            },
        )
        by_chain: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for row in cur.fetchall():
            by_chain[row["chain_id"]].append(row)
        definitions = list_definitions(conn) if by_chain else []
        rows: list[tuple[Any, ...]] = []
        for chain_id, events in by_chain.items():
            chosen = best_definition([e["service_name"] for e in events], definitions)
            analysis = analyze_steps(chain_id, events, chosen)
            rows.extend(_chain_rows(chain_id, analysis, events))
        if by_chain:
            cur.execute(_DELETE_CHAINS_SQL, (list(by_chain),))
            with cur.copy(_COPY_SQL) as copy:
                for r in rows:
                    tags = None if r[6] is None else Jsonb(r[6])
                    copy.write_row((*r[:6], "chain", tags))
        period_rows = 0
        for period in periods:
            width = PERIODS[period]
            params = {
                "period": period,
                "all": ALL_CHAINS,
                "width": width,
                "origin": _ORIGIN,
                "lo": floor_time(since, width),
                "hi": floor_time(until, width) + width,
            }
            cur.execute(_DELETE_PERIOD_SQL, params)
            cur.execute(_INSERT_PERIOD_SQL, params)
            period_rows += max(cur.rowcount, 0)
    return MetricsResult(len(by_chain), len(rows), period_rows)


class MetricsAggregator:
    """Runs :func:`aggregate_chain_metrics` every ``interval_s`` over the trailing
    ``lookback`` (which should exceed how late events arrive, e.g. a spool replay)."""

    def __init__(
        self,
        url: str,
        *,
        interval_s: float = 60.0,
        lookback: timedelta = timedelta(minutes=15),
        periods: Sequence[str] = ("1m", "1h"),
    ) -> None:
        self._url = url
        self._interval_s = interval_s
        self._lookback = lookback
        self._periods = tuple(periods)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chain-metrics", daemon=True)
        self.runs = 0
        self.failures = 0
        self.last: MetricsResult | None = None

    def run_once(self, now: datetime | None = None) -> MetricsResult:
        """One aggregation over ``[now - lookback, now)``."""
        until = now or datetime.now(UTC)
        with connect(self._url) as conn:
            result = aggregate_chain_metrics(
                conn, until - self._lookback, until, periods=self._periods
            )
        self.runs += 1
        self.last = result
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (psycopg.Error, OSError, RetryableError) as exc:  # database down: retry
                self.failures += 1
                log.warning("chain metrics: aggregation failed: %s", exc)
            self._stop.wait(self._interval_s)

    def start(self) -> MetricsAggregator:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> MetricsAggregator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "ALL_CHAINS",
    "PERIODS",
    "MetricsAggregator",
    "MetricsResult",
    "aggregate_chain_metrics",
    "floor_time",
]
