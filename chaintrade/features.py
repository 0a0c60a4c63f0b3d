"""The one feature implementation, shared by batch (Spark, per symbol) and online serving.

Causal and deterministic: the feature row of bar ``t`` uses only bars ``<= t`` and becomes
known at the bar's close (``event_timestamp = time + timeframe``). Indicators follow the
TA-Lib definitions, seeding included, so they equal ``talib`` from the first valid row:

* EMA(n): seeded with the SMA of the first ``n`` values, then ``k = 2 / (n + 1)``.
* MACD(12, 26, 9): as ``talib.MACD`` — both EMAs are seeded at bar 25 (the fast one with the
  SMA of bars 14..25), the signal EMA(9) with the SMA of MACD bars 25..33; first value at 33.
* RSI(14), ATR(14): Wilder smoothing seeded with the mean of the first 14 changes/true ranges;
  RSI is 0 when average gain and loss are both 0 (as TA-Lib).
* SMA(n) and Bollinger bands (population standard deviation, 2σ) over 20 bars.
* ``momentum_10`` = ``talib.ROCR(close, 10) - 1``; ``price_change_1`` = ``talib.MOM(close, 1)``
  (price units); ``volatility_20`` (realized volatility) = ``talib.STDDEV`` of log returns;
  ``spread_volatility_20`` = ``talib.STDDEV(spread, 20)`` (points).
* ``close_sma_n`` / ``close_ema_n`` = close / MA(n) - 1 for n in 12, 20, 26, 50.
* Sessions (fixed UTC hours of the bar open, no daylight-saving shift): Asia [0, 9),
  London [7, 16), New York [12, 21); 1.0 inside, 0.0 outside.

Windowed statistics are computed from the window's own values (no running sums), so they do
not depend on how much history precedes the window. Recursive ones (EMA, Wilder) forget
their seed geometrically; after ``LOOKBACK_BARS`` bars the difference to the full-history
value is far below 1e-12 relative, which is what the online path relies on.

The online path, :class:`OnlineFeatures`, is derived from these kernels rather than written
beside them: once a symbol has ``LOOKBACK_BARS`` bars the batch kernels compute its row and
the state of every recursive indicator; each later bar advances that state by one step of
the same recurrence (pandas' ``ewm(adjust=False)`` arithmetic) and recomputes the windowed
statistics over the last <= 50 bars, summed in the kernels' order. Its rows equal
``compute_features`` over the full history (tests: ``tests/unit/test_features_incremental.py``).

Rows inside a feature's warm-up are NaN (never filled) and flagged by ``warmup``.
``hour_sin``/``hour_cos`` use the fractional UTC hour of the bar open (hour + minute / 60);
``volume_ratio_20``/``spread_ratio_20`` are 1.0 when the 20-bar mean is 0 (e.g. no spreads).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import numpy as np
import pandas as pd

from chaintrade.domain import Timeframe, to_timeframe

FEATURE_VIEWS: Final[dict[str, tuple[str, ...]]] = {
    "price_features": (
        "ret_1",
        "ret_5",
        "price_change_1",
        "momentum_10",
        "hl_range",
        "hour_sin",
        "hour_cos",
        "session_asia",
        "session_london",
        "session_new_york",
    ),
    "technical_features": (
        "close_sma_12",
        "close_sma_20",
        "close_sma_26",
        "close_sma_50",
        "close_ema_12",
        "close_ema_20",
        "close_ema_26",
        "close_ema_50",
        "ema_ratio_12_26",
        "macd",
        "macd_signal",
        "rsi_14",
        "atr_14",
        "bb_pos_20",
        "volatility_20",
    ),
    "volume_features": (
        "volume_ratio_20",
        "volume_change",
        "spread",
        "spread_ratio_20",
        "spread_volatility_20",
    ),
}
# The timeframes features are built for (named ``{feature}_{timeframe}``).
FEATURE_TIMEFRAMES: Final[tuple[str, ...]] = ("M1", "M5", "M15", "H1")

BASE_FEATURES: Final[tuple[str, ...]] = tuple(f for view in FEATURE_VIEWS.values() for f in view)

# Leading bars (0-based index of the first valid value) per base feature: TA-Lib's lookback.
WARMUP_BARS: Final[dict[str, int]] = {
    "ret_1": 1,
    "ret_5": 5,
    "price_change_1": 1,
    "momentum_10": 10,
    "hl_range": 0,
    "hour_sin": 0,
    "hour_cos": 0,
    "session_asia": 0,
    "session_london": 0,
    "session_new_york": 0,
    "close_sma_12": 11,
    "close_sma_20": 19,
    "close_sma_26": 25,
    "close_sma_50": 49,
    "close_ema_12": 11,
    "close_ema_20": 19,
    "close_ema_26": 25,
    "close_ema_50": 49,
    "ema_ratio_12_26": 25,
    "macd": 33,
    "macd_signal": 33,
    "rsi_14": 14,
    "atr_14": 14,
    "bb_pos_20": 19,
    "volatility_20": 20,
    "volume_ratio_20": 19,
    "volume_change": 1,
    "spread": 0,
    "spread_ratio_20": 19,
    "spread_volatility_20": 19,
}
MAX_WARMUP_BARS: Final[int] = max(WARMUP_BARS.values())

# Trailing bars the online path needs so that recursive indicators equal the full-history
# batch value: the slowest forgetting factor is EMA(50)'s 49/51 per bar, and
# (49/51) ** (700 - 49) ≈ 5e-12, times a seed difference of a few % of the price: measured
# |online - batch| <= 1e-14 on the 5,000 real EURUSD H1 bars (the contract is 1e-9).
# The Spark job's chunks carry the same number of bars of overlap.
LOOKBACK_BARS: Final[int] = 700

KEY_COLUMNS: Final[tuple[str, ...]] = ("symbol", "time", "event_timestamp", "warmup")
REQUIRED_BAR_COLUMNS: Final[tuple[str, ...]] = (
    "symbol",
    "time",
    "open",
    "high",
    "low",
    "close",
    "tick_volume",
    "spread",
)


def feature_columns(timeframe: str, view: str | None = None) -> list[str]:
    """Feature column names ``{feature}_{timeframe}`` of one view, or of all views in order."""
    tf = to_timeframe(timeframe).name
    if view is None:
        names: tuple[str, ...] = BASE_FEATURES
    elif view in FEATURE_VIEWS:
        names = FEATURE_VIEWS[view]
    else:
        raise ValueError(f"unknown feature view {view!r}; expected one of {list(FEATURE_VIEWS)}")
    return [f"{name}_{tf}" for name in names]


# --------------------------------------------------------------------------- kernels


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the window ``x[t-n+1..t]``, summed from the window's own values only."""
    out = np.full(x.shape, np.nan)
    m = len(x) - n + 1
    if m <= 0:
        return out
    acc = x[0:m].copy()
    for k in range(1, n):
        acc += x[k : k + m]
    out[n - 1 :] = acc / n
    return out


