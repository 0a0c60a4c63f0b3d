"""Bars in the bar-frame convention: a generic OHLCV CSV loader and a seeded synthetic generator.

A bar frame has exactly ``BAR_FRAME_COLUMNS`` (symbol, timeframe, time, open, high, low,
close, tick_volume, spread, real_volume); ``time`` is the bar OPEN time as
``datetime64[ns, UTC]``; prices are float64, volumes and spread (points) int64; rows are
sorted by symbol, time.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.domain import BAR_FRAME_COLUMNS, Timeframe

_TIME_ALIASES = ("time", "timestamp", "datetime", "date", "")
_REQUIRED_PRICES = ("open", "high", "low", "close")
_VOLUME_ALIASES = ("tick_volume", "volume", "tickvol", "vol")


def to_timeframe(timeframe: str | Timeframe) -> Timeframe:
    """Resolve ``"H1"`` (or a ``Timeframe``) to the ``Timeframe`` enum; ValueError otherwise."""
    if isinstance(timeframe, Timeframe):
        return timeframe
    try:
        return Timeframe[str(timeframe).upper()]
    except KeyError:
        names = [t.name for t in Timeframe]
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {names}") from None


def empty_bars() -> pd.DataFrame:
    """An empty frame with the bar-frame columns and dtypes."""
    return _finish(
        pd.DataFrame(
            {
                "symbol": pd.Series([], dtype=object),
                "timeframe": pd.Series([], dtype=object),
                "time": pd.Series([], dtype="datetime64[ns, UTC]"),
                **{c: pd.Series([], dtype="float64") for c in _REQUIRED_PRICES},
                **{
                    c: pd.Series([], dtype="int64")
                    for c in ("tick_volume", "spread", "real_volume")
                },
            }
        )
    )


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Order columns, fix dtypes and sort by symbol, time."""
    out = df[list(BAR_FRAME_COLUMNS)].copy()
    out["symbol"] = out["symbol"].astype(object)
    out["timeframe"] = out["timeframe"].astype(object)
    out["time"] = out["time"].astype("datetime64[ns, UTC]")
    for c in _REQUIRED_PRICES:
        out[c] = out[c].astype("float64")
    for c in ("tick_volume", "spread", "real_volume"):
        out[c] = out[c].astype("int64")
    return out.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)


def _to_utc(values: pd.Series, tz: str) -> pd.Series:
    times = pd.to_datetime(values, utc=False)
    if getattr(times.dt, "tz", None) is None:
        times = times.dt.tz_localize(tz)
    return times.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _int_column(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(f"{path}: column {column!r} has {missing} missing or non-numeric values")
    return values.round().astype("int64")


def load_ohlcv_csv(
    path: str | Path,
    *,
    symbol: str,
    timeframe: str | Timeframe,
    tz: str = "UTC",
    spread_points: int = 0,
) -> pd.DataFrame:
    """Load a generic OHLCV CSV into a bar frame.

    Headers are matched case-insensitively. The time column is ``time``/``timestamp``/
    ``datetime``/``date`` or an unnamed first column; naive timestamps are read in ``tz``
    and converted to UTC. ``Volume`` (or ``tick_volume``) becomes ``tick_volume``;
    ``spread`` and ``real_volume`` are taken when present, else ``spread_points`` and 0.
    Raises ValueError naming the missing columns.
    """
    tf = to_timeframe(timeframe)
    raw = pd.read_csv(path)
    lower = {str(c).strip().lower(): c for c in raw.columns}
    if str(raw.columns[0]).startswith("Unnamed:"):
        lower.setdefault("", raw.columns[0])
    time_col = next((lower[a] for a in _TIME_ALIASES if a in lower), None)
    volume_col = next((lower[a] for a in _VOLUME_ALIASES if a in lower), None)
    missing = [c for c in _REQUIRED_PRICES if c not in lower]
    if time_col is None:
        missing.insert(0, "time")
    if volume_col is None:
        missing.append("volume")
    if missing:
        raise ValueError(
            f"{path}: missing columns {missing}; found {[str(c) for c in raw.columns]} "
            "(expected a time column, open, high, low, close and volume, any case)"
        )
    assert time_col is not None and volume_col is not None
    prices = {
        c: pd.to_numeric(raw[lower[c]], errors="coerce").astype("float64") for c in _REQUIRED_PRICES
    }
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": tf.name,
            "time": _to_utc(raw[time_col], tz),
            **prices,
            "tick_volume": _int_column(raw, volume_col, path),
            "spread": _int_column(raw, lower["spread"], path)
            if "spread" in lower
            else spread_points,
            "real_volume": (
                _int_column(raw, lower["real_volume"], path) if "real_volume" in lower else 0
            ),
        }
    )
    return _finish(df)


# --------------------------------------------------------------------------- synthetic bars


def _session_profile(hour: np.ndarray) -> np.ndarray:
    """Intraday activity multiplier: quiet late evening, Tokyo, London and New York peaks."""

    def bump(center: float, width: float) -> np.ndarray:
        distance = (hour - center + 12.0) % 24.0 - 12.0  # circular, so 23:00 is near 01:00
        return np.asarray(np.exp(-0.5 * (distance / width) ** 2))

    return 0.3 + 0.4 * bump(1.5, 2.5) + 0.9 * bump(8.5, 2.0) + 1.1 * bump(14.0, 2.0)


