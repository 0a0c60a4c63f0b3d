"""A paper-trading MT5 terminal that replays recorded bars.

:class:`Mt5Simulator` has the MetaTrader5 module's function names, signatures, result records
and constants, so agent code is the same with ``mt5 = Mt5Simulator(bars)`` as with
``import MetaTrader5 as mt5``.

Model (kept small and documented):

* **Clock.** The clock stands at the open of a bar of the finest timeframe in the data.
  :meth:`Mt5Simulator.advance` moves it to the next bar open; the bar that was forming is then
  closed. ``copy_rates_from_pos(sym, tf, 0, n)`` ends with the *forming* bar, which only shows its
  open (open = high = low = close, tick_volume 1), so nothing of the future leaks;
  ``start_pos=1`` gives closed bars. Coarser timeframes are shown the same way.
* **Quotes.** bid = open of the forming bar (close of the last closed bar when none is forming),
  ask = bid + spread·point with the bar's spread column (points). With no forming bar (data gap
  or end of data) the market is closed for trading.
* **Market orders** (``TRADE_ACTION_DEAL``) fill at ask (buy) / bid (sell), worse by
  ``slippage_points``. A request ``price`` further than ``deviation`` points from the fill is
  requoted. ``type_filling`` must be allowed by the symbol's ``filling_mode`` flags (1 = FOK,
  2 = IOC); ``ORDER_FILLING_RETURN`` is always accepted, BOC never for market orders.
  ``TRADE_ACTION_SLTP`` modifies a position's stops. Pending orders are not simulated.
* **Account.** Hedging (each deal opens its own position unless ``position`` names one to close),
  no commission. Margin = volume·contract_size/leverage in the base currency, converted
  with the price when the account currency is the quote currency (EURUSD on a USD account);
  hedged positions are not netted (conservative).
* **Profit** of a closing deal = (close − open)·volume·contract_size for a buy (the negative for
  a sell), in the quote currency; divided by the close price when the account currency is the
  base currency (USDJPY on a USD account). Rounded to cents like MT5.
* **Stops.** On each :meth:`advance` every open position is checked against the bar that just
  closed: a buy (closed at bid) against low/high, a sell (closed at ask) against low/high + spread.
  When SL and TP are both inside one bar the SL is taken (conservative); a bar that opens beyond
  a stop fills at its open.
* **Swaps** (``SymbolSpec.swap_long`` / ``swap_short``, points per lot, ``SYMBOL_SWAP_MODE_POINTS``)
  are charged to open positions at each daily rollover (00:00 of the replay clock, which is the
  broker's server clock when the bars carry server times) that :meth:`advance` passes: one night
  for the day that ended, three for ``swap_rollover3days`` (Wednesday by default, as brokers
  charge the weekend then), none for Saturday and Sunday. A position's ``swap`` accumulates;
  the closing deal carries it (pro rata on a partial close) and the balance takes it.
* **Sessions.** ``SymbolSpec.sessions`` lists trade sessions ``(weekday, start minute, end
  minute)`` on the replay clock (weekday 0 = Monday); outside them (and without a forming bar)
  ``order_send`` answers ``TRADE_RETCODE_MARKET_CLOSED``. Empty: open whenever a bar forms.
* **Ticks.** ``copy_ticks_from`` / ``copy_ticks_range`` replay recorded ticks (``ticks=``) or, by
  default, ticks generated from the finest bars (open, the nearer extreme, the other extreme,
  close, a quarter bar apart; bid from the bar, ask = bid + spread), as ``TICK_DTYPE`` records
  with the package's ``TICK_FLAG_*`` flags; only ticks at or before the clock are visible.
  Fills still use the bar quotes above.
* **Faults.** :class:`FaultConfig` scripts or draws (seeded, one draw per ``order_send``)
  requotes, rejects, timeouts (``order_send`` returns ``None``; with ``timeout_executes`` the
  order was filled anyway, the ambiguous case) and disconnects (every call fails until
  :meth:`initialize`).
"""

from __future__ import annotations

import bisect
import fnmatch
import functools
import math
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.domain import Timeframe, to_timeframe
from live_agent import mt5_constants as c
from live_agent.mt5_types import (
    RATES_DTYPE,
    TICK_DTYPE,
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)

_REQUEST_KEYS = frozenset(TradeRequest._fields)
# what a request that leaves a key out means
_REQUEST_DEFAULTS: dict[str, Any] = {
    "action": 0,
    "magic": 0,
    "order": 0,
    "symbol": "",
    "volume": 0.0,
    "price": 0.0,
    "stoplimit": 0.0,
    "sl": 0.0,
    "tp": 0.0,
    "deviation": 0,
    "type": 0,
    "type_filling": c.ORDER_FILLING_FOK,
    "type_time": c.ORDER_TIME_GTC,
    "expiration": 0,
    "comment": "",
    "position": 0,
    "position_by": 0,
}
_EMPTY_BOOK: tuple[tuple[TradePosition, ...], float, float] = ((), 0, 0)
_ORDER_REASON = {c.DEAL_REASON_SL: c.ORDER_REASON_SL, c.DEAL_REASON_TP: c.ORDER_REASON_TP}
_NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
_OK = (c.RES_S_OK, "Success")
_EPS = 1e-9
_TICK_FLAGS = c.TICK_FLAG_BID | c.TICK_FLAG_ASK  # what a quote tick carries
_UNQUOTED: Any = object()  # not computed yet in this clock step (None: no quote)
_RATE_NAMES: tuple[str, ...] = RATES_DTYPE.names or ()
_RATE_SIZE = RATES_DTYPE.itemsize
_TIME, _OPEN, _HIGH, _LOW, _CLOSE, _TICK_VOLUME, _SPREAD, _REAL_VOLUME = (
    _RATE_NAMES.index(k)
    for k in ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
)
# one rate record from the bytes as Python scalars, what ``ndarray.item`` gives at half its cost
_RATE_STRUCT = struct.Struct(
    "<"
    + "".join(
        {"i4": "i", "i8": "q", "u8": "Q", "f8": "d"}[RATES_DTYPE[k].str[1:]] for k in _RATE_NAMES
    )
)
if _RATE_STRUCT.size != _RATE_SIZE:  # pragma: no cover - a padded dtype
    raise ImportError("RATES_DTYPE is not packed: the rate struct does not match it")
_unpack_rate = _RATE_STRUCT.unpack_from
_AI = {name: i for i, name in enumerate(AccountInfo._fields)}
_AI_BALANCE, _AI_PROFIT, _AI_EQUITY = _AI["balance"], _AI["profit"], _AI["equity"]
_AI_MARGIN, _AI_MARGIN_FREE, _AI_MARGIN_LEVEL = (
    _AI["margin"],
    _AI["margin_free"],
    _AI["margin_level"],
)
_SI = {name: i for i, name in enumerate(SymbolInfo._fields)}
_SI_SELECT, _SI_VISIBLE, _SI_TIME, _SI_SPREAD = (
    _SI[k] for k in ("select", "visible", "time", "spread")
)
_SI_BID, _SI_BIDHIGH, _SI_BIDLOW = _SI["bid"], _SI["bidhigh"], _SI["bidlow"]
_SI_ASK, _SI_ASKHIGH, _SI_ASKLOW = _SI["ask"], _SI["askhigh"], _SI["asklow"]
_SI_TICK_VALUE = _SI["trade_tick_value"]
_SI_TICK_VALUE_PROFIT = _SI["trade_tick_value_profit"]
_SI_TICK_VALUE_LOSS = _SI["trade_tick_value_loss"]
_TP_PRICE_CURRENT, _TP_PROFIT = (
    TradePosition._fields.index(k) for k in ("price_current", "profit")
)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Contract specification of one simulated symbol (what ``symbol_info`` reports)."""

    digits: int = 5
    contract_size: float = 100_000.0
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL
    trade_exemode: int = c.SYMBOL_TRADE_EXECUTION_MARKET
    stops_level: int = 0
    swap_long: float = 0.0  # points per lot per night (negative: charged)
    swap_short: float = 0.0
    swap_rollover3days: int = c.DAY_OF_WEEK_WEDNESDAY  # MT5's day numbers (Sunday = 0)
    sessions: tuple[tuple[int, int, int], ...] = ()  # (weekday, start min, end min); () = always
    currency_base: str = "EUR"
    currency_profit: str = "USD"
    currency_margin: str = "EUR"
    description: str = ""

    @property
    def point(self) -> float:
        return _point(self.digits)

    @classmethod
    def for_symbol(cls, symbol: str, **overrides: Any) -> SymbolSpec:
        """A forex-like default: 5 digits (3 for JPY pairs), base/quote from the name."""
        base, quote = symbol[:3].upper(), symbol[3:6].upper() or "USD"
        values: dict[str, Any] = {
            "digits": 3 if "JPY" in symbol.upper() else 5,
            "currency_base": base,
            "currency_profit": quote,
            "currency_margin": base,
            "description": f"{base} vs {quote}",
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault injection for ``order_send``; deterministic for a given ``seed``.

    ``scripted`` outcomes are used first, one per ``order_send``: a retcode (``DONE`` means
    "no fault") or ``None`` for a timeout. After that one uniform draw per call picks, in this
    order, disconnect, timeout, requote, reject, or no fault.
    """

    seed: int = 0
    disconnect_prob: float = 0.0
    timeout_prob: float = 0.0
    requote_prob: float = 0.0
    reject_prob: float = 0.0
    timeout_executes: bool = False
    scripted: tuple[int | None, ...] = ()


