"""The query engine, definitions registry, Grafana views and OTLP export on recorded chains."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chaintrade.chain import ChainEvent, Dependency
from chaintrade.chain_definitions import (
    BAR_CHAIN,
    RECONCILIATION_CHAIN,
    ChainDefinition,
    deactivate_definition,
    get_definition,
    list_definitions,
    register_builtin_definitions,
    register_definition,
)
from chaintrade.chain_query import analyze_chain, predict_service_impact, similar_chains
from chaintrade.chain_store import write_events
from chaintrade.db import connect
from chaintrade.otel import load_chains, otlp_body

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)


def bar_chain(start: datetime, *, fail_execution: bool = False, serving_down: bool = False):
    """A bar chain with known timings (ms): the agent's six steps, serving nested."""
    cid = uuid.uuid4()

    def ev(service: str, at: float, dur: float, **kw: object) -> ChainEvent:
        return ChainEvent(
            cid,
            uuid.uuid4(),
            service,
            str(kw.pop("event_type", "complete")),
            start + timedelta(milliseconds=at),
            dur,
            **kw,  # type: ignore[arg-type]
        )

    out = [ev("collector", 0, 2), ev("validator", 2, 1)]
    if serving_down:
        out.append(
            ev(
                "prediction",
                3,
                5,
                event_type="error",
                dependencies=(Dependency("serving", "/predict", 1, 4.0, "error", "refused"),),
                error_context={"type": "ServiceUnavailable", "message": "serving down"},
            )
        )
        rest = 8.0
    else:
        out += [
            ev(
                "prediction",
                3,
                20,
                dependencies=(Dependency("serving", "/predict", 1, 18.0, "ok"),),
            ),
            ev("serving", 4, 15),
        ]
        rest = 23.0
    out += [ev("decision", rest, 1), ev("risk", rest + 1, 2)]
    if fail_execution:
        out.append(
            ev(
                "execution",
                rest + 3,
                4,
                event_type="error",
                error_context={"type": "OrderRejected", "message": "no money"},
            )
        )
    else:
        out.append(ev("execution", rest + 3, 4))
    return cid, out


@pytest.fixture
def recorded(clean_db: str) -> dict[str, uuid.UUID]:
    a, ea = bar_chain(T0, fail_execution=True)
    b, eb = bar_chain(T0 + timedelta(seconds=1))
    c, ec = bar_chain(T0 + timedelta(seconds=2), serving_down=True)
    with connect(clean_db) as conn:
        write_events(conn, [*ea, *eb, *ec])
        register_definition(conn, BAR_CHAIN)
        conn.commit()
    return {"failed_execution": a, "healthy": b, "serving_down": c}


def test_analysis_of_a_recorded_chain_gives_the_known_answers(
    clean_db: str, recorded: dict[str, uuid.UUID]
) -> None:
    with connect(clean_db) as conn:
        a = analyze_chain(conn, recorded["failed_execution"])
        ok = analyze_chain(conn, recorded["healthy"], "bar")
        down = analyze_chain(conn, recorded["serving_down"], BAR_CHAIN)
    assert a.total_duration_ms == pytest.approx(30.0)
    assert a.services == (
        "collector",
        "validator",
        "prediction",
        "serving",
        "decision",
        "risk",
        "execution",
    )
    assert a.critical_path == a.services
    assert [(b.service_name, round(b.self_ms, 6)) for b in a.bottlenecks] == [("serving", 15.0)]
    assert {s.service_name: round(s.self_ms, 6) for s in a.steps}["prediction"] == 5.0
    assert ("prediction", "serving", "nested") in a.edges
    assert ("prediction", "serving", "calls") in a.edges
    assert ("prediction", "decision", "next") in a.edges
    assert a.errors == ("execution",)
    assert a.health_score == 75.0 and a.health and a.health.definition == "bar"
    assert ok.health_score == 100.0 and ok.health and ok.health.healthy
    assert down.total_duration_ms == pytest.approx(15.0)
    assert down.health and {i.reason for i in down.health.issues} == {
        "step_error",
        "dependency_failure",
        "missing_service",
    }
    assert down.health_score == 100 - 25 - 5 - 15
    assert a.as_dict()["critical_path"][3] == "serving"


def test_similar_chains_by_topology_containment(
    clean_db: str, recorded: dict[str, uuid.UUID]
) -> None:
    with connect(clean_db) as conn:
        same = similar_chains(conn, recorded["failed_execution"], exact=True)
        superset_of_down = similar_chains(conn, recorded["serving_down"])
        exact_down = similar_chains(conn, recorded["serving_down"], exact=True)
    assert [r["chain_id"] for r in same] == [recorded["healthy"]]
    assert {r["chain_id"] for r in superset_of_down} == {
        recorded["healthy"],
        recorded["failed_execution"],
    }
    assert exact_down == []


