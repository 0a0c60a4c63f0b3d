"""One validator for bars and ticks, shared by batch ingest and the live agent.

Every rejected row gets exactly one reason code (the first rule it fails); rejected rows go
to ``quarantine`` with a ``reason`` column, good rows go on, ``counts`` holds rejected rows
per reason. Gaps in a bar series are *findings*, not rejections (the bars on either side are
good): they are listed in ``gaps``.

Row rules (need no history): schema, types, nulls, price > 0, ask >= bid, OHLC
consistency, volume >= 0, market-closed calendar. Sequence rules (per series, in time
order, on the rows that passed the row rules): duplicate and out-of-order times, spikes,
stale quotes. Spike and stale rules need context (``min_context`` earlier rows,
``stale_run`` repeats); rows without enough context before them are never rejected by
those rules.

Bars: :func:`bar_reason` is the per-bar path of the live agent: the same rules and reason
codes as ``validate_bars`` on the two-row frame ``[previous, bar]``, in plain Python (~2 µs
instead of ~3 ms of pandas); a property test holds the two equal. The bar spike and stale
rules look at the next bars too, so they are batch-only.

Ticks: every tick rule looks only backwards (``TickRules``), so :class:`TickGuard`, the live
agent's per-tick path, gives each tick of a stream the reason ``validate_ticks`` gives it in
the frame of the whole stream, spikes and stale quotes included (a property test holds the
two equal). :func:`tick_reason` is the history-free check of one tick against the previous.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from chaintrade.domain import BAR_FRAME_COLUMNS, Timeframe

PRICE_COLUMNS = ("open", "high", "low", "close")
TICK_FRAME_COLUMNS: Final = (
    "symbol",
    "time_msc",
    "time",
    "bid",
    "ask",
    "last",
    "volume",
    "flags",
)
_TF_MINUTES: Final = {tf.name: tf.minutes for tf in Timeframe}
_RowResult = tuple[str | None, float | None]  # (reason of the row rules, epoch seconds)


class Reason:
    """Reason codes for rejected bars and ticks (stable strings; counted and stored)."""

    MISSING_VALUE = "missing_value"
    INVALID_TYPE = "invalid_type"
    NON_POSITIVE_PRICE = "non_positive_price"
    ASK_BELOW_BID = "ask_below_bid"
    OHLC_INCONSISTENT = "ohlc_inconsistent"
    NEGATIVE_VOLUME = "negative_volume"
    MARKET_CLOSED = "market_closed"
    DUPLICATE_TIME = "duplicate_time"
    OUT_OF_ORDER = "out_of_order"
    SPIKE = "spike"
    STALE = "stale"
    # A finding, not a rejection: bars missing inside an open session.
    GAP = "gap"


# --------------------------------------------------------------------------- calendar


@dataclass(frozen=True)
class SessionCalendar:
    """When a market is closed: a weekly window plus holidays, in a time zone.

    The market closes each week at ``close_day``/``close_hour`` and reopens at
    ``open_day``/``open_hour`` (weekday 0 = Monday, local time of ``tz``). A holiday
    ``"MM-DD"`` closes the market from ``close_hour`` of the day before to ``close_hour``
    of that day (the FX convention: the trading day of Dec 25 runs from Dec 24 17:00 New
    York). Quotes stamped within ``grace_minutes`` after the close are still accepted
    (brokers print a last quote at the close). Bars are judged by their open time.
    """

    name: str
    tz: str
    close_day: int
    close_hour: int
    open_day: int
    open_hour: int
    holidays: tuple[str, ...] = ()
    grace_minutes: int = 1
    # derived in __post_init__ (constants and caches of closed_at)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _fixed: bool = field(init=False, repr=False, compare=False)
    _close_minute: int = field(init=False, repr=False, compare=False)
    _reopen_minute: int = field(init=False, repr=False, compare=False)
    _holiday_days: frozenset[int] = field(init=False, repr=False, compare=False)
    _holiday_shift: int = field(init=False, repr=False, compare=False)
    _offsets: dict[int, int | None] = field(init=False, repr=False, compare=False)
    _closed: dict[int, bool] = field(init=False, repr=False, compare=False)
    _whole_minutes: bool = field(init=False, repr=False, compare=False)
    _bar_rows: dict[int, tuple[Mapping[str, Any], tuple[Any, ...], _RowResult]] = field(
        init=False, repr=False, compare=False
    )
    # (start, end, closed): epoch seconds [start, end) all closed alike; only for calendars
    # whose closed state is pure week arithmetic (fixed offset, no holidays, see _span_at)
    _span: tuple[int, int, bool] | None = field(init=False, repr=False, compare=False)

    def is_closed(self, times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """True where a UTC time falls in the closed window or on a holiday."""
        index = pd.DatetimeIndex(times)
        if index.tz is None:
            index = index.tz_localize("UTC")
        local = index.tz_convert(self.tz)
        minute = (
            local.dayofweek.to_numpy() * 1440
            + local.hour.to_numpy() * 60
            + local.minute.to_numpy()
            + local.second.to_numpy() / 60.0
        )
        close = self.close_day * 1440 + self.close_hour * 60 + self.grace_minutes
        reopen = self.open_day * 1440 + self.open_hour * 60
        if close <= reopen:
            closed = (minute >= close) & (minute < reopen)
        else:  # the window wraps around Monday 00:00
            closed = (minute >= close) | (minute < reopen)
        if self.holidays:
            # the trading day a time belongs to: the local day, shifted at close_hour
            shifted = local + pd.Timedelta(hours=(24 - self.close_hour) % 24)
            day = shifted.month.to_numpy() * 100 + shifted.day.to_numpy()
            wanted = [int(h[:2]) * 100 + int(h[3:]) for h in self.holidays]
            closed |= np.isin(day, wanted)
        return np.asarray(closed, dtype=bool)

    def __post_init__(self) -> None:
        fixed = self.tz in ("UTC", "Etc/UTC", "GMT", "Etc/GMT")
        close = self.close_day * 1440 + self.close_hour * 60 + self.grace_minutes
        reopen = self.open_day * 1440 + self.open_hour * 60
        whole_minutes = float(close).is_integer() and float(reopen).is_integer()
        spans = fixed and not self.holidays and type(close) is int and type(reopen) is int
        derived: dict[str, Any] = {
            "_zone": ZoneInfo(self.tz),
            "_fixed": fixed,
            "_close_minute": close,
            "_reopen_minute": reopen,
            "_holiday_days": frozenset(int(h[:2]) * 100 + int(h[3:]) for h in self.holidays),
            "_holiday_shift": ((24 - self.close_hour) % 24) * 3600,
            "_offsets": {},
            "_closed": {},
            "_whole_minutes": whole_minutes,
            "_bar_rows": {},  # row-rule results of recent bars (see _remembered_rules)
            "_span": (0, 0, False) if spans else None,  # empty until the first closed_at
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def _offset(self, epoch_s: int) -> int:
        """UTC offset (seconds) of the zone at a whole epoch second, cached per 15 minutes."""
        if self._fixed:
            return 0
        cache = self._offsets
        bucket = epoch_s // 900
        offset = cache.get(bucket, -1)
        if offset == -1:
            start, end = self._offset_at(bucket * 900), self._offset_at(bucket * 900 + 899)
            offset = start if start == end else None  # a change inside: no shortcut
            if len(cache) > 100_000:
                cache.clear()
            cache[bucket] = offset
        return self._offset_at(epoch_s) if offset is None else offset

    def _offset_at(self, epoch_s: int) -> int:
        local = datetime.fromtimestamp(epoch_s, UTC).astimezone(self._zone)
        delta = local.utcoffset()
        return 0 if delta is None else int(delta.total_seconds())

    def closed_at(self, epoch_s: float) -> bool:
        """:meth:`is_closed` for one UTC time in epoch seconds, in plain Python (~0.2 µs for
        a minute asked before, as a live loop asks, ~1 µs otherwise; fixed-offset calendars
        without holidays remember the span between the window's edges instead)."""
        whole = math.floor(epoch_s)
        if epoch_s - whole > 0.9999 and round((epoch_s - whole) * 1e6) >= 1_000_000:
            whole += 1  # as datetime rounds to microseconds
        span = self._span
        if span is not None:
            if span[0] <= whole < span[1]:
                return span[2]
            span = self._span_at(whole)
            object.__setattr__(self, "_span", span)  # one tuple: readers see a whole span
            return span[2]
        minute = whole // 60
        known = self._closed.get(minute)
        if known is None:
            known = self._closed_at(whole)
            if self._uniform(minute):
                if len(self._closed) >= 4096:
                    self._closed.clear()
                self._closed[minute] = known
        return known

    def _span_at(self, whole: int) -> tuple[int, int, bool]:
        """The span of a fixed-offset calendar without holidays around epoch second ``whole``:
        the closed state only changes at the window's edges (whole minutes of the week)."""
        minute = whole // 60
        week_minute = (minute + 3 * 1440) % 10080  # 1970-01-01 was a Thursday
        lo, hi = 0, 10080
        for edge in (self._close_minute, self._reopen_minute):
            if lo < edge <= week_minute:
                lo = edge
            elif week_minute < edge < hi:
                hi = edge
        week_start = (minute - week_minute) * 60
        return week_start + lo * 60, week_start + hi * 60, self._closed_at(whole)

    def _uniform(self, minute: int) -> bool:
        """Whether every second of a UTC minute is closed alike: the weekly window opens and
        closes on whole minutes and the zone's offset (whole minutes) is the same all minute."""
        if not self._whole_minutes:
            return False
        if self._fixed:
            return True
        starts = (
            (minute * 60, minute * 60 + self._holiday_shift) if self.holidays else (minute * 60,)
        )
        for start in starts:
            offset = self._offset(start)
            if self._offsets[start // 900] is None or offset % 60:
                return False
        return True

    def _closed_at(self, whole: int) -> bool:
        days, second = divmod(whole + self._offset(whole), 86400)
        minute = ((days + 3) % 7) * 1440 + second // 60 + (second % 60) / 60.0  # 1970-01-01: Thu
        close, reopen = self._close_minute, self._reopen_minute
        wraps = close > reopen  # the window wraps around Monday 00:00
        closed = (minute >= close or minute < reopen) if wraps else (close <= minute < reopen)
        if self.holidays and not closed:
            shifted = whole + self._holiday_shift
            day = (shifted + self._offset(shifted)) // 86400
            closed = _month_day(day) in self._holiday_days
        return closed


@lru_cache(maxsize=4096)
def _month_day(epoch_day: int) -> int:
    """``month * 100 + day`` of a day counted from 1970-01-01."""
    day = date.fromordinal(_EPOCH_ORDINAL + epoch_day)
    return day.month * 100 + day.day


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


# FX as most brokers run it: Friday 17:00 to Sunday 17:00 New York, Christmas and New Year.
FX_NEW_YORK: Final = SessionCalendar(
    "fx_new_york", "America/New_York", 4, 17, 6, 17, holidays=("12-25", "01-01")
)
# The synthetic generator's calendar: no bars or ticks on Saturday and Sunday UTC.
UTC_WEEKDAYS: Final = SessionCalendar("utc_weekdays", "UTC", 5, 0, 0, 0)
# The window in which no FX venue trades whatever its convention or DST: Saturday 00:00
# to Sunday 21:00 UTC. The default when no calendar is given.
FX_WEEKEND_CORE: Final = SessionCalendar("fx_weekend_core", "UTC", 5, 0, 6, 21)
CALENDARS: Final = {c.name: c for c in (FX_NEW_YORK, UTC_WEEKDAYS, FX_WEEKEND_CORE)}


# --------------------------------------------------------------------------- result


def _empty_gaps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "timeframe": pd.Series([], dtype=object),
            "after": pd.Series([], dtype="datetime64[ns, UTC]"),
            "before": pd.Series([], dtype="datetime64[ns, UTC]"),
            "missing_bars": pd.Series([], dtype="int64"),
        }
    )


