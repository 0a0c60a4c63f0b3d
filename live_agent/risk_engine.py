"""The pre-trade risk engine: sizing, exposure caps, rate limit, hours, protections, state.

* **Sizing.** ``volume = equity · risk% / (stop distance / tick size · tick value)`` with the stop
  distance the order's SL will have (else ``ATR · atr_sl_mult``; a fixed ``lot_size`` when
  ``risk_pct`` is 0), rounded *down* to
  the volume step, capped at ``volume_max``; below ``volume_min`` the order is denied rather than
  rounded up (that would risk more than the budget).
* **Caps.** Positions, volume and notional (account currency) per symbol and in total; a spread
  filter; the symbol's trade mode; trading hours and days in the broker's server time zone
  (``timezone``; MT5 servers keep broker-local time); an order rate limit (new orders per
  sliding window).
* **Protections** persist in a small JSON file (atomic replace) so they survive a restart: the
  day's starting equity and the equity peak. A daily loss of ``daily_loss_pct`` puts the engine in
  REDUCING until the next trading day, which starts at midnight server time (``timezone``, so the
  reset follows the broker's DST changes); a drawdown of ``max_drawdown_pct`` from the peak HALTS
  it until :meth:`RiskEngine.resume`.
* **Trading state.** ACTIVE: all orders. REDUCING: only orders that close positions. HALTED: no
  orders at all (positions keep their broker-side SL/TP). A manual :meth:`RiskEngine.halt`, a
  kill-switch file, or the drawdown protection halts; :meth:`RiskEngine.reduce` reduces.

Every denial carries reason codes (:class:`RiskReason`); time is passed in, so
the engine is deterministic under replay.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

from chaintrade.domain import Action
from live_agent import mt5_constants as c


class RiskReason:
    """Reason codes of risk verdicts (stable strings)."""

    APPROVED = "approved"
    NO_ORDER = "no_order"
    HALTED = "halted"
    MAX_POSITIONS = "max_positions"
    MAX_POSITIONS_TOTAL = "max_positions_total"
    SPREAD_TOO_WIDE = "spread_too_wide"
    TRADE_DISABLED = "trade_disabled"
    INVALID_VOLUME_SPEC = "invalid_volume_spec"
    NOTHING_TO_CLOSE = "nothing_to_close"
    INPUTS_UNAVAILABLE = "risk_inputs_unavailable"
    REDUCING = "reducing_only"
    NOT_RECONCILED = "not_reconciled"
    OUTSIDE_TRADING_HOURS = "outside_trading_hours"
    RATE_LIMITED = "order_rate_limited"
    SIZE_BELOW_MIN = "size_below_volume_min"
    NO_STOP_DISTANCE = "no_stop_distance"
    MAX_VOLUME_SYMBOL = "max_volume_symbol"
    MAX_VOLUME_TOTAL = "max_volume_total"
    MAX_NOTIONAL_SYMBOL = "max_notional_symbol"
    MAX_NOTIONAL_TOTAL = "max_notional_total"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class SymbolTerms:
    """The parts of ``SymbolInfo`` the risk engine reads."""

    volume_min: float
    volume_max: float
    volume_step: float
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    """``approved`` with the volume to send, or denied with every failing reason."""

    approved: bool
    volume: float
    reasons: tuple[str, ...]


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Limits of the risk engine; ``None`` switches a cap off."""

    lot_size: float = 0.01
    risk_pct: float = 0.0  # > 0: ATR sizing with this % of equity at risk per trade
    atr_sl_mult: float = 2.0
    max_positions_per_symbol: int = 1
    max_positions_total: int = 5
    max_volume_per_symbol: float | None = None
    max_volume_total: float | None = None
    max_notional_per_symbol: float | None = None
    max_notional_total: float | None = None
    max_spread_points: int = 30
    max_orders_per_window: int = 10
    order_window_s: float = 60.0
    trading_hours: tuple[
        tuple[int, int], ...
    ] = ()  # server-time minute-of-day windows [start, end)
    trading_days: frozenset[int] = frozenset()  # server-time weekday() numbers; empty = all
    timezone: str = "UTC"  # the broker's server time zone (IANA name)
    daily_loss_pct: float | None = 5.0
    max_drawdown_pct: float | None = 20.0
    kill_switch_file: Path | None = None
    halted: bool = False  # a static kill switch from the settings


