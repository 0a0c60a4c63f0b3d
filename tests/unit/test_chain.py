"""ChainContext: ids travel over HTTP headers, steps emit immutable events with dependencies."""

from __future__ import annotations

import uuid

import pytest

from chaintrade.chain import ChainContext, ChainEvent
from chaintrade.errors import ServiceUnavailable


class ListSink:
    def __init__(self) -> None:
        self.events: list[ChainEvent] = []

    def emit(self, event: ChainEvent) -> None:
        self.events.append(event)


def test_headers_round_trip_whatever_the_case_of_the_names() -> None:
    sink = ListSink()
    caller = ChainContext(sink)
    lowered = {k.lower(): v for k, v in caller.headers("live_agent").items()}
    callee = ChainContext.from_headers(sink, lowered)
    assert callee.chain_id == caller.chain_id
    assert callee.request_id == caller.request_id
    assert callee.source_service == "live_agent"


def test_bad_or_missing_ids_start_a_new_chain() -> None:
    ctx = ChainContext.from_headers(ListSink(), {"X-Chain-ID": "not-a-uuid"})
    assert isinstance(ctx.chain_id, uuid.UUID)


def test_step_records_dependencies_and_error_context() -> None:
    sink = ListSink()
    ctx = ChainContext(sink)
    with ctx.step("prediction", "/predict") as step:
        with step.dependency("serving", "/predict", attempt=1):
            pass
        step.metadata["symbol"] = "EURUSD"
    with (
        pytest.raises(ServiceUnavailable),
        ctx.step("execution") as step,
        step.dependency("mt5", "order_send"),
    ):
        raise ServiceUnavailable("terminal gone")
    ok, failed = sink.events
    assert ok.event_type == "complete" and ok.metadata == {"symbol": "EURUSD"}
    assert ok.dependencies[0].status == "ok" and ok.dependencies[0].duration_ms >= 0
    assert failed.event_type == "error"
    assert failed.error_context == {
        "type": "ServiceUnavailable",
        "message": "terminal gone",
        "reason": "service_unavailable",
    }
    assert failed.dependencies[0].status == "error"
    assert {e.chain_id for e in sink.events} == {ctx.chain_id}
    with pytest.raises(AttributeError):
        ok.event_type = "changed"  # type: ignore[misc]