def _rolling_std(x: np.ndarray, n: int, mean_x: np.ndarray | None = None) -> np.ndarray:
    """Population standard deviation of ``x[t-n+1..t]`` (two-pass, window-local)."""
    out = np.full(x.shape, np.nan)
    m = len(x) - n + 1
    if m <= 0:
        return out
    mean = (_rolling_mean(x, n) if mean_x is None else mean_x)[n - 1 :]
    acc = np.zeros(m)
    for k in range(n):
        d = x[k : k + m] - mean
        acc += d * d
    out[n - 1 :] = np.sqrt(acc / n)
    return out


def _smooth(x: np.ndarray, n: int, alpha: float, seed_at: int) -> np.ndarray:
    """``y[t] = y[t-1] + alpha * (x[t] - y[t-1])`` seeded with mean(x[seed_at-n+1..seed_at])."""
    out = np.full(x.shape, np.nan)
    if len(x) <= seed_at:
        return out
    y = x.astype(np.float64, copy=True)
    y[:seed_at] = np.nan
    y[seed_at] = np.sum(x[seed_at - n + 1 : seed_at + 1]) / n
    out[:] = pd.Series(y).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def _ema(x: np.ndarray, n: int, seed_at: int | None = None) -> np.ndarray:
    return _smooth(x, n, 2.0 / (n + 1), n - 1 if seed_at is None else seed_at)


def _wilder(x: np.ndarray, n: int, seed_at: int) -> np.ndarray:
    return _smooth(x, n, 1.0 / n, seed_at)


