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
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

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


class SymbolTerms(msgspec.Struct, frozen=True, gc=False):
    """The parts of ``SymbolInfo`` the risk engine reads."""

    volume_min: float
    volume_max: float
    volume_step: float
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL


class RiskVerdict(msgspec.Struct, frozen=True, gc=False):
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


class Exposure(msgspec.Struct, frozen=True, gc=False):
    """One own open position as the caps see it (notional in account currency)."""

    symbol: str
    volume: float
    notional: float


class MarketView(msgspec.Struct, frozen=True, gc=False):
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
        times = self._times
        if times:  # :meth:`_trim`, inline: asked before most orders
            cutoff = now_s - self._window
            while times and times[0] <= cutoff:
                times.popleft()
        return len(times) < self._limit

    def record(self, now_s: float) -> None:
        self._trim(now_s)
        self._times.append(now_s)


# Enum members and verdicts the per-bar paths use, looked up once (an enum class attribute
# costs ~0.1 us a read in Python 3.11; verdicts are frozen, so sharing one is safe).
_ACTIVE, _REDUCING, _HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
_ACTIVE_STATE = (_ACTIVE, "")
_BUY, _SELL, _CLOSE, _HOLD = Action.BUY, Action.SELL, Action.CLOSE, Action.HOLD
NO_ORDER = RiskVerdict(False, 0.0, (RiskReason.NO_ORDER,))  # the verdict on a HOLD
_INPUTS_UNAVAILABLE = RiskVerdict(False, 0.0, (RiskReason.INPUTS_UNAVAILABLE,))
_APPROVED = (RiskReason.APPROVED,)
_APPROVED_CLOSE = RiskVerdict(True, 0.0, _APPROVED)
_MODE_FULL = c.SYMBOL_TRADE_MODE_FULL
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_US_OF_DAY = timedelta(days=1, microseconds=-1)


@cache
def _denied(reasons: tuple[str, ...]) -> RiskVerdict:
    """The denial with ``reasons`` (shared: few distinct reason lists recur bar after bar)."""
    return RiskVerdict(False, 0.0, reasons)


@cache
def _step_decimals(step: float) -> int:
    """Decimals :func:`round_volume` rounds a multiple of ``step`` to."""
    return max(0, -math.floor(math.log10(step))) + 2


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
    stepped = round(math.floor(min(volume, vmax) / step + 1e-9) * step, _step_decimals(step))
    return stepped if stepped >= vmin - 1e-12 else None


