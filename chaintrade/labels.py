"""Training labels: the only columns that look into the future.

A label row is keyed like the feature row of the same bar (``symbol``, ``time``,
``event_timestamp`` = bar close), so features and labels join at the same instant.

* Direction: ``forward_return = log(close[t + h] / close[t])`` over ``h`` bars, ``label`` = 1
  if it is > 0 else 0. The horizon is given in bars or as a duration (default
  ``DEFAULT_HORIZON`` = 15 minutes: 15 M1 bars, 3 M5 bars, 1 M15 bar); a duration that is not
  a whole number of bars is refused (an H1 model states ``horizon_bars`` instead).
* Triple barrier (López de Prado): from the close of bar t, a take-profit at
  ``close + take_profit * ATR14`` and a stop-loss at ``close - stop_loss * ATR14`` (ATR of bar
  t, TA-Lib definition, known at t), and a time limit of ``max_bars`` bars. The first barrier
  touched by a later bar's high/low sets ``tb_label`` = +1 / -1; none touched → 0 at the time
  limit. A bar whose range touches both barriers counts as a stop-loss (the conservative
  reading: the path inside a bar is unknown). ``tb_return`` is the log return to the barrier
  price (or to the close at the time limit), ``tb_bars`` the bars until exit.
* Execution: ``next_open_return = log(open[t + 2] / open[t + 1])``, what a position decided
  at the close of bar t earns when it is traded like the live agent (filled at the next bar's
  open, held to the open after that) — the bar return of every backtest
  (:func:`chaintrade.evaluation.strategy_backtest`, training and paper parity alike). NaN
  where bar t + 2 does not exist yet. It is not a target: the label stays the direction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import pandas as pd

from chaintrade.domain import Timeframe

NEXT_OPEN_RETURN: Final = "next_open_return"
LABEL_COLUMNS: Final = (
    "symbol",
    "time",
    "event_timestamp",
    "forward_return",
    "label",
    NEXT_OPEN_RETURN,
)
TRIPLE_BARRIER_COLUMNS: Final = ("tb_label", "tb_return", "tb_bars")
DEFAULT_HORIZON: Final = timedelta(minutes=15)


def _durations(timeframes: pd.Series) -> pd.Series:
    names = timeframes.astype(str).str.upper()
    unknown = sorted(set(names) - {t.name for t in Timeframe})
    if unknown:
        raise ValueError(f"unknown timeframe(s) {unknown}")
    minutes = names.map({t.name: t.minutes for t in Timeframe}).astype("int64")
    return pd.to_timedelta(minutes, unit="min")


def horizon_to_bars(timeframe: str, horizon: timedelta = DEFAULT_HORIZON) -> int:
    """Whole bars of ``timeframe`` in ``horizon``; ValueError when it is not a whole number."""
    tf = Timeframe[str(timeframe).upper()]
    bars, rest = divmod(horizon, tf.duration)
    if bars < 1 or rest:
        raise ValueError(
            f"a horizon of {horizon} is not a whole number (>= 1) of {tf.name} bars; "
            "give horizon_bars instead"
        )
    return int(bars)


def _resolve_horizon(
    bars: pd.DataFrame, horizon_bars: int | None, horizon: timedelta | None
) -> int:
    if horizon_bars is not None and horizon is not None:
        raise ValueError("give horizon_bars or horizon, not both")
    if horizon_bars is None:
        timeframes = set(bars["timeframe"].astype(str)) if len(bars) else {"M1"}
        counts = {horizon_to_bars(tf, horizon or DEFAULT_HORIZON) for tf in timeframes}
        if len(counts) > 1:
            raise ValueError("bars of several timeframes: label each timeframe on its own")
        horizon_bars = counts.pop()
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, got {horizon_bars}")
    return horizon_bars


def next_open_returns(bars: pd.DataFrame) -> pd.Series:
    """``log(open[t + 2] / open[t + 1])`` of every bar (same index as ``bars``), within its
    symbol in time order; NaN where bar t + 2 does not exist. See the module doc."""
    missing = [c for c in ("symbol", "time", "open") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    df = bars[["symbol", "time", "open"]].sort_values(["symbol", "time"], kind="stable")
    log_open = pd.Series(np.log(df["open"].to_numpy(np.float64)), index=df.index)
    by_symbol = log_open.groupby(df["symbol"], sort=False)
    earned = by_symbol.shift(-2) - by_symbol.shift(-1)
    return earned.reindex(bars.index).rename(NEXT_OPEN_RETURN)


def direction_labels(
    bars: pd.DataFrame, *, horizon_bars: int | None = None, horizon: timedelta | None = None
) -> pd.DataFrame:
    """Direction labels for bars of any number of symbols.

    ``forward_return = log(close[t + h] / close[t])`` within each symbol (h = ``horizon_bars``
    bars ahead, or ``horizon`` as a duration; default 15 minutes), ``label = 1`` if it is > 0
    else 0. The last h bars of each symbol have no future yet and are dropped.
    ``event_timestamp`` is the close of bar t (time + timeframe), the instant its features
    become known. ``next_open_return`` (:func:`next_open_returns`) is what the backtest earns.
    """
    needed = ("symbol", "timeframe", "time", "open", "close")
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    h = _resolve_horizon(bars, horizon_bars, horizon)
    df = bars[list(needed)].sort_values(["symbol", "time"], kind="stable")
    df = df.reset_index(drop=True)
    log_close = pd.Series(np.log(df["close"].to_numpy(np.float64)), index=df.index)
    future = log_close.groupby(df["symbol"], sort=False).shift(-h)
    forward_return = future - log_close
    time = df["time"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(object),
            "time": time,
            "event_timestamp": time + _durations(df["timeframe"]),
            "forward_return": forward_return,
            "label": (forward_return > 0).astype("int64"),
            NEXT_OPEN_RETURN: next_open_returns(df),
        }
    )
    return out[future.notna()].reset_index(drop=True)


def _barrier_kernel(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    take_profit: float,
    stop_loss: float,
    max_bars: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bar of ONE symbol: (label, exit price, bars to exit); NaN label where undefined."""
    n = len(close)
    upper = close + take_profit * atr
    lower = close - stop_loss * atr
    label = np.full(n, np.nan)
    exit_price = np.full(n, np.nan)
    exit_bars = np.full(n, np.nan)
    open_ = ~np.isnan(atr)
    open_[max(0, n - max_bars) :] = False  # the time limit lies beyond the data: not known yet
    for k in range(1, max_bars + 1):
        if not open_.any():
            break
        idx = np.flatnonzero(open_)
        idx = idx[idx + k < n]
        hit_low = low[idx + k] <= lower[idx]
        hit_high = high[idx + k] >= upper[idx]
        stop = idx[hit_low]  # both touched in one bar counts as the stop-loss
        take = idx[hit_high & ~hit_low]
        label[stop], exit_price[stop], exit_bars[stop] = -1.0, lower[stop], k
        label[take], exit_price[take], exit_bars[take] = 1.0, upper[take], k
        open_[stop] = open_[take] = False
        if k == max_bars:
            rest = idx[~hit_low & ~hit_high]
            label[rest], exit_price[rest], exit_bars[rest] = 0.0, close[rest + k], k
    return label, exit_price, exit_bars