_PROFILE_MEAN = float(_session_profile(np.arange(0.0, 24.0, 1.0 / 60.0)).mean())


def _bar_times(start: pd.Timestamp, tf: Timeframe, n: int) -> np.ndarray:
    """Open times of ``n`` consecutive weekday bars from ``start`` (aligned to the grid)."""
    minutes = tf.minutes
    per_day = max(1, 1440 // minutes)
    day = start.normalize()
    slot = int(np.ceil((start - day) / pd.Timedelta(minutes=minutes)))
    if slot >= per_day:
        day, slot = day + pd.Timedelta(days=1), 0
    first_day: Any = np.datetime64(day.tz_convert(None).date(), "D")
    if not np.is_busday(first_day):
        first_day, slot = np.busday_offset(first_day, 0, roll="forward"), 0
    seq = slot + np.arange(n, dtype=np.int64)
    days = np.busday_offset(first_day, seq // per_day, roll="forward")
    offsets = (seq % per_day) * np.int64(minutes) * np.int64(60_000_000_000)
    return days.astype("datetime64[ns]") + offsets.astype("timedelta64[ns]")


def synthetic_bars(
    symbol: str,
    *,
    timeframe: str | Timeframe,
    start: str | datetime | pd.Timestamp,
    n: int,
    seed: int,
    base_price: float = 1.1,
    annual_vol: float = 0.08,
    digits: int = 5,
    base_spread: int = 8,
    base_tick_volume: float = 1000.0,
    vol_persistence: float = 0.98,
    vol_of_vol: float = 0.45,
    weekend_gap_vol: float = 3.0,
) -> pd.DataFrame:
    """Seeded, deterministic synthetic FX bars in the bar-frame convention.

    Vectorized (numpy). Volatility clusters (log-volatility AR(1), a stochastic-volatility
    cousin of GARCH with ``vol_persistence``/``vol_of_vol``), follows an intraday session
    profile, and returns are fat-tailed (Student t, 5 dof). There are no bars on Saturday
    or Sunday (UTC); the first bar after a weekend opens with a gap of about
    ``weekend_gap_vol`` bar volatilities. OHLC are valid after rounding to ``digits``;
    spread (points) widens in quiet hours and with volatility; tick_volume follows activity.
    The random stream depends on ``seed`` and ``symbol`` (so two symbols differ).
    """
    tf = to_timeframe(timeframe)
    if n < 0:
        raise ValueError("n must be >= 0")
    if n == 0:
        return empty_bars()
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    times = _bar_times(ts, tf, n)
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])

    hour = (times - times.astype("datetime64[D]")).astype(np.int64) / 3.6e12
    season = _session_profile(hour) / _PROFILE_MEAN
    bar_vol = annual_vol * np.sqrt(tf.minutes / (252.0 * 1440.0))

    # log-volatility AR(1): h_t = phi h_{t-1} + eta_t, stationary sd = vol_of_vol
    eta = rng.standard_normal(n) * vol_of_vol * np.sqrt(1.0 - vol_persistence**2)
    h = (
        pd.Series(eta / (1.0 - vol_persistence))
        .ewm(alpha=1.0 - vol_persistence, adjust=False)
        .mean()
        .to_numpy()
    )
    sigma = bar_vol * np.exp(h - 0.5 * vol_of_vol**2) * np.sqrt(season)
    z = rng.standard_t(5, n) / np.sqrt(5.0 / 3.0)
    ret = sigma * z

    gap = np.zeros(n)
    step = np.diff(times).astype(np.int64)
    after_gap = np.flatnonzero(step > tf.minutes * 60_000_000_000 * 1.5) + 1
    gap[after_gap] = rng.standard_normal(after_gap.size) * bar_vol * weekend_gap_vol

    log_close = np.log(base_price) + np.cumsum(ret + gap)
    log_open = np.empty(n)
    log_open[0] = np.log(base_price)
    log_open[1:] = log_close[:-1]
    log_open += gap
    close = np.exp(log_close)
    open_ = np.exp(log_open)
    wick = np.abs(rng.standard_normal((2, n))) * sigma * 0.8
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    open_, high, low, close = (np.round(a, digits) for a in (open_, high, low, close))
    low = np.maximum(low, 10.0**-digits)

    rel_vol = sigma / bar_vol
    quiet = np.clip(1.6 - season, 0.0, None)
    spread = np.round(
        base_spread * (1.0 + quiet + 0.3 * np.abs(rng.standard_normal(n))) * (0.7 + 0.3 * rel_vol)
    )
    tick_volume = rng.poisson(base_tick_volume * tf.minutes / 60.0 * season * rel_vol)

    df = pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": tf.name,
            "time": pd.DatetimeIndex(times).tz_localize("UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "tick_volume": tick_volume.astype(np.int64),
            "spread": spread.astype(np.int64),
            "real_volume": np.zeros(n, dtype=np.int64),
        }
    )
    return _finish(df)
