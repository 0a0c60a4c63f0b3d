"""Chain tracing: immutable events, the per-request context and the sink port.

A *chain* is one unit of work crossing services (e.g. one closed bar: collector →
validator → prediction → decision → risk → execution). Each step emits a
:class:`ChainEvent`; calls to other systems inside a step are :class:`Dependency`
records. Events go to an :class:`EventSink` (the PostgreSQL writer in production).

The hot path is a step: two clock reads when it starts, one when it ends, and one list
(the event's :data:`Record`) handed to the sink. A sink that offers ``emit_record`` (the
:class:`~chaintrade.chain_store.ChainWriter`) takes that list as is and serializes it on
its own thread; other sinks get a :class:`ChainEvent` built from it.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol

import msgspec

from chaintrade.domain import HEADER_CHAIN_ID, HEADER_REQUEST_ID, HEADER_SOURCE_SERVICE

# How a chain travels into processes that have no HTTP headers (Spark jobs, Airflow tasks).
ENV_CHAIN_ID = "CHAINTRADE_CHAIN_ID"
ENV_REQUEST_ID = "CHAINTRADE_REQUEST_ID"
ENV_SOURCE_SERVICE = "CHAINTRADE_SOURCE_SERVICE"
CONF_KEY = "chaintrade_chain"  # the key in an Airflow dag_run.conf

# One event as a plain list, in ``chain_history`` column order (the writer's wire form):
# [event_id, chain_id, request_id, service_name, event_type, timestamp_ns, duration_ms,
#  endpoint, user_id, metadata, error_context, dependencies, performance_metrics].
# ``timestamp_ns`` is nanoseconds since the Unix epoch (UTC); ``event_id`` is None until
# the writer assigns one (ids are only needed once an event is durable).
Record = list[Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_randbits = random.getrandbits  # ids need uniqueness, not secrecy; reseeded after fork
_seq = itertools.count(_randbits(40))
_time_ns = time.time_ns
_new_object = object.__new__
_UUID = uuid.UUID
# UUID's two slot descriptors: UUID forbids setattr, and these are cheaper to call than
# object.__setattr__ with a name
_set_uuid_int = vars(uuid.UUID)["int"].__set__
_set_uuid_safe = vars(uuid.UUID)["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62


def _reseed_after_fork() -> None:
    global _seq
    _seq = itertools.count(_randbits(40))


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reseed_after_fork)


def new_id_int() -> int:
    """A time-ordered UUID (RFC 9562 version 7) as an int, monotonic within a thread.

    Layout: 48 bits of Unix milliseconds, the version, 42 bits of a per-process sequence
    (starting at a random offset; ``next()`` on ``itertools.count`` is atomic, so no
    lock), the variant and 32 random bits. A caller that needs many ids at once may
    clear the 32 random bits and use ``value | i`` for ``i < 2**32``: each call takes a
    new sequence number, so those ranges never overlap (a pair: ``value`` and
    ``value ^ 1``, as :class:`ChainContext` takes its two ids).
    """
    seq = next(_seq)
    return (
        (_time_ns() // 1_000_000) << 80
        | ((seq >> 30) & 0xFFF) << 64
        | (seq & 0x3FFF_FFFF) << 32
        | _randbits(32)
        | _VERSION_AND_VARIANT
    )


def new_id() -> uuid.UUID:
    """A time-ordered UUID (see :func:`new_id_int`).

    Ids that grow with time keep the database's B-tree inserts at the right edge of the
    index (the ``chain_history`` key leads with ``event_id``).
    """
    return _uuid_of(new_id_int())


def _uuid_of(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a valid 128-bit ``value``."""
    # uuid.UUID(int=...) validates in Python (~4x the cost); the value is valid by
    # construction, so set UUID's two slots directly.
    u = _new_object(_UUID)
    _set_uuid_int(u, value)
    _set_uuid_safe(u, _UNKNOWN_SAFETY)
    return u


class Dependency(msgspec.Struct, frozen=True, gc=False):
    """One call from a step to another system (HTTP service, database, terminal)."""

    target: str
    endpoint: str
    attempt: int
    duration_ms: float
    status: str  # "ok" | "error" | "timeout"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "endpoint": self.endpoint,
            "attempt": self.attempt,
            "duration_ms": round(self.duration_ms, 4),
            "status": self.status,
            "error": self.error,
        }


