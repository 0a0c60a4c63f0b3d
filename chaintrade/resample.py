"""Ticks → M1 bars and M1 → M5/M15/H1 (or any larger timeframe), with MT5 bar semantics.

A bar is stamped with its OPEN time (the period floored to the timeframe, UTC epoch
grid); open = first, high = max, low = min, close = last, tick_volume = sum (for ticks:
the number of ticks), real_volume = sum, spread = the lowest spread in the bar (points).
Only CLOSED bars are returned: a bar whose period has not ended by ``now`` (default: the
end of the input's last period for bars, the last tick's time for ticks) is left out, so a
partial bar is never presented as closed.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from chaintrade.domain import Timeframe
from chaintrade.market_data import _finish, empty_bars, to_timeframe

_NS_PER_MIN = 60_000_000_000


def _now_ns(now: str | datetime | pd.Timestamp | None) -> int | None:
    if now is None:
        return None
    ts = pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def _aggregate(
    symbol: np.ndarray,
    t_ns: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    tick_volume: np.ndarray,
    spread: np.ndarray,
    real_volume: np.ndarray,
    tf: Timeframe,
    closed_before: np.ndarray,
) -> pd.DataFrame:
    """Group rows sorted by (symbol, time) into bars of ``tf``; keep closed ones only.

    ``closed_before[i]`` is the time (ns) up to which row i's series is known complete.
    """
    if t_ns.size == 0:
        return empty_bars()
    width = tf.minutes * _NS_PER_MIN
    bucket = (t_ns // width) * width
    new = np.ones(t_ns.size, dtype=bool)
    new[1:] = (bucket[1:] != bucket[:-1]) | (symbol[1:] != symbol[:-1])
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], t_ns.size] - 1
    closed = bucket[starts] + width <= closed_before[starts]
    starts, ends = starts[closed], ends[closed]
    if starts.size == 0:
        return empty_bars()
    all_starts = np.flatnonzero(new)
    keep = np.isin(all_starts, starts)

    def reduce(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return np.asarray(ufunc.reduceat(values, all_starts)[keep])

    frame = pd.DataFrame(
        {
            "symbol": symbol[starts],
            "timeframe": tf.name,
            "time": pd.to_datetime(bucket[starts], utc=True),
            "open": o[starts],
            "high": reduce(np.maximum, h),
            "low": reduce(np.minimum, lo),
            "close": c[ends],
            "tick_volume": reduce(np.add, tick_volume),
            "spread": reduce(np.minimum, spread),
            "real_volume": reduce(np.add, real_volume),
        }
    )
    return _finish(frame)


def _series_end(symbol: np.ndarray, last_ns: np.ndarray) -> np.ndarray:
    """For each row, the max of ``last_ns`` over its symbol (the data's end per series)."""
    codes, _ = pd.factorize(symbol)
    ends = np.full(codes.max() + 1, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(ends, codes, last_ns)
    return ends[codes]


def resample_bars(
    bars: pd.DataFrame,
    timeframe: str | Timeframe,
    *,
    now: str | datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Bars (one source timeframe per symbol, e.g. M1) → bars of a larger ``timeframe``.

    A target bar is closed when ``now`` (default: the end of the last source bar's period)
    has reached its end; later bars are partial and left out.
    """
    tf = to_timeframe(timeframe)
    if bars.empty:
        return empty_bars()
    source = {to_timeframe(x) for x in bars["timeframe"].unique()}
    if any(s.minutes > tf.minutes or tf.minutes % s.minutes for s in source):
        raise ValueError(
            f"cannot resample {sorted(s.name for s in source)} to {tf.name}: "
            "the target must be a whole multiple of the source timeframe"
        )
    df = bars.sort_values(["symbol", "time"], kind="stable")
    t_ns = df["time"].astype("int64").to_numpy()
    src_minutes = df["timeframe"].map(lambda x: to_timeframe(x).minutes).to_numpy(np.int64)
    end_ns = t_ns + src_minutes * _NS_PER_MIN
    now_ns = _now_ns(now)
    closed_before = (
        np.full(t_ns.size, now_ns, dtype=np.int64)
        if now_ns is not None
        else _series_end(df["symbol"].to_numpy(), end_ns)
    )
    return _aggregate(
        df["symbol"].to_numpy(),
        t_ns,
        df["open"].to_numpy(np.float64),
        df["high"].to_numpy(np.float64),
        df["low"].to_numpy(np.float64),
        df["close"].to_numpy(np.float64),
        df["tick_volume"].to_numpy(np.int64),
        df["spread"].to_numpy(np.int64),
        df["real_volume"].to_numpy(np.int64),
        tf,
        closed_before,
    )


def ticks_to_bars(
    ticks: pd.DataFrame,
    timeframe: str | Timeframe = "M1",
    *,
    price: str = "bid",
    digits: int | None = None,
    now: str | datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Ticks → bars (MT5 charts bars on the ``bid``; use ``"last"`` for exchange symbols).

    ``tick_volume`` counts ticks, ``real_volume`` sums ``volume``, ``spread`` is the lowest
    ask - bid in the bar in points (``digits`` from the frame's attrs, else 5). A bar is
    closed when a later tick (or ``now``) shows its period has ended.
    """
    tf = to_timeframe(timeframe)
    if ticks.empty:
        return empty_bars()
    digits = digits if digits is not None else int(ticks.attrs.get("digits", 5))
    df = ticks.sort_values(["symbol", "time_msc"], kind="stable")
    t_ns = df["time_msc"].to_numpy(np.int64) * 1_000_000
    px = df[price].to_numpy(np.float64)
    spread = np.round((df["ask"].to_numpy() - df["bid"].to_numpy()) * 10.0**digits).astype(np.int64)
    now_ns = _now_ns(now)
    closed_before = (
        np.full(t_ns.size, now_ns, dtype=np.int64)
        if now_ns is not None
        else _series_end(df["symbol"].to_numpy(), t_ns + 1)
    )
    return _aggregate(
        df["symbol"].to_numpy(),
        t_ns,
        px,
        px,
        px,
        px,
        np.ones(t_ns.size, dtype=np.int64),
        spread,
        df["volume"].to_numpy(np.int64),
        tf,
        closed_before,
    )


__all__ = ["resample_bars", "ticks_to_bars"]
