"""Chain tracing: immutable events, the per-request context and the sink port.

A *chain* is one unit of work crossing services (e.g. one closed bar: collector →
validator → prediction → decision → risk → execution). Each step emits a
:class:`ChainEvent`; calls to other systems inside a step are :class:`Dependency`
records. Events go to an :class:`EventSink` (the PostgreSQL writer in production).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from chaintrade.domain import HEADER_CHAIN_ID, HEADER_REQUEST_ID, HEADER_SOURCE_SERVICE


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
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


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
    """One chain: its ids and the sink its step events go to."""

    def __init__(
        self,
        sink: EventSink,
        *,
        chain_id: uuid.UUID | None = None,
        request_id: uuid.UUID | None = None,
        source_service: str | None = None,
    ) -> None:
        self.sink = sink
        self.chain_id = chain_id or uuid.uuid4()
        self.request_id = request_id or uuid.uuid4()
        self.source_service = source_service

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
        error_context = None
        if exc is not None:
            error_context = {
                "type": type(exc).__name__,
                "message": str(exc),
                "reason": getattr(exc, "reason", None),
            }
        self.sink.emit(
            ChainEvent(
                chain_id=self.chain_id,
                request_id=self.request_id,
                service_name=service_name,
                event_type=event_type,
                timestamp=started_at,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                endpoint=endpoint,
                metadata=dict(trace.metadata),
                dependencies=tuple(trace.dependencies),
                performance_metrics=dict(trace.metrics),
                error_context=error_context,
            )
        )


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