class ChainEvent(msgspec.Struct, frozen=True, gc=False):
    """An immutable trace record of one step of one chain (a row of ``chain_history``)."""

    chain_id: uuid.UUID
    request_id: uuid.UUID
    service_name: str
    event_type: str  # "start" | "process" | "complete" | "error"
    timestamp: datetime
    duration_ms: float | None = None
    endpoint: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, Any] = msgspec.field(default_factory=dict)
    dependencies: tuple[Dependency, ...] = ()
    performance_metrics: Mapping[str, float] = msgspec.field(default_factory=dict)
    error_context: Mapping[str, Any] | None = None
    event_id: uuid.UUID = msgspec.field(default_factory=new_id)

    def record(self) -> Record:
        """This event in the writer's wire form (naive timestamps are taken as UTC)."""
        ts = self.timestamp if self.timestamp.tzinfo else self.timestamp.replace(tzinfo=UTC)
        return [
            self.event_id,
            self.chain_id,
            self.request_id,
            self.service_name,
            self.event_type,
            (ts - EPOCH) // _MICROSECOND * 1000,
            self.duration_ms,
            self.endpoint,
            self.user_id,
            self.metadata,
            self.error_context,
            self.dependencies,
            self.performance_metrics,
        ]

    @classmethod
    def from_record(cls, r: Record) -> ChainEvent:
        """The event of a wire-form record (a new id when it has none yet)."""
        return cls(
            r[1],
            r[2],
            r[3],
            r[4],
            EPOCH + timedelta(microseconds=r[5] // 1000),
            r[6],
            r[7],
            r[8],
            r[9],
            tuple(r[11]),
            r[12],
            r[10],
            r[0] if isinstance(r[0], uuid.UUID) else uuid.UUID(r[0]) if r[0] else new_id(),
        )


@dataclass(frozen=True, slots=True)
class ServiceSpan:
    """What the context saw of one step: service, start, duration and outcome."""

    service_name: str
    started_at: datetime
    duration_ms: float
    status: str  # "ok" | "error"
    dependencies: tuple[Dependency, ...] = ()


class EventSink(Protocol):
    """Where chain events go. Implementations must not block the caller for long.

    A sink may also offer ``emit_record(record: Record) -> None``; :class:`ChainContext`
    then hands it the raw :data:`Record` instead of building a :class:`ChainEvent`.
    """

    def emit(self, event: ChainEvent) -> None: ...


_perf_ns = time.perf_counter_ns
# Below this (~11 days) (ns + 50) // 100 / 1e4 equals round(ns / 1e6, 4) bit for bit: the
# float ns / 1e6 is then too close to ns / 10**6 to fall on the other side of a 4th decimal.
_EXACT_SPAN_NS = 10**15


class _DependencyTimer:
    """``with trace.dependency(...)``: times one call; an exception marks it and propagates."""

    __slots__ = ("_attempt", "_endpoint", "_started", "_target", "_trace")

    def __init__(self, trace: StepTrace, target: str, endpoint: str, attempt: int) -> None:
        self._trace = trace
        self._target = target
        self._endpoint = endpoint
        self._attempt = attempt
        self._started = 0

    def __enter__(self) -> None:
        self._started = _perf_ns()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._trace.record_dependency(
            self._target, self._endpoint, self._started, self._attempt, exc
        )


class StepTrace:
    """One step while it runs: its dependencies, metadata and metrics.

    :meth:`ChainContext.step` returns one as a context manager; on its own (no context)
    it only collects. Its event takes ``metadata`` and ``metrics`` as they are when it
    ends: change them only inside the step.
    """

    __slots__ = (
        "_context",
        "_endpoint",
        "_perf_start",
        "_service",
        "_started_ns",
        "dependencies",
        "metadata",
        "metrics",
    )

    def __init__(
        self,
        context: ChainContext | None = None,
        service_name: str = "",
        endpoint: str | None = None,
    ) -> None:
        self.dependencies: list[Dependency] = []
        self.metadata: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}
        self._context = context
        self._service = service_name
        self._endpoint = endpoint
        self._started_ns = 0
        self._perf_start = 0

    def dependency(self, target: str, endpoint: str, attempt: int = 1) -> _DependencyTimer:
        """Time a call to another system; an exception marks it as an error and propagates."""
        return _DependencyTimer(self, target, endpoint, attempt)

    def record_dependency(
        self,
        target: str,
        endpoint: str,
        started_ns: int,
        attempt: int = 1,
        exc: BaseException | None = None,
    ) -> None:
        """Record a call that started at ``started_ns`` (``time.perf_counter_ns()``) and ends
        now, failed when ``exc`` is given: what :meth:`dependency` records, for callers that
        time a call themselves (a hot path that cannot afford a context manager per call)."""
        ns = _perf_ns() - started_ns
        # round(ns / 1e6, 4) without float round() (slow: a decimal conversion), to the same
        # bits: the nearest 100 ns in integers; ties and absurd spans take round() itself.
        if 0 <= ns < _EXACT_SPAN_NS and ns % 100 != 50:
            elapsed = (ns + 50) // 100 / 1e4
        else:
            elapsed = round(ns / 1e6, 4)
        if exc is None:
            self.dependencies.append(Dependency(target, endpoint, attempt, elapsed, "ok", None))
            return
        if isinstance(exc, TimeoutError):
            status = "timeout"
        elif isinstance(exc, Exception):
            status = "error"
        else:  # KeyboardInterrupt, SystemExit, GeneratorExit: not a failed call
            return
        self.dependencies.append(Dependency(target, endpoint, attempt, elapsed, status, repr(exc)))

    def __enter__(self) -> StepTrace:
        self._started_ns = _time_ns()
        self._perf_start = _perf_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration_ms = (_perf_ns() - self._perf_start) / 1e6
        ctx = self._context
        if ctx is None:
            return
        if exc_type is None:
            event_type, error_context = "complete", None
        elif issubclass(exc_type, Exception):
            event_type = "error"
            error_context = {
                "type": exc_type.__name__,
                "message": str(exc),
                "reason": getattr(exc, "reason", None),
            }
        else:  # not an error of the step (interrupt, exit): no event, as before
            return
        # the event takes the step's own dicts (no copies): a step is over once it exits
        record = [
            None,
            ctx.chain_id,
            ctx.request_id,
            self._service,
            event_type,
            self._started_ns,
            duration_ms,
            self._endpoint,
            ctx.user_id,
            {**ctx.metadata, **self.metadata} if ctx.metadata else self.metadata,
            error_context,
            tuple(self.dependencies) if self.dependencies else (),
            self.metrics,
        ]
        ctx.records.append(record)
        ctx.emit_record(record)


