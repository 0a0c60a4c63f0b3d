from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
from pydantic import ValidationError

from chaintrade.chain import ChainContext, EventSink, StepTrace
from chaintrade.domain import Action
from chaintrade.errors import ConfigError, FatalError, ServiceUnavailable
from chaintrade.schemas import BarIn, Prediction
from chaintrade.validation import TickGuard, bar_reason
from live_agent import mt5_constants as c
from live_agent.breaker import CircuitBreaker
from live_agent.decision import Decision, DecisionRule, decide
from live_agent.execution import (
    HISTORY_FROM,
    HISTORY_TO,
    Executor,
    OrderIntent,
    OrderJournal,
    OrderOutcome,
    OrderState,
    RetcodePolicy,
    filling_for,
    traced_call,
)
from live_agent.risk_engine import (
    NO_ORDER,
    MarketView,
    ProtectionStore,
    RiskConfig,
    RiskEngine,
    RiskReason,
    RiskVerdict,
    SymbolTerms,
    TradingState,
    exposures_of,
    parse_hours,
)
from live_agent.serving_client import InvalidPrediction, ServingClient
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.spool import BarSpool, TickQuarantine
from live_agent.terminal import Terminal

__all__ = [
    "STEPS",
    "Agent",
    "BarOutcome",
    "OrderOutcome",
    "ReconcileReport",
    "ReplaySummary",
    "TickBatch",
    "filling_for",
    "summarize",
]

STEPS = ("collector", "validator", "prediction", "decision", "risk", "execution")
_IPC_ERRORS = frozenset(
    {
        c.RES_E_INTERNAL_FAIL,
        c.RES_E_INTERNAL_FAIL_SEND,
        c.RES_E_INTERNAL_FAIL_RECEIVE,
        c.RES_E_INTERNAL_FAIL_INIT,
        c.RES_E_INTERNAL_FAIL_CONNECT,
        c.RES_E_INTERNAL_FAIL_TIMEOUT,
    }
)


class Predictor(Protocol):
    """What the agent needs from serving (:class:`ServingClient`, or a scripted stand-in)."""

    def predict(self, bar: BarIn, chain: ChainContext, trace: StepTrace) -> Prediction: ...


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """Local state against the terminal before trading; ``ok`` False means: do not trade."""

    ok: bool
    reason: str
    own_positions: int = 0
    foreign_positions: int = 0
    own_orders: int = 0
    resolved: tuple[OrderOutcome, ...] = ()
    unresolved: tuple[OrderOutcome, ...] = ()


class BarOutcome(msgspec.Struct, frozen=True, gc=False):
    """The result of one chain (one closed bar of one symbol)."""

    symbol: str
    chain_id: uuid.UUID
    bar_time: datetime | None = None
    bar_rejected: str | None = None
    error: str | None = None
    prediction: Prediction | None = None
    prediction_latency_ms: float | None = None
    decision: Decision | None = None
    risk: RiskVerdict | None = None
    orders: tuple[OrderOutcome, ...] = ()
    decided_ms: float | None = None  # from the closed bar's chain start to the risk verdict


class TickBatch(msgspec.Struct, frozen=True, gc=False):
    """The new ticks of one symbol from one poll: each accepted or quarantined with a reason."""

    symbol: str
    accepted: int = 0
    quarantined: tuple[tuple[dict[str, Any], str], ...] = ()
    error: str | None = None

    @property
    def seen(self) -> int:
        return self.accepted + len(self.quarantined)


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """Totals of a replay."""

    bars: int
    orders_sent: int
    orders_filled: int
    rejects: dict[str, int] = field(default_factory=dict)
    realized_pnl: float = 0.0
    prediction_latencies_ms: tuple[float, ...] = ()
    outcomes: tuple[BarOutcome, ...] = ()


