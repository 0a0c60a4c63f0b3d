from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import ValidationError

from chaintrade.chain import ChainContext, EventSink, StepTrace
from chaintrade.domain import BAR_FRAME_COLUMNS, Action
from chaintrade.errors import ConfigError, FatalError, ServiceUnavailable
from chaintrade.schemas import BarIn, Prediction
from chaintrade.validation import validate_bars
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
    RetcodePolicy,
    filling_for,
    traced_call,
)
from live_agent.risk import RiskReason, RiskVerdict, SymbolTerms
from live_agent.risk_engine import (
    MarketView,
    ProtectionStore,
    RiskConfig,
    RiskEngine,
    exposures_of,
    parse_hours,
)
from live_agent.serving_client import InvalidPrediction, ServingClient
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.spool import BarSpool
from live_agent.terminal import Terminal

__all__ = [
    "STEPS",
    "Agent",
    "BarOutcome",
    "OrderOutcome",
    "ReconcileReport",
    "ReplaySummary",
    "filling_for",
    "rates_frame",
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


@dataclass(frozen=True, slots=True)
class BarOutcome:
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
        self.breaker = breaker or CircuitBreaker(
            settings.breaker_failures, settings.breaker_reset_s
        )
        self._last_bar: dict[str, pd.DataFrame] = {}
        self._last_seen: dict[str, pd.Timestamp] = {}
        self._atr: dict[str, float] = {}
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
        Positions and orders of other magic numbers are counted, never touched. The report
        (and its terminal calls, ``last_reconcile_trace``) is kept on the agent, not emitted as a
        chain: the chain store knows only the bar chain so far.
        """
        magic = self._settings.magic
        report: ReconcileReport
        trace = StepTrace()  # not a bar chain: kept off the sink (see the docstring)
        call = self._calls(trace)
        positions = call("positions_get", self._terminal.positions_get)
        orders = call("orders_get", self._terminal.orders_get)
        deals = call(
            "history_deals_get", self._terminal.history_deals_get, HISTORY_FROM, HISTORY_TO
        )
        if positions is None or orders is None or deals is None:
            report = ReconcileReport(False, "terminal_unavailable")
        else:
            resolved, unresolved = self.executor.recover(trace)
            own = [p for p in positions if p.magic == magic]
            report = ReconcileReport(
                ok=not unresolved,
                reason="unresolved_intents" if unresolved else "ok",
                own_positions=len(own),
                foreign_positions=len(positions) - len(own),
                own_orders=sum(1 for o in orders if o.magic == magic),
                resolved=tuple(resolved),
                unresolved=tuple(unresolved),
            )
        trace.metadata.update(
            ok=report.ok,
            reason=report.reason,
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

    # ------------------------------------------------------------------ one chain per bar
    def on_closed_bar(self, symbol: str) -> BarOutcome:
        """Run one chain for the last closed bar of ``symbol``; never raises for bad input."""
        if not self.risk.reconciled:
            self.reconcile()
        chain = ChainContext(self._sink, source_service="live_agent")
        base = BarOutcome(symbol=symbol, chain_id=chain.chain_id)

        try:
            with chain.step("collector", "copy_rates_from_pos") as trace:
                bars = self._collect(symbol, trace)
        except ServiceUnavailable as exc:
            self._on_terminal_failure()
            return replace(base, error=f"collector:{exc.reason}")
        current = bars.iloc[[-1]].reset_index(drop=True)
        self._last_seen[symbol] = current["time"].iloc[0]
        bar_time = current["time"].iloc[0].to_pydatetime()
        now = bar_time + timedelta(minutes=self._timeframe.minutes)
        base = replace(base, bar_time=bar_time)

        with chain.step("validator") as trace:
            rejected = self._validate(symbol, bars, trace)
        if rejected is not None:
            return replace(base, bar_rejected=rejected)
        self._last_bar[symbol] = current
        atr = _atr(bars, self._settings.atr_period)
        if atr is not None:
            self._atr[symbol] = atr

        prediction: Prediction | None = None
        latency: float | None = None
        error: str | None = None
        try:
            with chain.step("prediction", "/predict") as trace:
                bar_in = _bar_in(current, self._settings.timeframe)
                if not self.breaker.allow():
                    self.bar_spool.add(bar_in)
                    raise ServiceUnavailable("serving circuit open", reason="circuit_open")
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
                    feature_timestamp=prediction.feature_timestamp.isoformat(),
                )
        except (ServiceUnavailable, FatalError) as exc:
            error = f"prediction:{exc.reason}"

        with chain.step("decision") as trace:
            own = self._own_positions(trace, symbol)
            decision = decide(
                prediction,
                position_open=bool(own),
                rule=self._rule,
                not_before=bar_time,
            )
            trace.metadata.update(
                action=decision.action.value,
                strength=decision.strength,
                reasons=list(decision.reasons),
                open_positions=len(own) if own is not None else None,
            )

        with chain.step("risk") as trace:
            verdict, info = self._risk(trace, symbol, decision.action, now)
            state, why = self.risk.trading_state()
            trace.metadata.update(
                approved=verdict.approved,
                volume=verdict.volume,
                reasons=list(verdict.reasons),
                trading_state=state.value,
                state_reason=why,
            )

        with chain.step("execution", "order_send") as trace:
            orders = self._execute(symbol, decision.action, verdict, own or (), info, now, trace)
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
                        "state": o.state.value,
                    }
                    for o in orders
                ]
            )

        return replace(
            base,
            error=error,
            prediction=prediction,
            prediction_latency_ms=latency,
            decision=decision,
            risk=verdict,
            orders=tuple(orders),
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
    def run_replay(self, symbols: Sequence[str], n_bars: int) -> ReplaySummary:
        """Advance the simulator ``n_bars`` times, one chain per symbol per closed bar."""
        sim = self._terminal
        if not isinstance(sim, Mt5Simulator):
            raise ConfigError("run_replay needs the Mt5Simulator as terminal", reason="not_sim")
        outcomes: list[BarOutcome] = []
        for _ in range(n_bars):
            if not sim.advance():
                break
            outcomes.extend(self.on_closed_bar(s) for s in symbols if self.has_new_bar(s))
        return summarize(outcomes, self.realized_pnl())

    def has_new_bar(self, symbol: str) -> bool:
        """Whether a bar of ``symbol`` closed since the last chain (the poll of a live loop)."""
        rates = self._terminal.copy_rates_from_pos(symbol, int(self._timeframe), 1, 1)
        if rates is None or len(rates) == 0:
            return True  # let the collector step record why the terminal gave nothing
        last = self._last_seen.get(symbol)
        closed = pd.Timestamp(int(rates["time"][-1]), unit="s", tz="UTC")
        return last is None or bool(closed > last)

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

    def _collect(self, symbol: str, trace: StepTrace) -> pd.DataFrame:
        count = max(2, self._settings.atr_period + 1)
        with trace.dependency("mt5", "copy_rates_from_pos"):
            rates = self._terminal.copy_rates_from_pos(symbol, int(self._timeframe), 1, count)
            if rates is None or len(rates) == 0:
                code, message = self._terminal.last_error()
                raise ServiceUnavailable(
                    f"copy_rates_from_pos({symbol}) gave no bars: {code} {message}",
                    reason="mt5_no_bars",
                )
        bars = rates_frame(rates, symbol, self._settings.timeframe)
        trace.metadata.update(
            symbol=symbol, bars=len(bars), bar_time=bars["time"].iloc[-1].isoformat()
        )
        return bars

    def _validate(self, symbol: str, bars: pd.DataFrame, trace: StepTrace) -> str | None:
        """The reason the last bar is rejected, or None; checks order against the previous."""
        current = bars.iloc[[-1]]
        previous = self._last_bar.get(symbol)
        if previous is None:
            previous = bars.iloc[-2:-1]
        frame = pd.concat([previous, current], ignore_index=True)
        frame["_row"] = np.arange(len(frame))
        result = validate_bars(frame)
        bad = result.quarantine[result.quarantine["_row"] == len(frame) - 1]
        reason = str(bad["reason"].iloc[0]) if len(bad) else None
        trace.metadata.update(
            symbol=symbol,
            bar_time=current["time"].iloc[0].isoformat(),
            rejected=reason is not None,
            reason=reason,
            counts=result.counts,
        )
        return reason

    def _calls(self, trace: StepTrace) -> Any:
        def call(endpoint: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            return traced_call(self._terminal, trace, endpoint, fn, *args, **kwargs)

        return call

    def _own_positions(self, trace: StepTrace, symbol: str | None) -> tuple[Any, ...] | None:
        call = self._calls(trace)
        if symbol is None:
            found = call("positions_get", self._terminal.positions_get)
        else:
            found = call("positions_get", self._terminal.positions_get, symbol=symbol)
        if found is None:
            return None
        return tuple(p for p in found if p.magic == self._settings.magic)

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
            terms=SymbolTerms(
                volume_min=float(info.volume_min),
                volume_max=float(info.volume_max),
                volume_step=float(info.volume_step),
                trade_mode=int(info.trade_mode),
            ),
            price=float(info.ask if action == Action.BUY else info.bid),
            spread_points=round((info.ask - info.bid) / info.point),
            tick_size=float(info.trade_tick_size or info.point),
            tick_value=float(info.trade_tick_value),
            atr=self._atr.get(symbol),
            stop_distance=self._stops(symbol, float(info.point))[0] or None,
        )

    def _risk(
        self, trace: StepTrace, symbol: str, action: Action, now: datetime
    ) -> tuple[RiskVerdict, Any]:
        call = self._calls(trace)
        info = call("symbol_info", self._terminal.symbol_info, symbol)
        account = call("account_info", self._terminal.account_info)
        if account is not None:
            self.risk.update_equity(float(account.equity), now)
        if action == Action.HOLD:
            return RiskVerdict(False, 0.0, (RiskReason.NO_ORDER,)), info
        all_own = self._own_positions(trace, None)
        markets: dict[str, MarketView] = {}
        for sym in sorted({p.symbol for p in all_own or ()} | {symbol}):
            sym_info = (
                info if sym == symbol else call("symbol_info", self._terminal.symbol_info, sym)
            )
            view = self._market(sym_info, sym, Action.SELL)
            if view is not None:
                markets[sym] = view
        verdict = self.risk.evaluate(
            action,
            symbol,
            now=now,
            equity=float(account.equity) if account is not None else None,
            market=self._market(info, symbol, action),
            exposures=exposures_of(all_own, markets) if all_own is not None else None,
        )
        return verdict, info

    def _execute(
        self,
        symbol: str,
        action: Action,
        verdict: RiskVerdict,
        own: tuple[Any, ...],
        info: Any,
        now: datetime,
        trace: StepTrace,
    ) -> list[OrderOutcome]:
        if not verdict.approved or info is None:
            return []
        s = self._settings
        intents: list[OrderIntent] = []
        if action in (Action.BUY, Action.SELL):
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
        elif action == Action.CLOSE:
            for pos in own:
                side = Action.SELL if pos.type == c.POSITION_TYPE_BUY else Action.BUY
                cid = self._client_id(symbol, now, side, int(pos.ticket))
                intents.append(OrderIntent(cid, symbol, side, float(pos.volume), int(pos.ticket)))
        out = []
        for intent in intents:
            if intent.position is None:
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
def rates_frame(rates: np.ndarray, symbol: str, timeframe: str) -> pd.DataFrame:
    """MT5 ``copy_rates_*`` records as a bar frame (UTC times, symbol and timeframe columns)."""
    frame = pd.DataFrame(rates)
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="s", utc=True)
    frame.insert(0, "timeframe", timeframe)
    frame.insert(0, "symbol", symbol)
    return frame[list(BAR_FRAME_COLUMNS)]


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


def _bar_in(current: pd.DataFrame, timeframe: str) -> BarIn:
    row = current.iloc[0]
    try:
        return BarIn(
            symbol=str(row["symbol"]),
            timeframe=timeframe,
            time=row["time"].to_pydatetime(),
            open=float(row["open"]),
            high=float(row["high"]),
            low=float(row["low"]),
            close=float(row["close"]),
            tick_volume=int(row["tick_volume"]),
            spread=int(row["spread"]),
            real_volume=int(row["real_volume"]),
        )
    except ValidationError as exc:
        raise FatalError(
            f"bar does not fit the serving contract: {exc}", reason="bar_invalid"
        ) from exc


def _atr(bars: pd.DataFrame, period: int) -> float | None:
    """Wilder's average true range over the closed bars (None with fewer than period + 1)."""
    if len(bars) < period + 1:
        return None
    high, low, close = (bars[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    prev = close[:-1]
    tr = np.maximum(high[1:] - low[1:], np.maximum(abs(high[1:] - prev), abs(low[1:] - prev)))
    atr = float(tr[:period].mean())
    for value in tr[period:]:
        atr = (atr * (period - 1) + float(value)) / period
    return atr
