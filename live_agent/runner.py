"""The live loop: poll each symbol for new ticks (validated, bad ones quarantined; setting
``collect_ticks``) and a closed bar, run its chain off the event loop, export Prometheus
metrics, stop gracefully.

Terminal calls block (the MetaTrader5 module is synchronous, a bridge waits on the network), so
every chain runs in a worker thread (``asyncio.to_thread``): the event loop stays free for
signals and timers. Chains run one at a time (the MetaTrader5 module is not thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from live_agent.agent import Agent, BarOutcome, TickBatch
from live_agent.breaker import BreakerState
from live_agent.risk_engine import TradingState
from live_agent.simulator import Mt5Simulator

_STATES = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_BREAKER = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass
class AgentMetrics:
    """The agent's Prometheus metrics, in their own registry.

    ``prometheus_client`` is imported here, not at module import: it fixes its value backend
    (in-process or multiprocess) when first imported, so importing it early in a process that
    later hosts a BentoML server would break that server's ``/metrics``.
    """

    registry: Any = None

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = self.registry or CollectorRegistry()
        self.bars = Counter("agent_bars", "Closed bars handled", ["symbol"], registry=r)
        self.rejected = Counter("agent_bar_rejects", "Bars quarantined", ["reason"], registry=r)
        self.ticks = Counter("agent_ticks_accepted", "Ticks accepted", ["symbol"], registry=r)
        self.tick_rejects = Counter(
            "agent_ticks_quarantined", "Ticks quarantined", ["reason"], registry=r
        )
        self.errors = Counter("agent_step_errors", "Chain step errors", ["error"], registry=r)
        self.denials = Counter("agent_risk_denials", "Risk denials", ["reason"], registry=r)
        self.orders = Counter("agent_orders", "Order intents by outcome", ["reason"], registry=r)
        self.slippage = Histogram(
            "agent_slippage_points",
            "Fill slippage",
            buckets=(-5, -1, 0, 1, 2, 5, 10, 50),
            registry=r,
        )
        self.latency = Histogram("agent_prediction_seconds", "Prediction latency", registry=r)
        self.state = Gauge("agent_trading_state", "0 ACTIVE, 1 REDUCING, 2 HALTED", registry=r)
        self.breaker = Gauge("agent_serving_breaker", "0 closed, 1 half-open, 2 open", registry=r)
        self.reconciled = Gauge("agent_reconciled", "1 when reconciled", registry=r)

    def exposition(self) -> str:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def observe_ticks(self, batch: TickBatch) -> None:
        if batch.accepted:
            self.ticks.labels(batch.symbol).inc(batch.accepted)
        for _, reason in batch.quarantined:
            self.tick_rejects.labels(reason).inc()
        if batch.error:
            self.errors.labels(batch.error).inc()

    def observe(self, agent: Agent, outcome: BarOutcome) -> None:
        self.bars.labels(outcome.symbol).inc()
        if outcome.bar_rejected:
            self.rejected.labels(outcome.bar_rejected).inc()
        if outcome.error:
            self.errors.labels(outcome.error).inc()
        if outcome.prediction_latency_ms is not None:
            self.latency.observe(outcome.prediction_latency_ms / 1000.0)
        if outcome.risk is not None and not outcome.risk.approved:
            for reason in outcome.risk.reasons:
                self.denials.labels(reason).inc()
        for order in outcome.orders:
            self.orders.labels(order.reason).inc()
            if order.slippage_points is not None:
                self.slippage.observe(order.slippage_points)
        self.state.set(_STATES[agent.risk.trading_state()[0]])
        self.breaker.set(_BREAKER[agent.breaker.state])
        self.reconciled.set(1 if agent.risk.reconciled else 0)


class Runner:
    """Drives an agent until :meth:`stop` (or the simulator runs out of bars)."""

    def __init__(
        self,
        agent: Agent,
        symbols: Sequence[str],
        *,
        poll_s: float = 1.0,
        metrics: AgentMetrics | None = None,
        max_bars: int | None = None,
    ) -> None:
        """``metrics`` None: no metrics (and no prometheus_client import)."""
        self.agent, self.symbols, self.poll_s = agent, list(symbols), poll_s
        self.metrics = metrics
        self.max_bars = max_bars
        self.outcomes: list[BarOutcome] = []
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the chain in flight, then return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> list[BarOutcome]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Windows and non-main threads have no loop signal handlers
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)
        report = await asyncio.to_thread(self.agent.start)
        if self.metrics is not None:
            self.metrics.reconciled.set(1 if report.ok else 0)
        sim = self.agent.terminal if isinstance(self.agent.terminal, Mt5Simulator) else None
        while not self._stop.is_set():
            if sim is not None and not await asyncio.to_thread(sim.advance):
                break
            for symbol in self.symbols:
                if self._stop.is_set():
                    break
                if self.agent.settings.collect_ticks:
                    batch = await asyncio.to_thread(self.agent.collect_ticks, symbol)
                    if self.metrics is not None:
                        self.metrics.observe_ticks(batch)
                if await asyncio.to_thread(self.agent.has_new_bar, symbol):
                    outcome = await asyncio.to_thread(self.agent.on_closed_bar, symbol)
                    self.outcomes.append(outcome)
                    if self.metrics is not None:
                        self.metrics.observe(self.agent, outcome)
            if self.max_bars is not None and len(self.outcomes) >= self.max_bars:
                break
            if sim is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)
        shutdown = getattr(self.agent.terminal, "shutdown", None)
        if shutdown is not None:
            await asyncio.to_thread(shutdown)
        return self.outcomes


def serve_metrics(metrics: AgentMetrics, port: int, addr: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``addr:port`` (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=metrics.registry)