@dataclass(frozen=True)
class ValidationResult:
    """Good rows go on; rejected rows are kept in ``quarantine`` with a ``reason`` column.

    ``gaps`` lists bars missing inside open sessions (only judged when a calendar is
    given); they are findings, counted in ``findings``, and reject no row.
    """

    good: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    gaps: pd.DataFrame = field(default_factory=_empty_gaps)

    @property
    def rejected(self) -> int:
        return len(self.quarantine)

    @property
    def total(self) -> int:
        return len(self.good) + len(self.quarantine)

    @property
    def findings(self) -> dict[str, int]:
        """Non-rejecting findings: ``{"gap": n, "gap_missing_bars": m}`` when gaps exist."""
        if self.gaps.empty:
            return {}
        return {
            Reason.GAP: len(self.gaps),
            "gap_missing_bars": int(self.gaps["missing_bars"].sum()),
        }

    def blocks(self, max_rejected_fraction: float = 0.0) -> bool:
        """Whether downstream steps should stop: more rejected rows than the fraction allows."""
        if self.total == 0:
            return False
        return self.rejected > max_rejected_fraction * self.total


# --------------------------------------------------------------------------- helpers


class _Marker:
    """Assigns the first reason to each row (codes in a small int array, fast)."""

    def __init__(self, n: int) -> None:
        self.codes: list[str] = []
        self.reason = np.zeros(n, dtype=np.int16)  # 0 = good

    def mark(self, mask: Any, code: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if code not in self.codes:
            self.codes.append(code)
        value = self.codes.index(code) + 1
        self.reason[mask & (self.reason == 0)] = value

    @property
    def ok(self) -> np.ndarray:
        return np.asarray(self.reason == 0)

    def split(self, df: pd.DataFrame, gaps: pd.DataFrame | None = None) -> ValidationResult:
        bad = self.reason != 0
        if not bad.any():
            good = df if df.index.equals(pd.RangeIndex(len(df))) else df.reset_index(drop=True)
            quarantine = df.iloc[:0].assign(reason=pd.Series([], dtype=object))
            return ValidationResult(good, quarantine, {}, _empty_gaps() if gaps is None else gaps)
        names = np.array(["", *self.codes], dtype=object)
        reasons = names[self.reason[bad]]
        quarantine = df[bad].reset_index(drop=True).assign(reason=reasons)
        values, counts = np.unique(reasons.astype(str), return_counts=True)
        return ValidationResult(
            df[~bad].reset_index(drop=True),
            quarantine,
            {str(k): int(v) for k, v in zip(values, counts, strict=True)},
            _empty_gaps() if gaps is None else gaps,
        )


def _numeric(df: pd.DataFrame, columns: tuple[str, ...], marker: _Marker) -> dict[str, np.ndarray]:
    """Columns as float arrays; non-numeric entries are marked ``invalid_type``."""
    out: dict[str, np.ndarray] = {}
    invalid = np.zeros(len(df), dtype=bool)
    for c in columns:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            out[c] = col.to_numpy(dtype="float64", na_value=np.nan)
        else:
            coerced = pd.to_numeric(col, errors="coerce")
            out[c] = coerced.to_numpy(dtype="float64", na_value=np.nan)
            invalid |= coerced.isna().to_numpy() & col.notna().to_numpy()
    marker.mark(invalid, Reason.INVALID_TYPE)
    return out


def _utc_times(col: pd.Series, marker: _Marker) -> np.ndarray:
    """``time`` as int64 ns since epoch (UTC); unparsable entries are ``invalid_type``."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        times = col.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(col.dtype):
        raise ValueError("'time' must be timezone-aware UTC (datetime64[ns, UTC]), got naive")
    else:
        times = pd.to_datetime(col, utc=True, errors="coerce")
        marker.mark(times.isna().to_numpy() & col.notna().to_numpy(), Reason.INVALID_TYPE)
    values = times.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]")
    out = values.view("int64").copy()
    out[np.isnat(values)] = np.iinfo(np.int64).min
    return out


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True element, the length of the run of consecutive Trues it belongs to."""
    n = mask.size
    out = np.zeros(n, dtype=np.int64)
    if n == 0 or not mask.any():
        return out
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    lengths = ends - starts
    run_id = np.cumsum(np.diff(padded.astype(np.int8))[:-1] == 1) - 1
    out[mask] = lengths[run_id[mask]]
    return out


def _robust_scale(
    abs_ret: np.ndarray, series: np.ndarray, window: int, min_periods: int
) -> np.ndarray:
    """Causal robust scale: 1.4826 × rolling median of the previous ``window`` values.

    Falls back to the rolling mean where the median is 0 (quiet, unchanged prices);
    NaN where fewer than ``min_periods`` earlier values exist in the series.
    """
    s = pd.Series(abs_ret)
    grouped = s.groupby(series, sort=False)
    med = grouped.transform(
        lambda x: x.rolling(window, min_periods=min_periods).median().shift(1)
    ).to_numpy()
    mean = grouped.transform(
        lambda x: x.rolling(window, min_periods=min_periods).mean().shift(1)
    ).to_numpy()
    scale = 1.4826 * med
    scale = np.where(scale > 0, scale, mean)
    return np.where(scale > 0, scale, np.nan)


def _series_ids(*columns: np.ndarray) -> np.ndarray:
    """An int id per series (symbol, timeframe) in order of first appearance."""
    if len(columns) == 1:
        return pd.factorize(columns[0])[0]
    keys = pd.MultiIndex.from_arrays(list(columns))
    return pd.factorize(keys)[0]


def _spikes(
    ref: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    series: np.ndarray,
    same_next: np.ndarray,
    *,
    z: float,
    window: int,
    min_context: int,
) -> np.ndarray:
    """Spike: the excursion from ``ref`` (the previous close) exceeds ``z`` robust sigmas of
    the earlier excursions, and the price comes back (the next close is within ``z/2``
    sigmas of ``ref``) or there is no next row yet."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.fmax(np.abs(np.log(high / ref)), np.abs(np.log(low / ref)))
        scale = _robust_scale(raw, series, window, min_context)
        excursion = raw / scale
        next_close = np.empty_like(close)
        next_close[:-1] = close[1:]
        next_close[-1:] = np.nan
        back = np.abs(np.log(next_close / ref)) / scale
    reverts = ~same_next | (back < z / 2.0)
    return np.asarray((excursion > z) & reverts & np.isfinite(scale))


# --------------------------------------------------------------------------- bars


def validate_bars(
    bars: pd.DataFrame,
    *,
    calendar: SessionCalendar | None = None,
    spike_z: float = 15.0,
    spike_window: int = 100,
    min_context: int = 20,
    stale_run: int = 5,
) -> ValidationResult:
    """Check bars of any number of series; the first failing rule gives a row its reason.

    ``calendar`` says when the market is closed (default ``FX_WEEKEND_CORE``: Saturday to
    Sunday 21:00 UTC) and, when given, lets gaps inside open sessions be reported.
    ``spike_z`` is the robust z-score (of the bar's high/low excursion from the previous
    close, against the median absolute close-to-close return of up to ``spike_window``
    earlier bars, at least ``min_context`` of them) above which a bar that reverts is a
    spike. ``stale_run`` repeats of a flat bar at the previous close make a stale run.
    """
    missing = [c for c in BAR_FRAME_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}; expected {list(BAR_FRAME_COLUMNS)}")
    df = bars.reset_index(drop=True)
    n = len(df)
    marker = _Marker(n)
    if n == 0:
        return marker.split(df)

    marker.mark(df[list(BAR_FRAME_COLUMNS)].isna().to_numpy().any(axis=1), Reason.MISSING_VALUE)
    num = _numeric(df, (*PRICE_COLUMNS, "tick_volume", "spread", "real_volume"), marker)
    t = _utc_times(df["time"], marker)
    o, h, lo, c = (num[k] for k in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        marker.mark((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), Reason.NON_POSITIVE_PRICE)
        marker.mark((h < np.fmax(o, c)) | (lo > np.fmin(o, c)), Reason.OHLC_INCONSISTENT)
        marker.mark((num["tick_volume"] < 0) | (num["real_volume"] < 0), Reason.NEGATIVE_VOLUME)
    marker.mark(
        marker.ok & (calendar or FX_WEEKEND_CORE).is_closed(pd.to_datetime(t, utc=True)),
        Reason.MARKET_CLOSED,
    )

    symbol = df["symbol"].to_numpy()
    timeframe = df["timeframe"].astype(str).to_numpy()
    series = _series_ids(symbol, timeframe)
    _sequence_rules(marker, series, t)

    # History rules on the surviving rows, in time order within each series.
    alive = np.flatnonzero(marker.ok)
    order = alive[np.lexsort((t[alive], series[alive]))]
    sid = series[order]
    same_prev = np.zeros(order.size, dtype=bool)
    same_prev[1:] = sid[1:] == sid[:-1]
    same_next = np.zeros(order.size, dtype=bool)
    same_next[:-1] = same_prev[1:]
    oo, hh, ll, cc, tt = o[order], h[order], lo[order], c[order], t[order]
    prev_close = np.full(order.size, np.nan)
    prev_close[1:] = cc[:-1]
    prev_close[~same_prev] = np.nan

    if order.size > stale_run:
        flat_repeat = same_prev & (oo == hh) & (hh == ll) & (ll == cc) & (cc == prev_close)
        stale = _run_lengths(flat_repeat) >= stale_run
        marker.mark(_scatter(order, stale, n), Reason.STALE)

    if order.size > min_context:
        minutes = pd.Series(timeframe[order]).map(_TF_MINUTES).to_numpy(dtype="float64")
        step = np.zeros(order.size)
        step[1:] = (tt[1:] - tt[:-1]) / 6e10
        after_break = same_prev & (step > 1.5 * minutes)
        ref = np.where(after_break, oo, prev_close)
        spike = _spikes(
            ref,
            hh,
            ll,
            cc,
            sid,
            same_next,
            z=spike_z,
            window=spike_window,
            min_context=min_context,
        )
        marker.mark(_scatter(order, spike, n), Reason.SPIKE)

    gaps = _gaps(df, order, sid, same_prev, tt, timeframe, calendar) if calendar else None
    return marker.split(df, gaps)


_BAR_VALUES: Final = itemgetter(*BAR_FRAME_COLUMNS)  # symbol, timeframe, time, then numbers
_PLAIN_NUMBERS: Final = (float, int)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_float(value: Any) -> float | None:
    """A number as ``float``; None where ``pd.to_numeric(errors="coerce")`` would give NaN."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return float(value)


def _epoch_s(value: Any) -> float | None:
    """Epoch seconds of an aware datetime or a number (seconds); None if missing/unparsable."""
    if type(value) is pd.Timestamp and value.tzinfo is not None:
        # = value.timestamp() for microsecond times (the int division rounds once), 4x faster
        return value.value / 1_000_000_000
    if isinstance(value, datetime):
        if value is pd.NaT:
            return None
        if value.tzinfo is None:
            raise ValueError("'time' must be timezone-aware UTC, got naive")
        return value.timestamp()
    if _is_missing(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _odd_values(values: tuple[Any, ...], t: float | None) -> tuple[str | None, list[Any]]:
    """The missing-value and type rules of a bar's values, and its numbers as floats."""
    for value in values:
        if _is_missing(value):
            return Reason.MISSING_VALUE, []
    numbers = [v if type(v) in _PLAIN_NUMBERS else _as_float(v) for v in values[3:]]
    if None in numbers or t is None:
        return Reason.INVALID_TYPE, []
    return None, numbers


def _row_rules(values: tuple[Any, ...], calendar: SessionCalendar) -> _RowResult:
    """``(reason of the row rules, epoch seconds)`` of one bar's ``_BAR_VALUES``
    (``validate_bars``' row rules)."""
    symbol, timeframe, time, o, h, lo, c, tick_volume, spread, real_volume = values
    t = float(time) if type(time) is int else _epoch_s(time)  # the live agent's int seconds
    # the common bar (numbers, no NaN, a time, a symbol) skips the per-value checks
    try:
        total = o + h + lo + c + tick_volume + spread + real_volume
        odd = not isinstance(total, (int, float)) or total != total or t is None
    except TypeError:
        odd = True
    if (
        odd
        or (type(symbol) is not str and _is_missing(symbol))
        or (type(timeframe) is not str and _is_missing(timeframe))
    ):
        reason, numbers = _odd_values(values, t)
        if reason is not None:
            return reason, t
        o, h, lo, c, tick_volume, spread, real_volume = numbers
    # A good bar passes the price rules in one chain of comparisons (false where a price is
    # NaN); only a bar that fails it takes the rules one by one, for its reason.
    if not (0 < lo <= o <= h and lo <= c <= h):
        if o <= 0 or h <= 0 or lo <= 0 or c <= 0:
            return Reason.NON_POSITIVE_PRICE, t
        if h < max(o, c) or lo > min(o, c):
            return Reason.OHLC_INCONSISTENT, t
    if tick_volume < 0 or real_volume < 0:
        return Reason.NEGATIVE_VOLUME, t
    if calendar.closed_at(t):  # type: ignore[arg-type]  # _odd_values rejects t None
        return Reason.MARKET_CLOSED, t
    return None, t


def _remembered_rules(bar: Mapping[str, Any], calendar: SessionCalendar) -> _RowResult:
    """``_row_rules`` of a ``previous`` bar, taken from the last few ``bar`` mappings checked
    with ``calendar`` when it is the same object with equal values (the live loop passes
    each bar again as the next one's ``previous``; equal values give equal rules)."""
    values = _BAR_VALUES(bar)
    seen = calendar._bar_rows.get(id(bar))
    if seen is not None and seen[0] is bar:
        try:
            if seen[1] == values:
                return seen[2]
        except (TypeError, ValueError):  # values without a plain ==, e.g. arrays
            pass
    return _row_rules(values, calendar)


def bar_reason(
    bar: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    *,
    calendar: SessionCalendar | None = None,
) -> str | None:
    """The reason ``validate_bars([previous, bar])`` gives ``bar`` (None: good), in plain Python.

    ``bar`` and ``previous`` map the ``BAR_FRAME_COLUMNS`` to values; ``time`` is an aware
    datetime or epoch seconds. The row rules and the market calendar apply to ``bar``; the
    sequence rules compare it with ``previous`` (duplicate time of the same series, and a time
    before a ``previous`` that passed the row rules). Spike and stale rules need more context
    than two rows and never fire, as in the frame validator.
    """
    cal = calendar or FX_WEEKEND_CORE
    values = _BAR_VALUES(bar)
    reason, t = result = _row_rules(values, cal)
    memo = cal._bar_rows
    if len(memo) >= 64:
        memo.clear()
    memo[id(bar)] = (bar, values, result)  # holds ``bar``, so its id is not reused meanwhile
    if reason is not None or previous is None or t is None:
        return reason
    same_series = previous["symbol"] == bar["symbol"] and str(previous["timeframe"]) == str(
        bar["timeframe"]
    )
    if not same_series:
        return None
    prev_reason, prev_t = _remembered_rules(previous, cal)
    if prev_t is None:
        return None
    if prev_t == t:
        return Reason.DUPLICATE_TIME
    if prev_reason is None and t < prev_t:
        return Reason.OUT_OF_ORDER
    return None


def _scatter(order: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[order] = values
    return out


def _sequence_rules(marker: _Marker, series: np.ndarray, t: np.ndarray) -> None:
    """Duplicate and out-of-order bar times within each series, in frame order.

    Duplicates (same series and time as an earlier row) keep the first.
    """
    dup = pd.DataFrame({"s": series, "t": t}).duplicated(keep="first").to_numpy()
    marker.mark(marker.ok & dup, Reason.DUPLICATE_TIME)
    _mark_late(marker, series, t)


def _mark_late(marker: _Marker, series: np.ndarray, t: np.ndarray) -> None:
    """``out_of_order``: a good row whose time is before the latest earlier good time of its
    series (in frame order)."""
    idx = np.flatnonzero(marker.ok)
    if idx.size < 2:
        return
    sub = pd.DataFrame({"s": series[idx], "t": t[idx]})
    previous_max = sub.groupby("s", sort=False)["t"].cummax().groupby(sub["s"]).shift(1)
    late = (previous_max.notna() & (sub["t"] < previous_max)).to_numpy()
    marker.mark(_scatter(idx, late, t.size), Reason.OUT_OF_ORDER)


def _gaps(
    df: pd.DataFrame,
    order: np.ndarray,
    sid: np.ndarray,
    same_prev: np.ndarray,
    tt: np.ndarray,
    timeframe: np.ndarray,
    calendar: SessionCalendar,
) -> pd.DataFrame:
    """Bars missing between consecutive good bars while the calendar says open."""
    if order.size < 2:
        return _empty_gaps()
    minutes = pd.Series(timeframe[order]).map(_TF_MINUTES).to_numpy(dtype="float64")
    step = np.zeros(order.size)
    step[1:] = (tt[1:] - tt[:-1]) / 6e10
    candidates = np.flatnonzero(same_prev & (step > minutes * 1.0001) & np.isfinite(minutes))
    rows = []
    symbols = df["symbol"].to_numpy()
    strict = replace(calendar, grace_minutes=0)  # a bar opening at the close is not expected
    for i in candidates:
        tf_min = int(minutes[i])
        after = pd.Timestamp(int(tt[i - 1]), tz="UTC")
        before = pd.Timestamp(int(tt[i]), tz="UTC")
        slots = pd.date_range(
            after + pd.Timedelta(minutes=tf_min), before, freq=f"{tf_min}min", inclusive="left"
        )
        missing = int((~strict.is_closed(slots)).sum())
        if missing:
            row = order[i]
            rows.append((symbols[row], str(timeframe[row]), after, before, missing))
    if not rows:
        return _empty_gaps()
    out = pd.DataFrame(rows, columns=["symbol", "timeframe", "after", "before", "missing_bars"])
    return out.astype({"missing_bars": "int64"})


# --------------------------------------------------------------------------- ticks


@dataclass(frozen=True)
class TickRules:
    """Thresholds of the tick history rules, the same for ``validate_ticks`` and ``TickGuard``.

    Spike: a tick whose mid moves from the mid of the symbol's last accepted tick by more than
    ``max(spike_z × scale, spike_min_move)`` (log return), where ``scale`` is 1.4826 × the
    median absolute mid move of the last ``spike_window`` accepted ticks (their mean where the
    median is 0). Not judged until ``min_context`` moves are known, nor after more than
    ``spike_reset_ms`` without an accepted tick (the session opens elsewhere: the tick becomes
    the new reference). ``spike_confirm`` ticks in a row that agree with each other but not
    with the reference are a level shift: the last of them is accepted and becomes the
    reference. The defaults suit FX majors: 25 robust sigmas, never less than 0.1 % (~11 pips
    on EURUSD; real EURUSD prices pass with room, see tests/unit/test_validation_guard.py).
    Stale: the ``stale_run``-th and later tick in a row that repeats the previous bid and ask.
    """

    spike_z: float = 25.0
    spike_window: int = 200
    min_context: int = 50
    spike_min_move: float = 1e-3
    spike_confirm: int = 3
    spike_reset_ms: int = 600_000
    stale_run: int = 20


class _TickHistory:
    """Spike and stale state of one symbol. Every tick that passed the row and sequence rules
    steps it; only accepted ticks move the spike reference and the window of moves."""

    __slots__ = (
        "_ask",
        "_bid",
        "_limit",
        "_moves",
        "_ordered",
        "_ref",
        "_ref_t",
        "_repeats",
        "_rules",
        "_run_anchor",
        "_run_len",
    )

    def __init__(self, rules: TickRules) -> None:
        self._rules = rules
        self._bid = self._ask = math.nan  # the quote of the previous tick
        self._repeats = 0
        self._ref = math.nan  # mid of the last accepted tick
        self._ref_t = 0
        self._moves: deque[float] = deque()  # |log mid move| of accepted ticks, arrival order
        self._ordered: list[float] = []  # the same, sorted (for the median)
        self._limit = math.inf  # the spike threshold; inf until min_context moves
        self._run_anchor = math.nan  # first mid of the current run of spikes
        self._run_len = 0

    def step(self, t: int, bid: float, ask: float) -> str | None:
        """The history reason of a tick at ``t`` ms (None: accepted), and the state after it."""
        rules = self._rules
        if bid == self._bid and ask == self._ask:
            self._repeats += 1
            if self._repeats >= rules.stale_run:
                return Reason.STALE
        else:
            self._bid, self._ask, self._repeats = bid, ask, 0
        mid = (bid + ask) / 2.0
        ref = self._ref
        if ref != ref or t - self._ref_t > rules.spike_reset_ms:
            self._ref, self._ref_t, self._run_len = mid, t, 0
            return None
        ratio = mid / ref
        move = abs(math.log(ratio)) if 0.0 < ratio < math.inf else math.inf  # = _log_move
        if move <= self._limit:
            self._push(move)
            self._ref, self._ref_t, self._run_len = mid, t, 0
            return None
        if self._run_len and _log_move(mid, self._run_anchor) <= self._limit:
            self._run_len += 1
        else:
            self._run_anchor, self._run_len = mid, 1
        if self._run_len >= rules.spike_confirm:  # a level shift, not a spike
            self._ref, self._ref_t, self._run_len = mid, t, 0
            return None
        return Reason.SPIKE

    def _push(self, move: float) -> None:
        rules, moves, ordered = self._rules, self._moves, self._ordered
        if len(moves) >= rules.spike_window:
            del ordered[bisect_left(ordered, moves.popleft())]
        moves.append(move)
        insort(ordered, move)
        n = len(ordered)
        if n >= rules.min_context:
            half = n // 2
            median = ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2.0
            scale = 1.4826 * median if median > 0 else sum(ordered) / n
            limit = rules.spike_z * scale
            self._limit = limit if limit > rules.spike_min_move else rules.spike_min_move


def _log_move(price: float, ref: float) -> float:
    """``|log(price / ref)|``; inf where the ratio is not a positive finite number."""
    ratio = price / ref
    return abs(math.log(ratio)) if 0.0 < ratio < math.inf else math.inf


def validate_ticks(
    ticks: pd.DataFrame,
    *,
    calendar: SessionCalendar | None = None,
    rules: TickRules | None = None,
) -> ValidationResult:
    """Check ticks (``TICK_FRAME_COLUMNS``) of any number of symbols, as :class:`TickGuard`
    would one tick at a time in frame order (a property test holds the two equal).

    Rules: missing values, types, bid/ask > 0 (and ``last`` >= 0), ask >= bid, volume >= 0,
    market closed (``calendar``, default ``FX_WEEKEND_CORE``); then per symbol, in frame
    order, ``out_of_order`` (``time_msc`` before the latest earlier one), ``duplicate_time``
    (the numbers of an earlier tick again), and the history rules of ``rules`` (``spike``,
    ``stale``), which look only backwards.
    """
    missing = [c for c in TICK_FRAME_COLUMNS if c not in ticks.columns]
    if missing:
        raise ValueError(f"ticks lack columns {missing}; expected {list(TICK_FRAME_COLUMNS)}")
    rules = rules or TickRules()
    df = ticks.reset_index(drop=True)
    n = len(df)
    marker = _Marker(n)
    if n == 0:
        return marker.split(df)
    required = [c for c in TICK_FRAME_COLUMNS if c != "last"]
    marker.mark(df[required].isna().to_numpy().any(axis=1), Reason.MISSING_VALUE)
    num = _numeric(df, _TICK_NUMERIC, marker)
    bid, ask, last = num["bid"], num["ask"], num["last"]
    with np.errstate(invalid="ignore"):
        marker.mark((bid <= 0) | (ask <= 0) | (last < 0), Reason.NON_POSITIVE_PRICE)
        marker.mark(ask < bid, Reason.ASK_BELOW_BID)
        marker.mark(num["volume"] < 0, Reason.NEGATIVE_VOLUME)
    t_msc = np.nan_to_num(num["time_msc"], nan=-1).astype(np.int64)
    marker.mark(
        marker.ok & (calendar or FX_WEEKEND_CORE).is_closed(pd.to_datetime(t_msc, unit="ms")),
        Reason.MARKET_CLOSED,
    )
    series = _series_ids(df["symbol"].to_numpy())
    _mark_late(marker, series, t_msc)
    ok = np.flatnonzero(marker.ok)
    identity = pd.DataFrame({"s": series[ok], **{c: num[c][ok] for c in _TICK_NUMERIC}})
    marker.mark(_scatter(ok, identity.duplicated().to_numpy(), n), Reason.DUPLICATE_TIME)

    alive = np.flatnonzero(marker.ok)  # in time order within each symbol now
    histories: dict[int, _TickHistory] = {}
    reasons = []
    for s, t, b, a in zip(
        series[alive].tolist(),
        t_msc[alive].tolist(),
        bid[alive].tolist(),
        ask[alive].tolist(),
        strict=True,
    ):
        history = histories.get(s)
        if history is None:
            history = histories[s] = _TickHistory(rules)
        reasons.append(history.step(t, b, a))
    found = np.array(reasons, dtype=object)
    for code in (Reason.SPIKE, Reason.STALE):
        marker.mark(_scatter(alive, found == code, n), code)
    return marker.split(df)


_TICK_NUMERIC: Final = ("time_msc", "bid", "ask", "last", "volume", "flags")
_TICK_VALUES: Final = itemgetter("symbol", "time", *_TICK_NUMERIC)
_TickNumbers = tuple[float, float, float, float, float, float]


def _tick_row_rules(
    tick: Mapping[str, Any], calendar: SessionCalendar
) -> tuple[str | None, _TickNumbers | None]:
    """``(reason of the row rules, numbers)`` of one tick (``validate_ticks``' row rules);
    ``numbers`` are ``_TICK_NUMERIC`` as floats (``last`` may be NaN), None where unreadable."""
    symbol, time, *values = _TICK_VALUES(tick)
    try:  # the common tick (numbers, no NaN, a symbol and a time) skips per-value checks
        total = values[0] + values[1] + values[2] + values[3] + values[4] + values[5]
        odd = not isinstance(total, (int, float)) or total != total
    except TypeError:
        odd = True
    if odd or _is_missing(symbol) or _is_missing(time):
        if _is_missing(symbol) or _is_missing(time):
            return Reason.MISSING_VALUE, None
        for i, value in enumerate(values):
            if i != 3 and _is_missing(value):  # values[3] is "last", which may be missing
                return Reason.MISSING_VALUE, None
        converted = [math.nan if _is_missing(v) else _as_float(v) for v in values]
        if None in converted:
            return Reason.INVALID_TYPE, None
        values = converted
    numbers: _TickNumbers = tuple(map(float, values))  # type: ignore[assignment]
    t_msc, bid, ask, last, volume, _flags = numbers
    if bid <= 0 or ask <= 0 or last < 0:
        return Reason.NON_POSITIVE_PRICE, numbers
    if ask < bid:
        return Reason.ASK_BELOW_BID, numbers
    if volume < 0:
        return Reason.NEGATIVE_VOLUME, numbers
    if calendar.closed_at(int(t_msc) / 1000.0):
        return Reason.MARKET_CLOSED, numbers
    return None, numbers


def _tick_key(numbers: _TickNumbers) -> tuple[float | None, ...]:
    """What makes two ticks of a symbol the same tick (NaN ``last`` equals NaN ``last``; the
    other numbers of a tick that passed the row rules are never NaN)."""
    if numbers[3] == numbers[3]:
        return numbers
    return (*numbers[:3], None, *numbers[4:])


class _TickSeries:
    """Sequence and history state of one symbol in a :class:`TickGuard`."""

    __slots__ = ("history", "keys", "latest")

    def __init__(self, rules: TickRules) -> None:
        self.latest = -math.inf  # the latest time_msc that passed the row rules in order
        self.keys: set[tuple[float | None, ...]] = set()  # the ticks seen at ``latest``
        self.history = _TickHistory(rules)


class TickGuard:
    """The live agent's per-tick validator: ``check(tick)`` gives the reason that
    ``validate_ticks`` gives the same tick in a frame of every tick checked before it
    (None: accepted), in plain Python (a few µs), keeping a little state per symbol.

    ``calendar`` (default ``FX_WEEKEND_CORE``) and ``rules`` (default ``TickRules()``) are
    those of ``validate_ticks``; one guard serves any number of symbols. What a tick changes:
    a row-rule, out-of-order or duplicate reject nothing; a ``spike`` or ``stale`` reject
    only the latest time, the repeat count and the spike-run count; only an accepted tick
    moves the spike reference (its mid) and the window of moves.
    """

    def __init__(
        self, calendar: SessionCalendar | None = None, rules: TickRules | None = None
    ) -> None:
        self.calendar = calendar or FX_WEEKEND_CORE
        self.rules = rules or TickRules()
        self._series: dict[Any, _TickSeries] = {}

    def check(self, tick: Mapping[str, Any]) -> str | None:
        """The reason of ``tick`` (a mapping of ``TICK_FRAME_COLUMNS``, ``time_msc`` in epoch
        ms), or None when it is good."""
        reason, numbers = _tick_row_rules(tick, self.calendar)
        if numbers is None or reason is not None:
            return reason
        series = self._series.get(tick["symbol"])
        if series is None:
            series = self._series[tick["symbol"]] = _TickSeries(self.rules)
        t = int(numbers[0])
        if t < series.latest:
            return Reason.OUT_OF_ORDER
        key = _tick_key(numbers)
        if t == series.latest:
            if key in series.keys:
                return Reason.DUPLICATE_TIME
            series.keys.add(key)
        else:
            series.latest, series.keys = t, {key}
        return series.history.step(t, numbers[1], numbers[2])


def tick_reason(
    tick: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    *,
    calendar: SessionCalendar | None = None,
) -> str | None:
    """The reason ``validate_ticks([previous, tick])`` gives ``tick`` (None: good), in plain
    Python, with no history: the row rules, and against ``previous`` of the same symbol
    ``out_of_order`` (before a ``previous`` that passed the row rules) and ``duplicate_time``
    (the same numbers). Spike and stale rules need a history: use :class:`TickGuard`.
    """
    cal = calendar or FX_WEEKEND_CORE
    reason, numbers = _tick_row_rules(tick, cal)
    if reason is not None or previous is None or numbers is None:
        return reason
    if previous["symbol"] != tick["symbol"]:
        return None
    prev_reason, prev_numbers = _tick_row_rules(previous, cal)
    if prev_numbers is None or prev_reason is not None:
        return None
    if int(numbers[0]) < int(prev_numbers[0]):
        return Reason.OUT_OF_ORDER
    if _tick_key(numbers) == _tick_key(prev_numbers):
        return Reason.DUPLICATE_TIME
    return None


__all__ = [
    "CALENDARS",
    "FX_NEW_YORK",
    "FX_WEEKEND_CORE",
    "TICK_FRAME_COLUMNS",
    "UTC_WEEKDAYS",
    "Reason",
    "SessionCalendar",
    "TickGuard",
    "TickRules",
    "ValidationResult",
    "bar_reason",
    "tick_reason",
    "validate_bars",
    "validate_ticks",
]
