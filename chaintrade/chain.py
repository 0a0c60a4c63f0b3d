"""Chain tracing: immutable events, the per-request context and the sink port.

A *chain* is one unit of work crossing services (e.g. one closed bar: collector →
validator → prediction → decision → risk → execution). Each step emits a
:class:`ChainEvent`; calls to other systems inside a step are :class:`Dependency`
records. Events go to an :class:`EventSink` (the PostgreSQL writer in production).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from chaintrade.domain import HEADER_CHAIN_ID, HEADER_REQUEST_ID, HEADER_SOURCE_SERVICE

# How a chain travels into processes that have no HTTP headers (Spark jobs, Airflow tasks).
ENV_CHAIN_ID = "CHAINTRADE_CHAIN_ID"
ENV_REQUEST_ID = "CHAINTRADE_REQUEST_ID"
ENV_SOURCE_SERVICE = "CHAINTRADE_SOURCE_SERVICE"
CONF_KEY = "chaintrade_chain"  # the key in an Airflow dag_run.conf

_uuid7_lock = threading.Lock()
_uuid7_last = [0, 0]  # last millisecond, counter


def new_id() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7), monotonic within this process.

    Ids that grow with time keep the database's B-tree inserts at the right edge of the
    index (the ``chain_history`` key leads with ``event_id``).
    """
    ms = time.time_ns() // 1_000_000
    with _uuid7_lock:
        if ms <= _uuid7_last[0]:
            ms = _uuid7_last[0]
            _uuid7_last[1] += 1
            if _uuid7_last[1] > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
                _uuid7_last[1] = 0
        else:
            _uuid7_last[1] = 0
        _uuid7_last[0] = ms
        counter = _uuid7_last[1]
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand)


@dataclass(frozen=True, slots=True)
class Dependency:
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


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """An immutable trace record of one step of one chain (a row of ``chain_history``)."""

    chain_id: uuid.UUID
    request_id: uuid.UUID
    service_name: str
    event_type: str  # "start" | "process" | "complete" | "error"
    timestamp: datetime
    duration_ms: float | None = None
    endpoint: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    dependencies: tuple[Dependency, ...] = ()
    performance_metrics: Mapping[str, float] = field(default_factory=dict)
    error_context: Mapping[str, Any] | None = None
    event_id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class ServiceSpan:
    """What the context saw of one step: service, start, duration and outcome."""

    service_name: str
    started_at: datetime
    duration_ms: float
    status: str  # "ok" | "error"
    dependencies: tuple[Dependency, ...] = ()


class EventSink(Protocol):
    """Where chain events go. Implementations must not block the caller for long."""

    def emit(self, event: ChainEvent) -> None: ...


class StepTrace:
    """Collects the dependencies and metrics of one step while it runs."""

    def __init__(self) -> None:
        self.dependencies: list[Dependency] = []
        self.metadata: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}

    @contextmanager
    def dependency(self, target: str, endpoint: str, attempt: int = 1) -> Iterator[None]:
        """Time a call to another system; an exception marks it as an error and propagates."""
        started = time.perf_counter()
        try:
            yield
        except TimeoutError as exc:
            self._record(target, endpoint, attempt, started, "timeout", repr(exc))
            raise
        except Exception as exc:
            self._record(target, endpoint, attempt, started, "error", repr(exc))
            raise
        self._record(target, endpoint, attempt, started, "ok", None)

    def _record(
        self, target: str, endpoint: str, attempt: int, started: float, status: str, err: str | None
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000.0
        self.dependencies.append(Dependency(target, endpoint, attempt, elapsed, status, err))


class ChainContext:
    """One chain: its ids, the sink its step events go to, and what it saw so far.

    ``services`` lists every step traced through this context (service, start,
    duration, status, dependencies); ``metadata`` is added to every event's metadata
    (step metadata wins on equal keys); ``user_id`` is set on every event.
    """

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
        self.chain_id = chain_id or new_id()
        self.request_id = request_id or new_id()
        self.source_service = source_service
        self.user_id = user_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.services: list[ServiceSpan] = []

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

    @contextmanager
    def step(self, service_name: str, endpoint: str | None = None) -> Iterator[StepTrace]:
        """Trace one step: emits ``complete`` (or ``error`` with context) when it ends."""
        trace = StepTrace()
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            yield trace
        except Exception as exc:
            self._emit(service_name, "error", started_at, started, endpoint, trace, exc)
            raise
        self._emit(service_name, "complete", started_at, started, endpoint, trace, None)

    @property
    def status(self) -> str:
        """``"error"`` when any step failed, else ``"ok"``."""
        return "error" if any(s.status == "error" for s in self.services) else "ok"

    @property
    def duration_ms(self) -> float:
        """Sum of the step durations traced through this context."""
        return sum(s.duration_ms for s in self.services)

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

    def _emit(
        self,
        service_name: str,
        event_type: str,
        started_at: datetime,
        started: float,
        endpoint: str | None,
        trace: StepTrace,
        exc: Exception | None,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000.0
        error_context = None
        if exc is not None:
            error_context = {
                "type": type(exc).__name__,
                "message": str(exc),
                "reason": getattr(exc, "reason", None),
            }
        dependencies = tuple(trace.dependencies)
        metadata = {**self.metadata, **trace.metadata} if self.metadata else dict(trace.metadata)
        self.services.append(
            ServiceSpan(
                service_name,
                started_at,
                duration_ms,
                "error" if exc is not None else "ok",
                dependencies,
            )
        )
        self.sink.emit(
            ChainEvent(
                chain_id=self.chain_id,
                request_id=self.request_id,
                service_name=service_name,
                event_type=event_type,
                timestamp=started_at,
                duration_ms=duration_ms,
                endpoint=endpoint,
                user_id=self.user_id,
                metadata=metadata,
                dependencies=dependencies,
                performance_metrics=dict(trace.metrics),
                error_context=error_context,
            )
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