@lru_cache(maxsize=64, typed=True)  # typed: an int step gives an int volume
def _round_lot(lot: float, step: float, vmin: float, vmax: float) -> float | None:
    """:func:`round_volume` of a fixed lot size (memoised: the same inputs bar after bar)."""
    return round_volume(lot, SymbolTerms(vmin, vmax, step))


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
        # the last ``now`` seen and its epoch seconds (a bar asks 2-5 times with the same object)
        self._now: datetime | None = None
        self._now_s = 0.0
        # the server day holding (_day_lo, _day_hi) epoch seconds (open: see _server_day)
        self._day, self._day_lo, self._day_hi = "", 0.0, 0.0
        # facts of ``config`` the checks branch on, found once per config object (_derive)
        self._derived_for: RiskConfig | None = None
        self._hours_on = self._caps_on = False
        # a fixed lot sized for the last terms seen: (terms, volume or None, denial or None)
        self._lot: tuple[SymbolTerms, float | None, str | None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def protections(self) -> ProtectionState:
        return self._state

    def trading_state(self, now: datetime | None = None) -> tuple[TradingState, str]:
        """The state and why. With ``now`` (the decision time of a bar) the kill-switch file is
        looked up once per ``now`` and second: once per bar, however many checks it makes."""
        s, cfg = self._state, self.config
        if not (
            cfg.halted
            or cfg.kill_switch_file is not None
            or s.manual
            or s.drawdown_halted
            or s.daily_loss_day
        ):
            return _ACTIVE_STATE  # the common case: nothing below could apply
        if cfg.halted:
            return _HALTED, "halted_setting"
        if self._kill_switch_on(now):
            return _HALTED, "kill_switch_file"
        if s.manual == _HALTED:
            return _HALTED, s.manual_reason or "manual_halt"
        if s.drawdown_halted:
            return _HALTED, "max_drawdown"
        if s.manual == _REDUCING:
            return _REDUCING, s.manual_reason or "manual_reduce"
        if s.daily_loss_day and s.daily_loss_day == s.day:
            return _REDUCING, "daily_loss"
        return _ACTIVE_STATE

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
        # _server_day's cached answer, inline (this runs every bar): ``now``'s epoch seconds
        # (see _epoch_s), then the day while they stay inside it
        if now is not self._now:
            self._now, self._now_s = now, now.timestamp()
        t = self._now_s
        day = self._day if self._day_lo < t < self._day_hi else self._server_day(now)
        changed = False  # each branch below changes the persisted state when it is taken
        if s.day != day:
            s.day, s.day_start_equity = day, equity
            changed = True
        if equity > s.peak_equity:  # what ``max(peak, equity)`` picks, NaN included
            s.peak_equity = equity
            changed = True
        if cfg.daily_loss_pct is not None and s.day_start_equity > 0:
            loss = s.day_start_equity - equity
            if loss >= s.day_start_equity * cfg.daily_loss_pct / 100.0 and s.daily_loss_day != day:
                s.daily_loss_day = day
                s.history.append(f"daily_loss:{day}")
                changed = True
        limit = cfg.max_drawdown_pct
        if (
            limit is not None
            and not s.drawdown_halted
            and s.peak_equity > 0
            and s.peak_equity - equity >= s.peak_equity * limit / 100.0
        ):
            s.drawdown_halted = True
            s.history.append(f"max_drawdown:{day}")
            changed = True
        if changed:
            self._store.save(s)
        return self.trading_state(now)[0]

    def _epoch_s(self, now: datetime) -> float:
        """``now.timestamp()``, kept for the last ``now`` (the same bar asks several times)."""
        if now is not self._now:
            self._now, self._now_s = now, now.timestamp()
        return self._now_s

    def _server_day(self, now: datetime) -> str:
        """The ISO date of ``now`` on the server clock, converting only when the day changes."""
        t = self._epoch_s(now)
        # open bounds: ``t`` is the instant rounded (monotonically), so inside means inside
        if self._day_lo < t < self._day_hi:
            return self._day
        local = self.server_time(now)
        self._day = local.date().isoformat()
        offset = local.utcoffset()
        assert offset is not None
        self._day_lo = self._day_hi = 0.0  # no interval: convert every time on this day
        try:
            # the day at this offset, in UTC; all of it is on this server day if the offset is
            # the same at both ends (no zone changes its offset twice within a day)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=UTC) - offset
            last = start + _LAST_US_OF_DAY
            if (
                self.server_time(start).utcoffset() == offset
                and self.server_time(last).utcoffset() == offset
            ):
                self._day_lo = (start - _EPOCH).total_seconds()
                self._day_hi = self._day_lo + 86_400.0
        except OverflowError:  # a day at the ends of the datetime range
            pass
        return self._day

    def pause(self, until: datetime, reason: str) -> None:
        """No new exposure before ``until`` (market closed, no money, trading disabled...)."""
        self._paused_until, self._pause_reason = until, reason

    def record_order(self, now: datetime) -> None:
        """Count one new order against the rate limit."""
        self._rate.record(self._epoch_s(now))

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
        if action == _HOLD:
            return NO_ORDER
        state, _ = self.trading_state(now)
        if action == _CLOSE:
            reasons = []
            if not self.reconciled:
                reasons.append(RiskReason.NOT_RECONCILED)
            if state == _HALTED:
                reasons.append(RiskReason.HALTED)
            if exposures is not None:
                for e in exposures:  # ``any()`` without a generator
                    if e.symbol == symbol:
                        break
                else:
                    reasons.append(RiskReason.NOTHING_TO_CLOSE)
            if reasons:
                return _denied(tuple(reasons))
            return _APPROVED_CLOSE
        if market is None or equity is None or exposures is None:
            return _INPUTS_UNAVAILABLE
        cfg = self.config
        if cfg is not self._derived_for:
            self._derive(cfg)
        reasons = []
        if not self.reconciled:
            reasons.append(RiskReason.NOT_RECONCILED)
        if state is not _ACTIVE:
            if state == _HALTED:
                reasons.append(RiskReason.HALTED)
            elif state == _REDUCING:
                reasons.append(RiskReason.REDUCING)
        if self._paused_until is not None and now < self._paused_until:
            reasons.append(RiskReason.PAUSED)
        if self._hours_on and not self._in_hours(now):
            reasons.append(RiskReason.OUTSIDE_TRADING_HOURS)
        trade_mode = market.terms.trade_mode
        if trade_mode != _MODE_FULL and not _mode_allows(trade_mode, action):
            reasons.append(RiskReason.TRADE_DISABLED)
        if market.spread_points > cfg.max_spread_points:
            reasons.append(RiskReason.SPREAD_TOO_WIDE)
        mine = []  # this symbol's exposures (a loop: a comprehension is a call in 3.11)
        for e in exposures:
            if e.symbol == symbol:
                mine.append(e)
        if len(mine) >= cfg.max_positions_per_symbol:
            reasons.append(RiskReason.MAX_POSITIONS)
        if len(exposures) >= cfg.max_positions_total:
            reasons.append(RiskReason.MAX_POSITIONS_TOTAL)
        now_s = self._now_s if now is self._now else self._epoch_s(now)
        if not self._rate.allows(now_s):
            reasons.append(RiskReason.RATE_LIMITED)
        volume = self._size(equity, market, reasons)
        if volume is not None and self._caps_on:
            self._caps(volume, market, mine, exposures, reasons)
        if reasons:
            return _denied(tuple(reasons))
        assert volume is not None
        return RiskVerdict(True, volume, _APPROVED)

    def _derive(self, cfg: RiskConfig) -> None:
        """Note which checks ``cfg`` switches on and forget what was sized under another."""
        self._derived_for = cfg
        self._hours_on = bool(cfg.trading_days or cfg.trading_hours)
        self._caps_on = not (
            cfg.max_volume_per_symbol is None
            and cfg.max_volume_total is None
            and cfg.max_notional_per_symbol is None
            and cfg.max_notional_total is None
        )
        self._lot = None

    def _size(self, equity: float, market: MarketView, reasons: list[str]) -> float | None:
        cfg = self.config
        if not cfg.risk_pct > 0:
            # a fixed lot: the same (frozen) terms object comes bar after bar, so size it once
            lot = self._lot
            if lot is None or lot[0] is not market.terms:
                t = market.terms
                if not (t.volume_step > 0 and t.volume_min > 0 and t.volume_max >= t.volume_min):
                    lot = (t, None, RiskReason.INVALID_VOLUME_SPEC)
                else:
                    fixed = _round_lot(cfg.lot_size, t.volume_step, t.volume_min, t.volume_max)
                    lot = (t, fixed, None if fixed is not None else RiskReason.SIZE_BELOW_MIN)
                self._lot = lot
            _, volume, denial = lot
            if denial is not None:
                reasons.append(denial)
            return volume
        stop = market.stop_distance or (market.atr or 0.0) * cfg.atr_sl_mult
        if stop <= 0:
            reasons.append(RiskReason.NO_STOP_DISTANCE)
            return None
        raw = atr_volume(equity, cfg.risk_pct, stop, market)
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
        if not (cfg.trading_days or cfg.trading_hours):
            return True
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
        symbol, volume = p.symbol, float(p.volume)
        m = markets.get(symbol)
        out.append(Exposure(symbol, volume, notional(volume, m) if m else 0.0))
    return out


def _mode_allows(trade_mode: int, action: Action) -> bool:
    if trade_mode == c.SYMBOL_TRADE_MODE_FULL:
        return True
    if trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY:
        return action == _BUY
    if trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY:
        return action == _SELL
    return False