@dataclass(frozen=True, slots=True)
class Exposure:
    """One own open position as the caps see it (notional in account currency)."""

    symbol: str
    volume: float
    notional: float


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the engine needs to know about the symbol now."""

    terms: SymbolTerms
    price: float
    spread_points: int
    tick_size: float
    tick_value: float  # account currency per tick per lot
    atr: float | None = None
    stop_distance: float | None = None  # the SL distance the order will carry (price units)


@dataclass(slots=True)
class ProtectionState:
    """The persisted part of the engine."""

    day: str = ""
    day_start_equity: float = 0.0
    peak_equity: float = 0.0
    daily_loss_day: str = ""
    drawdown_halted: bool = False
    manual: str = ""  # "", "HALTED" or "REDUCING"
    manual_reason: str = ""
    history: list[str] = field(default_factory=list)


class ProtectionStore:
    """JSON file of :class:`ProtectionState` (atomic replace); in memory when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> ProtectionState:
        if self.path is None or not self.path.exists():
            return ProtectionState()
        data = json.loads(self.path.read_text())
        known = set(ProtectionState.__dataclass_fields__)
        return ProtectionState(**{k: v for k, v in data.items() if k in known})

    def save(self, state: ProtectionState) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w") as fh:
            json.dump(asdict(state), fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class RateLimiter:
    """At most ``limit`` events per sliding ``window_s`` (times in seconds, passed in)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit, self._window = limit, window_s
        self._times: deque[float] = deque()

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] <= now_s - self._window:
            self._times.popleft()

    def allows(self, now_s: float) -> bool:
        self._trim(now_s)
        return len(self._times) < self._limit

    def record(self, now_s: float) -> None:
        self._trim(now_s)
        self._times.append(now_s)


def atr_volume(equity: float, risk_pct: float, stop_distance: float, market: MarketView) -> float:
    """Lots whose loss at ``stop_distance`` is ``risk_pct`` % of ``equity`` (unrounded)."""
    if stop_distance <= 0 or market.tick_size <= 0 or market.tick_value <= 0:
        return 0.0
    loss_per_lot = stop_distance / market.tick_size * market.tick_value
    return equity * risk_pct / 100.0 / loss_per_lot


def round_volume(volume: float, terms: SymbolTerms) -> float | None:
    """Down to the step, capped at ``volume_max``; None below ``volume_min`` or a bad spec."""
    step, vmin, vmax = terms.volume_step, terms.volume_min, terms.volume_max
    if not (step > 0 and vmin > 0 and vmax >= vmin):
        return None
    stepped = math.floor(min(volume, vmax) / step + 1e-9) * step
    decimals = max(0, -math.floor(math.log10(step))) + 2
    stepped = round(stepped, decimals)
    return stepped if stepped >= vmin - 1e-12 else None


def notional(volume: float, market: MarketView) -> float:
    """Account-currency value of ``volume`` lots at the market price."""
    if market.tick_size <= 0:
        return 0.0
    return volume * market.price / market.tick_size * market.tick_value


class RiskEngine:
    """Pre-trade checks and protections; see the module docstring."""

    def __init__(self, config: RiskConfig, store: ProtectionStore | None = None) -> None:
        self.config = config
        self._store = store or ProtectionStore(None)
        self._state = self._store.load()
        self._rate = RateLimiter(config.max_orders_per_window, config.order_window_s)
        self.reconciled = True
        self._zone = ZoneInfo(config.timezone)
        self._paused_until: datetime | None = None
        self._pause_reason = ""
        self._kill_seen: tuple[datetime, bool, float] | None = None  # (now, exists, monotonic)

    # ------------------------------------------------------------------ state
    @property
    def protections(self) -> ProtectionState:
        return self._state

    def trading_state(self, now: datetime | None = None) -> tuple[TradingState, str]:
        """The state and why. With ``now`` (the decision time of a bar) the kill-switch file is
        looked up once per ``now`` and second: once per bar, however many checks it makes."""
        if self.config.halted:
            return TradingState.HALTED, "halted_setting"
        if self._kill_switch_on(now):
            return TradingState.HALTED, "kill_switch_file"
        if self._state.manual == TradingState.HALTED:
            return TradingState.HALTED, self._state.manual_reason or "manual_halt"
        if self._state.drawdown_halted:
            return TradingState.HALTED, "max_drawdown"
        if self._state.manual == TradingState.REDUCING:
            return TradingState.REDUCING, self._state.manual_reason or "manual_reduce"
        if self._state.daily_loss_day and self._state.daily_loss_day == self._state.day:
            return TradingState.REDUCING, "daily_loss"
        return TradingState.ACTIVE, ""

    def _kill_switch_on(self, now: datetime | None) -> bool:
        kill = self.config.kill_switch_file
        if kill is None:
            return False
        seen, clock = self._kill_seen, monotonic()
        if now is not None and seen is not None and seen[0] == now and clock - seen[2] < 1.0:
            return seen[1]
        on = kill.exists()
        self._kill_seen = (now, on, clock) if now is not None else None
        return on

    def halt(self, reason: str = "manual_halt") -> None:
        """The manual kill switch: no orders at all until :meth:`resume`; persisted."""
        self._set_manual(TradingState.HALTED, reason)

    def reduce(self, reason: str = "manual_reduce") -> None:
        """Close-only until :meth:`resume`; persisted."""
        self._set_manual(TradingState.REDUCING, reason)

    def resume(self, equity: float | None = None) -> None:
        """Clear manual states and the drawdown halt (the peak restarts at ``equity``)."""
        self._state.manual = self._state.manual_reason = ""
        self._state.drawdown_halted = False
        if equity is not None:
            self._state.peak_equity = equity
        self._state.history.append("resume")
        self._store.save(self._state)

    def _set_manual(self, state: TradingState, reason: str) -> None:
        self._state.manual, self._state.manual_reason = state.value, reason
        self._state.history.append(f"{state.value}:{reason}")
        self._store.save(self._state)

    def update_equity(self, equity: float, now: datetime) -> TradingState:
        """Roll the day, track the peak and trip the protections; persisted when changed."""
        s, cfg = self._state, self.config
        before = (s.day, s.day_start_equity, s.peak_equity, s.daily_loss_day, s.drawdown_halted)
        day = self.server_time(now).date().isoformat()
        if s.day != day:
            s.day, s.day_start_equity = day, equity
        s.peak_equity = max(s.peak_equity, equity)
        if cfg.daily_loss_pct is not None and s.day_start_equity > 0:
            loss = s.day_start_equity - equity
            if loss >= s.day_start_equity * cfg.daily_loss_pct / 100.0 and s.daily_loss_day != day:
                s.daily_loss_day = day
                s.history.append(f"daily_loss:{day}")
        limit = cfg.max_drawdown_pct
        if (
            limit is not None
            and not s.drawdown_halted
            and s.peak_equity > 0
            and s.peak_equity - equity >= s.peak_equity * limit / 100.0
        ):
            s.drawdown_halted = True
            s.history.append(f"max_drawdown:{day}")
        after = (s.day, s.day_start_equity, s.peak_equity, s.daily_loss_day, s.drawdown_halted)
        if after != before:
            self._store.save(s)
        return self.trading_state(now)[0]

    def pause(self, until: datetime, reason: str) -> None:
        """No new exposure before ``until`` (market closed, no money, trading disabled...)."""
        self._paused_until, self._pause_reason = until, reason

    def record_order(self, now: datetime) -> None:
        """Count one new order against the rate limit."""
        self._rate.record(now.timestamp())

    # ------------------------------------------------------------------ checks
    def evaluate(
        self,
        action: Action,
        symbol: str,
        *,
        now: datetime,
        equity: float | None,
        market: MarketView | None,
        exposures: Sequence[Exposure] | None,
    ) -> RiskVerdict:
        """Judge one decided action; ``None`` inputs fail closed for new exposure."""
        if action == Action.HOLD:
            return RiskVerdict(False, 0.0, (RiskReason.NO_ORDER,))
        state, _ = self.trading_state(now)
        if action == Action.CLOSE:
            reasons = []
            if not self.reconciled:
                reasons.append(RiskReason.NOT_RECONCILED)
            if state == TradingState.HALTED:
                reasons.append(RiskReason.HALTED)
            if exposures is not None and not any(e.symbol == symbol for e in exposures):
                reasons.append(RiskReason.NOTHING_TO_CLOSE)
            if reasons:
                return RiskVerdict(False, 0.0, tuple(reasons))
            return RiskVerdict(True, 0.0, (RiskReason.APPROVED,))
        if market is None or equity is None or exposures is None:
            return RiskVerdict(False, 0.0, (RiskReason.INPUTS_UNAVAILABLE,))
        cfg = self.config
        reasons = []
        if not self.reconciled:
            reasons.append(RiskReason.NOT_RECONCILED)
        if state == TradingState.HALTED:
            reasons.append(RiskReason.HALTED)
        elif state == TradingState.REDUCING:
            reasons.append(RiskReason.REDUCING)
        if self._paused_until is not None and now < self._paused_until:
            reasons.append(RiskReason.PAUSED)
        if not self._in_hours(now):
            reasons.append(RiskReason.OUTSIDE_TRADING_HOURS)
        if not _mode_allows(market.terms.trade_mode, action):
            reasons.append(RiskReason.TRADE_DISABLED)
        if market.spread_points > cfg.max_spread_points:
            reasons.append(RiskReason.SPREAD_TOO_WIDE)
        mine = [e for e in exposures if e.symbol == symbol]
        if len(mine) >= cfg.max_positions_per_symbol:
            reasons.append(RiskReason.MAX_POSITIONS)
        if len(exposures) >= cfg.max_positions_total:
            reasons.append(RiskReason.MAX_POSITIONS_TOTAL)
        if not self._rate.allows(now.timestamp()):
            reasons.append(RiskReason.RATE_LIMITED)
        volume = self._size(equity, market, reasons)
        if volume is not None:
            self._caps(volume, market, mine, exposures, reasons)
        if reasons:
            return RiskVerdict(False, 0.0, tuple(reasons))
        assert volume is not None
        return RiskVerdict(True, volume, (RiskReason.APPROVED,))

    def _size(self, equity: float, market: MarketView, reasons: list[str]) -> float | None:
        cfg = self.config
        if cfg.risk_pct > 0:
            stop = market.stop_distance or (market.atr or 0.0) * cfg.atr_sl_mult
            if stop <= 0:
                reasons.append(RiskReason.NO_STOP_DISTANCE)
                return None
            raw = atr_volume(equity, cfg.risk_pct, stop, market)
        else:
            raw = cfg.lot_size
        t = market.terms
        if not (t.volume_step > 0 and t.volume_min > 0 and t.volume_max >= t.volume_min):
            reasons.append(RiskReason.INVALID_VOLUME_SPEC)
            return None
        volume = round_volume(raw, t)
        if volume is None:
            reasons.append(RiskReason.SIZE_BELOW_MIN)
        return volume

    def _caps(
        self,
        volume: float,
        market: MarketView,
        mine: Sequence[Exposure],
        exposures: Sequence[Exposure],
        reasons: list[str],
    ) -> None:
        cfg, eps = self.config, 1e-9
        cap = cfg.max_volume_per_symbol
        if cap is not None and sum(e.volume for e in mine) + volume > cap + eps:
            reasons.append(RiskReason.MAX_VOLUME_SYMBOL)
        cap = cfg.max_volume_total
        if cap is not None and sum(e.volume for e in exposures) + volume > cap + eps:
            reasons.append(RiskReason.MAX_VOLUME_TOTAL)
        if cfg.max_notional_per_symbol is None and cfg.max_notional_total is None:
            return
        new_notional = notional(volume, market)
        cap = cfg.max_notional_per_symbol
        if cap is not None and sum(e.notional for e in mine) + new_notional > cap + eps:
            reasons.append(RiskReason.MAX_NOTIONAL_SYMBOL)
        cap = cfg.max_notional_total
        if cap is not None and sum(e.notional for e in exposures) + new_notional > cap + eps:
            reasons.append(RiskReason.MAX_NOTIONAL_TOTAL)

    def server_time(self, now: datetime) -> datetime:
        """``now`` (aware) on the broker's server clock."""
        return now.astimezone(self._zone)

    def _in_hours(self, now: datetime) -> bool:
        cfg = self.config
        now = self.server_time(now)
        if cfg.trading_days and now.weekday() not in cfg.trading_days:
            return False
        if not cfg.trading_hours:
            return True
        minute = now.hour * 60 + now.minute
        return any(start <= minute < end for start, end in cfg.trading_hours)


def parse_hours(spec: str) -> tuple[tuple[int, int], ...]:
    """``"07:00-11:30,13:00-17:00"`` → minute-of-day windows; empty means always."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        start, end = part.split("-")
        out.append((_minute(start), _minute(end) if end.strip() != "24:00" else 1440))
    return tuple(out)


def _minute(text: str) -> int:
    h, m = text.strip().split(":")
    value = int(h) * 60 + int(m)
    if not 0 <= value <= 1440:
        raise ValueError(f"bad time {text!r}")
    return value


def exposures_of(positions: Sequence[Any], markets: Mapping[str, MarketView]) -> list[Exposure]:
    """:class:`Exposure` of MT5 position records (notional at their symbol's price now)."""
    out = []
    for p in positions:
        m = markets.get(p.symbol)
        out.append(Exposure(p.symbol, float(p.volume), notional(float(p.volume), m) if m else 0.0))
    return out


def _mode_allows(trade_mode: int, action: Action) -> bool:
    if trade_mode == c.SYMBOL_TRADE_MODE_FULL:
        return True
    if trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY:
        return action == Action.BUY
    if trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY:
        return action == Action.SELL
    return False