def _safe_ratio(num: np.ndarray, den: np.ndarray, when_zero: float) -> np.ndarray:
    """num / den, with ``when_zero`` where den == 0 (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[(den == 0) & ~np.isnan(den)] = when_zero
    return out


def _recursive_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> dict[str, np.ndarray]:
    """The recursive (EMA / Wilder) series; their last values are the online path's state."""
    out = {f"ema_{n}": _ema(close, n) for n in (12, 20, 26, 50)}
    out["macd_fast"] = _ema(close, 12, seed_at=25)
    out["macd_signal"] = _ema(out["macd_fast"] - out["ema_26"], 9, seed_at=33)
    change = close - _shift(close, 1)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    gain[:1] = loss[:1] = np.nan
    out["avg_gain"] = _wilder(gain, 14, seed_at=14)
    out["avg_loss"] = _wilder(loss, 14, seed_at=14)
    out["atr"] = atr_14(high, low, close)
    return out


def _compute_arrays(
    time_ns: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    spread: np.ndarray,
    recursive: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    rec = _recursive_series(high, low, close) if recursive is None else recursive
    log_close = np.log(close)
    ret_1 = log_close - _shift(log_close, 1)
    sma_20 = _rolling_mean(close, 20)
    hour = (time_ns % 86_400_000_000_000) / 3_600_000_000_000
    angle = 2.0 * np.pi * hour / 24.0

    sma = {n: sma_20 if n == 20 else _rolling_mean(close, n) for n in (12, 20, 26, 50)}
    ema = {n: rec[f"ema_{n}"] for n in (12, 20, 26, 50)}
    ema_12, ema_26 = ema[12], ema[26]
    macd_line = rec["macd_fast"] - ema_26
    macd_line[:33] = np.nan
    change = close - _shift(close, 1)
    avg_gain, avg_loss = rec["avg_gain"], rec["avg_loss"]
    rsi = _safe_ratio(100.0 * avg_gain, avg_gain + avg_loss, 0.0)

    band = 2.0 * _rolling_std(close, 20, sma_20)
    bb_pos = _safe_ratio(close - (sma_20 - band), 2.0 * band, 0.5)

    log_volume = np.log(volume + 1.0)
    out = {
        "ret_1": ret_1,
        "ret_5": log_close - _shift(log_close, 5),
        "price_change_1": change,
        "momentum_10": close / _shift(close, 10) - 1.0,
        "hl_range": (high - low) / close,
        "hour_sin": np.sin(angle),
        "hour_cos": np.cos(angle),
        "session_asia": _in_hours(hour, 0.0, 9.0),
        "session_london": _in_hours(hour, 7.0, 16.0),
        "session_new_york": _in_hours(hour, 12.0, 21.0),
        "ema_ratio_12_26": ema_12 / ema_26 - 1.0,
        "macd": macd_line / close,
        "macd_signal": rec["macd_signal"] / close,
        "rsi_14": rsi,
        "atr_14": rec["atr"] / close,
        "bb_pos_20": bb_pos,
        "volatility_20": _rolling_std(ret_1, 20),
        "volume_ratio_20": _safe_ratio(volume, _rolling_mean(volume, 20), 1.0),
        "volume_change": log_volume - _shift(log_volume, 1),
        "spread": spread,
        "spread_ratio_20": _safe_ratio(spread, _rolling_mean(spread, 20), 1.0),
        "spread_volatility_20": _rolling_std(spread, 20),
    }
    for n in (12, 20, 26, 50):
        out[f"close_sma_{n}"] = close / sma[n] - 1.0
        out[f"close_ema_{n}"] = close / ema[n] - 1.0
    return out


def atr_14(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """ATR(14) in price units, as ``talib.ATR(high, low, close, 14)`` (NaN for bars 0..13)."""
    prev_close = _shift(close, 1)
    true_range = np.maximum(
        high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close))
    )
    return _wilder(true_range, 14, seed_at=14)


def _in_hours(hour: np.ndarray, start: float, end: float) -> np.ndarray:
    return ((hour >= start) & (hour < end)).astype(np.float64)


# --------------------------------------------------------------------------- public API