def test_service_impact_prediction_from_history(
    clean_db: str, recorded: dict[str, uuid.UUID]
) -> None:
    with connect(clean_db) as conn:
        impact = predict_service_impact(
            conn,
            "serving",
            added_latency_ms=10.0,
            since=T0 - timedelta(minutes=1),
            until=T0 + timedelta(minutes=1),
        )
        prediction = predict_service_impact(
            conn, "prediction", since=T0 - timedelta(minutes=1), until=T0 + timedelta(minutes=1)
        )
    assert (impact.chains, impact.chains_with_service) == (3, 2)
    assert impact.share_of_chains == pytest.approx(2 / 3)
    assert impact.service_p50_ms == pytest.approx(15.0)
    assert impact.chain_p50_ms == pytest.approx(30.0)
    assert impact.predicted_chain_p50_ms == pytest.approx(40.0)
    assert impact.share_of_chain_time == pytest.approx(0.5)
    assert impact.downstream == ("decision", "risk", "execution")
    assert prediction.service_error_rate == pytest.approx(1 / 3)
    assert prediction.failure_propagation == 1.0  # serving never followed the failure


def test_definitions_registry_round_trip_and_deactivation(clean_db: str) -> None:
    with connect(clean_db, autocommit=True) as conn:
        first = register_definition(conn, BAR_CHAIN)
        changed = ChainDefinition("bar", ("collector",), max_duration_ms=5)
        assert register_definition(conn, changed) == first  # upsert by name
        assert get_definition(conn, "bar") == changed
        assert [d.name for d in list_definitions(conn)] == ["bar"]
        assert deactivate_definition(conn, "bar")
        assert get_definition(conn, "bar") is None


def test_builtin_definitions_register_idempotently(clean_db: str) -> None:
    first = register_builtin_definitions(clean_db)
    assert register_builtin_definitions(clean_db) == first
    with connect(clean_db) as conn:
        names = sorted(d.name for d in list_definitions(conn))
        assert names == ["bar", "reconciliation"]
        assert get_definition(conn, "reconciliation") == RECONCILIATION_CHAIN


def test_grafana_views_chart_the_recorded_chains(
    clean_db: str, recorded: dict[str, uuid.UUID]
) -> None:
    with connect(clean_db) as conn:
        rows = conn.execute(
            "SELECT service_name, sum(events), sum(errors), max(max_ms) "
            "FROM chain_service_stats_1m GROUP BY 1 ORDER BY 1"
        ).fetchall()
        span = conn.execute(
            "SELECT span_ms, errors FROM chain_summary WHERE chain_id = %s",
            (recorded["failed_execution"],),
        ).fetchone()
        calls = conn.execute(
            "SELECT target, status FROM chain_dependency_calls ORDER BY status"
        ).fetchall()
        for view in ("5m", "15m", "1h", "1d"):
            n = conn.execute(f"SELECT sum(events) FROM chain_service_stats_{view}").fetchone()
            assert n is not None and n[0] == 20
    by_service = {r[0]: r[1:] for r in rows}
    assert by_service["execution"] == (3, 1, 4.0)
    assert by_service["serving"] == (2, 0, 15.0)
    assert span is not None and span[0] == pytest.approx(30.0) and span[1] == 1
    assert calls == [("serving", "error"), ("serving", "ok"), ("serving", "ok")]


def test_chains_export_as_valid_otlp_spans(clean_db: str, recorded: dict[str, uuid.UUID]) -> None:
    cid = recorded["failed_execution"]
    with connect(clean_db) as conn:
        body = otlp_body(load_chains(conn, [cid]))
    spans = {
        rs["resource"]["attributes"][0]["value"]["stringValue"]: ss["spans"]
        for rs in body["resourceSpans"]
        for ss in rs["scopeSpans"]
    }
    assert {s["traceId"] for ss in spans.values() for s in ss} == {cid.hex}
    [root] = spans["chain"]
    [serving] = spans["serving"]
    prediction = next(s for s in spans["prediction"] if s["kind"] != 3)
    assert serving["parentSpanId"] == prediction["spanId"]
    assert prediction["parentSpanId"] == root["spanId"]
    assert spans["execution"][0]["status"]["code"] == 2
    assert int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"]) == 30_000_000
    pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    from google.protobuf import json_format

    msg = json_format.ParseDict(body, pb.ExportTraceServiceRequest())
    assert sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans) == 9