def triple_barrier_labels(
    bars: pd.DataFrame,
    *,
    take_profit: float = 2.0,
    stop_loss: float = 1.0,
    max_bars: int = 15,
    atr: pd.Series | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels for bars of any number of symbols (see the module doc).

    Barriers are ``take_profit`` / ``stop_loss`` ATR(14) units from the close of bar t; the time
    limit is ``max_bars`` bars. Rows without an ATR yet (warm-up) or whose time limit lies past
    the last bar are dropped. ``atr`` (price units, aligned with ``bars``) overrides ATR(14),
    e.g. for hand-made series. Columns: symbol, time, event_timestamp, tb_label (int64 in
    {-1, 0, 1}), tb_return, tb_bars (int64).
    """
    if take_profit <= 0 or stop_loss <= 0 or max_bars < 1:
        raise ValueError("take_profit and stop_loss must be > 0 and max_bars >= 1")
    missing = [c for c in ("symbol", "timeframe", "time", "high", "low", "close") if c not in bars]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    from chaintrade.features import atr_14

    frame = bars.assign(_atr=atr) if atr is not None else bars
    parts = []
    for _, group in frame.sort_values(["symbol", "time"], kind="stable").groupby(
        "symbol", sort=True
    ):
        high = group["high"].to_numpy(np.float64)
        low = group["low"].to_numpy(np.float64)
        close = group["close"].to_numpy(np.float64)
        a = group["_atr"].to_numpy(np.float64) if atr is not None else atr_14(high, low, close)
        label, exit_price, exit_bars = _barrier_kernel(
            high, low, close, a, take_profit, stop_loss, max_bars
        )
        time = group["time"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        part = pd.DataFrame(
            {
                "symbol": group["symbol"].astype(object).to_numpy(),
                "time": time.to_numpy(),
                "event_timestamp": (time + _durations(group["timeframe"])).to_numpy(),
                "tb_label": label,
                "tb_return": np.log(exit_price / close),
                "tb_bars": exit_bars,
            }
        )
        parts.append(part[~np.isnan(label)])
    if not parts:
        empty = {"symbol": pd.Series([], dtype=object)}
        empty["time"] = empty["event_timestamp"] = pd.Series([], dtype="datetime64[ns, UTC]")
        parts.append(pd.DataFrame({**empty, "tb_label": [], "tb_return": [], "tb_bars": []}))
    out = pd.concat(parts, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    out["tb_label"] = out["tb_label"].astype("int64")
    out["tb_bars"] = out["tb_bars"].astype("int64")
    out["tb_return"] = out["tb_return"].astype("float64")
    return out


def all_labels(
    bars: pd.DataFrame,
    *,
    horizon_bars: int | None = None,
    horizon: timedelta | None = None,
    take_profit: float = 2.0,
    stop_loss: float = 1.0,
    max_bars: int = 15,
) -> pd.DataFrame:
    """Direction labels with the triple-barrier columns joined on (nullable where undefined).

    Columns: ``LABEL_COLUMNS`` then ``TRIPLE_BARRIER_COLUMNS`` (``tb_label``/``tb_bars`` as
    nullable Int64, ``tb_return`` float64 with NaN).
    """
    direction = direction_labels(bars, horizon_bars=horizon_bars, horizon=horizon)
    barrier = triple_barrier_labels(
        bars, take_profit=take_profit, stop_loss=stop_loss, max_bars=max_bars
    )
    out = direction.merge(
        barrier.drop(columns="event_timestamp"), on=["symbol", "time"], how="left", sort=False
    )
    out["tb_label"] = out["tb_label"].astype("Int64")
    out["tb_bars"] = out["tb_bars"].astype("Int64")
    return out
