"""Bars in the bar-frame convention: a generic OHLCV CSV loader and a seeded synthetic generator.

A bar frame has exactly ``BAR_FRAME_COLUMNS`` (symbol, timeframe, time, open, high, low,
close, tick_volume, spread, real_volume); ``time`` is the bar OPEN time as
``datetime64[ns, UTC]``; prices are float64, volumes and spread (points) int64; rows are
sorted by symbol, time.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from chaintrade.domain import BAR_FRAME_COLUMNS, Timeframe, to_timeframe

_TIME_ALIASES = ("time", "timestamp", "datetime", "date", "")
_REQUIRED_PRICES = ("open", "high", "low", "close")
_VOLUME_ALIASES = ("tick_volume", "volume", "tickvol", "vol")


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


# --------------------------------------------------------------------------- instruments


# MT5's copy_rates_* and copy_ticks_* records (the MetaTrader5 package's dtypes).
RATES_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)
TICKS_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)
# MT5 tick flags
TICK_FLAG_BID: Final = 2
TICK_FLAG_ASK: Final = 4


def infer_digits(prices: np.ndarray | pd.Series, max_digits: int = 8) -> int:
    """The fewest decimals that represent every finite price exactly (to 1e-6 of a point)."""
    values = np.asarray(prices, dtype="float64")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 5
    sample = values[:: max(1, values.size // 20_000)]
    for digits in range(max_digits + 1):
        scaled = sample * 10.0**digits
        if np.all(
            np.abs(scaled - np.round(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled)) + 1e-6
        ):
            return digits
    return max_digits


def _carry(frame: pd.DataFrame, symbol: str | None, digits: int) -> pd.DataFrame:
    """Attach ``symbol``, ``digits`` and ``point`` as frame attributes."""
    frame.attrs.update({"symbol": symbol, "digits": int(digits), "point": 10.0**-digits})
    return frame


def empty_ticks() -> pd.DataFrame:
    """An empty frame with the tick-frame columns and dtypes."""
    return _finish_ticks(
        pd.DataFrame(
            {
                "symbol": pd.Series([], dtype=object),
                "time_msc": pd.Series([], dtype="int64"),
                **{c: pd.Series([], dtype="float64") for c in ("bid", "ask", "last")},
                "volume": pd.Series([], dtype="int64"),
                "flags": pd.Series([], dtype="int64"),
            }
        )
    )


def _finish_ticks(df: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """Tick-frame columns and dtypes (``time`` derived from ``time_msc``), sorted."""
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(object),
            "time_msc": df["time_msc"].astype("int64"),
        }
    )
    out["time"] = pd.to_datetime(out["time_msc"].to_numpy(), unit="ms", utc=True).astype(
        "datetime64[ns, UTC]"
    )
    for c in ("bid", "ask", "last"):
        out[c] = df[c].astype("float64")
    out["volume"] = df["volume"].astype("int64")
    out["flags"] = df["flags"].astype("int64")
    if sort:
        out = out.sort_values(["symbol", "time_msc"], kind="stable")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- time parsing

_YEAR_FIRST = re.compile(r"^\s*(\d{4})[-./](\d{1,2})[-./](\d{1,2})(.*)$")
_DAY_OR_MONTH_FIRST = re.compile(r"^\s*(\d{1,2})[-./](\d{1,2})[-./](\d{4})(.*)$")


def parse_times(
    values: pd.Series, *, tz: str | None = None, date_format: str | None = None
) -> pd.Series:
    """Parse time strings (or epoch numbers) into ``datetime64[ns, UTC]``.

    Detects ISO/MT5 year-first dates (``2024-01-02``, ``2024.01.02``), day- or month-first
    dates (decided by a field above 12; ValueError when every row fits both orders), epoch
    seconds/milliseconds, and UTC offsets in the strings. Naive times are read in ``tz``
    (default UTC). ``date_format`` (strptime codes) skips detection.
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
        top = float(np.nanmax(np.abs(numbers.to_numpy()))) if len(numbers) else 0.0
        unit: Literal["s", "ms", "ns"] = "s" if top < 1e11 else "ms" if top < 1e14 else "ns"
        stamps = pd.to_datetime(numbers.to_numpy(), unit=unit, utc=True)
        return pd.Series(stamps, index=values.index).astype("datetime64[ns, UTC]")
    text = values.astype(str).str.strip()
    if date_format is not None:
        times = pd.to_datetime(text, format=date_format, utc=False)
    else:
        sample = text.iloc[0] if len(text) else ""
        if _YEAR_FIRST.match(sample):
            iso = text.str.replace(_YEAR_FIRST, r"\1-\2-\3\4", regex=True)
            times = pd.to_datetime(iso, format="ISO8601")
        elif _DAY_OR_MONTH_FIRST.match(sample):
            parts = text.str.extract(_DAY_OR_MONTH_FIRST)
            first = pd.to_numeric(parts[0], errors="coerce")
            second = pd.to_numeric(parts[1], errors="coerce")
            if (first > 12).any() and (second > 12).any():
                raise ValueError(f"dates {sample!r}...: neither day-first nor month-first fits")
            if not (first > 12).any() and not (second > 12).any():
                raise ValueError(
                    f"ambiguous date order in {sample!r}...: every date fits both day-first "
                    "and month-first; pass date_format (e.g. '%d/%m/%Y %H:%M')"
                )
            day, month = (parts[0], parts[1]) if (first > 12).any() else (parts[1], parts[0])
            iso = parts[2] + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + parts[3]
            times = pd.to_datetime(iso, format="ISO8601")
        else:
            try:
                times = pd.to_datetime(text, format="ISO8601")
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"cannot detect the date format of {sample!r}; pass date_format"
                ) from exc
    if getattr(times.dt, "tz", None) is None:
        times = times.dt.tz_localize(tz or "UTC", ambiguous="raise", nonexistent="raise")
    return times.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _to_utc(values: pd.Series, tz: str) -> pd.Series:
    return parse_times(values, tz=tz)


