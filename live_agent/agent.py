"""The agent loop: one chain per closed bar, collector → validator → prediction → decision →
risk → execution, every step traced.

The agent talks to any :class:`~live_agent.terminal.Terminal` (the MetaTrader5 module, a bridge,
or :class:`~live_agent.simulator.Mt5Simulator`) and never retries ``order_send`` after a lost
reply: it reconciles against open positions instead, so one intent gives at most one order.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from chaintrade.chain import ChainContext, EventSink, StepTrace
from chaintrade.domain import BAR_FRAME_COLUMNS, Action
from chaintrade.errors import ConfigError, FatalError, ServiceUnavailable
from chaintrade.schemas import BarIn, Prediction
from chaintrade.validation import validate_bars
from live_agent import mt5_constants as c
from live_agent.decision import Decision, DecisionRule, decide
from live_agent.risk import RiskLimits, RiskReason, RiskVerdict, SymbolTerms, check
from live_agent.serving_client import ServingClient
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.terminal import Terminal

STEPS = ("collector", "validator", "prediction", "decision", "risk", "execution")
_RETRY_PRICE = frozenset(
    {c.TRADE_RETCODE_REQUOTE, c.TRADE_RETCODE_PRICE_CHANGED, c.TRADE_RETCODE_PRICE_OFF}
)
_FILLED = frozenset({c.TRADE_RETCODE_DONE, c.TRADE_RETCODE_DONE_PARTIAL})
_HISTORY_FROM = datetime(1970, 1, 2, tzinfo=UTC)
_HISTORY_TO = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What became of one order intent."""

    client_order_id: str
    symbol: str
    action: Action
    volume: float
    filled: bool
    reason: str  # "filled", "filled_reconciled", or a reject reason code
    retcode: int | None = None
    price: float | None = None
    position: int | None = None


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
        serving: ServingClient,
        sink: EventSink,
        settings: AgentSettings,
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
        self._limits = RiskLimits(
            lot_size=settings.lot_size,
            max_positions_per_symbol=settings.max_positions_per_symbol,
            max_positions_total=settings.max_positions_total,
            max_spread_points=settings.max_spread_points,
            halted=settings.halted,
        )
        self._last_bar: dict[str, pd.DataFrame] = {}
        self._last_seen: dict[str, pd.Timestamp] = {}

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

    def start(self) -> None:
        """Connect to the terminal; raises ServiceUnavailable when it does not answer."""
        if not self._terminal.initialize():
            code, message = self._terminal.last_error()
            raise ServiceUnavailable(f"MT5 initialize failed: {code} {message}", reason="mt5_init")

    # ------------------------------------------------------------------ one chain per bar
    def on_closed_bar(self, symbol: str) -> BarOutcome:
        """Run one chain for the last closed bar of ``symbol``; never raises for bad input."""
        chain = ChainContext(self._sink, source_service="live_agent")
        base = BarOutcome(symbol=symbol, chain_id=chain.chain_id)

        try:
            with chain.step("collector", "copy_rates_from_pos") as trace:
                bars = self._collect(symbol, trace)
        except ServiceUnavailable as exc:
            return replace(base, error=f"collector:{exc.reason}")
        current = bars.iloc[[-1]].reset_index(drop=True)
        self._last_seen[symbol] = current["time"].iloc[0]
        bar_time = current["time"].iloc[0].to_pydatetime()
        base = replace(base, bar_time=bar_time)

        with chain.step("validator") as trace:
            rejected = self._validate(symbol, bars, trace)
        if rejected is not None:
            return replace(base, bar_rejected=rejected)
        self._last_bar[symbol] = current

        prediction: Prediction | None = None
        latency: float | None = None
        error: str | None = None
        try:
            with chain.step("prediction", "/predict") as trace:
                bar_in = _bar_in(current, self._settings.timeframe)
                started = time.perf_counter()
                prediction = self._serving.predict(bar_in, chain, trace)
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
            info = self._call(trace, "symbol_info", self._terminal.symbol_info, symbol)
            all_own = self._own_positions(trace, None)
            verdict = self._risk(decision.action, info, own, all_own)
            trace.metadata.update(
                approved=verdict.approved, volume=verdict.volume, reasons=list(verdict.reasons)
            )

        with chain.step("execution", "order_send") as trace:
            orders = self._execute(symbol, decision.action, verdict, own or (), trace)
            trace.metadata.update(
                orders=[
                    {
                        "client_order_id": o.client_order_id,
                        "filled": o.filled,
                        "reason": o.reason,
                        "retcode": o.retcode,
                        "price": o.price,
                        "volume": o.volume,
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
        deals = self._terminal.history_deals_get(_HISTORY_FROM, _HISTORY_TO)
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
    def _collect(self, symbol: str, trace: StepTrace) -> pd.DataFrame:
        with trace.dependency("mt5", "copy_rates_from_pos"):
            rates = self._terminal.copy_rates_from_pos(symbol, int(self._timeframe), 1, 2)
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
            previous = bars.iloc[:-1]
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

    def _call(self, trace: StepTrace, endpoint: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A terminal call traced as an ``mt5`` dependency; None answers are errors."""
        try:
            with trace.dependency("mt5", endpoint):
                result = fn(*args, **kwargs)
                if result is None:
                    code, message = self._terminal.last_error()
                    raise ServiceUnavailable(f"{endpoint}: {code} {message}", reason="mt5_none")
        except ServiceUnavailable:
            return None
        return result

    def _own_positions(self, trace: StepTrace, symbol: str | None) -> tuple[Any, ...] | None:
        if symbol is None:
            found = self._call(trace, "positions_get", self._terminal.positions_get)
        else:
            found = self._call(trace, "positions_get", self._terminal.positions_get, symbol=symbol)
        if found is None:
            return None
        return tuple(p for p in found if p.magic == self._settings.magic)

    def _risk(
        self,
        action: Action,
        info: Any,
        own: tuple[Any, ...] | None,
        all_own: tuple[Any, ...] | None,
    ) -> RiskVerdict:
        if action in (Action.BUY, Action.SELL) and (info is None or own is None or all_own is None):
            return RiskVerdict(False, 0.0, (RiskReason.INPUTS_UNAVAILABLE,))
        terms = spread = None
        if info is not None:
            terms = SymbolTerms(
                volume_min=float(info.volume_min),
                volume_max=float(info.volume_max),
                volume_step=float(info.volume_step),
                trade_mode=int(info.trade_mode),
            )
            if info.point > 0 and info.ask > 0 and info.bid > 0:
                spread = round((info.ask - info.bid) / info.point)
        return check(
            action,
            limits=self._limits,
            terms=terms,
            positions_symbol=len(own or ()),
            positions_total=len(all_own or ()),
            spread_points=spread,
        )

    def _execute(
        self,
        symbol: str,
        action: Action,
        verdict: RiskVerdict,
        own: tuple[Any, ...],
        trace: StepTrace,
    ) -> list[OrderOutcome]:
        if not verdict.approved:
            return []
        info = self._call(trace, "symbol_info", self._terminal.symbol_info, symbol)
        if info is None:
            return []
        if action in (Action.BUY, Action.SELL):
            return [self._send(trace, symbol, action, verdict.volume, info, None)]
        if action == Action.CLOSE:
            out = []
            for pos in own:
                close_action = Action.SELL if pos.type == c.POSITION_TYPE_BUY else Action.BUY
                out.append(self._send(trace, symbol, close_action, pos.volume, info, pos.ticket))
            return out
        return []

    def _send(
        self,
        trace: StepTrace,
        symbol: str,
        action: Action,
        volume: float,
        info: Any,
        position: int | None,
    ) -> OrderOutcome:
        """One order intent: resent only on requotes (never after a lost reply)."""
        settings = self._settings
        client_order_id = uuid.uuid4().hex[:16]
        comment = f"ct:{client_order_id}"
        is_buy = action == Action.BUY
        request: dict[str, Any] = {
            "action": c.TRADE_ACTION_DEAL,
            "symbol": symbol,
            "volume": volume,
            "type": c.ORDER_TYPE_BUY if is_buy else c.ORDER_TYPE_SELL,
            "deviation": settings.deviation_points,
            "magic": settings.magic,
            "comment": comment,
            "type_time": c.ORDER_TIME_GTC,
            "type_filling": filling_for(int(info.filling_mode)),
        }
        if position is not None:
            request["position"] = position
        outcome = OrderOutcome(client_order_id, symbol, action, volume, False, "not_sent")
        for attempt in range(1, settings.requote_retries + 2):
            tick = self._call(trace, "symbol_info_tick", self._terminal.symbol_info_tick, symbol)
            if tick is None:
                return replace(outcome, reason="no_quote")
            price = float(tick.ask if is_buy else tick.bid)
            request["price"] = price
            if position is None:
                request.update(self._stops(price, is_buy, float(info.point), int(info.digits)))
            try:
                with trace.dependency("mt5", "order_send", attempt):
                    result = self._terminal.order_send(request)
                    if result is None:
                        code, message = self._terminal.last_error()
                        raise ServiceUnavailable(
                            f"order_send gave no reply: {code} {message}", reason="no_reply"
                        )
            except ServiceUnavailable:
                return self._reconcile(trace, outcome, comment, position)
            retcode = int(result.retcode)
            if retcode in _FILLED:
                return replace(
                    outcome,
                    filled=True,
                    reason="filled",
                    retcode=retcode,
                    price=float(result.price),
                    position=position or int(result.order),
                )
            outcome = replace(outcome, reason=c.retcode_reason(retcode), retcode=retcode)
            if retcode not in _RETRY_PRICE:
                break
        return outcome

    def _stops(self, price: float, is_buy: bool, point: float, digits: int) -> dict[str, float]:
        sign = 1.0 if is_buy else -1.0
        stops: dict[str, float] = {}
        if self._settings.sl_points:
            stops["sl"] = round(price - sign * self._settings.sl_points * point, digits)
        if self._settings.tp_points:
            stops["tp"] = round(price + sign * self._settings.tp_points * point, digits)
        return stops

    def _reconcile(
        self, trace: StepTrace, outcome: OrderOutcome, comment: str, position: int | None
    ) -> OrderOutcome:
        """After a lost reply: did the order happen? Look at positions instead of resending."""
        found = self._call(
            trace, "positions_get", self._terminal.positions_get, symbol=outcome.symbol
        )
        if found is None:
            return replace(outcome, reason="no_reply_unknown")
        if position is None:
            mine = [p for p in found if p.comment == comment and p.magic == self._settings.magic]
            if mine:
                return replace(
                    outcome,
                    filled=True,
                    reason="filled_reconciled",
                    price=float(mine[0].price_open),
                    position=int(mine[0].ticket),
                )
            return replace(outcome, reason="no_reply_not_filled")
        if all(p.ticket != position for p in found):
            return replace(outcome, filled=True, reason="filled_reconciled", position=position)
        return replace(outcome, reason="no_reply_not_filled")


# ---------------------------------------------------------------------- helpers
def filling_for(filling_mode_flags: int) -> int:
    """ORDER_FILLING_* from a symbol's ``filling_mode`` flags: FOK, else IOC, else RETURN."""
    if filling_mode_flags & c.SYMBOL_FILLING_FOK:
        return c.ORDER_FILLING_FOK
    if filling_mode_flags & c.SYMBOL_FILLING_IOC:
        return c.ORDER_FILLING_IOC
    return c.ORDER_FILLING_RETURN


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
