"""The serving circuit breaker: opens after N failures, half-opens after the reset time."""

from __future__ import annotations

from live_agent.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, reset_after_s=10.0, clock=clock)
    b.record_failure()
    b.record_success()  # a success resets the count
    b.record_failure()
    b.record_failure()
    assert b.allow() and b.state == BreakerState.CLOSED
    b.record_failure()
    assert (b.state, b.allow(), b.trips) == (BreakerState.OPEN, False, 1)
    clock.t = 10.0
    assert b.state == BreakerState.HALF_OPEN and b.allow()
    b.record_failure()  # the trial failed: open again for another 10 s
    assert (b.state, b.trips) == (BreakerState.OPEN, 2)
    clock.t = 20.0
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.allow()