class Agent:
    """The trading loop over one terminal, one serving client and one event sink."""

    def __init__(
        self,
        terminal: Terminal,
        serving: Predictor,
        sink: EventSink,
        settings: AgentSettings,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._terminal = terminal
        self._serving = serving
        self._sink = sink
        self._settings = settings
        self._timeframe = settings.mt5_timeframe
        self._mt5_timeframe = int(self._timeframe)
        self._utc_times = settings.bar_times == "utc"
        self._collect_count = max(2, settings.atr_period + 1)  # ATR's bars, and the previous one
        self._bar_length = timedelta(minutes=self._timeframe.minutes)
        self._server_zone = ZoneInfo(settings.server_timezone)
        self._rule = DecisionRule(
            buy_threshold=settings.buy_threshold,
            sell_threshold=settings.sell_threshold,
            close_band=settings.close_band,
            min_confidence=settings.min_confidence,
        )
        state_dir = settings.state_dir
        kill = settings.kill_switch_file or (state_dir / "KILL" if state_dir else None)
        self.risk = RiskEngine(
            RiskConfig(
                lot_size=settings.lot_size,
                risk_pct=settings.risk_pct,
                atr_sl_mult=settings.atr_sl_mult or 2.0,
                max_positions_per_symbol=settings.max_positions_per_symbol,
                max_positions_total=settings.max_positions_total,
                max_volume_per_symbol=settings.max_volume_per_symbol,
                max_volume_total=settings.max_volume_total,
                max_notional_per_symbol=settings.max_notional_per_symbol,
                max_notional_total=settings.max_notional_total,
                max_spread_points=settings.max_spread_points,
                max_orders_per_window=settings.max_orders_per_window,
                order_window_s=settings.order_window_s,
                trading_hours=parse_hours(settings.trading_hours),
                trading_days=frozenset(settings.trading_days),
                timezone=settings.server_timezone,
                daily_loss_pct=settings.daily_loss_pct,
                max_drawdown_pct=settings.max_drawdown_pct,
                kill_switch_file=kill,
                halted=settings.halted,
            ),
            ProtectionStore(state_dir / "protections.json" if state_dir else None),
        )
        self.executor = Executor(
            terminal,
            magic=settings.magic,
            deviation_points=settings.deviation_points,
            requote_retries=settings.requote_retries,
            journal=OrderJournal(state_dir / "orders.jsonl" if state_dir else None),
        )
        self.bar_spool = BarSpool(state_dir / "pending_bars.jsonl" if state_dir else None)
        self.tick_quarantine = TickQuarantine(
            state_dir / "quarantined_ticks.jsonl" if state_dir else None
        )
        self.ticks_accepted: Counter[str] = Counter()
        self._last_tick: dict[str, dict[str, Any]] = {}  # the last accepted tick per symbol
        self.tick_guard = TickGuard()
        self._tick_cursor: dict[str, tuple[int, int]] = {}  # (from second, ticks consumed)
        self.breaker = breaker or CircuitBreaker(
            settings.breaker_failures, settings.breaker_reset_s
        )
        self._last_bar: dict[str, dict[str, Any]] = {}
        self._last_seen: dict[str, int] = {}  # epoch seconds of the last bar handled
        self._atr: dict[str, float] = {}
        # per symbol, the last ATR's inputs: the rates' bytes, the true ranges, the last close
        self._true_ranges: dict[str, tuple[bytes, list[float], float]] = {}
        self.last_reconcile: ReconcileReport | None = None
        self.last_reconcile_trace: StepTrace | None = None

    @classmethod
    def from_settings(
        cls, terminal: Terminal, sink: EventSink, settings: AgentSettings | None = None
    ) -> Agent:
        """Wire an agent and its serving client from settings (env ``CHAINTRADE_AGENT_*``)."""
        settings = settings or AgentSettings()
        serving = ServingClient(
            settings.serving_url,
            token=settings.serving_token,
            timeout_s=settings.timeout_s,
            retries=settings.serving_retries,
            backoff_s=settings.retry_backoff_s,
        )
        return cls(terminal, serving, sink, settings)

    @property
    def settings(self) -> AgentSettings:
        return self._settings

    @property
    def terminal(self) -> Terminal:
        return self._terminal

    def start(self) -> ReconcileReport:
        """Connect to the terminal and reconcile; raises ServiceUnavailable when it does not
        answer. A failed reconciliation leaves the agent refusing new orders (see ``reconcile``)."""
        if not self._terminal.initialize():
            code, message = self._terminal.last_error()
            raise ServiceUnavailable(f"MT5 initialize failed: {code} {message}", reason="mt5_init")
        return self.reconcile()

    # ------------------------------------------------------------------ restart reconciliation
    def reconcile(self) -> ReconcileReport:
        """Compare the journal with the terminal's positions, orders and deals before trading.

        Open intents of the journal (a crash between send and answer) are looked up by magic +
        client id and closed; any terminal call that fails, or an intent that stays unknown,
        fails the reconciliation and the risk engine denies every order (``not_reconciled``).
        Positions and orders of other magic numbers are counted, never touched. Each run is one
        ``reconciliation`` chain (one step of that name, its terminal calls as dependencies, the
        report as metadata) through the agent's sink; the report and the step's trace are also
        kept on the agent (``last_reconcile``, ``last_reconcile_trace``).
        """
        chain = ChainContext(
            self._sink, source_service="live_agent", metadata={"chain_name": "reconciliation"}
        )
        with chain.step("reconciliation", "reconcile") as trace:
            report = self._reconcile(trace)
            trace.metadata.update(
                ok=report.ok,
                reason=report.reason,
                magic=self._settings.magic,
                own_positions=report.own_positions,
                foreign_positions=report.foreign_positions,
                own_orders=report.own_orders,
                resolved=[(o.client_order_id, o.state.value, o.reason) for o in report.resolved],
                unresolved=[o.client_order_id for o in report.unresolved],
            )
        self.risk.reconciled = report.ok
        self.last_reconcile = report
        self.last_reconcile_trace = trace
        return report

    def _reconcile(self, trace: StepTrace) -> ReconcileReport:
        magic = self._settings.magic
        t = self._terminal
        positions = traced_call(t, trace, "positions_get", t.positions_get)
        orders = traced_call(t, trace, "orders_get", t.orders_get)
        deals = traced_call(
            t, trace, "history_deals_get", t.history_deals_get, HISTORY_FROM, HISTORY_TO
        )
        if positions is None or orders is None or deals is None:
            return ReconcileReport(False, "terminal_unavailable")
        resolved, unresolved = self.executor.recover(trace)
        own = [p for p in positions if p.magic == magic]
        return ReconcileReport(
            ok=not unresolved,
            reason="unresolved_intents" if unresolved else "ok",
            own_positions=len(own),
            foreign_positions=len(positions) - len(own),
            own_orders=sum(1 for o in orders if o.magic == magic),
            resolved=tuple(resolved),
            unresolved=tuple(unresolved),
        )

    # ------------------------------------------------------------------ one chain per bar
    def on_closed_bar(self, symbol: str) -> BarOutcome:
        """Run one chain for the last closed bar of ``symbol``; never raises for bad input."""
        if not self.risk.reconciled:
            self.reconcile()
        started_chain = time.perf_counter()
        chain = ChainContext(self._sink, source_service="live_agent")

        try:
            with chain.step("collector", "copy_rates_from_pos") as trace:
                rates = self._collect(symbol, trace)
        except ServiceUnavailable as exc:
            self._on_terminal_failure()
            return BarOutcome(symbol, chain.chain_id, error=f"collector:{exc.reason}")
        current = _bar_dict(rates, -1, symbol, self._settings.timeframe)
        bar_s = int(current["time"])
        self._last_seen[symbol] = bar_s
        bar_time = datetime.fromtimestamp(bar_s, UTC)
        now = bar_time + self._bar_length

        with chain.step("validator") as trace:
            previous = self._last_bar.get(symbol)
            if previous is None and len(rates) >= 2:
                previous = _bar_dict(rates, -2, symbol, self._settings.timeframe)
            rejected = bar_reason(current, previous)
            bar_iso = _utc_iso(bar_s)
            trace.metadata.update(
                symbol=symbol,
                bar_time=bar_iso,
                rejected=rejected is not None,
                reason=rejected,
            )
        if rejected is not None:
            return BarOutcome(symbol, chain.chain_id, bar_time, bar_rejected=rejected)
        self._last_bar[symbol] = current
        atr = self._atr_of(symbol, rates, current)
        if atr is not None:
            self._atr[symbol] = atr

        prediction: Prediction | None = None
        latency: float | None = None
        error: str | None = None
        try:
            with chain.step("prediction", "/predict") as trace:
                bar_in = _bar_in(current, bar_time)
                if not self.breaker.allow():
                    self.bar_spool.add(bar_in)
                    raise ServiceUnavailable("serving circuit open", reason="circuit_open")
                if self.bar_spool:
                    try:
                        self._forward_spooled(chain, trace)
                    except ServiceUnavailable:
                        self.bar_spool.add(bar_in)
                        raise
                started = time.perf_counter()
                try:
                    prediction = self._serving.predict(bar_in, chain, trace)
                except ServiceUnavailable:
                    self.breaker.record_failure()
                    self.bar_spool.add(bar_in)
                    raise
                except InvalidPrediction:
                    self.breaker.record_failure()
                    raise
                self.breaker.record_success()
                latency = (time.perf_counter() - started) * 1000.0
                trace.metrics["latency_ms"] = latency
                trace.metadata.update(
                    symbol=symbol,
                    prediction=prediction.prediction,
                    strength=prediction.strength,
                    confidence=prediction.confidence,
                    model_name=prediction.model_name,
                    model_version=prediction.model_version,
                    # an in-process predictor passes the bar's own time on: formatted above
                    feature_timestamp=bar_iso
                    if prediction.feature_timestamp is bar_time
                    else prediction.feature_timestamp.isoformat(),
                )
        except (ServiceUnavailable, FatalError) as exc:
            error = f"prediction:{exc.reason}"

        with chain.step("decision") as trace:
            all_own = self._own_positions(trace)
            own = all_own and tuple([p for p in all_own if p.symbol == symbol])
            decision = decide(
                prediction,
                position_open=bool(own),
                rule=self._rule,
                not_before=bar_time,
            )
            trace.metadata.update(
                action=_VALUE[decision.action],
                strength=decision.strength,
                reasons=list(decision.reasons),
                open_positions=len(own) if own is not None else None,
            )

        with chain.step("risk") as trace:
            verdict, info, reverse = self._risk(trace, symbol, decision.action, now, all_own)
            state, why = self.risk.trading_state(now)
            trace.metadata.update(
                approved=verdict.approved,
                volume=verdict.volume,
                reasons=list(verdict.reasons),
                trading_state=_VALUE[state],
                state_reason=why,
                reverse=[int(p.ticket) for p in reverse],
            )
        decided_ms = (time.perf_counter() - started_chain) * 1000.0

        with chain.step("execution", "order_send") as trace:
            orders = self._execute(
                symbol, decision.action, verdict, own or (), reverse, info, now, trace
            )
            trace.metadata.update(
                orders=[
                    {
                        "client_order_id": o.client_order_id,
                        "filled": o.filled,
                        "reason": o.reason,
                        "retcode": o.retcode,
                        "price": o.price,
                        "requested_price": o.requested_price,
                        "slippage_points": o.slippage_points,
                        "volume": o.volume,
                        "state": _VALUE[o.state],
                    }
                    for o in orders
                ]
            )

        return BarOutcome(
            symbol,
            chain.chain_id,
            bar_time,
            error=error,
            prediction=prediction,
            prediction_latency_ms=latency,
            decision=decision,
            risk=verdict,
            orders=tuple(orders),
            decided_ms=decided_ms,
        )

    def _forward_spooled(self, chain: ChainContext, trace: StepTrace) -> None:
        """Send the bars serving missed, oldest first; their predictions are stale and unused."""
        forwarded = 0
        for bar in self.bar_spool.pending():
            try:
                self._serving.predict(bar, chain, trace)
            except ServiceUnavailable:
                self.breaker.record_failure()
                raise
            except FatalError:
                pass  # refused for good (e.g. 4xx): nothing to keep
            self.breaker.record_success()
            self.bar_spool.pop_first()
            forwarded += 1
        if forwarded:
            trace.metadata["forwarded_bars"] = forwarded

    # ------------------------------------------------------------------ replay
    def run_replay(
        self,
        symbols: Sequence[str],
        n_bars: int,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> ReplaySummary:
        """Advance the simulator ``n_bars`` times, one chain per symbol per closed bar.
        ``progress(steps done)`` is called every 1,000 clock steps and at the end."""
        sim = self._terminal
        if not isinstance(sim, Mt5Simulator):
            raise ConfigError("run_replay needs the Mt5Simulator as terminal", reason="not_sim")
        outcomes: list[BarOutcome] = []
        done = 0
        while done < n_bars and sim.advance():
            done += 1
            for s in symbols:
                if self.has_new_bar(s):
                    outcomes.append(self.on_closed_bar(s))
            if progress is not None and done % 1000 == 0:
                progress(done)
        if progress is not None:
            progress(done)
        return summarize(outcomes, self.realized_pnl())

    def has_new_bar(self, symbol: str) -> bool:
        """Whether a bar of ``symbol`` closed since the last chain (the poll of a live loop)."""
        rates = self._terminal.copy_rates_from_pos(symbol, self._mt5_timeframe, 1, 1)
        if rates is None or len(rates) == 0:
            return True  # let the collector step record why the terminal gave nothing
        last = self._last_seen.get(symbol)
        if last is None:
            return True
        stamp: int = rates["time"].item(-1)
        return (stamp if self._utc_times else self._utc_seconds(stamp)) > last

    # ------------------------------------------------------------------ ticks
    def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        """The last accepted tick of ``symbol`` (the validator's tick mapping, ``time_msc`` in
        UTC milliseconds), or None before the first one. Decisions do not read it."""
        return self._last_tick.get(symbol)

    def collect_ticks(self, symbol: str) -> TickBatch:
        """Fetch the ticks of ``symbol`` since the last poll and validate each one
        (:class:`~chaintrade.validation.TickGuard`: row rules, order, duplicates, spikes and
        stale quotes, the answers ``validate_ticks`` gives on the same stream): good ticks
        become the latest quote, bad ones go to the tick quarantine with their reason.

        A cursor ``(second, consumed)`` remembers how many ticks ``copy_ticks_from(second)``
        returned that were handled, so every tick the terminal gives is handled exactly once.
        The first poll starts at the open of the last closed bar. Blocking: run it off the event
        loop. A terminal that answers nothing gives an ``error`` and leaves the cursor alone.
        """
        cursor = self._tick_cursor.get(symbol)
        if cursor is None:
            rates = self._terminal.copy_rates_from_pos(symbol, self._mt5_timeframe, 1, 1)
            if rates is None or len(rates) == 0:
                return TickBatch(symbol, error="ticks:mt5_no_bars")
            cursor = (int(rates["time"][-1]), 0)
        start_s, consumed = cursor
        ticks = self._terminal.copy_ticks_from(
            symbol, start_s, consumed + self._settings.tick_batch, c.COPY_TICKS_ALL
        )
        if ticks is None:
            return TickBatch(symbol, error="ticks:mt5_no_ticks")
        fresh = ticks[consumed:]
        if len(ticks):
            msc = ticks["time_msc"].astype(np.int64)
            new_s = max(start_s, int(msc.max()) // 1000)
            self._tick_cursor[symbol] = (new_s, int((msc >= new_s * 1000).sum()))
        else:
            self._tick_cursor[symbol] = cursor
        previous = self._last_tick.get(symbol)
        accepted = 0
        rejected: list[tuple[dict[str, Any], str]] = []
        for record in fresh:
            tick = self._tick_dict(record, symbol)
            reason = self.tick_guard.check(tick)
            if reason is None:
                previous = tick
                accepted += 1
            else:
                rejected.append((tick, reason))
        if previous is not None:
            self._last_tick[symbol] = previous
        self.ticks_accepted[symbol] += accepted
        self.tick_quarantine.add(rejected)
        return TickBatch(symbol, accepted, tuple(rejected))

    def _tick_dict(self, record: np.void, symbol: str) -> dict[str, Any]:
        """One MT5 tick record as the validator's tick mapping (times in UTC)."""
        tick: dict[str, Any] = dict(zip(_TICK_FIELDS, record.tolist(), strict=True))
        if not self._utc_times:
            msc = int(tick["time_msc"])
            tick["time"] = self._utc_seconds(msc // 1000)
            tick["time_msc"] = tick["time"] * 1000 + msc % 1000
        tick["symbol"] = symbol
        return tick

    def realized_pnl(self) -> float:
        """Sum of profit, swap, commission and fees of this magic number's closing deals."""
        deals = self._terminal.history_deals_get(HISTORY_FROM, HISTORY_TO)
        if deals is None:
            return 0.0
        closing = (c.DEAL_ENTRY_OUT, c.DEAL_ENTRY_INOUT, c.DEAL_ENTRY_OUT_BY)
        total = sum(
            d.profit + d.swap + d.commission + d.fee
            for d in deals
            if d.magic == self._settings.magic and d.entry in closing
        )
        return round(float(total), 2)

    # ------------------------------------------------------------------ steps
    def _on_terminal_failure(self) -> None:
        """A lost terminal: reconnect, and reconcile again before the next order."""
        code, _ = self._terminal.last_error()
        if code in _IPC_ERRORS:
            self.risk.reconciled = False
            self._terminal.initialize()

    def _collect(self, symbol: str, trace: StepTrace) -> np.ndarray:
        """The last closed bars (``atr_period + 1``, MT5 rate records, oldest first)."""
        count = self._collect_count
        started = time.perf_counter_ns()  # as ``trace.dependency`` times it, without the object
        try:
            rates = self._terminal.copy_rates_from_pos(symbol, self._mt5_timeframe, 1, count)
            if rates is None or len(rates) == 0:
                code, message = self._terminal.last_error()
                raise ServiceUnavailable(
                    f"copy_rates_from_pos({symbol}) gave no bars: {code} {message}",
                    reason="mt5_no_bars",
                )
        except BaseException as exc:
            trace.record_dependency("mt5", "copy_rates_from_pos", started, 1, exc)
            raise
        trace.record_dependency("mt5", "copy_rates_from_pos", started)
        if not self._utc_times:
            rates = rates.copy()
            rates["time"] = [self._utc_seconds(int(t)) for t in rates["time"]]
        trace.metadata.update(symbol=symbol, bars=len(rates), bar_time=rates["time"].item(-1))
        return rates

    def _atr_of(self, symbol: str, rates: np.ndarray, last_bar: dict[str, Any]) -> float | None:
        """:func:`_atr` of ``rates`` (``last_bar``: its last record as a mapping), with the
        true ranges of the bars shared with the last call for ``symbol`` reused (the window
        moves one bar per bar: one new true range)."""
        period = self._settings.atr_period
        if len(rates) < period + 1:
            return None
        raw, row = rates.tobytes(), rates.itemsize
        last = self._true_ranges.get(symbol)
        if last is not None and len(last[0]) == len(raw) and last[0][row:] == raw[:-row]:
            # the bar before the new one is the last call's last bar: its close is kept
            tr = last[1][1:]
            tr.append(_true_range(last_bar["high"], last_bar["low"], last[2]))
        else:
            tr = _true_ranges(rates)
        self._true_ranges[symbol] = (raw, tr, last_bar["close"])
        return sum(tr) / period if len(tr) == period else _wilder(tr, period)

    def _utc_seconds(self, stamp: int) -> int:
        """A terminal time stamp as UTC epoch seconds (``bar_times="server"``: the broker's
        wall clock read in ``server_timezone``; the earlier reading of a repeated DST hour)."""
        if self._utc_times:
            return stamp
        wall = datetime.fromtimestamp(stamp, UTC).replace(tzinfo=self._server_zone)
        return int(wall.timestamp())

    def _own_positions(self, trace: StepTrace) -> tuple[Any, ...] | None:
        """This magic's open positions (all symbols); None when the terminal did not answer."""
        t = self._terminal
        found = traced_call(t, trace, "positions_get", t.positions_get)
        if not found:
            return None if found is None else ()
        magic = self._settings.magic
        for p in found:
            if p.magic != magic:
                return tuple([p for p in found if p.magic == magic])
        return tuple(found)  # all ours (the usual case): no filtering

    def _stops(self, symbol: str, point: float) -> tuple[float, float]:
        """SL and TP distances (price units) of a new order: ATR multiples, else points; with
        ATR sizing an order always gets a stop (``atr_sl_mult`` default 2)."""
        s, atr = self._settings, self._atr.get(symbol)
        sl = atr * s.atr_sl_mult if atr and s.atr_sl_mult else s.sl_points * point
        tp = atr * s.atr_tp_mult if atr and s.atr_tp_mult else s.tp_points * point
        if s.risk_pct > 0 and sl <= 0 and atr:
            sl = atr * self.risk.config.atr_sl_mult
        return sl, tp

    def _market(self, info: Any, symbol: str, action: Action) -> MarketView | None:
        if info is None or not (info.point > 0 and info.ask > 0 and info.bid > 0):
            return None
        return MarketView(
            terms=_terms(info.volume_min, info.volume_max, info.volume_step, info.trade_mode),
            price=float(info.ask if action == Action.BUY else info.bid),
            spread_points=round((info.ask - info.bid) / info.point),
            tick_size=float(info.trade_tick_size or info.point),
            tick_value=float(info.trade_tick_value),
            atr=self._atr.get(symbol),
            stop_distance=self._stops(symbol, float(info.point))[0] or None,
        )

    def _risk(
        self,
        trace: StepTrace,
        symbol: str,
        action: Action,
        now: datetime,
        all_own: tuple[Any, ...] | None,
    ) -> tuple[RiskVerdict, Any, tuple[Any, ...]]:
        """The verdict on ``action``, the symbol info, and the own opposite positions a BUY or
        SELL closes first (a reversal; their closing is judged as a CLOSE, so it happens even
        when the new position is denied, e.g. in REDUCING). ``all_own``: this magic's open
        positions, read in the decision step (None when the terminal did not answer)."""
        # a HOLD sends nothing: no symbol info to read, only the equity for the protections
        t = self._terminal
        hold = action == Action.HOLD
        info = None if hold else traced_call(t, trace, "symbol_info", t.symbol_info, symbol)
        account = traced_call(t, trace, "account_info", t.account_info)
        equity = float(account.equity) if account is not None else None
        if equity is not None:
            self.risk.update_equity(equity, now)
        if hold:
            return NO_ORDER, None, ()
        # bid-priced views of the symbols held (exposures) and of ``symbol`` for a SELL; a BUY
        # or CLOSE with nothing open needs none
        markets: dict[str, MarketView] = {}
        held = sorted({p.symbol for p in all_own} | {symbol}) if all_own else ()
        for sym in held or ((symbol,) if action == Action.SELL else ()):
            sym_info = (
                info if sym == symbol else traced_call(t, trace, "symbol_info", t.symbol_info, sym)
            )
            view = self._market(sym_info, sym, Action.SELL)
            if view is not None:
                markets[sym] = view
        reverse: tuple[Any, ...] = ()
        kept = all_own
        if action in (Action.BUY, Action.SELL) and all_own:
            keep_type = c.POSITION_TYPE_BUY if action == Action.BUY else c.POSITION_TYPE_SELL
            opposite = tuple(p for p in all_own if p.symbol == symbol and p.type != keep_type)
            if opposite:
                closing = self.risk.evaluate(
                    Action.CLOSE,
                    symbol,
                    now=now,
                    equity=equity,
                    market=None,
                    exposures=exposures_of(all_own, markets),
                )
                if closing.approved:
                    reverse = opposite
                    kept = tuple(p for p in all_own if p not in opposite)
        # the view of ``symbol`` above is priced at bid: the one for a SELL or CLOSE
        market = self._market(info, symbol, action) if action == Action.BUY else markets.get(symbol)
        verdict = self.risk.evaluate(
            action,
            symbol,
            now=now,
            equity=equity,
            market=market,
            exposures=exposures_of(kept, markets) if kept is not None else None,
        )
        return verdict, info, reverse

    def _execute(
        self,
        symbol: str,
        action: Action,
        verdict: RiskVerdict,
        own: tuple[Any, ...],
        reverse: tuple[Any, ...],
        info: Any,
        now: datetime,
        trace: StepTrace,
    ) -> list[OrderOutcome]:
        if info is None:
            return []
        s = self._settings
        intents: list[OrderIntent] = []
        closing = own if action == Action.CLOSE and verdict.approved else reverse
        for pos in closing:
            side = Action.SELL if pos.type == c.POSITION_TYPE_BUY else Action.BUY
            cid = self._client_id(symbol, now, side, int(pos.ticket))
            intents.append(OrderIntent(cid, symbol, side, float(pos.volume), int(pos.ticket)))
        if action in (Action.BUY, Action.SELL) and verdict.approved:
            sl, tp = self._stops(symbol, float(info.point))
            intents.append(
                OrderIntent(
                    self._client_id(symbol, now, action, None),
                    symbol,
                    action,
                    verdict.volume,
                    None,
                    sl,
                    tp,
                )
            )
        out: list[OrderOutcome] = []
        for intent in intents:
            if intent.position is None:
                if any(not o.filled for o in out):
                    break  # a reversal whose close failed opens nothing
                self.risk.record_order(now)
            outcome = self.executor.submit(trace, intent, info)
            if outcome.policy == RetcodePolicy.PAUSE:
                self.risk.pause(now + timedelta(seconds=s.pause_s), outcome.reason)
            out.append(outcome)
        return out

    def _client_id(self, symbol: str, now: datetime, action: Action, position: int | None) -> str:
        """Deterministic per (magic, symbol, bar, side, position): a replay gives the same ids."""
        key = f"{self._settings.magic}|{symbol}|{now.isoformat()}|{action.value}|{position}"
        return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]


# ---------------------------------------------------------------------- helpers
def summarize(outcomes: Sequence[BarOutcome], realized_pnl: float) -> ReplaySummary:
    """Totals over bar outcomes; rejects are counted as ``<stage>:<reason>``."""
    rejects: Counter[str] = Counter()
    sent = filled = 0
    latencies: list[float] = []
    for o in outcomes:
        if o.bar_rejected:
            rejects[f"bar:{o.bar_rejected}"] += 1
        if o.error:
            rejects[o.error] += 1
        if o.prediction_latency_ms is not None:
            latencies.append(o.prediction_latency_ms)
        if o.risk is not None and not o.risk.approved and o.risk.reasons != (RiskReason.NO_ORDER,):
            for reason in o.risk.reasons:
                rejects[f"risk:{reason}"] += 1
        for order in o.orders:
            sent += 1
            if order.filled:
                filled += 1
            else:
                rejects[f"order:{order.reason}"] += 1
    return ReplaySummary(
        bars=len(outcomes),
        orders_sent=sent,
        orders_filled=filled,
        rejects=dict(rejects),
        realized_pnl=realized_pnl,
        prediction_latencies_ms=tuple(latencies),
        outcomes=tuple(outcomes),
    )


# the plain strings of the enum members a chain records (``.value`` is a slow property in 3.11)
_VALUE: dict[StrEnum, str] = {m: m.value for e in (Action, TradingState, OrderState) for m in e}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")


def _bar_dict(rates: np.ndarray, i: int, symbol: str, timeframe: str) -> dict[str, Any]:
    """Rate record ``i`` of MT5 ``rates`` as the validator's bar mapping (time in epoch
    seconds)."""
    time_, open_, high, low, close, tick_volume, spread, real_volume = rates.item(i)
    return {
        "time": time_,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "tick_volume": tick_volume,
        "spread": spread,
        "real_volume": real_volume,
        "symbol": symbol,
        "timeframe": timeframe,
    }


def _utc_iso(seconds: int) -> str:
    """``datetime.fromtimestamp(seconds, UTC).isoformat()`` from two cached parts (a quarter of
    its cost): the bars of a few days share their date, all days their times of day."""
    day, time_of_day = divmod(seconds, 86_400)
    return _iso_date(day) + _iso_clock(time_of_day)


@lru_cache(maxsize=64)
def _iso_date(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).date().isoformat()


@lru_cache(maxsize=1_440)
def _iso_clock(time_of_day: int) -> str:
    hours, rest = divmod(time_of_day, 3600)
    return f"T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}+00:00"


@lru_cache(maxsize=256)
def _terms(
    volume_min: float, volume_max: float, volume_step: float, trade_mode: int
) -> SymbolTerms:
    """A symbol's volume terms (the same few values bar after bar: built once)."""
    return SymbolTerms(float(volume_min), float(volume_max), float(volume_step), int(trade_mode))


_validate_bar_in = BarIn.__pydantic_validator__.validate_python


def _bar_in(bar: dict[str, Any], time_: datetime) -> BarIn:
    try:
        # BarIn.model_validate without its wrapper: half the cost of ``BarIn(**fields)``
        bar_in: BarIn = _validate_bar_in({**bar, "time": time_})
        return bar_in
    except ValidationError as exc:
        raise FatalError(
            f"bar does not fit the serving contract: {exc}", reason="bar_invalid"
        ) from exc


def _atr(rates: np.ndarray, period: int) -> float | None:
    """Wilder's average true range over the closed bars (None with fewer than period + 1)."""
    if len(rates) < period + 1:
        return None
    return _wilder(_true_ranges(rates), period)


def _true_ranges(rates: np.ndarray) -> list[float]:
    """The true range of each bar after the first of ``rates``."""
    high, low, close = rates["high"].tolist(), rates["low"].tolist(), rates["close"].tolist()
    return [
        _true_range(h, lo, prev) for h, lo, prev in zip(high[1:], low[1:], close[:-1], strict=True)
    ]


def _true_range(high: float, low: float, prev_close: float) -> float:
    """The max of the three, as max() picks it (NaN included)."""
    true_range = high - low
    gap = abs(high - prev_close)
    if gap > true_range:
        true_range = gap
    gap = abs(low - prev_close)
    if gap > true_range:
        true_range = gap
    return true_range


def _wilder(tr: list[float], period: int) -> float:
    """The simple mean of the first ``period`` true ranges, then Wilder's smoothing."""
    atr = sum(tr[:period]) / period
    for value in tr[period:]:
        atr = (atr * (period - 1) + value) / period
    return atr