# --------------------------------------------------------------------------- CSV bars


def _int_column(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(f"{path}: column {column!r} has {missing} missing or non-numeric values")
    return values.round().astype("int64")


def sniff_delimiter(path: str | Path) -> str:
    """The delimiter of a text table (``,``, ``;``, tab or ``|``); ValueError if unclear."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        head = "".join(handle.readline() for _ in range(20))
    counts = {d: [line.count(d) for line in head.splitlines() if line] for d in ",;\t|"}
    consistent = {d: c[0] for d, c in counts.items() if c and c[0] > 0 and len(set(c)) == 1}
    if len(consistent) == 1:
        return next(iter(consistent))
    if not consistent:
        raise ValueError(f"{path}: cannot detect the delimiter; pass sep")
    best = max(consistent, key=lambda d: consistent[d])
    if sorted(consistent.values())[-1] == sorted(consistent.values())[-2]:
        raise ValueError(f"{path}: ambiguous delimiter (candidates {sorted(consistent)}); pass sep")
    return best


def _is_mt5_export(path: str | Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return handle.readline().lstrip().startswith("<")


def _infer_timeframe(times: pd.Series, path: str | Path) -> Timeframe:
    steps = times.sort_values().diff().dropna()
    if steps.empty:
        raise ValueError(f"{path}: cannot infer the timeframe from one bar; pass timeframe")
    minutes = steps.dt.total_seconds().div(60).round().astype(int).value_counts().idxmax()
    for tf in Timeframe:
        if tf.minutes == minutes:
            return tf
    raise ValueError(f"{path}: bars are {minutes} minutes apart, no MT5 timeframe; pass timeframe")


def read_bars_csv(
    path: str | Path,
    *,
    symbol: str,
    timeframe: str | Timeframe | None = None,
    tz: str | None = None,
    sep: str | None = None,
    date_format: str | None = None,
    columns: dict[str, str] | None = None,
    spread_points: int = 0,
    digits: int | None = None,
) -> pd.DataFrame:
    """Load a generic OHLCV CSV (or an MT5 "Export bars" file) into a bar frame.

    The delimiter, the header names (any case, with or without MT5's ``<>``; a separate
    date and time column are joined), the date format and UTC offsets are detected; pass
    ``sep``, ``columns`` (``{"open": "Px Open", ...}``), ``date_format`` or ``tz`` to
    decide instead. Naive times are read in ``tz`` (default UTC) and converted to UTC.
    The timeframe is inferred from the most common bar step when not given. ``digits``
    (inferred from the prices when not given) and ``point`` are carried in ``attrs``.
    Raises ValueError naming missing columns or the ambiguity found.
    """
    sep = sep or sniff_delimiter(path)
    raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=True)
    names = {str(c).strip().strip("<>").strip().lower(): c for c in raw.columns}
    if str(raw.columns[0]).startswith("Unnamed:"):
        names.setdefault("", raw.columns[0])
    for ours, theirs in (columns or {}).items():
        names[ours] = theirs
    time_col = next((names[a] for a in _TIME_ALIASES if a in names), None)
    volume_col = next((names[a] for a in _VOLUME_ALIASES if a in names), None)
    missing = [c for c in _REQUIRED_PRICES if c not in names]
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
    stamp = raw[time_col]
    if "date" in names and "time" in names and names["date"] != names["time"]:
        stamp = raw[names["date"]].str.strip() + " " + raw[names["time"]].str.strip()
    times = parse_times(stamp, tz=tz, date_format=date_format)
    tf = to_timeframe(timeframe) if timeframe is not None else _infer_timeframe(times, path)
    prices = {
        c: pd.to_numeric(raw[names[c]], errors="coerce").astype("float64") for c in _REQUIRED_PRICES
    }
    real_col = names.get("real_volume")
    if real_col is None and "vol" in names and names["vol"] != volume_col:
        real_col = names["vol"]  # MT5: <TICKVOL> and <VOL>
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": tf.name,
            "time": times,
            **prices,
            "tick_volume": _int_column(raw, volume_col, path),
            "spread": _int_column(raw, names["spread"], path)
            if "spread" in names
            else spread_points,
            "real_volume": _int_column(raw, real_col, path) if real_col is not None else 0,
        }
    )
    out = _finish(df)
    return _carry(out, symbol, digits if digits is not None else infer_digits(out["close"]))


def load_ohlcv_csv(
    path: str | Path,
    *,
    symbol: str,
    timeframe: str | Timeframe,
    tz: str = "UTC",
    spread_points: int = 0,
) -> pd.DataFrame:
    """Load a generic OHLCV CSV into a bar frame (see ``read_bars_csv``).

    Headers are matched case-insensitively. The time column is ``time``/``timestamp``/
    ``datetime``/``date`` or an unnamed first column; naive timestamps are read in ``tz``
    and converted to UTC. ``Volume`` (or ``tick_volume``) becomes ``tick_volume``;
    ``spread`` and ``real_volume`` are taken when present, else ``spread_points`` and 0.
    Raises ValueError naming the missing columns.
    """
    return read_bars_csv(
        path, symbol=symbol, timeframe=to_timeframe(timeframe), tz=tz, spread_points=spread_points
    )


def load_mt5_bars_csv(
    path: str | Path,
    *,
    symbol: str,
    timeframe: str | Timeframe | None = None,
    tz: str = "UTC",
    digits: int | None = None,
) -> pd.DataFrame:
    """Load an MT5 "Export bars" file (tab-separated ``<DATE> <TIME> <OPEN> ... <SPREAD>``).

    MT5 writes times in the trade server's time zone: pass it as ``tz`` (e.g.
    ``"EET"``/``"Europe/Athens"`` for many brokers); the default reads them as UTC.
    ``<TICKVOL>`` becomes ``tick_volume``, ``<VOL>`` ``real_volume``, ``<SPREAD>`` points.
    """
    return read_bars_csv(path, symbol=symbol, timeframe=timeframe, tz=tz, sep="\t", digits=digits)


# --------------------------------------------------------------------------- CSV ticks


def load_mt5_ticks_csv(
    path: str | Path,
    *,
    symbol: str,
    tz: str = "UTC",
    digits: int | None = None,
) -> pd.DataFrame:
    """Load an MT5 "Export ticks" file (``<DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>``).

    MT5 leaves a price blank when it did not change: blanks are carried forward from the
    previous tick (a bid or ask never seen stays missing and the validator rejects it).
    ``<TIME>`` holds milliseconds; times are read in ``tz`` (the server's zone).
    """
    sep = "\t" if _is_mt5_export(path) else sniff_delimiter(path)
    raw = pd.read_csv(path, sep=sep, dtype=str)
    names = {str(c).strip().strip("<>").strip().lower(): c for c in raw.columns}
    need = [c for c in ("date", "time", "bid", "ask") if c not in names]
    if need:
        raise ValueError(
            f"{path}: missing columns {need}; found {[str(c) for c in raw.columns]} "
            "(expected MT5 tick export headers <DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>)"
        )
    stamp = raw[names["date"]].str.strip() + " " + raw[names["time"]].str.strip()
    times = parse_times(stamp, tz=tz)

    def num(name: str, default: float) -> pd.Series:
        if name not in names:
            return pd.Series(default, index=raw.index, dtype="float64")
        return pd.to_numeric(raw[names[name]], errors="coerce")

    bid, ask = num("bid", np.nan).ffill(), num("ask", np.nan).ffill()
    flags = num("flags", float(TICK_FLAG_BID | TICK_FLAG_ASK)).fillna(0)
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "time_msc": times.astype("int64").to_numpy() // 1_000_000,
            "bid": bid,
            "ask": ask,
            "last": num("last", 0.0).ffill().fillna(0.0),
            "volume": num("volume", 0.0).fillna(0.0).round(),
            "flags": flags,
        }
    )
    out = _finish_ticks(df, sort=False)
    return _carry(out, symbol, digits if digits is not None else infer_digits(out["bid"]))


# --------------------------------------------------------------------------- MT5 arrays


def rates_frame(
    rates: np.ndarray, *, symbol: str, timeframe: str | Timeframe, digits: int | None = None
) -> pd.DataFrame:
    """A bar frame from MT5 ``copy_rates_*`` records (``time`` in epoch seconds, UTC)."""
    tf = to_timeframe(timeframe)
    arr = np.asarray(rates)
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": tf.name,
            "time": pd.to_datetime(arr["time"].astype("int64"), unit="s", utc=True),
            **{c: arr[c].astype("float64") for c in _REQUIRED_PRICES},
            "tick_volume": arr["tick_volume"].astype("int64"),
            "spread": arr["spread"].astype("int64"),
            "real_volume": arr["real_volume"].astype("int64"),
        }
    )
    out = _finish(df) if len(df) else empty_bars()
    return _carry(out, symbol, digits if digits is not None else infer_digits(out["close"]))


def ticks_frame(ticks: np.ndarray, *, symbol: str, digits: int | None = None) -> pd.DataFrame:
    """A tick frame from MT5 ``copy_ticks_*`` records (``time_msc`` in epoch ms, UTC).

    Row order is kept (the validator judges it).
    """
    arr = np.asarray(ticks)
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "time_msc": arr["time_msc"].astype("int64"),
            **{c: arr[c].astype("float64") for c in ("bid", "ask", "last")},
            "volume": arr["volume"].astype("int64"),
            "flags": arr["flags"].astype("int64"),
        }
    )
    out = _finish_ticks(df, sort=False)
    return _carry(out, symbol, digits if digits is not None else infer_digits(out["bid"]))


def to_rates(bars: pd.DataFrame) -> np.ndarray:
    """Bars of one series as MT5 ``copy_rates_*`` records (the inverse of ``rates_frame``)."""
    out = np.zeros(len(bars), dtype=RATES_DTYPE)
    out["time"] = bars["time"].astype("int64").to_numpy() // 1_000_000_000
    for c in (*_REQUIRED_PRICES, "tick_volume", "spread", "real_volume"):
        out[c] = bars[c].to_numpy()
    return out


# --------------------------------------------------------------------------- Parquet


def read_bars_parquet(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | Timeframe | None = None,
) -> pd.DataFrame:
    """Bars from a Parquet file or folder (a lake partition included) as a bar frame.

    Column names are matched like the CSV loader's; ``symbol``/``timeframe`` fill columns
    the file lacks; a ``date`` partition column is dropped; naive times are taken as UTC.
    """
    raw = pd.read_parquet(path)
    names = {str(c).strip().lower(): c for c in raw.columns}
    time_col = next((names[a] for a in _TIME_ALIASES if a in names and a != "date"), None)
    volume_col = next((names[a] for a in _VOLUME_ALIASES if a in names), None)
    missing = [c for c in _REQUIRED_PRICES if c not in names]
    if time_col is None:
        missing.insert(0, "time")
    if "symbol" not in names and symbol is None:
        missing.append("symbol")
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {list(raw.columns)}")
    assert time_col is not None
    times = raw[time_col]
    if not pd.api.types.is_datetime64_any_dtype(times.dtype):
        times = parse_times(times)
    elif getattr(times.dt, "tz", None) is None:
        times = times.dt.tz_localize("UTC")
    if "timeframe" in names:
        tfs = raw[names["timeframe"]].astype(str)
    elif timeframe is not None:
        tfs = pd.Series(to_timeframe(timeframe).name, index=raw.index)
    else:
        tfs = pd.Series(_infer_timeframe(times, path).name, index=raw.index)

    def ints(name: str | None) -> pd.Series | int:
        return raw[name].astype("int64") if name is not None else 0

    df = pd.DataFrame(
        {
            "symbol": raw[names["symbol"]].astype(str) if "symbol" in names else symbol,
            "timeframe": tfs,
            "time": times,
            **{c: raw[names[c]].astype("float64") for c in _REQUIRED_PRICES},
            "tick_volume": ints(volume_col),
            "spread": ints(names.get("spread")),
            "real_volume": ints(names.get("real_volume")),
        }
    )
    out = _finish(df)
    return _carry(out, symbol, infer_digits(out["close"]))


def read_ticks_parquet(path: str | Path, *, symbol: str | None = None) -> pd.DataFrame:
    """Ticks from a Parquet file or folder as a tick frame (row order kept)."""
    raw = pd.read_parquet(path)
    if "time_msc" not in raw.columns:
        raise ValueError(f"{path}: ticks need a time_msc column; found {list(raw.columns)}")
    if "symbol" not in raw.columns:
        if symbol is None:
            raise ValueError(f"{path}: no symbol column; pass symbol")
        raw = raw.assign(symbol=symbol)
    raw["symbol"] = raw["symbol"].astype(str)
    for c, default in (("last", 0.0), ("volume", 0), ("flags", TICK_FLAG_BID | TICK_FLAG_ASK)):
        if c not in raw.columns:
            raw[c] = default
    out = _finish_ticks(raw, sort=False)
    return _carry(out, symbol, infer_digits(out["bid"]))


# --------------------------------------------------------------------------- any file

_MT5_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9.#_-]+?)_(?P<tf>M1|M5|M15|M30|H1|H4|D1)(?:_|\.|$)")


def guess_symbol_timeframe(path: str | Path) -> tuple[str | None, str | None]:
    """``("EURUSD", "H1")`` from MT5-style names like ``EURUSD_H1_202401020000_...csv``."""
    stem = Path(path).name
    match = _MT5_NAME.match(stem)
    if match:
        return match["symbol"], match["tf"]
    base = Path(path).stem.split("_")[0]
    return (base or None), None


def is_tick_file(path: str | Path) -> bool:
    """Whether a CSV/Parquet file holds ticks (bid/ask columns) rather than bars."""
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".pq") or p.is_dir():
        import pyarrow.parquet as pq

        if p.is_dir():
            first = next(iter(sorted(p.rglob("*.parquet"))), None)
            if first is None:
                return False
            p = first
        names = {n.lower() for n in pq.read_schema(p).names}
    else:
        with open(p, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline().lower()
        names = {n.strip().strip("<>") for n in re.split(r"[,;\t|]", header)}
    return {"bid", "ask"} <= names


def load_bars(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | Timeframe | None = None,
    tz: str | None = None,
    **csv_options: Any,
) -> pd.DataFrame:
    """Bars from any supported file: MT5 export, generic CSV or Parquet (file or folder).

    ``symbol``/``timeframe`` default to what an MT5-style file name says
    (``EURUSD_H1_...``); ``csv_options`` go to ``read_bars_csv``.
    """
    p = Path(path)
    guessed_symbol, guessed_tf = guess_symbol_timeframe(p)
    if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
        return read_bars_parquet(p, symbol=symbol, timeframe=timeframe or guessed_tf)
    sym = symbol or guessed_symbol
    if not sym:
        raise ValueError(f"{path}: pass symbol (the file name does not say it)")
    return read_bars_csv(p, symbol=sym, timeframe=timeframe or guessed_tf, tz=tz, **csv_options)


def load_ticks(
    path: str | Path, *, symbol: str | None = None, tz: str | None = None
) -> pd.DataFrame:
    """Ticks from an MT5 "Export ticks" CSV or a Parquet file/folder."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
        return read_ticks_parquet(p, symbol=symbol)
    sym = symbol or guess_symbol_timeframe(p)[0]
    if not sym:
        raise ValueError(f"{path}: pass symbol (the file name does not say it)")
    return load_mt5_ticks_csv(p, symbol=sym, tz=tz or "UTC")


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
    shocks = eta / (1.0 - vol_persistence)
    shocks[0] = rng.standard_normal() * vol_of_vol  # start in the stationary distribution
    h = pd.Series(shocks).ewm(alpha=1.0 - vol_persistence, adjust=False).mean().to_numpy()
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


# --------------------------------------------------------------------------- synthetic market


def synthetic_market(
    symbols: Sequence[str] | int,
    *,
    timeframe: str | Timeframe = "M1",
    start: str | datetime | pd.Timestamp = "2020-01-01",
    n: int,
    seed: int,
) -> pd.DataFrame:
    """``n`` bars for each of many symbols (names, or a count: ``SYN000``, ``SYN001``, ...).

    Each symbol gets its own base price, volatility and spread, drawn from ``seed``.
    """
    names = [f"SYN{i:03d}" for i in range(symbols)] if isinstance(symbols, int) else list(symbols)
    rng = np.random.default_rng(seed)
    frames = []
    for name in names:
        frames.append(
            synthetic_bars(
                name,
                timeframe=timeframe,
                start=start,
                n=n,
                seed=seed,
                base_price=float(np.round(rng.uniform(0.6, 1.9), 4)),
                annual_vol=float(rng.uniform(0.05, 0.12)),
                base_spread=int(rng.integers(5, 20)),
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else empty_bars()


def synthetic_ticks(
    symbol: str,
    *,
    start: str | datetime | pd.Timestamp,
    n: int,
    seed: int,
    base_price: float = 1.1,
    annual_vol: float = 0.08,
    digits: int = 5,
    base_spread: int = 8,
    ticks_per_minute: float = 60.0,
    vol_persistence: float = 0.999,
    vol_of_vol: float = 0.45,
) -> pd.DataFrame:
    """Seeded, deterministic synthetic FX ticks (bid/ask quotes) in the tick-frame convention.

    Arrivals are Poisson (``ticks_per_minute`` on average) on weekdays only (no ticks on
    Saturday or Sunday UTC); the mid follows a random walk with clustered volatility and an
    intraday session profile; the spread (points) widens in quiet hours; every tick changes
    the quote (flags BID|ASK), so a repeated quote is a fault.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if n == 0:
        return _carry(empty_ticks(), symbol, digits)
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), 7])
    gaps = 1 + np.floor(rng.exponential(60_000.0 / ticks_per_minute, n)).astype(np.int64)
    offset = np.cumsum(gaps) - gaps[0]
    day0: Any = np.datetime64(ts.tz_convert(None).date(), "D")
    start_ms = int((ts - ts.normalize()) / pd.Timedelta(milliseconds=1))
    if not np.is_busday(day0):
        day0, start_ms = np.busday_offset(day0, 0, roll="forward"), 0
    total = offset + start_ms
    days = np.busday_offset(day0, total // 86_400_000, roll="forward")
    epoch_ms = days.astype("datetime64[ms]").astype(np.int64) + total % 86_400_000

    hour = (total % 86_400_000) / 3.6e6
    season = _session_profile(hour) / _PROFILE_MEAN
    per_tick_vol = annual_vol * np.sqrt((gaps / 60_000.0) / (252.0 * 1440.0))
    eta = rng.standard_normal(n) * vol_of_vol * np.sqrt(1.0 - vol_persistence**2)
    shocks = eta / (1.0 - vol_persistence)
    shocks[0] = rng.standard_normal() * vol_of_vol  # start in the stationary distribution
    h = pd.Series(shocks).ewm(alpha=1.0 - vol_persistence, adjust=False).mean().to_numpy()
    sigma = per_tick_vol * np.exp(h - 0.5 * vol_of_vol**2) * np.sqrt(season)
    mid = base_price * np.exp(np.cumsum(sigma * rng.standard_normal(n)))
    point = 10.0**-digits
    quiet = np.clip(1.6 - season, 0.0, None)
    spread = np.maximum(
        1, np.round(base_spread * (1.0 + quiet + 0.3 * np.abs(rng.standard_normal(n))))
    )
    bid = np.round(mid - spread * point / 2.0, digits)
    ask = np.round(bid + spread * point, digits)
    # every tick changes the quote: nudge the rare unchanged ones by a point
    same = np.zeros(n, dtype=bool)
    same[1:] = (bid[1:] == bid[:-1]) & (ask[1:] == ask[:-1])
    ask[same] = np.round(ask[same] + point, digits)
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "time_msc": epoch_ms,
            "bid": bid,
            "ask": ask,
            "last": 0.0,
            "volume": 0,
            "flags": TICK_FLAG_BID | TICK_FLAG_ASK,
        }
    )
    return _carry(_finish_ticks(df), symbol, digits)


# --------------------------------------------------------------------------- fault injection

# fault name -> the reason code the validator must give the faulty row
BAR_FAULTS: Final = {
    "spike": "spike",
    "duplicate": "duplicate_time",
    "out_of_order": "out_of_order",
    "stale": "stale",
    "ohlc": "ohlc_inconsistent",
    "non_positive": "non_positive_price",
    "negative_volume": "negative_volume",
    "missing": "missing_value",
    "weekend": "market_closed",
}
TICK_FAULTS: Final = {
    "spike": "spike",
    "duplicate": "duplicate_time",
    "out_of_order": "out_of_order",
    "stale": "stale",
    "ask_below_bid": "ask_below_bid",
    "non_positive": "non_positive_price",
    "weekend": "market_closed",
}


def inject_faults(
    frame: pd.DataFrame,
    faults: Mapping[str, int],
    *,
    seed: int,
    label: str = "fault",
    stale_len: int | None = None,
    spacing: int = 250,
) -> pd.DataFrame:
    """A copy of a bar or tick frame with faults injected, labelled in column ``label``.

    ``faults`` maps a fault (``BAR_FAULTS`` / ``TICK_FAULTS`` keys) to how many to inject;
    each injected (or corrupted) row carries its fault name in ``label``, every other row
    None; a stale fault labels its whole run. Faults sit at least ``spacing`` rows apart
    and away from series starts, so the validator has context and no good row is touched.
    Frames must be sorted by symbol and time (as the loaders and generators give them).
    """
    ticks = "bid" in frame.columns
    known = TICK_FAULTS if ticks else BAR_FAULTS
    unknown = sorted(set(faults) - set(known))
    if unknown:
        raise ValueError(f"unknown faults {unknown}; expected some of {sorted(known)}")
    stale_len = stale_len or (25 if ticks else 6)
    df = frame.reset_index(drop=True).copy()
    n = len(df)
    labels = np.full(n, None, dtype=object)
    rng = np.random.default_rng(seed)
    symbols = df["symbol"].to_numpy()
    tkey = df["time_msc"].to_numpy() if ticks else df["time"].astype("int64").to_numpy()
    series_start = np.r_[0, np.flatnonzero(symbols[1:] != symbols[:-1]) + 1]
    series_end = np.r_[series_start[1:], n]
    # positions a fault may start at: well inside a series, on a grid `spacing` apart
    slots = np.concatenate(
        [
            np.arange(s + spacing, e - spacing, spacing)
            for s, e in zip(series_start, series_end, strict=True)
        ]
        or [np.array([], dtype=np.int64)]
    )
    wanted = sum(int(v) for v in faults.values())
    if wanted > slots.size:
        raise ValueError(f"{wanted} faults need more rows (room for {slots.size})")
    chosen = iter(rng.permutation(slots)[:wanted].tolist())
    inserts: dict[int, list[tuple[dict[str, Any], str]]] = {}
    moved: dict[int, int] = {}
    prices = ["bid", "ask"] if ticks else ["open", "high", "low", "close"]
    ref_col = "bid" if ticks else "close"
    ref = df[ref_col].to_numpy()

    def local_move(i: int) -> float:
        lo = max(0, i - 100)
        moves = np.abs(np.diff(np.log(ref[lo:i])))
        moves = moves[np.isfinite(moves) & (moves > 0)]
        return float(np.median(moves)) if moves.size else 1e-4

    px = {c: df[c].to_numpy(dtype="float64", copy=True) for c in prices}
    volume = df["tick_volume"].to_numpy(copy=True) if not ticks else None
    for fault, count in faults.items():
        for _ in range(int(count)):
            i = next(chosen)
            row = df.iloc[i].to_dict()
            labels[i] = fault
            if fault == "spike":
                jump = max(80.0 * local_move(i), 2e-3)
                sign = 1.0 if rng.random() < 0.5 else -1.0
                if ticks:
                    for c in ("bid", "ask"):
                        px[c][i] *= 1.0 + sign * jump
                elif sign > 0:
                    px["high"][i] *= 1.0 + jump
                else:
                    px["low"][i] *= 1.0 - jump
            elif fault == "duplicate":
                labels[i] = None
                inserts.setdefault(i, []).append((row, fault))
            elif fault == "out_of_order":
                moved[i] = i + 5
            elif fault == "stale":
                run = slice(i, i + stale_len)
                for c in prices:
                    px[c][run] = px[c if ticks else "close"][i - 1]
                labels[run] = fault
            elif fault == "ohlc":
                px["high"][i] = min(px["open"][i], px["close"][i]) - 10.0**-5
            elif fault == "non_positive":
                px[prices[int(rng.integers(len(prices)))]][i] = -1.0 if rng.random() < 0.5 else 0.0
            elif fault == "negative_volume" and volume is not None:
                volume[i] = -5
            elif fault == "missing":
                px["close"][i] = np.nan
            elif fault == "ask_below_bid":
                px["ask"][i] = px["bid"][i] - 3 * 10.0**-5
            elif fault == "weekend":
                # a row stamped on the Saturday after row i (inserted in time order)
                labels[i] = None
                t = pd.Timestamp(int(tkey[i]) * (1_000_000 if ticks else 1), tz="UTC")
                saturday = (t + pd.Timedelta(days=(5 - t.dayofweek) % 7)).normalize()
                saturday += pd.Timedelta(hours=12)
                after = (
                    int(
                        np.searchsorted(
                            tkey[i : series_end[series_end > i][0]],
                            saturday.value // (1_000_000 if ticks else 1),
                        )
                    )
                    + i
                    - 1
                )
                extra = df.iloc[after].to_dict()
                if ticks:
                    extra["time_msc"] = saturday.value // 1_000_000
                    extra["time"] = saturday
                else:
                    extra["time"] = saturday
                inserts.setdefault(after, []).append((extra, fault))
    for c in prices:
        df[c] = px[c]
    if volume is not None:
        df["tick_volume"] = volume
    order: list[int] = []
    pending: dict[int, list[int]] = {}
    for source, target in moved.items():
        pending.setdefault(target, []).append(source)
    extra_rows: list[dict[str, Any]] = []
    extra_labels: list[str] = []
    for i in range(n):
        if i not in moved:
            order.append(i)
        for row, fault in inserts.get(i, []):
            extra_rows.append(row)
            extra_labels.append(fault)
            order.append(n + len(extra_rows) - 1)
        order.extend(pending.get(i, []))
    combined = pd.concat([df, pd.DataFrame(extra_rows, columns=df.columns)], ignore_index=True)
    all_labels = np.concatenate([labels, np.array(extra_labels, dtype=object)])
    out = combined.iloc[order].reset_index(drop=True).astype(df.dtypes.to_dict())
    out[label] = all_labels[order]
    return out
