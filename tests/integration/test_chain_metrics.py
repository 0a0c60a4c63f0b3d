"""chain_metrics filled from recorded chains: known answers, idempotent recomputation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chaintrade.chain import ChainEvent, Dependency
from chaintrade.chain_definitions import BAR_CHAIN, register_definition
from chaintrade.chain_metrics import ALL_CHAINS, MetricsAggregator, aggregate_chain_metrics
from chaintrade.chain_store import write_events
from chaintrade.db import connect

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 9, 0, 10, tzinfo=UTC)


def ev(cid: uuid.UUID, service: str, at_ms: float, dur: float, **kw: Any) -> ChainEvent:
    return ChainEvent(
        cid,
        cid,
        service,
        kw.pop("event_type", "complete"),
        T0 + timedelta(milliseconds=at_ms),
        dur,
        **kw,
    )


def recorded_chains() -> tuple[uuid.UUID, uuid.UUID, list[ChainEvent]]:
    """Two bar chains with hand-picked timings (ms), as in test_chain_query."""
    failed, healthy = uuid.uuid4(), uuid.uuid4()
    events = []
    for cid, offset, fail in ((failed, 0.0, True), (healthy, 1000.0, False)):
        events += [
            ev(cid, "collector", offset + 0, 2),
            ev(cid, "validator", offset + 2, 1),
            ev(
                cid,
                "prediction",
                offset + 3,
                20,
                dependencies=(Dependency("serving", "/predict", 1, 18.0, "ok"),),
            ),
            ev(cid, "serving", offset + 4, 15),
            ev(cid, "decision", offset + 23, 1),
            ev(cid, "risk", offset + 24, 2),
            ev(
                cid,
                "execution",
                offset + 26,
                4,
                event_type="error" if fail else "complete",
                error_context={"type": "OrderRejected"} if fail else None,
            ),
        ]
    return failed, healthy, events


def metrics(url: str, period: str) -> dict[tuple[Any, str, str | None], float]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT chain_id, metric_name, service_name, metric_value, count(*) OVER "
            '(PARTITION BY chain_id, metric_name, service_name, "timestamp") '
            "FROM chain_metrics WHERE aggregation_period = %s",
            (period,),
        ).fetchall()
    assert all(r[4] == 1 for r in rows), "a metric was written twice"
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def test_chain_metrics_have_the_known_values_and_recomputing_replaces_them(
    clean_db: str,
) -> None:
    failed, healthy, events = recorded_chains()
    # A synthetic service with durations 1..100 ms in the same minute: known percentiles.
    load = uuid.uuid4()
    events += [ev(load, "loadtest", 5000 + i, float(i)) for i in range(1, 101)]
    with connect(clean_db) as conn:
        write_events(conn, events)
        register_definition(conn, BAR_CHAIN)
        conn.commit()
        since, until = T0 - timedelta(minutes=1), T0 + timedelta(minutes=1)
        first = aggregate_chain_metrics(conn, since, until, periods=("1m",))
        again = aggregate_chain_metrics(conn, since, until, periods=("1m",))
    assert first.chains == again.chains == 3
    assert first == again

    per_chain = metrics(clean_db, "chain")
    assert per_chain[(failed, "chain_duration_ms", None)] == pytest.approx(30.0)
    assert per_chain[(failed, "chain_events", None)] == 7
    assert per_chain[(failed, "chain_errors", None)] == 1
    assert per_chain[(failed, "chain_services", None)] == 7
    assert per_chain[(failed, "chain_health_score", None)] == 75.0
    assert per_chain[(healthy, "chain_health_score", None)] == 100.0
    assert per_chain[(healthy, "chain_errors", None)] == 0
    assert per_chain[(failed, "service_self_ms", "prediction")] == pytest.approx(5.0)
    assert per_chain[(failed, "service_duration_ms", "serving")] == pytest.approx(15.0)
    assert per_chain[(failed, "service_errors", "execution")] == 1
    assert per_chain[(load, "chain_events", None)] == 100

    per_minute = metrics(clean_db, "1m")
    assert per_minute[(ALL_CHAINS, "service_latency_p50_ms", "loadtest")] == pytest.approx(50.5)
    assert per_minute[(ALL_CHAINS, "service_latency_p95_ms", "loadtest")] == pytest.approx(95.05)
    assert per_minute[(ALL_CHAINS, "service_latency_p99_ms", "loadtest")] == pytest.approx(99.01)
    assert per_minute[(ALL_CHAINS, "service_events", "execution")] == 2
    assert per_minute[(ALL_CHAINS, "service_error_rate", "execution")] == pytest.approx(0.5)
    assert per_minute[(ALL_CHAINS, "service_latency_p50_ms", "prediction")] == pytest.approx(20)

    # A late event of the healthy chain (e.g. replayed from a spool): the next run over
    # the window replaces that chain's metrics and the minute's, doubling nothing.
    with connect(clean_db) as conn:
        write_events(conn, [ev(healthy, "risk", 1040, 3, event_type="error")])
        conn.commit()
    MetricsAggregator(clean_db, lookback=timedelta(minutes=1), periods=("1m",)).run_once(
        T0 + timedelta(seconds=30)
    )
    per_chain = metrics(clean_db, "chain")
    per_minute = metrics(clean_db, "1m")
    assert per_chain[(healthy, "chain_errors", None)] == 1
    assert per_chain[(healthy, "chain_events", None)] == 8
    assert per_chain[(healthy, "chain_health_score", None)] < 100.0
    assert per_chain[(failed, "chain_errors", None)] == 1  # untouched values are the same
    assert per_minute[(ALL_CHAINS, "service_events", "risk")] == 3


def test_unknown_period_is_refused_with_the_known_ones(clean_db: str) -> None:
    with connect(clean_db) as conn, pytest.raises(ValueError, match="2m"):
        aggregate_chain_metrics(conn, T0, T0 + timedelta(minutes=1), periods=("2m",))
