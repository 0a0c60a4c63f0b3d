"""A circuit breaker around serving: after ``failure_threshold`` failures in a row it opens and
the agent stops asking (fail closed: no prediction, no new exposure) until ``reset_after_s`` has
passed; then one trial call (half-open) closes it again or re-opens it."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures; ``clock`` is injectable (monotonic seconds)."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, failure_threshold)
        self._reset_after = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self.trips = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may be made now (closed, or the half-open trial)."""
        return self._opened_at is None or self.state != BreakerState.OPEN

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self.state == BreakerState.HALF_OPEN or self._failures >= self._threshold:
            if self._opened_at is None or self.state == BreakerState.HALF_OPEN:
                self.trips += 1
            self._opened_at = self._clock()
