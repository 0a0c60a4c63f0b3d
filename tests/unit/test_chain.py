"""ChainContext: ids travel over HTTP headers, steps emit immutable events with dependencies."""

from __future__ import annotations

import time
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


def test_new_ids_are_uuid7_and_grow_with_time() -> None:
    from chaintrade.chain import new_id

    ids = [new_id() for _ in range(10_000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids, key=lambda u: u.int) and len(set(ids)) == len(ids)


def test_chain_travels_through_env_spark_conf_and_airflow_conf() -> None:
    sink = ListSink()
    ctx = ChainContext(sink)
    child = ChainContext.from_env(sink, ctx.env("airflow"))
    assert (child.chain_id, child.request_id, child.source_service) == (
        ctx.chain_id,
        ctx.request_id,
        "airflow",
    )
    conf = ctx.spark_conf("airflow")
    assert conf["spark.executorEnv.CHAINTRADE_CHAIN_ID"] == str(ctx.chain_id)
    run = ChainContext.from_conf(sink, {"other": 1, **ctx.conf("api")})
    assert run.chain_id == ctx.chain_id and run.source_service == "api"
    fresh = ChainContext.from_conf(sink, {"chaintrade_chain": {"chain_id": 12}})
    assert fresh.chain_id != ctx.chain_id
    assert ChainContext.from_env(sink, {}).chain_id != ctx.chain_id


def test_context_keeps_services_status_and_chain_metadata() -> None:
    sink = ListSink()
    ctx = ChainContext(sink, user_id="quant-1", metadata={"symbol": "EURUSD", "run": 1})
    with ctx.step("collector") as step:
        step.metadata["run"] = 2
    assert ctx.status == "ok"
    with pytest.raises(ValueError), ctx.step("validator"):
        raise ValueError("bad")
    assert [s.service_name for s in ctx.services] == ["collector", "validator"]
    assert [s.status for s in ctx.services] == ["ok", "error"] and ctx.status == "error"
    assert sink.events[0].metadata == {"symbol": "EURUSD", "run": 2}
    assert sink.events[0].user_id == "quant-1"
    summary = ctx.summary()
    assert summary["status"] == "error" and len(summary["services"]) == 2
    assert ctx.duration_ms == pytest.approx(sum(s.duration_ms for s in ctx.services))


class RecordSink(ListSink):
    """A sink that also takes raw records, as ChainWriter does."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[list[object]] = []

    def emit_record(self, record: list[object]) -> None:
        self.records.append(record)


def test_a_record_sink_gets_the_raw_record_and_an_event_sink_the_same_event() -> None:
    fast, slow = RecordSink(), ListSink()
    for sink in (fast, slow):
        ctx = ChainContext(sink, user_id="u", metadata={"run": 1})
        with ctx.step("prediction", "/predict") as step:
            with step.dependency("serving", "/predict", attempt=2):
                pass
            step.metrics["latency_ms"] = 1.5
    assert fast.events == [] and len(fast.records) == 1 and len(slow.events) == 1
    record, event = fast.records[0], slow.events[0]
    assert record[0] is None  # the writer assigns ids
    rebuilt = ChainEvent.from_record(record)
    for field in ("service_name", "event_type", "endpoint", "user_id", "metadata"):
        assert getattr(rebuilt, field) == getattr(event, field)
    assert rebuilt.performance_metrics == {"latency_ms": 1.5}
    assert [(d.target, d.attempt, d.status) for d in rebuilt.dependencies] == [("serving", 2, "ok")]
    assert rebuilt.event_id.version == 7


def test_event_record_round_trip_keeps_the_timestamp_to_the_microsecond() -> None:
    from datetime import UTC, datetime

    event = ChainEvent(uuid.uuid4(), uuid.uuid4(), "risk", "complete",
                       datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), 0.5)  # fmt: skip
    back = ChainEvent.from_record(event.record())
    assert back == event
    naive = ChainEvent(event.chain_id, event.request_id, "risk", "complete",
                       datetime(2024, 1, 2, 3, 4, 5, 678901), event_id=event.event_id)  # fmt: skip
    assert naive.record()[5] == event.record()[5]  # naive timestamps are UTC


def test_interrupts_are_not_step_errors_and_emit_nothing() -> None:
    sink = ListSink()
    ctx = ChainContext(sink)
    with (
        pytest.raises(KeyboardInterrupt),
        ctx.step("collector") as step,
        step.dependency("mt5", "copy_rates"),
    ):
        raise KeyboardInterrupt
    assert sink.events == [] and ctx.services == [] and step.dependencies == []


def test_a_timeout_in_a_dependency_is_recorded_as_timeout() -> None:
    sink = ListSink()
    ctx = ChainContext(sink)
    with (
        pytest.raises(TimeoutError),
        ctx.step("prediction") as step,
        step.dependency("serving", "/predict"),
    ):
        raise TimeoutError("slow")
    [event] = sink.events
    assert event.event_type == "error" and event.dependencies[0].status == "timeout"
    assert event.dependencies[0].error == "TimeoutError('slow')"


def test_a_dependency_timed_by_the_caller_is_recorded_like_a_timed_block() -> None:
    sink = ListSink()
    ctx = ChainContext(sink)
    with ctx.step("risk") as step:
        with pytest.raises(TimeoutError), step.dependency("mt5", "a", attempt=2):
            raise TimeoutError("slow")
        step.record_dependency("mt5", "a", time.perf_counter_ns(), 2, TimeoutError("slow"))
        step.record_dependency("mt5", "b", time.perf_counter_ns())
        step.record_dependency("mt5", "c", time.perf_counter_ns(), 1, ValueError("bad"))
        step.record_dependency("mt5", "d", time.perf_counter_ns(), 1, KeyboardInterrupt())
    timed, told, ok, failed = sink.events[0].dependencies  # the interrupt is no failed call
    assert (told.target, told.endpoint, told.attempt, told.status, told.error) == (
        timed.target,
        timed.endpoint,
        timed.attempt,
        timed.status,
        timed.error,
    )
    assert (ok.status, ok.error, failed.status, failed.error) == (
        "ok",
        None,
        "error",
        "ValueError('bad')",
    )
    assert all(d.duration_ms >= 0 for d in (timed, told, ok, failed))


@pytest.mark.parametrize(
    "span_ns",
    [0, 1, 49, 50, 51, 149, 150, 250, 12_345, 1_234_550, 99_999_950, -1, -50, -151,
     10**15 - 1, 10**15, 10**15 + 50, 123_456_789_012_345_678],
)  # fmt: skip
def test_dependency_durations_are_round_to_4_decimals_bit_for_bit(
    span_ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import struct

    from chaintrade import chain
    from chaintrade.chain import StepTrace

    monkeypatch.setattr(chain, "_perf_ns", lambda: 10**18)
    step = StepTrace()
    step.record_dependency("mt5", "a", 10**18 - span_ns)
    expected = round(span_ns / 1e6, 4)  # what the duration always was
    assert struct.pack("<d", step.dependencies[0].duration_ms) == struct.pack("<d", expected)


def test_the_event_takes_the_step_metadata_and_merges_the_context_metadata() -> None:
    plain, shared = RecordSink(), RecordSink()
    ctx = ChainContext(plain)
    with ctx.step("risk") as step:
        step.metadata["approved"] = True
    assert plain.records[0][9] == {"approved": True} and plain.records[0][12] == {}
    ctx = ChainContext(shared, metadata={"symbol": "EURUSD", "run": 1})
    with ctx.step("risk") as step:
        step.metadata["run"] = 2
        step.metrics["latency_ms"] = 0.5
    assert shared.records[0][9] == {"symbol": "EURUSD", "run": 2}
    assert shared.records[0][12] == {"latency_ms": 0.5}
    assert ctx.metadata == {"symbol": "EURUSD", "run": 1}  # the context's own stays as it was
