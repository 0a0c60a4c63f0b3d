"""The raw lake: Parquet partitioned by symbol and date, idempotent re-ingest.

Layout: ``<lake>/bars/symbol=<S>/date=<YYYY-MM-DD>/part.parquet`` (and the same under
``ticks/``). Files hold neither ``symbol`` nor ``date`` (they are the partition keys), so
``pd.read_parquet(<lake>/bars/symbol=S)`` and Spark's partition discovery both work.
Writing merges with what a partition already holds and keeps one row per key (the new
row wins): ingesting the same file twice gives the same lake.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from chaintrade.market_data import _finish, _finish_ticks, empty_bars, empty_ticks

BAR_KEY = ("timeframe", "time")
TICK_KEY = ("time_msc", "bid", "ask", "last", "volume", "flags")
_PART = "part.parquet"


def _write_partitioned(
    frame: pd.DataFrame, root: Path, *, time_col: str, key: Sequence[str]
) -> list[Path]:
    if frame.empty:
        return []
    days = frame[time_col].dt.strftime("%Y-%m-%d") if len(frame) < 50_000 else None
    if days is None:  # fast path for large frames: integer days, formatted once per day
        day_num = frame[time_col].astype("int64").to_numpy() // 86_400_000_000_000
        uniq, inverse = np.unique(day_num, return_inverse=True)
        labels = pd.to_datetime(uniq * 86_400_000_000_000).strftime("%Y-%m-%d").to_numpy()
        days = pd.Series(labels[inverse], index=frame.index)
    frame = frame.assign(_date=days.to_numpy())
    written: list[Path] = []
    for (symbol, day), part in frame.groupby(["symbol", "_date"], sort=True):
        folder = root / f"symbol={symbol}" / f"date={day}"
        path = folder / _PART
        data = part.drop(columns=["symbol", "_date"])
        if path.exists():
            old = pq.read_table(path).to_pandas()
            data = pd.concat([old, data], ignore_index=True)
        data = data.drop_duplicates(list(key), keep="last").sort_values(
            [c for c in key if c != "timeframe"] + (["timeframe"] if "timeframe" in key else []),
            kind="stable",
        )
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(data, preserve_index=False)
        tmp = folder / f".{_PART}.tmp"
        pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)
        os.replace(tmp, path)  # atomic: a reader sees the old or the new file, never half
        written.append(path)
    return written


def _migrate_flat(root: Path, symbols: Sequence[str]) -> pd.DataFrame | None:
    """Bars written by the old ``symbol=S/bars.parquet`` layout, removed once read."""
    frames = []
    for symbol in symbols:
        legacy = root / f"symbol={symbol}" / "bars.parquet"
        if legacy.exists():
            frames.append(pd.read_parquet(legacy).assign(symbol=symbol))
            legacy.unlink()
    return pd.concat(frames, ignore_index=True) if frames else None


def write_bars(bars: pd.DataFrame, lake_dir: Path) -> list[Path]:
    """Write a bar frame into ``<lake_dir>/bars``; returns the partition files written."""
    root = Path(lake_dir) / "bars"
    symbols = sorted(bars["symbol"].astype(str).unique()) if len(bars) else []
    legacy = _migrate_flat(root, symbols)
    if legacy is not None:
        legacy["time"] = pd.to_datetime(legacy["time"], utc=True)
        bars = pd.concat([_finish(legacy), bars], ignore_index=True)
    return _write_partitioned(bars, root, time_col="time", key=BAR_KEY)


def write_ticks(ticks: pd.DataFrame, lake_dir: Path) -> list[Path]:
    """Write a tick frame into ``<lake_dir>/ticks``; returns the partition files written."""
    root = Path(lake_dir) / "ticks"
    frame = ticks.drop(columns=[c for c in ("volume_real",) if c in ticks.columns])
    written = _write_partitioned(frame, root, time_col="time", key=TICK_KEY)
    return written


def _read(
    root: Path,
    symbols: Sequence[str] | None,
    start: datetime | str | None,
    end: datetime | str | None,
) -> pd.DataFrame | None:
    if not root.exists():
        return None
    folders = (
        [root / f"symbol={s}" for s in symbols]
        if symbols is not None
        else sorted(p for p in root.iterdir() if p.name.startswith("symbol="))
    )
    lo = pd.Timestamp(start).strftime("%Y-%m-%d") if start is not None else None
    hi = pd.Timestamp(end).strftime("%Y-%m-%d") if end is not None else None
    frames = []
    for folder in folders:
        if not folder.exists():
            continue
        files = [
            p / _PART
            for p in sorted(folder.iterdir())
            if p.name.startswith("date=")
            and (lo is None or p.name[5:] >= lo)
            and (hi is None or p.name[5:] <= hi)
            and (p / _PART).exists()
        ]
        if not files:
            continue
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
        frames.append(table.to_pandas().assign(symbol=folder.name.split("=", 1)[1]))
    return pd.concat(frames, ignore_index=True) if frames else None


def read_bars(
    lake_dir: Path,
    *,
    symbols: Sequence[str] | None = None,
    timeframe: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pd.DataFrame:
    """Bars from the lake as a bar frame, ``start <= time < end`` (UTC)."""
    raw = _read(Path(lake_dir) / "bars", symbols, start, end)
    if raw is None:
        return empty_bars()
    raw["time"] = pd.to_datetime(raw["time"], utc=True)
    bars = _finish(raw)
    keep = np.ones(len(bars), dtype=bool)
    if timeframe is not None:
        keep &= (bars["timeframe"] == timeframe).to_numpy()
    if start is not None:
        keep &= (bars["time"] >= _utc(start)).to_numpy()
    if end is not None:
        keep &= (bars["time"] < _utc(end)).to_numpy()
    return bars[keep].reset_index(drop=True)


def read_ticks(
    lake_dir: Path,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pd.DataFrame:
    """Ticks from the lake as a tick frame, ``start <= time < end`` (UTC)."""
    raw = _read(Path(lake_dir) / "ticks", symbols, start, end)
    if raw is None:
        return empty_ticks()
    ticks = _finish_ticks(raw)
    keep = np.ones(len(ticks), dtype=bool)
    if start is not None:
        keep &= (ticks["time"] >= _utc(start)).to_numpy()
    if end is not None:
        keep &= (ticks["time"] < _utc(end)).to_numpy()
    return ticks[keep].reset_index(drop=True)


def _utc(value: datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


__all__ = ["read_bars", "read_ticks", "write_bars", "write_ticks"]