def _check_bars(bars: pd.DataFrame, tf: Timeframe) -> None:
    missing = [c for c in REQUIRED_BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    if bars["symbol"].nunique(dropna=False) > 1:
        raise ValueError("compute_features takes the bars of ONE symbol; group by symbol first")
    if "timeframe" in bars.columns and len(bars):
        other = set(bars["timeframe"].astype(str)) - {tf.name}
        if other:
            raise ValueError(f"bars have timeframe {sorted(other)}, features asked for {tf.name}")
    if not isinstance(bars["time"].dtype, pd.DatetimeTZDtype):
        raise ValueError(f"bars.time must be timezone-aware UTC, got {bars['time'].dtype}")
    numeric = bars[["open", "high", "low", "close", "tick_volume", "spread"]]
    if numeric.isna().to_numpy().any():
        raise ValueError("bars contain missing prices/volumes; validate them first")
    if (bars["close"] <= 0).any():
        raise ValueError("bars contain non-positive close prices; validate them first")
    if len(bars) > 1 and not (bars["time"].diff().iloc[1:] > pd.Timedelta(0)).all():
        raise ValueError("bars.time must be strictly increasing; sort and de-duplicate first")


def compute_features(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Features of the bars of ONE symbol sorted by time: one row per input bar.

    Columns: ``symbol``, ``time`` (bar open), ``event_timestamp`` (bar close = time +
    timeframe, when the row becomes known), ``warmup`` (True while any feature is still in
    its warm-up, i.e. row index < ``MAX_WARMUP_BARS``) and ``feature_columns(timeframe)``.
    """
    tf = to_timeframe(timeframe)
    _check_bars(bars, tf)
    time = bars["time"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]").reset_index(drop=True)
    time_ns = time.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    arrays = _compute_arrays(
        time_ns,
        bars["high"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
        bars["tick_volume"].to_numpy(np.float64),
        bars["spread"].to_numpy(np.float64),
    )
    # One float block, filled row by row: building the frame from a dict of 30 columns
    # costs more than computing them (pandas consolidates with a strided copy).
    block = np.empty((len(BASE_FEATURES), len(bars)), dtype=np.float64)
    for i, name in enumerate(BASE_FEATURES):
        block[i] = arrays[name]
    out = pd.DataFrame(block.T, columns=feature_columns(tf.name), copy=False)
    out.insert(0, "symbol", bars["symbol"].astype(object).to_numpy())
    out.insert(1, "time", time)
    out.insert(2, "event_timestamp", time + tf.duration)
    out.insert(3, "warmup", np.arange(len(bars)) < MAX_WARMUP_BARS)
    return out


def compute_features_by_symbol(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``compute_features`` applied to each symbol of a multi-symbol bar frame (sorted by time)."""
    parts = [
        compute_features(group.sort_values("time", kind="stable"), timeframe)
        for _, group in bars.groupby("symbol", sort=True)
    ]
    if not parts:
        return compute_features(bars.iloc[:0], timeframe)
    return pd.concat(parts, ignore_index=True)


def latest_features(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The online path: the last feature row, computed over the last ``LOOKBACK_BARS`` bars.

    Raises ValueError with fewer than ``LOOKBACK_BARS`` bars: the recursive indicators would
    not yet equal the batch values (fail closed rather than serve a different number).
    """
    if len(bars) < LOOKBACK_BARS:
        raise ValueError(f"online features need {LOOKBACK_BARS} bars, got {len(bars)}")
    return compute_features(bars.iloc[-LOOKBACK_BARS:], timeframe).iloc[-1:].reset_index(drop=True)


# --------------------------------------------------------------------------- online (incremental)

_SPANS: Final[tuple[int, ...]] = (12, 20, 26, 50)
_MAX_WINDOW: Final[int] = 50
_RawBar = tuple[int, float, float, float, float, float]  # time_ns, high, low, close, volume, spread


def _ewm_weights(alpha: float) -> tuple[float, float]:
    """(old, new) weights of one ``ewm(alpha=alpha, adjust=False)`` step, as pandas forms them."""
    a = 1.0 / (1.0 + (1.0 - alpha) / alpha)
    return 1.0 - a, a


def _ewm_step(y: float, x: float, weights: tuple[float, float]) -> float:
    """One step of ``_smooth``'s recurrence (pandas skips the step when ``x == y``)."""
    if y == x:
        return y
    old, new = weights
    return (old * y + new * x) / (old + new)


def _window_mean(values: list[float]) -> float:
    """As ``_rolling_mean``: summed oldest first (Python >= 3.12 compensates; still <= 1 ulp)."""
    return sum(values) / len(values)


def _window_std(values: list[float], mean: float) -> float:
    return math.sqrt(sum([(v - mean) * (v - mean) for v in values]) / len(values))


def _ratio(num: float, den: float, when_zero: float) -> float:
    return when_zero if den == 0.0 else num / den


_EMA_WEIGHTS: Final = {n: _ewm_weights(2.0 / (n + 1)) for n in (*_SPANS, 9)}
_WILDER_WEIGHTS: Final = _ewm_weights(1.0 / 14)
_STATE_KEYS: Final = (
    *(f"ema_{n}" for n in _SPANS), "macd_fast", "macd_signal", "avg_gain", "avg_loss", "atr"
)  # fmt: skip


def _log(x: float) -> float:
    """``np.log`` of one value: numpy's vectorized log (SIMD on AVX-512 machines) can differ
    from ``math.log`` in the last bit; the same ufunc keeps online rows equal to batch rows."""
    return float(np.log(x))


class OnlineFeatures:
    """The newest feature row of ONE symbol, one closed bar at a time (the serving path).

    While fewer than ``LOOKBACK_BARS`` bars are known ``update`` returns None (fail closed:
    the recursive indicators would not equal the batch values yet). The bar that completes
    the window gets its row from the batch kernels, which also seed the recursive state;
    every later bar costs one recurrence step per indicator and sums over <= 50 bars.
    A bar with the time of the last one replaces it (the state is re-seeded from the
    buffer); an older bar is refused.
    """

    def __init__(self, timeframe: str) -> None:
        self.timeframe = to_timeframe(timeframe)
        self.bars: deque[_RawBar] = deque(maxlen=LOOKBACK_BARS)
        self._state: dict[str, float] | None = None
        self._last_row: np.ndarray | None = None
        self._closes: deque[float] = deque(maxlen=_MAX_WINDOW + 1)
        self._log_closes: deque[float] = deque(maxlen=6)
        self._returns: deque[float] = deque(maxlen=20)
        self._volumes: deque[float] = deque(maxlen=20)
        self._spreads: deque[float] = deque(maxlen=20)

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, timeframe: str) -> OnlineFeatures:
        """A state holding the last ``LOOKBACK_BARS`` of ``bars`` (one symbol, sorted by time)."""
        online = cls(timeframe)
        _check_bars(bars, online.timeframe)
        tail = bars.iloc[-LOOKBACK_BARS:]
        time_ns = (
            tail["time"].dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").astype(np.int64)
        )
        columns = [tail[c].to_numpy(np.float64) for c in ("high", "low", "close")]
        columns += [tail["tick_volume"].to_numpy(np.float64), tail["spread"].to_numpy(np.float64)]
        online.bars.extend(zip(time_ns.tolist(), *(c.tolist() for c in columns), strict=True))
        if len(online.bars) == LOOKBACK_BARS:
            online._seed()
        return online

    @property
    def ready(self) -> bool:
        """True once rows equal the batch values (``LOOKBACK_BARS`` bars seen)."""
        return self._state is not None

    @property
    def last_time_ns(self) -> int | None:
        return self.bars[-1][0] if self.bars else None

    def row(self) -> np.ndarray | None:
        """The newest row (``BASE_FEATURES`` order), from the buffer; None when not ready."""
        return self._seed() if len(self.bars) == LOOKBACK_BARS else None

    def update(
        self, time_ns: int, high: float, low: float, close: float, volume: float, spread: float
    ) -> np.ndarray | None:
        """Add the bar that just closed; its feature row in ``BASE_FEATURES`` order, or None."""
        if not (close > 0.0 and all(map(math.isfinite, (high, low, close, volume, spread)))):
            raise ValueError(
                "bar has missing, non-finite or non-positive values; validate it first"
            )
        bar = (time_ns, high, low, close, volume, spread)
        last = self.last_time_ns
        if last is not None and time_ns <= last:
            if time_ns < last:
                raise ValueError(f"bar at {time_ns} ns is older than the last bar ({last} ns)")
            if bar == self.bars[-1] and self._last_row is not None:  # the same bar resent
                return self._last_row.copy()
            self.bars[-1] = bar
            self._last_row = self.row()
        else:
            self.bars.append(bar)
            if self._state is not None:
                self._last_row = self._step(*bar)
            elif len(self.bars) == LOOKBACK_BARS:
                self._last_row = self._seed()
        return None if self._last_row is None else self._last_row.copy()

    def _seed(self) -> np.ndarray:
        """The batch kernels over the buffer: the last row, and the state for later steps."""
        raw = np.asarray(self.bars, dtype=np.float64)
        time_ns = np.fromiter((b[0] for b in self.bars), dtype=np.int64, count=len(self.bars))
        high, low, close, volume, spread = (raw[:, i] for i in range(1, 6))
        rec = _recursive_series(high, low, close)
        arrays = _compute_arrays(time_ns, high, low, close, volume, spread, recursive=rec)
        self._state = {k: float(rec[k][-1]) for k in _STATE_KEYS}
        self._closes = deque(close[-(_MAX_WINDOW + 1) :].tolist(), maxlen=_MAX_WINDOW + 1)
        self._log_closes = deque(np.log(close[-6:]).tolist(), maxlen=6)
        self._returns = deque(arrays["ret_1"][-20:].tolist(), maxlen=20)
        self._volumes = deque(volume[-20:].tolist(), maxlen=20)
        self._spreads = deque(spread[-20:].tolist(), maxlen=20)
        return np.array([arrays[name][-1] for name in BASE_FEATURES], dtype=np.float64)

    def _step(
        self, time_ns: int, high: float, low: float, close: float, volume: float, spread: float
    ) -> np.ndarray:
        st = self._state
        assert st is not None
        closes, log_closes = self._closes, self._log_closes
        prev_close, prev_volume = closes[-1], self._volumes[-1]
        closes.append(close)
        log_close = _log(close)
        log_closes.append(log_close)
        ret_1 = log_close - log_closes[-2]
        self._returns.append(ret_1)
        self._volumes.append(volume)
        self._spreads.append(spread)

        change = close - prev_close
        for n in _SPANS:
            st[f"ema_{n}"] = _ewm_step(st[f"ema_{n}"], close, _EMA_WEIGHTS[n])
        st["macd_fast"] = _ewm_step(st["macd_fast"], close, _EMA_WEIGHTS[12])
        macd_line = st["macd_fast"] - st["ema_26"]
        st["macd_signal"] = _ewm_step(st["macd_signal"], macd_line, _EMA_WEIGHTS[9])
        st["avg_gain"] = _ewm_step(st["avg_gain"], change if change > 0 else 0.0, _WILDER_WEIGHTS)
        st["avg_loss"] = _ewm_step(st["avg_loss"], -change if change < 0 else 0.0, _WILDER_WEIGHTS)
        true_range = max(high - low, max(abs(high - prev_close), abs(low - prev_close)))
        st["atr"] = _ewm_step(st["atr"], true_range, _WILDER_WEIGHTS)

        window = list(closes)
        sma = {n: _window_mean(window[-n:]) for n in _SPANS}
        band = 2.0 * _window_std(window[-20:], sma[20])
        returns, volumes, spreads = list(self._returns), list(self._volumes), list(self._spreads)
        hour = (time_ns % 86_400_000_000_000) / 3_600_000_000_000
        angle = 2.0 * math.pi * hour / 24.0
        avg_gain, avg_loss = st["avg_gain"], st["avg_loss"]
        spread_mean = _window_mean(spreads)
        row = {
            "ret_1": ret_1,
            "ret_5": log_close - log_closes[0],
            "price_change_1": change,
            "momentum_10": close / window[-11] - 1.0,
            "hl_range": (high - low) / close,
            "hour_sin": float(np.sin(angle)),
            "hour_cos": float(np.cos(angle)),
            "session_asia": float(0.0 <= hour < 9.0),
            "session_london": float(7.0 <= hour < 16.0),
            "session_new_york": float(12.0 <= hour < 21.0),
            "ema_ratio_12_26": st["ema_12"] / st["ema_26"] - 1.0,
            "macd": macd_line / close,
            "macd_signal": st["macd_signal"] / close,
            "rsi_14": _ratio(100.0 * avg_gain, avg_gain + avg_loss, 0.0),
            "atr_14": st["atr"] / close,
            "bb_pos_20": _ratio(close - (sma[20] - band), 2.0 * band, 0.5),
            "volatility_20": _window_std(returns, _window_mean(returns)),
            "volume_ratio_20": _ratio(volume, _window_mean(volumes), 1.0),
            "volume_change": _log(volume + 1.0) - _log(prev_volume + 1.0),
            "spread": spread,
            "spread_ratio_20": _ratio(spread, spread_mean, 1.0),
            "spread_volatility_20": _window_std(spreads, spread_mean),
        }
        for n in _SPANS:
            row[f"close_sma_{n}"] = close / sma[n] - 1.0
            row[f"close_ema_{n}"] = close / st[f"ema_{n}"] - 1.0
        return np.array([row[name] for name in BASE_FEATURES], dtype=np.float64)