class ChainContext:
    """One chain: its ids, the sink its step events go to, and what it saw so far.

    ``services`` lists every step traced through this context (service, start,
    duration, status, dependencies); ``metadata`` is added to every event's metadata
    (step metadata wins on equal keys); ``user_id`` is set on every event.
    """

    # one per bar in the live loop: slots make it cheaper to build than a dict-backed object
    __slots__ = (
        "chain_id",
        "emit_record",
        "metadata",
        "records",
        "request_id",
        "sink",
        "source_service",
        "user_id",
    )

    def __init__(
        self,
        sink: EventSink,
        *,
        chain_id: uuid.UUID | None = None,
        request_id: uuid.UUID | None = None,
        source_service: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.sink = sink
        if not chain_id and not request_id:
            # a new chain (one per bar in the live loop): both ids from one id number, the
            # request id's last random bit flipped (unique, time-ordered UUIDv7s alike)
            value = new_id_int()
            self.chain_id = _uuid_of(value)
            self.request_id = _uuid_of(value ^ 1)
        else:
            self.chain_id = chain_id or new_id()
            self.request_id = request_id or new_id()
        self.source_service = source_service
        self.user_id = user_id
        self.metadata: dict[str, Any] = dict(metadata) if metadata else {}
        self.records: list[Record] = []  # every step traced here, in the order they ended
        emit_record = getattr(sink, "emit_record", None)
        self.emit_record: Callable[[Record], None] = (
            emit_record if callable(emit_record) else self._emit_event
        )

    # -- propagation ----------------------------------------------------------------

    @classmethod
    def from_headers(cls, sink: EventSink, headers: Mapping[str, str]) -> ChainContext:
        """Continue a chain started by the caller (missing or bad ids start a new one)."""
        lower = {k.lower(): v for k, v in headers.items()}  # HTTP header names ignore case
        return cls(
            sink,
            chain_id=_parse_uuid(lower.get(HEADER_CHAIN_ID.lower())),
            request_id=_parse_uuid(lower.get(HEADER_REQUEST_ID.lower())),
            source_service=lower.get(HEADER_SOURCE_SERVICE.lower()),
        )

    def headers(self, service_name: str) -> dict[str, str]:
        """Headers that carry this chain to the next service."""
        return {
            HEADER_CHAIN_ID: str(self.chain_id),
            HEADER_REQUEST_ID: str(self.request_id),
            HEADER_SOURCE_SERVICE: service_name,
        }

    def env(self, service_name: str) -> dict[str, str]:
        """Environment variables that carry this chain into a child process.

        For Spark, pass them to the driver's environment and, for executors, as
        ``spark.executorEnv.<NAME>`` (see :meth:`spark_conf`).
        """
        return {
            ENV_CHAIN_ID: str(self.chain_id),
            ENV_REQUEST_ID: str(self.request_id),
            ENV_SOURCE_SERVICE: service_name,
        }

    @classmethod
    def from_env(cls, sink: EventSink, environ: Mapping[str, str] | None = None) -> ChainContext:
        """Continue the chain named by ``CHAINTRADE_CHAIN_ID`` etc. (a new one if absent)."""
        environ = os.environ if environ is None else environ
        return cls(
            sink,
            chain_id=_parse_uuid(environ.get(ENV_CHAIN_ID)),
            request_id=_parse_uuid(environ.get(ENV_REQUEST_ID)),
            source_service=environ.get(ENV_SOURCE_SERVICE),
        )

    def spark_conf(self, service_name: str) -> dict[str, str]:
        """``spark-submit --conf`` pairs that set the chain in the driver and executors."""
        conf: dict[str, str] = {}
        for name, value in self.env(service_name).items():
            conf[f"spark.executorEnv.{name}"] = value
            conf[f"spark.yarn.appMasterEnv.{name}"] = value
            conf[f"spark.kubernetes.driverEnv.{name}"] = value
        return conf

    def conf(self, service_name: str) -> dict[str, dict[str, str]]:
        """An Airflow ``dag_run.conf`` fragment that carries this chain into a DAG run."""
        return {
            CONF_KEY: {
                "chain_id": str(self.chain_id),
                "request_id": str(self.request_id),
                "source_service": service_name,
            }
        }

    @classmethod
    def from_conf(cls, sink: EventSink, conf: Mapping[str, Any] | None) -> ChainContext:
        """Continue the chain found in an Airflow ``dag_run.conf`` (a new one if absent)."""
        raw = (conf or {}).get(CONF_KEY)
        part: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        source = part.get("source_service")
        return cls(
            sink,
            chain_id=_parse_uuid(_str_or_none(part.get("chain_id"))),
            request_id=_parse_uuid(_str_or_none(part.get("request_id"))),
            source_service=source if isinstance(source, str) else None,
        )

    # -- steps ----------------------------------------------------------------------

    def step(self, service_name: str, endpoint: str | None = None) -> StepTrace:
        """Trace one step: emits ``complete`` (or ``error`` with context) when it ends.

        ``with ctx.step("risk") as trace: ...``; an exception is recorded and propagates.
        """
        return StepTrace(self, service_name, endpoint)

    @property
    def services(self) -> list[ServiceSpan]:
        """Every step traced through this context: service, start, duration, status."""
        return [
            ServiceSpan(
                r[3],
                EPOCH + timedelta(microseconds=r[5] // 1000),
                r[6],
                "error" if r[4] == "error" else "ok",
                tuple(r[11]),
            )
            for r in self.records
        ]

    @property
    def status(self) -> str:
        """``"error"`` when any step failed, else ``"ok"``."""
        return "error" if any(r[4] == "error" for r in self.records) else "ok"

    @property
    def duration_ms(self) -> float:
        """Sum of the step durations traced through this context."""
        return sum(r[6] for r in self.records)

    def summary(self) -> dict[str, Any]:
        """The chain as this process saw it: ids, status, services and dependencies."""
        return {
            "chain_id": str(self.chain_id),
            "request_id": str(self.request_id),
            "source_service": self.source_service,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "services": [
                {
                    "service_name": s.service_name,
                    "started_at": s.started_at.isoformat(),
                    "duration_ms": s.duration_ms,
                    "status": s.status,
                    "dependencies": [d.as_dict() for d in s.dependencies],
                }
                for s in self.services
            ],
        }

    def _emit_event(self, record: Record) -> None:
        self.sink.emit(ChainEvent.from_record(record))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