@dataclass(slots=True)
class _Position:
    ticket: int
    time: int
    type: int
    magic: int
    reason: int
    volume: float
    price_open: float
    sl: float
    tp: float
    symbol: str
    comment: str
    time_update: int
    swap: float = 0.0
    # the record's fields as last filled in (price_current and profit move with every book)
    # and the margin; None until the next book after a change (see :meth:`changed`)
    fields: list[Any] | None = None
    margin: float = 0.0
    # what :meth:`Mt5Simulator._profit` looks up per call, fixed for the position's life: the
    # sign of its profit, the symbol's contract size and profit conversion (see
    # ``Mt5Simulator._contract``)
    direction: float = field(init=False)
    contract_size: float = field(kw_only=True)
    per_close: bool = field(kw_only=True)

    def __post_init__(self) -> None:
        self.direction = 1.0 if self.type == c.POSITION_TYPE_BUY else -1.0

    def profit_at(self, close: float, volume: float) -> float:
        """:meth:`Mt5Simulator._profit` of ``volume`` of this position closed at ``close``
        (the same operations in the same order, from the terms fixed at open)."""
        profit = self.direction * (close - self.price_open) * volume * self.contract_size
        if self.per_close:
            profit /= close
        return _round(profit, 2, 100.0)

    def changed(self) -> None:
        """Drop the cached record fields: volume, stops, swap or time_update moved."""
        self.fields = None


@dataclass(slots=True)
class _Series:
    timeframe: Timeframe
    rates: np.ndarray  # RATES_DTYPE, sorted by time
    times: np.ndarray = field(init=False)
    time_list: list[int] = field(init=False)  # the times as ints: cheaper to index one by one
    seconds: int = field(init=False)  # the bar length
    mt5_timeframe: int = field(init=False)  # the timeframe as a plain int (a cheaper dict key)
    raw: bytearray = field(init=False)  # the rates' bytes: sliced as bytes, a fifth the cost

    def __post_init__(self) -> None:
        self.rates = np.ascontiguousarray(self.rates)
        self.raw = bytearray(self.rates.view(np.uint8).data)
        # contiguous: searchsorted on the strided field view copies it on every call
        self.times = np.ascontiguousarray(self.rates["time"])
        self.time_list = self.times.tolist()
        self.seconds = self.timeframe.minutes * 60
        self.mt5_timeframe = int(self.timeframe)


class _Fault:
    NONE = "none"
    DISCONNECT = "disconnect"
    TIMEOUT = "timeout"
    REQUOTE = "requote"
    REJECT = "reject"


class Mt5Simulator:
    """A simulated MT5 terminal over recorded bars (see the module docstring for the model)."""

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        specs: Mapping[str, SymbolSpec] | None = None,
        balance: float = 10_000.0,
        leverage: int = 100,
        currency: str = "USD",
        slippage_points: int = 0,
        faults: FaultConfig | None = None,
        start_bar: int = 1,
        login: int = 10_000_001,
        ticks: pd.DataFrame | None = None,
    ) -> None:
        """``bars``: columns symbol, timeframe (name, MT5 value or Timeframe), time (UTC), OHLC,
        tick_volume, spread (points), real_volume. ``start_bar``: how many bars of the clock
        timeframe are already closed when the replay starts. ``ticks``: recorded ticks (symbol,
        time_msc, bid, ask; optional last, volume, flags, volume_real); generated from the bars
        when None."""
        self._series = _load_series(bars)
        if not self._series:
            raise ValueError("bars is empty: the simulator needs at least one bar")
        self._symbols = sorted({sym for sym, _ in self._series})
        self._specs = {s: (specs or {}).get(s) or SymbolSpec.for_symbol(s) for s in self._symbols}
        # per symbol: digits, point and the scale for :func:`_round` (cheaper than the spec's)
        self._rounding = {
            s: (spec.digits, spec.point, _scale(spec.digits)) for s, spec in self._specs.items()
        }
        self._quote_series = {
            s: min(
                (ser for (sym, _), ser in self._series.items() if sym == s),
                key=lambda ser: ser.seconds,
            )
            for s in self._symbols
        }
        # per symbol, what :meth:`_quote` reads: the quote series, its key, the rounding, and
        # whether the series' opens and closes are already at the symbol's digits (recorded
        # prices mostly are: the bid needs no rounding then; a numpy point makes numpy asks)
        self._quote_source: dict[str, tuple[_Series, tuple[str, int], int, float, float, bool]]
        self._quote_source = {}
        for s, ser in self._quote_series.items():
            digits, point, scale = self._rounding[s]
            rounded = (
                type(point) is float
                and _is_rounded(ser.rates["open"], scale)
                and _is_rounded(ser.rates["close"], scale)
            )
            self._quote_source[s] = (ser, (s, ser.mt5_timeframe), digits, point, scale, rounded)
        clock_seconds = min(ser.seconds for ser in self._quote_series.values())
        clock_times = np.unique(
            np.concatenate(
                [ser.times for ser in self._quote_series.values() if ser.seconds == clock_seconds]
            )
        )
        # the bar opens of the clock as ints, and the close of the last bar
        self._clock: list[int] = np.append(clock_times, clock_times[-1] + clock_seconds).tolist()
        if not 0 <= start_bar < len(self._clock):
            raise ValueError(f"start_bar must be in [0, {len(self._clock) - 1}]")
        self._index = start_bar
        self._now_cache = self._clock[start_bar]
        # per clock step: quotes and SymbolInfo records only change when the clock moves
        self._quotes: dict[str, tuple[float, float, int, bool] | None] = {}
        self._infos: dict[str, SymbolInfo] = {}
        self._info_fixed: dict[str, list[Any]] = {}  # per symbol: the fields that never move
        self._visible_now: dict[tuple[str, int], tuple[_Series, int]] = {}
        # kept across clock steps: the series of a (symbol, timeframe) key, and how many of its
        # bars had opened at the last look (the clock only moves forward)
        self._series_at: dict[tuple[str, int], _Series] = {}
        self._opened_count: dict[tuple[str, int], int] = {}
        # bumped by every change of the account (clock, deals, stops): keys the cached records
        self._version = 0
        self._account: tuple[int, AccountInfo | None] = (-1, None)
        # (balance, positions, raw profit, raw margin) of the last record built, and the record
        self._account_last: tuple[tuple[float, int, float, float], AccountInfo] | None = None
        # the open positions' records, floating profit with swaps and margin (see _book)
        self._position_book: tuple[int, tuple[tuple[TradePosition, ...], float, float]] = (
            -1,
            _EMPTY_BOOK,
        )
        self._balance = float(balance)
        self._leverage = int(leverage)
        self._currency = currency
        # per symbol: the contract size, and whether a profit in the quote currency is divided
        # by the close price to be in the account currency (the base currency is the account's)
        self._contract = {
            s: (
                spec.contract_size,
                spec.currency_profit != currency and spec.currency_base == currency,
            )
            for s, spec in self._specs.items()
        }
        # per symbol: the ``type_filling`` values its ``filling_mode`` accepts (a set lookup)
        self._fillings = {
            s: frozenset(
                f
                for f in (c.ORDER_FILLING_FOK, c.ORDER_FILLING_IOC, c.ORDER_FILLING_RETURN)
                if _filling_ok(f, spec.filling_mode)
            )
            for s, spec in self._specs.items()
        }
        self._slippage = int(slippage_points)
        self._faults = faults or FaultConfig()
        self._rng = random.Random(self._faults.seed)
        f = self._faults
        odds = (
            (_Fault.DISCONNECT, f.disconnect_prob),
            (_Fault.TIMEOUT, f.timeout_prob),
            (_Fault.REQUOTE, f.requote_prob),
            (_Fault.REJECT, f.reject_prob),
        )
        # the kinds in the order one draw picks them; () when every probability is 0
        self._fault_odds = odds if any(prob for _, prob in odds) else ()
        self._script = list(self._faults.scripted)
        self._login = login
        self._account_fixed: list[Any] = list(self._fixed_account_info())
        self._connected = False
        self._last_error: tuple[int, str] = _NO_IPC
        self._selected = set(self._symbols)
        self._positions: dict[int, _Position] = {}
        self._orders: list[TradeOrder] = []
        self._deals: list[TradeDeal] = []
        self._next_order = 100_000_001
        self._next_deal = 200_000_001
        self._request_id = 0
        self._recorded_ticks = _load_ticks(ticks) if ticks is not None else None
        self._ticks: dict[str, np.ndarray] = {}
        self._record_deal(
            order=0,
            type_=c.DEAL_TYPE_BALANCE,
            entry=c.DEAL_ENTRY_IN,
            magic=0,
            position_id=0,
            reason=c.DEAL_REASON_CLIENT,
            volume=0.0,
            price=0.0,
            profit=self._balance,
            symbol="",
            comment="initial deposit",
        )

    # ------------------------------------------------------------------ constants
    def __getattr__(self, name: str) -> int:
        """MT5 constants as attributes (``sim.TRADE_RETCODE_DONE``), like the real module."""
        try:
            return c.PACKAGE_CONSTANTS[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}") from None

    # ------------------------------------------------------------------ replay clock
    @property
    def now(self) -> datetime:
        """The simulated time: the open of the forming bar of the clock timeframe."""
        return datetime.fromtimestamp(self._clock[self._index], tz=UTC)

    @property
    def finished(self) -> bool:
        """True when no bar is left to replay."""
        return self._index >= len(self._clock) - 1

    @property
    def steps_left(self) -> int:
        """How many times :meth:`advance` can still move the clock."""
        return len(self._clock) - 1 - self._index

    def advance(self) -> bool:
        """Close the forming bar and move to the next one; checks SL/TP. False at the end."""
        index = self._index + 1
        try:
            now = self._clock[index]
        except IndexError:  # the end of the data (cheaper than a len check per step)
            return False
        old = self._now_cache
        self._index = index
        self._now_cache = now
        self._version += 1
        self._quotes.clear()
        self._infos.clear()
        self._visible_now.clear()
        if self._positions:  # stops and swaps only concern open positions
            self._check_stops(old, now)
            if old // 86_400 != now // 86_400:  # a rollover passed (not most clock steps)
                self._charge_swaps(old, now)
        return True

    @property
    def _now_s(self) -> int:
        return self._now_cache

    # ------------------------------------------------------------------ session
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        """Connect to the (simulated) terminal; also reconnects after a disconnect."""
        if login is not None and login != self._login:
            self._last_error = (c.RES_E_AUTH_FAILED, "Authorization failed")
            return False
        self._connected = True
        self._ok()
        return True

    def login(
        self,
        login: int,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        """Log in to the simulated account (only its own login number is accepted)."""
        if not self._connected:
            self._last_error = _NO_IPC
            return False
        if login != self._login:
            self._last_error = (c.RES_E_AUTH_FAILED, "Authorization failed")
            return False
        self._ok()
        return True

    def shutdown(self) -> None:
        """Disconnect."""
        self._connected = False

    def last_error(self) -> tuple[int, str]:
        """``(code, description)`` of the last call, codes ``RES_*``."""
        return self._last_error

    def version(self) -> tuple[int, int, str] | None:
        """``(terminal version, build, build date)``."""
        if not self._live():
            return None
        return (500, 0, "Chaintrade simulator")

    def terminal_info(self) -> TerminalInfo | None:
        """State of the simulated terminal."""
        if not self._live():
            return None
        return TerminalInfo(
            community_account=False,
            community_connection=False,
            connected=True,
            dlls_allowed=False,
            trade_allowed=True,
            tradeapi_disabled=False,
            email_enabled=False,
            ftp_enabled=False,
            notifications_enabled=False,
            mqid=False,
            build=0,
            maxbars=100_000,
            codepage=0,
            ping_last=0,
            community_balance=0.0,
            retransmission=0.0,
            company="Chaintrade",
            name="Chaintrade MT5 simulator",
            language="English",
            path="",
            data_path="",
            commondata_path="",
        )

    def account_info(self) -> AccountInfo | None:
        """Balance, equity and margin of the simulated hedging account."""
        if not self._connected:
            self._last_error = _NO_IPC
            return None
        version = self._version
        cached = self._account
        if cached[0] == version:
            return cached[1]
        # the record now: the fixed fields with balance, profit, equity and margins filled (the
        # last record again when its inputs did not move, e.g. no position open)
        book = self._position_book  # :meth:`_book`'s own cache first
        records, raw_profit, raw_margin = book[1] if book[0] == version else self._book()
        balance, count = self._balance, len(records)
        inputs = (balance, count, raw_profit, raw_margin)
        last = self._account_last
        if last is not None and last[0] == inputs:
            self._account = (version, last[1])
            return last[1]
        # overwritten below where it moved (balance and margin mostly stay: rounding is costly)
        values = self._account_fixed
        old_balance, old_count, _, old_margin = last[0] if last else (None, None, None, None)
        if old_balance != balance:
            values[_AI_BALANCE] = _round(balance, 2, 100.0)
        if old_count != count or old_margin != raw_margin:
            values[_AI_MARGIN] = _round(raw_margin, 2, 100.0)
        profit = _round(raw_profit, 2, 100.0)
        margin = values[_AI_MARGIN]
        equity = _round(balance + profit, 2, 100.0)
        values[_AI_PROFIT] = profit
        values[_AI_EQUITY] = equity
        values[_AI_MARGIN_FREE] = _round(equity - margin, 2, 100.0)
        values[_AI_MARGIN_LEVEL] = _round(equity / margin * 100.0, 2, 100.0) if margin else 0.0
        record = tuple.__new__(AccountInfo, values)
        self._account_last = (inputs, record)
        self._account = (version, record)
        return record

    def _fixed_account_info(self) -> AccountInfo:
        """The fields of the account record that never move (the moving ones are 0)."""
        return AccountInfo(
            login=self._login,
            trade_mode=c.ACCOUNT_TRADE_MODE_DEMO,
            leverage=self._leverage,
            limit_orders=0,
            margin_so_mode=c.ACCOUNT_STOPOUT_MODE_PERCENT,
            trade_allowed=True,
            trade_expert=True,
            margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING,
            currency_digits=2,
            fifo_close=False,
            balance=0.0,
            credit=0.0,
            profit=0.0,
            equity=0.0,
            margin=0.0,
            margin_free=0.0,
            margin_level=0.0,
            margin_so_call=50.0,
            margin_so_so=30.0,
            margin_initial=0.0,
            margin_maintenance=0.0,
            assets=0.0,
            liabilities=0.0,
            commission_blocked=0.0,
            name="Chaintrade simulator",
            server="Chaintrade-Simulator",
            currency=self._currency,
            company="Chaintrade",
        )

    # ------------------------------------------------------------------ symbols
    def symbols_total(self) -> int:
        """Number of symbols in the replay."""
        return len(self._symbols) if self._live() else 0

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        """``SymbolInfo`` of every symbol (matching ``group``, e.g. ``"*USD*,!EUR*"``)."""
        if not self._live():
            return None
        infos = (self._symbol_info(s) for s in self._symbols if _group_match(s, group))
        return tuple(i for i in infos if i is not None)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        """Show or hide a symbol in Market Watch."""
        if not self._live():
            return False
        if symbol not in self._specs:
            self._last_error = (c.RES_E_NOT_FOUND, f"Symbol {symbol} not found")
            return False
        (self._selected.add if enable else self._selected.discard)(symbol)
        self._infos.pop(symbol, None)
        return True

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        """Specification and current quote of ``symbol``; None for an unknown symbol."""
        if not self._connected:
            self._last_error = _NO_IPC
            return None
        return self._symbol_info(symbol)

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        """The current bid/ask of ``symbol``."""
        if not self._connected:
            self._last_error = _NO_IPC
            return None
        quote = self._quote(symbol)
        if quote is None:
            self._last_error = (c.RES_E_NOT_FOUND, f"No quotes for {symbol}")
            return None
        now = self._now_cache
        # positional (as ``_make``): the namedtuple's own __new__ costs an extra call
        return tuple.__new__(Tick, (now, quote[0], quote[1], 0.0, 0, now * 1000, _TICK_FLAGS, 0.0))

    # ------------------------------------------------------------------ rates
    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> np.ndarray | None:
        """``count`` bars ending ``start_pos`` bars back from the forming bar (pos 0)."""
        if not self._connected:  # :meth:`_visible` inlined: the agent polls this every bar
            self._last_error = _NO_IPC
            return None
        key = (symbol, timeframe)
        visible = self._visible_now.get(key)
        if visible is None:  # the first look of this clock step
            series = self._series_at.get(key)
            visible = (
                self._look_up(symbol, timeframe) if series is None else self._opened(key, series)
            )
            if visible is None:
                return None
        series, started = visible
        end = started - start_pos
        if start_pos < 0 or count <= 0 or end <= 0:
            self._last_error = (c.RES_E_INVALID_PARAMS, "Invalid start_pos or count")
            return None
        self._last_error = _OK
        lo = end - count if end > count else 0
        if start_pos:  # closed bars only (the agent's poll): :meth:`_slice` without its check
            return np.frombuffer(series.raw[lo * _RATE_SIZE : end * _RATE_SIZE], RATES_DTYPE)
        return self._slice(series, started, lo, end)

    def copy_rates_from(
        self, symbol: str, timeframe: int, date_from: datetime | int, count: int
    ) -> np.ndarray | None:
        """``count`` bars opened at or before ``date_from``."""
        visible = self._visible(symbol, timeframe)
        if visible is None:
            return None
        series, started = visible
        end = int(np.searchsorted(series.times[:started], _to_seconds(date_from), side="right"))
        self._ok()
        return self._slice(series, started, max(0, end - count), end)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime | int, date_to: datetime | int
    ) -> np.ndarray | None:
        """Bars opened in ``[date_from, date_to]``."""
        visible = self._visible(symbol, timeframe)
        if visible is None:
            return None
        series, started = visible
        times = series.times[:started]
        lo = int(np.searchsorted(times, _to_seconds(date_from), side="left"))
        hi = int(np.searchsorted(times, _to_seconds(date_to), side="right"))
        self._ok()
        return self._slice(series, started, lo, max(lo, hi))

    # ------------------------------------------------------------------ positions and orders
    def positions_total(self) -> int:
        """Number of open positions."""
        return len(self._positions) if self._live() else 0

    def positions_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        """Open positions, filtered by symbol, group or ticket."""
        if not self._connected:
            self._last_error = _NO_IPC
            return None
        records = self._book()[0]
        if symbol is None and ticket is None and not group:
            return records
        return tuple(
            p
            for p in records
            if (symbol is None or p.symbol == symbol)
            and (ticket is None or p.ticket == ticket)
            and _group_match(p.symbol, group)
        )

    def orders_total(self) -> int:
        """Number of pending orders (always 0: pending orders are not simulated)."""
        return 0

    def orders_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        """Pending orders (always empty: pending orders are not simulated)."""
        return () if self._live() else None

    def history_orders_total(self, date_from: datetime | int, date_to: datetime | int) -> int:
        """Number of history orders in the period."""
        found = self.history_orders_get(date_from, date_to)
        return len(found) if found is not None else 0

    def history_orders_get(
        self,
        date_from: datetime | int | None = None,
        date_to: datetime | int | None = None,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        """Filled (and rejected-by-stop) orders by period, group, ticket or position."""
        if not self._live():
            return None
        lo, hi = _period(date_from, date_to)
        return tuple(
            o
            for o in self._orders
            if (ticket is None or o.ticket == ticket)
            and (position is None or o.position_id == position)
            and lo <= o.time_setup <= hi
            and _group_match(o.symbol, group)
        )

    def history_deals_total(self, date_from: datetime | int, date_to: datetime | int) -> int:
        """Number of deals in the period."""
        found = self.history_deals_get(date_from, date_to)
        return len(found) if found is not None else 0

    def history_deals_get(
        self,
        date_from: datetime | int | None = None,
        date_to: datetime | int | None = None,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """Deals by period, group, ticket (the order's) or position."""
        if not self._live():
            return None
        lo, hi = _period(date_from, date_to)
        return tuple(
            d
            for d in self._deals
            if (ticket is None or d.order == ticket)
            and (position is None or d.position_id == position)
            and lo <= d.time <= hi
            and (not d.symbol or _group_match(d.symbol, group))
        )

    # ------------------------------------------------------------------ trading
    def order_calc_margin(
        self, action: int, symbol: str, volume: float, price: float
    ) -> float | None:
        """Margin in account currency for ``volume`` lots at ``price``."""
        if not self._live() or symbol not in self._specs:
            return None
        return round(self._margin(symbol, volume, price), 2)

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        """Profit in account currency of a buy/sell (``action`` = ORDER_TYPE_*) trade."""
        if not self._live() or symbol not in self._specs:
            return None
        return self._profit(symbol, action, volume, price_open, price_close)

    def order_check(self, request: Mapping[str, Any]) -> OrderCheckResult | None:
        """Check a request without sending it; ``retcode`` 0 means it would be accepted."""
        if not self._live():
            return None
        req = self._parse_request(request)
        if req is None:
            return None
        retcode, comment, _fill, margin = self._validate(req)
        account = self.account_info()
        assert account is not None
        margin_after = account.margin + (margin if retcode == 0 else 0.0)
        return OrderCheckResult(
            retcode=retcode,
            balance=account.balance,
            equity=account.equity,
            profit=account.profit,
            margin=round(margin_after, 2),
            margin_free=round(account.equity - margin_after, 2),
            margin_level=round(account.equity / margin_after * 100.0, 2) if margin_after else 0.0,
            comment=comment if retcode else "Done",
            request=req,
        )

    def order_send(self, request: Mapping[str, Any]) -> OrderSendResult | None:
        """Send a trade request; ``None`` on a lost connection or a timeout (see FaultConfig)."""
        if not self._connected:  # :meth:`_live`, inlined
            self._last_error = _NO_IPC
            return None
        req = self._parse_request(request)
        if req is None:
            return None
        self._request_id += 1
        if self._script or self._fault_odds:  # else :meth:`_next_fault` gives no fault
            fault, scripted = self._next_fault()
            if fault == _Fault.DISCONNECT:
                self._connected = False
                self._last_error = _NO_IPC
                return None
            if fault == _Fault.TIMEOUT:
                if self._faults.timeout_executes:
                    self._execute(req)
                self._last_error = (c.RES_E_INTERNAL_FAIL_TIMEOUT, "Terminal: timeout")
                return None
            if fault == _Fault.REQUOTE:
                return self._result(req, c.TRADE_RETCODE_REQUOTE, "Requote")
            if fault == _Fault.REJECT:
                return self._result(req, scripted or c.TRADE_RETCODE_REJECT, "Request rejected")
        return self._execute(req)

    # ------------------------------------------------------------------ internals: state
    def _live(self) -> bool:
        if not self._connected:
            self._last_error = _NO_IPC
            return False
        return True

    def _ok(self) -> None:
        self._last_error = _OK

    def _visible(self, symbol: str, timeframe: int) -> tuple[_Series, int] | None:
        """The series and how many of its bars have opened by now (the last may be forming)."""
        if not self._connected:
            self._last_error = _NO_IPC
            return None
        found = self._visible_now.get((symbol, timeframe))
        return found if found is not None else self._look_up(symbol, timeframe)

    def _look_up(self, symbol: str, timeframe: int) -> tuple[_Series, int] | None:
        """:meth:`_visible` at the first look of a clock step."""
        key = (symbol, timeframe)
        series = self._series_at.get(key)
        if series is None:
            try:
                tf = Timeframe(int(timeframe))
            except ValueError:
                self._last_error = (c.RES_E_INVALID_PARAMS, f"Unsupported timeframe {timeframe}")
                return None
            series = self._series.get((symbol, tf))
            if series is None:
                self._last_error = (c.RES_E_NOT_FOUND, f"No history for {symbol} {tf.name}")
                return None
            self._series_at[key] = series
        return self._opened(key, series)

    def _opened(self, key: tuple[str, int], series: _Series) -> tuple[_Series, int]:
        """``series`` and how many of its bars have opened by now, at the first look of a clock
        step (``_visible_now`` keeps it for the others): one or two comparisons from the count
        of the last look (the common case: at most one bar opened since), else a search."""
        times, now = series.time_list, self._now_cache
        opened = self._opened_count.get(key)
        n = len(times)
        if opened is None or (opened + 1 < n and times[opened + 1] <= now):
            opened = bisect.bisect_right(times, now)
        elif opened < n and times[opened] <= now:
            opened += 1
        self._opened_count[key] = opened
        found = self._visible_now[key] = (series, opened)
        return found

    def _slice(self, series: _Series, started: int, lo: int, hi: int) -> np.ndarray:
        """A copy of visible bars ``[lo, hi)``; the forming bar shows only its open."""
        # a new array over a copy of the bytes (ndarray.copy of this packed dtype is slow, and
        # ndarray.view checks the dtype in Python); a bytearray slice is that copy
        out = np.frombuffer(series.raw[lo * _RATE_SIZE : hi * _RATE_SIZE], RATES_DTYPE)
        if (
            hi == started
            and hi > lo
            and series.time_list[hi - 1] + series.seconds > self._now_cache
        ):
            row = list(_unpack_rate(series.raw, (hi - 1) * _RATE_SIZE))
            row[_HIGH] = row[_LOW] = row[_CLOSE] = row[_OPEN]
            row[_TICK_VOLUME] = 1
            row[_REAL_VOLUME] = 0
            out[-1] = tuple(row)
        return out

    def _quote(self, symbol: str) -> tuple[float, float, int, bool] | None:
        """``(bid, ask, spread_points, tradeable)`` now (computed once per clock step)."""
        quote = self._quotes.get(symbol, _UNQUOTED)
        if quote is not _UNQUOTED:
            return quote
        # from the forming bar of the quote series (tradeable), else the last closed one (not
        # tradeable); None before the first bar
        quote = None
        source = self._quote_source.get(symbol)
        if source is not None:
            series, key, digits, point, scale, rounded = source
            started = (self._visible_now.get(key) or self._opened(key, series))[1]
            if started:
                bar = _unpack_rate(series.raw, (started - 1) * _RATE_SIZE)  # Python scalars
                forming = bar[_TIME] + series.seconds > self._now_cache
                bid = bar[_OPEN] if forming else bar[_CLOSE]
                spread = bar[_SPREAD]
                if rounded:  # ``_round`` gives these prices back (and ``bid + 0.0`` is bid)
                    ask = _round(bid + spread * point, digits, scale) if spread else bid
                else:
                    ask = _round(bid + spread * point, digits, scale)
                    bid = _round(bid, digits, scale)
                quote = (bid, ask, spread, forming)
        self._quotes[symbol] = quote
        return quote

    def _symbol_info(self, symbol: str) -> SymbolInfo | None:
        """The record of ``symbol`` now (built once per clock step): its fixed part with the
        quote fields filled in."""
        info = self._infos.get(symbol)
        if info is not None:
            self._last_error = _OK
            return info
        spec = self._specs.get(symbol)
        if spec is None:
            self._last_error = (c.RES_E_NOT_FOUND, f"Symbol {symbol} not found")
            return None
        quote = self._quote(symbol)
        bid, ask, spread, _ = quote if quote is not None else (0.0, 0.0, 0, False)
        # the fixed fields, and the moving ones as last filled in: each is overwritten below
        values = self._info_fixed.get(symbol)
        if values is None:
            values = self._info_fixed[symbol] = list(self._fixed_symbol_info(symbol, spec))
        selected = symbol in self._selected
        values[_SI_SELECT] = values[_SI_VISIBLE] = selected
        values[_SI_TIME] = self._now_cache
        values[_SI_SPREAD] = spread
        values[_SI_BID] = values[_SI_BIDHIGH] = values[_SI_BIDLOW] = bid
        values[_SI_ASK] = values[_SI_ASKHIGH] = values[_SI_ASKLOW] = ask
        contract_size, per_close = self._contract[symbol]
        if per_close:  # the tick value moves with the bid (else it is a fixed field)
            tick_value = contract_size * self._rounding[symbol][1]
            if bid:
                tick_value /= bid
            values[_SI_TICK_VALUE] = values[_SI_TICK_VALUE_PROFIT] = tick_value
            values[_SI_TICK_VALUE_LOSS] = tick_value
        self._last_error = _OK
        info = self._infos[symbol] = tuple.__new__(SymbolInfo, values)  # ``_make``, unchecked
        return info

    def _fixed_symbol_info(self, symbol: str, spec: SymbolSpec) -> SymbolInfo:
        """The fields of ``symbol``'s record that do not move with the quote (those are 0; the
        tick value moves only for a profit converted at the bid)."""
        tick_value = self._contract[symbol][0] * self._rounding[symbol][1]
        return SymbolInfo(
            custom=True,
            chart_mode=c.SYMBOL_CHART_MODE_BID,
            select=False,
            visible=False,
            session_deals=0,
            session_buy_orders=0,
            session_sell_orders=0,
            volume=0,
            volumehigh=0,
            volumelow=0,
            time=0,
            digits=spec.digits,
            spread=0,
            spread_float=True,
            ticks_bookdepth=0,
            trade_calc_mode=c.SYMBOL_CALC_MODE_FOREX,
            trade_mode=spec.trade_mode,
            start_time=0,
            expiration_time=0,
            trade_stops_level=spec.stops_level,
            trade_freeze_level=0,
            trade_exemode=spec.trade_exemode,
            swap_mode=c.SYMBOL_SWAP_MODE_POINTS
            if spec.swap_long or spec.swap_short
            else c.SYMBOL_SWAP_MODE_DISABLED,
            swap_rollover3days=spec.swap_rollover3days,
            margin_hedged_use_leg=False,
            expiration_mode=1,
            filling_mode=spec.filling_mode,
            order_mode=127,
            order_gtc_mode=c.SYMBOL_ORDERS_GTC,
            option_mode=0,
            option_right=0,
            bid=0.0,
            bidhigh=0.0,
            bidlow=0.0,
            ask=0.0,
            askhigh=0.0,
            asklow=0.0,
            last=0.0,
            lasthigh=0.0,
            lastlow=0.0,
            volume_real=0.0,
            volumehigh_real=0.0,
            volumelow_real=0.0,
            option_strike=0.0,
            point=spec.point,
            trade_tick_value=tick_value,
            trade_tick_value_profit=tick_value,
            trade_tick_value_loss=tick_value,
            trade_tick_size=spec.point,
            trade_contract_size=spec.contract_size,
            trade_accrued_interest=0.0,
            trade_face_value=0.0,
            trade_liquidity_rate=0.0,
            volume_min=spec.volume_min,
            volume_max=spec.volume_max,
            volume_step=spec.volume_step,
            volume_limit=0.0,
            swap_long=spec.swap_long,
            swap_short=spec.swap_short,
            margin_initial=0.0,
            margin_maintenance=0.0,
            session_volume=0.0,
            session_turnover=0.0,
            session_interest=0.0,
            session_buy_orders_volume=0.0,
            session_sell_orders_volume=0.0,
            session_open=0.0,
            session_close=0.0,
            session_aw=0.0,
            session_price_settlement=0.0,
            session_price_limit_min=0.0,
            session_price_limit_max=0.0,
            margin_hedged=spec.contract_size,
            price_change=0.0,
            price_volatility=0.0,
            price_theoretical=0.0,
            price_greeks_delta=0.0,
            price_greeks_theta=0.0,
            price_greeks_gamma=0.0,
            price_greeks_vega=0.0,
            price_greeks_rho=0.0,
            price_greeks_omega=0.0,
            price_sensitivity=0.0,
            basis="",
            category="",
            currency_base=spec.currency_base,
            currency_profit=spec.currency_profit,
            currency_margin=spec.currency_margin,
            bank="",
            description=spec.description,
            exchange="",
            formula="",
            isin="",
            name=symbol,
            page="",
            path=f"Simulator\\{symbol}",
        )

    def _margin(self, symbol: str, volume: float, price: float) -> float:
        spec = self._specs[symbol]
        base_amount = volume * spec.contract_size / self._leverage
        if spec.currency_base == self._currency:
            return base_amount
        return base_amount * price

    def _profit(
        self, symbol: str, order_type: int, volume: float, price_open: float, price_close: float
    ) -> float:
        contract_size, per_close = self._contract[symbol]
        direction = 1.0 if order_type == c.ORDER_TYPE_BUY else -1.0
        profit = direction * (price_close - price_open) * volume * contract_size
        if per_close:
            profit /= price_close
        return _round(profit, 2, 100.0)

    def _close_price(self, pos: _Position) -> float:
        quote = self._quote(pos.symbol)
        if quote is None:
            return pos.price_open
        bid, ask, _, _ = quote
        return bid if pos.type == c.POSITION_TYPE_BUY else ask

    def _book(self) -> tuple[tuple[TradePosition, ...], float, float]:
        """The open positions' records now (in the order they opened), their floating profit
        with swaps, and their margin, summed from the int 0 as ``sum`` does (an empty account
        shows profit 0 and margin 0); built in one pass once per version."""
        cached = self._position_book
        if cached[0] == self._version:
            return cached[1]
        if not self._positions:  # what the loop below gives for none
            self._position_book = (self._version, _EMPTY_BOOK)
            return _EMPTY_BOOK
        records = []
        raw_profit: float = 0
        raw_margin: float = 0
        for pos in self._positions.values():
            values = pos.fields
            if values is None:
                values = self._position_fields(pos)
            close = self._close_price(pos)
            profit = pos.profit_at(close, pos.volume)
            raw_profit += profit + pos.swap
            raw_margin += pos.margin
            values[_TP_PRICE_CURRENT] = close
            values[_TP_PROFIT] = profit
            records.append(tuple.__new__(TradePosition, values))  # ``_make``, unchecked
        book = (tuple(records), raw_profit, raw_margin)
        self._position_book = (self._version, book)
        return book

    def _position_fields(self, pos: _Position) -> list[Any]:
        """Fill ``pos.fields`` (the record's fields; price and profit 0) and ``pos.margin``."""
        pos.margin = self._margin(pos.symbol, pos.volume, pos.price_open)
        fields = pos.fields = [
            pos.ticket,
            pos.time,
            pos.time * 1000,
            pos.time_update,
            pos.time_update * 1000,
            pos.type,
            pos.magic,
            pos.ticket,
            pos.reason,
            pos.volume,
            pos.price_open,
            pos.sl,
            pos.tp,
            0.0,  # price_current
            round(pos.swap, 2),
            0.0,  # profit
            pos.symbol,
            pos.comment,
            "",
        ]
        return fields

    # ------------------------------------------------------------------ internals: trading
    def _parse_request(self, request: Mapping[str, Any]) -> TradeRequest | None:
        if not _REQUEST_KEYS.issuperset(request):
            unknown = set(request) - _REQUEST_KEYS
            self._last_error = (c.RES_E_INVALID_PARAMS, f"Invalid request keys {sorted(unknown)}")
            return None
        r = {**_REQUEST_DEFAULTS, **request}
        try:
            # positional in TradeRequest's field order (as ``_make``): keyword arguments to a
            # namedtuple cost several times more on the order path
            return tuple.__new__(
                TradeRequest,
                (
                    int(r["action"]),
                    int(r["magic"]),
                    int(r["order"]),
                    str(r["symbol"]),
                    float(r["volume"]),
                    float(r["price"]),
                    float(r["stoplimit"]),
                    float(r["sl"]),
                    float(r["tp"]),
                    int(r["deviation"]),
                    int(r["type"]),
                    int(r["type_filling"]),
                    int(r["type_time"]),
                    int(r["expiration"]),
                    str(r["comment"])[:31],
                    int(r["position"]),
                    int(r["position_by"]),
                ),
            )
        except (TypeError, ValueError) as exc:
            self._last_error = (c.RES_E_INVALID_PARAMS, f"Invalid request: {exc}")
            return None

    def _next_fault(self) -> tuple[str, int | None]:
        if self._script:
            outcome = self._script.pop(0)
            if outcome is None:
                return _Fault.TIMEOUT, None
            if outcome in (c.TRADE_RETCODE_DONE, c.TRADE_RETCODE_DONE_PARTIAL):
                return _Fault.NONE, None
            if outcome == c.TRADE_RETCODE_REQUOTE:
                return _Fault.REQUOTE, outcome
            return _Fault.REJECT, outcome
        if not self._fault_odds:  # no draw can pick a fault (the generator serves only this)
            return _Fault.NONE, None
        draw = self._rng.random()
        for kind, prob in self._fault_odds:
            if draw < prob:
                return kind, None
            draw -= prob
        return _Fault.NONE, None

    def _validate(self, req: TradeRequest) -> tuple[int, str, float, float]:
        """``(retcode, comment, fill price, margin)``; retcode 0 when the request is valid."""
        symbol = req.symbol
        spec = self._specs.get(symbol)
        if spec is None:
            return c.TRADE_RETCODE_INVALID, f"Unknown symbol {symbol!r}", 0.0, 0.0
        action, type_, volume = req.action, req.type, req.volume
        if action == c.TRADE_ACTION_SLTP:
            return self._validate_sltp(req)
        if action != c.TRADE_ACTION_DEAL:
            return c.TRADE_RETCODE_INVALID, "Only market deals and SL/TP changes", 0.0, 0.0
        if type_ != c.ORDER_TYPE_BUY and type_ != c.ORDER_TYPE_SELL:
            return c.TRADE_RETCODE_INVALID, "Only ORDER_TYPE_BUY/SELL", 0.0, 0.0
        quote = self._quote(symbol)
        if quote is None or not quote[3] or (spec.sessions and not self._in_session(spec)):
            return c.TRADE_RETCODE_MARKET_CLOSED, "Market closed", 0.0, 0.0
        bid, ask, _, _ = quote
        position = req.position
        closing = position != 0
        is_buy = type_ == c.ORDER_TYPE_BUY
        trade_mode = spec.trade_mode
        if trade_mode != c.SYMBOL_TRADE_MODE_FULL:  # each check below needs another mode
            if trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
                return c.TRADE_RETCODE_TRADE_DISABLED, "Trade disabled", 0.0, 0.0
            if not closing:
                if trade_mode == c.SYMBOL_TRADE_MODE_CLOSEONLY:
                    return c.TRADE_RETCODE_CLOSE_ONLY, "Close only", 0.0, 0.0
                if trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY and not is_buy:
                    return c.TRADE_RETCODE_LONG_ONLY, "Long only", 0.0, 0.0
                if trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY and is_buy:
                    return c.TRADE_RETCODE_SHORT_ONLY, "Short only", 0.0, 0.0
        if closing:
            pos = self._positions.get(position)
            if pos is None:
                return c.TRADE_RETCODE_POSITION_CLOSED, "Position already closed", 0.0, 0.0
            if pos.symbol != symbol or pos.type == type_:
                return c.TRADE_RETCODE_INVALID, "Close must be opposite, same symbol", 0.0, 0.0
            if volume > pos.volume + _EPS:
                return c.TRADE_RETCODE_INVALID_CLOSE_VOLUME, "Volume above position", 0.0, 0.0
        if not _volume_ok(volume, spec):
            return c.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume", 0.0, 0.0
        if req.type_filling not in self._fillings[symbol]:
            return c.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode", 0.0, 0.0
        digits, point, scale = self._rounding[symbol]  # spec.digits and spec.point
        slip = self._slippage * point
        fill = _round(ask + slip if is_buy else bid - slip, digits, scale)
        price = req.price
        if price > 0 and abs(fill - price) > req.deviation * point + _EPS:
            return c.TRADE_RETCODE_REQUOTE, "Requote", fill, 0.0
        if closing:
            return 0, "", fill, 0.0
        if (req.sl or req.tp) and not self._stops_ok(req, spec, bid, ask):
            return c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops", fill, 0.0
        margin = self._margin(symbol, volume, fill)
        account = self.account_info()
        assert account is not None
        if margin > account.margin_free + _EPS:
            return c.TRADE_RETCODE_NO_MONEY, "No money", fill, margin
        return 0, "", fill, margin

    def _stops_ok(self, req: TradeRequest, spec: SymbolSpec, bid: float, ask: float) -> bool:
        gap = spec.stops_level * spec.point
        if req.type == c.ORDER_TYPE_BUY:  # a buy closes at bid
            return (not req.sl or req.sl <= bid - gap) and (not req.tp or req.tp >= bid + gap)
        return (not req.sl or req.sl >= ask + gap) and (not req.tp or req.tp <= ask - gap)

    def _validate_sltp(self, req: TradeRequest) -> tuple[int, str, float, float]:
        pos = self._positions.get(req.position)
        if pos is None or pos.symbol != req.symbol:
            return c.TRADE_RETCODE_POSITION_CLOSED, "Position not found", 0.0, 0.0
        quote = self._quote(req.symbol)
        if quote is None or not quote[3] or not self._in_session(self._specs[req.symbol]):
            return c.TRADE_RETCODE_MARKET_CLOSED, "Market closed", 0.0, 0.0
        if req.sl == pos.sl and req.tp == pos.tp:
            return c.TRADE_RETCODE_NO_CHANGES, "No changes", 0.0, 0.0
        probe = req._replace(type=pos.type)
        if not self._stops_ok(probe, self._specs[req.symbol], quote[0], quote[1]):
            return c.TRADE_RETCODE_INVALID_STOPS, "Invalid stops", 0.0, 0.0
        return 0, "", 0.0, 0.0

    def _result(
        self,
        req: TradeRequest,
        retcode: int,
        comment: str,
        *,
        deal: int = 0,
        order: int = 0,
        volume: float = 0.0,
        price: float = 0.0,
    ) -> OrderSendResult:
        quote = self._quote(req.symbol) if req.symbol in self._specs else None
        bid, ask = (quote[0], quote[1]) if quote else (0.0, 0.0)
        if retcode == c.TRADE_RETCODE_DONE:
            self._last_error = _OK
        return tuple.__new__(  # ``_make``: the namedtuple's own __new__ costs an extra call
            OrderSendResult,
            (retcode, deal, order, volume, price, bid, ask, comment, self._request_id, 0, req),
        )

    def _execute(self, req: TradeRequest) -> OrderSendResult:
        retcode, comment, fill, _ = self._validate(req)
        if retcode:
            return self._result(req, retcode, comment)
        if req.action == c.TRADE_ACTION_SLTP:
            pos = self._positions[req.position]
            pos.sl, pos.tp, pos.time_update = req.sl, req.tp, self._now_cache
            pos.changed()
            self._version += 1
            return self._result(req, c.TRADE_RETCODE_DONE, "Request executed")
        if req.position:
            pos = self._positions[req.position]
            order, deal = self._close(
                pos, req.volume, fill, c.DEAL_REASON_EXPERT, req.comment, req.magic
            )
        else:
            order, deal = self._open(req, fill)
        return self._result(
            req,
            c.TRADE_RETCODE_DONE,
            "Request executed",
            deal=deal,
            order=order,
            volume=req.volume,
            price=fill,
        )

    def _open(self, req: TradeRequest, fill: float) -> tuple[int, int]:
        now = self._now_cache
        symbol, type_, magic, volume, comment = (
            req.symbol,
            req.type,
            req.magic,
            req.volume,
            req.comment,
        )
        order = self._record_order(
            type_,
            req.type_filling,
            magic,
            None,  # the position takes the order's ticket
            c.ORDER_REASON_EXPERT,
            volume,
            fill,
            symbol,
            comment,
            req.sl,
            req.tp,
        )
        contract_size, per_close = self._contract[symbol]
        self._positions[order] = _Position(
            order,  # ticket
            now,  # time
            type_,
            magic,
            c.POSITION_REASON_EXPERT,
            volume,
            fill,  # price_open
            req.sl,
            req.tp,
            symbol,
            comment,
            now,  # time_update
            contract_size=contract_size,
            per_close=per_close,
        )
        deal_type = c.DEAL_TYPE_BUY if type_ == c.ORDER_TYPE_BUY else c.DEAL_TYPE_SELL
        deal = self._record_deal(
            order,
            deal_type,
            c.DEAL_ENTRY_IN,
            magic,
            order,  # position_id
            c.DEAL_REASON_EXPERT,
            volume,
            fill,
            0.0,  # profit
            symbol,
            comment,
        )
        return order, deal

    def _close(
        self, pos: _Position, volume: float, price: float, reason: int, comment: str, magic: int
    ) -> tuple[int, int]:
        close_type = c.ORDER_TYPE_SELL if pos.type == c.ORDER_TYPE_BUY else c.ORDER_TYPE_BUY
        order_reason = _ORDER_REASON.get(reason, c.ORDER_REASON_EXPERT)
        symbol, ticket = pos.symbol, pos.ticket
        order = self._record_order(
            close_type,
            c.ORDER_FILLING_FOK,
            magic,
            ticket,
            order_reason,
            volume,
            price,
            symbol,
            comment,
        )
        profit = pos.profit_at(price, volume)
        swap = _round(pos.swap * min(1.0, volume / pos.volume), 2, 100.0) if pos.volume else 0.0
        pos.swap -= swap
        pos.changed()
        self._balance += profit + swap
        deal_type = c.DEAL_TYPE_BUY if close_type == c.ORDER_TYPE_BUY else c.DEAL_TYPE_SELL
        deal = self._record_deal(
            order,
            deal_type,
            c.DEAL_ENTRY_OUT,
            magic,
            ticket,  # position_id
            reason,
            volume,
            price,
            profit,
            symbol,
            comment,
            swap,
        )
        remaining = _round(pos.volume - volume, 8, 1e8)
        if remaining <= _EPS:
            del self._positions[ticket]
        else:
            pos.volume, pos.time_update = remaining, self._now_cache
            pos.changed()
        return order, deal

    def _record_order(
        self,
        type_: int,
        filling: int,
        magic: int,
        position_id: int | None,
        reason: int,
        volume: float,
        price: float,
        symbol: str,
        comment: str,
        sl: float = 0.0,
        tp: float = 0.0,
    ) -> int:
        """A filled market order in the history; ``position_id`` None: its own ticket.
        (Positional arguments: keywords cost more on the order path.)"""
        ticket = self._next_order
        self._next_order += 1
        now = self._now_cache
        # positional in TradeOrder's field order (as ``_make``): a third of the cost of keywords
        self._orders.append(
            tuple.__new__(
                TradeOrder,
                (
                    ticket,
                    now,  # time_setup
                    now * 1000,
                    now,  # time_done
                    now * 1000,
                    0,  # time_expiration
                    type_,
                    c.ORDER_TIME_GTC,
                    filling,
                    c.ORDER_STATE_FILLED,
                    magic,
                    ticket if position_id is None else position_id,
                    0,  # position_by_id
                    reason,
                    volume,  # volume_initial
                    0.0,  # volume_current
                    price,  # price_open
                    sl,
                    tp,
                    price,  # price_current
                    0.0,  # price_stoplimit
                    symbol,
                    comment,
                    "",  # external_id
                ),
            )
        )
        return ticket

    def _record_deal(
        self,
        order: int,
        type_: int,
        entry: int,
        magic: int,
        position_id: int,
        reason: int,
        volume: float,
        price: float,
        profit: float,
        symbol: str,
        comment: str,
        swap: float = 0.0,
    ) -> int:
        """A deal in the history (positional arguments, as :meth:`_record_order`)."""
        ticket = self._next_deal
        self._next_deal += 1
        self._version += 1  # every deal moves the balance or a position
        now = self._now_cache
        # positional in TradeDeal's field order (as ``_make``): a third of the cost of keywords
        self._deals.append(
            tuple.__new__(
                TradeDeal,
                (
                    ticket,
                    order,
                    now,  # time
                    now * 1000,
                    type_,
                    entry,
                    magic,
                    position_id,
                    reason,
                    volume,
                    price,
                    0.0,  # commission
                    swap,
                    profit,
                    0.0,  # fee
                    symbol,
                    comment,
                    "",  # external_id
                ),
            )
        )
        return ticket

    def _in_session(self, spec: SymbolSpec) -> bool:
        if not spec.sessions:
            return True
        now = datetime.fromtimestamp(self._now_s, UTC)
        minute = now.hour * 60 + now.minute
        return any(d == now.weekday() and a <= minute < b for d, a, b in spec.sessions)

    def _charge_swaps(self, start: int, end: int) -> None:
        """Swaps of the rollovers (00:00 of the clock) in ``(start, end]``; see the docstring."""
        day = 86_400
        for rollover in range((start // day + 1) * day, end + 1, day):
            ended = datetime.fromtimestamp(rollover - day, UTC)
            mt5_day = (ended.weekday() + 1) % 7  # MT5 counts from Sunday = 0
            if mt5_day in (c.DAY_OF_WEEK_SATURDAY, c.DAY_OF_WEEK_SUNDAY):
                continue
            for pos in self._positions.values():
                spec = self._specs[pos.symbol]
                points = spec.swap_long if pos.type == c.POSITION_TYPE_BUY else spec.swap_short
                if not points:
                    continue
                nights = 3 if mt5_day == spec.swap_rollover3days else 1
                amount = nights * points * spec.point * spec.contract_size * pos.volume
                if spec.currency_profit != self._currency and spec.currency_base == self._currency:
                    price = self._close_price(pos)
                    amount = amount / price if price else 0.0
                pos.swap = _round(pos.swap + amount, 2, 100.0)
                pos.changed()

    # ------------------------------------------------------------------ ticks
    def copy_ticks_from(
        self, symbol: str, date_from: datetime | int, count: int, flags: int
    ) -> np.ndarray | None:
        """Up to ``count`` ticks from ``date_from`` (seconds or datetime) that are visible now."""
        ticks = self._visible_ticks(symbol, flags)
        if ticks is None:
            return None
        start = int(np.searchsorted(ticks["time_msc"], _to_seconds(date_from) * 1000, "left"))
        self._ok()
        return ticks[start : start + max(0, count)].copy()

    def copy_ticks_range(
        self, symbol: str, date_from: datetime | int, date_to: datetime | int, flags: int
    ) -> np.ndarray | None:
        """Visible ticks with ``date_from <= time <= date_to`` (seconds or datetimes)."""
        ticks = self._visible_ticks(symbol, flags)
        if ticks is None:
            return None
        msc = ticks["time_msc"]
        lo = int(np.searchsorted(msc, _to_seconds(date_from) * 1000, "left"))
        hi = int(np.searchsorted(msc, _to_seconds(date_to) * 1000 + 999, "right"))
        self._ok()
        return ticks[lo : max(lo, hi)].copy()

    def _visible_ticks(self, symbol: str, flags: int) -> np.ndarray | None:
        if not self._live():
            return None
        if symbol not in self._specs:
            self._last_error = (c.RES_E_NOT_FOUND, f"Symbol {symbol} not found")
            return None
        wanted = {
            c.COPY_TICKS_ALL: 0,
            c.COPY_TICKS_INFO: c.TICK_FLAG_BID | c.TICK_FLAG_ASK,
            c.COPY_TICKS_TRADE: c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME,
        }.get(int(flags))
        if wanted is None:
            self._last_error = (c.RES_E_INVALID_PARAMS, f"Invalid flags {flags}")
            return None
        ticks = self._ticks.get(symbol)
        if ticks is None:
            if self._recorded_ticks is not None:
                ticks = self._recorded_ticks.get(symbol, np.zeros(0, dtype=TICK_DTYPE))
            else:
                ticks = _ticks_from_bars(self._quote_series[symbol], self._specs[symbol].point)
            self._ticks[symbol] = ticks
        visible = ticks[: int(np.searchsorted(ticks["time_msc"], self._now_s * 1000, "right"))]
        if wanted:
            visible = visible[(visible["flags"] & wanted) != 0]
        return visible

    def _check_stops(self, start: int, end: int) -> None:
        """Close positions whose SL/TP was reached by a bar opened in ``[start, end)``."""
        for pos in list(self._positions.values()):
            if not (pos.sl or pos.tp):
                continue
            series = self._quote_series[pos.symbol]
            digits, point, scale = self._rounding[pos.symbol]
            # bisect on the int times: a fraction of np.searchsorted's cost for one value
            times = series.time_list
            lo = bisect.bisect_left(times, start)
            hi = bisect.bisect_left(times, end, lo)
            for i in range(lo, hi):
                hit = _stop_hit(pos, _unpack_rate(series.raw, i * _RATE_SIZE), point)
                if hit is not None:
                    reason, price = hit
                    price = _round(price, digits, scale)
                    tag = "sl" if reason == c.DEAL_REASON_SL else "tp"
                    comment = f"[{tag} {price:.{digits}f}]"
                    self._close(pos, pos.volume, price, reason, comment, pos.magic)
                    break


def _stop_hit(pos: _Position, bar: tuple[Any, ...], point: float) -> tuple[int, float] | None:
    """``(DEAL_REASON_SL|TP, fill price)`` when the bar (a rate record as Python scalars)
    reaches a stop; SL wins a tie."""
    if pos.type == c.POSITION_TYPE_BUY:  # closed at bid
        o, h, low = bar[_OPEN], bar[_HIGH], bar[_LOW]
        if pos.sl and low <= pos.sl:
            return c.DEAL_REASON_SL, min(o, pos.sl)
        if pos.tp and h >= pos.tp:
            return c.DEAL_REASON_TP, max(o, pos.tp)
        return None
    spread = bar[_SPREAD] * point  # a sell is closed at ask
    o, h, low = bar[_OPEN] + spread, bar[_HIGH] + spread, bar[_LOW] + spread
    if pos.sl and h >= pos.sl:
        return c.DEAL_REASON_SL, max(o, pos.sl)
    if pos.tp and low <= pos.tp:
        return c.DEAL_REASON_TP, min(o, pos.tp)
    return None


@functools.cache
def _point(digits: int) -> float:
    return round(10.0**-digits, digits)


def _scale(digits: int) -> float:
    """``10.0**digits`` for :func:`_round` (exact up to 15 digits; a Python float for a numpy
    int too); NaN (no fast path) else."""
    return float(10.0**digits) if 0 <= digits <= 15 else math.nan


_ROUND_FAST_LIMIT = 2.0**40


def _round(x: float, digits: int, scale: float) -> float:
    """``round(x, digits)`` bit for bit, at about half the cost (``scale``: ``_scale(digits)``).

    ``round`` converts to a decimal string and back. For a float ``y = x·scale`` below 2**40
    (error under 2**-14) that is not within 0.001 of a half, the nearest integer ``n`` is the
    correctly rounded decimal and ``n / scale`` the double ``round`` returns (both correctly
    rounded; for ``n`` 0 a zero with the sign of ``x``); ties, near-ties, other types (ints,
    numpy floats) and large values go to ``round``.
    """
    if type(x) is float:
        y = x * scale
        if -_ROUND_FAST_LIMIT < y < _ROUND_FAST_LIMIT:
            n = round(y)
            if abs(abs(y - n) - 0.5) > 1e-3:
                return n / scale if n else x * 0.0
    return round(x, digits)


def _is_rounded(prices: np.ndarray, scale: float) -> bool:
    """Whether :func:`_round` gives each of ``prices`` back bit for bit, by its fast path (the
    same IEEE operations, vectorized: ``rint`` rounds half to even as ``round`` does); False
    where any price would take the slow path, or rounds to zero."""
    if math.isnan(scale):
        return False
    with np.errstate(all="ignore"):  # inf or NaN prices: not rounded, and no warning
        y = prices * scale
        n = np.rint(y)
        fast = (np.abs(y) < _ROUND_FAST_LIMIT) & (np.abs(np.abs(y - n) - 0.5) > 1e-3) & (n != 0)
        return bool(np.all(fast & (n / scale == prices)))


def _volume_ok(volume: float, spec: SymbolSpec) -> bool:
    if volume < spec.volume_min - _EPS or volume > spec.volume_max + _EPS:
        return False
    steps = (volume - spec.volume_min) / spec.volume_step
    return abs(steps - round(steps)) < 1e-6


def _filling_ok(filling: int, flags: int) -> bool:
    if filling == c.ORDER_FILLING_FOK:
        return bool(flags & c.SYMBOL_FILLING_FOK)
    if filling == c.ORDER_FILLING_IOC:
        return bool(flags & c.SYMBOL_FILLING_IOC)
    return filling == c.ORDER_FILLING_RETURN


def _group_match(symbol: str, group: str | None) -> bool:
    """MT5 group filter: comma-separated wildcards, ``!`` excludes; the last match decides."""
    if not group:
        return True
    matched = False
    for raw in group.split(","):
        pattern = raw.strip()
        negate = pattern.startswith("!")
        if fnmatch.fnmatchcase(symbol, pattern.lstrip("!")):
            matched = not negate
    return matched


def _to_seconds(value: datetime | int | float) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return math.floor(value.timestamp())
    return int(value)


def _period(date_from: datetime | int | None, date_to: datetime | int | None) -> tuple[int, int]:
    lo = _to_seconds(date_from) if date_from is not None else -(2**62)
    hi = _to_seconds(date_to) if date_to is not None else 2**62
    return lo, hi


def _load_series(bars: pd.DataFrame) -> dict[tuple[str, Timeframe], _Series]:
    required = ["symbol", "timeframe", "time", "open", "high", "low", "close"]
    missing = [col for col in required if col not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    df = bars.copy()
    times = pd.to_datetime(df["time"], utc=True)
    df["_t"] = pd.DatetimeIndex(times).as_unit("s").asi8
    for col, default in (("tick_volume", 0), ("spread", 0), ("real_volume", 0)):
        if col not in df.columns:
            df[col] = default
    df["_tf"] = [to_timeframe(v) for v in df["timeframe"]]
    out: dict[tuple[str, Timeframe], _Series] = {}
    for (symbol, tf), group in df.groupby(["symbol", "_tf"], sort=True):
        group = group.sort_values("_t").drop_duplicates("_t", keep="last")
        rates = np.zeros(len(group), dtype=RATES_DTYPE)
        rates["time"] = group["_t"].to_numpy()
        for col in ("open", "high", "low", "close", "tick_volume", "spread", "real_volume"):
            rates[col] = group[col].to_numpy()
        timeframe = to_timeframe(tf)  # type: ignore[arg-type]
        out[(str(symbol), timeframe)] = _Series(timeframe, rates)
    return out


def _ticks_from_bars(series: _Series, point: float) -> np.ndarray:
    """Four ticks per bar: open, the nearer extreme, the other extreme, close (bid; ask = bid +
    spread), a quarter bar apart; flags mark what changed from the tick before."""
    rates = series.rates
    up = rates["close"] >= rates["open"]
    prices = np.stack(
        [
            rates["open"],
            np.where(up, rates["low"], rates["high"]),
            np.where(up, rates["high"], rates["low"]),
            rates["close"],
        ],
        axis=1,
    ).ravel()
    offsets = np.arange(4) * (series.seconds * 1000 // 4)
    msc = (rates["time"].astype(np.int64)[:, None] * 1000 + offsets).ravel()
    spread = np.repeat(rates["spread"].astype(float), 4) * point
    out = np.zeros(len(prices), dtype=TICK_DTYPE)
    out["time"], out["time_msc"] = msc // 1000, msc
    out["bid"], out["ask"] = prices, prices + spread
    out["flags"] = _change_flags(out["bid"], out["ask"])
    return out


def _change_flags(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    flags = np.zeros(len(bid), dtype=np.uint32)
    bid_changed = np.r_[True, bid[1:] != bid[:-1]]
    ask_changed = np.r_[True, ask[1:] != ask[:-1]]
    flags[bid_changed] |= c.TICK_FLAG_BID
    flags[ask_changed] |= c.TICK_FLAG_ASK
    return flags


def _load_ticks(ticks: pd.DataFrame) -> dict[str, np.ndarray]:
    """Recorded ticks per symbol as ``TICK_DTYPE`` records sorted by ``time_msc``."""
    missing = [col for col in ("symbol", "time_msc", "bid", "ask") if col not in ticks.columns]
    if missing:
        raise ValueError(f"ticks lack columns {missing}")
    out = {}
    for symbol, group in ticks.sort_values("time_msc", kind="stable").groupby("symbol"):
        records = np.zeros(len(group), dtype=TICK_DTYPE)
        msc = group["time_msc"].to_numpy(dtype=np.int64)
        records["time_msc"], records["time"] = msc, msc // 1000
        for col in ("bid", "ask", "last", "volume", "volume_real"):
            if col in group.columns:
                records[col] = group[col].to_numpy()
        if "flags" in group.columns:
            records["flags"] = group["flags"].to_numpy()
        else:
            records["flags"] = _change_flags(records["bid"], records["ask"])
        out[str(symbol)] = records
    return out
