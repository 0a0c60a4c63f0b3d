"""Bars into and out of ``market_data``: binary COPY into a staging table, then upsert."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.db import connect
from chaintrade.domain import BAR_FRAME_COLUMNS, Timeframe
from chaintrade.errors import DataValidationError

log = logging.getLogger(__name__)

_PRICE_COLUMNS = ("open", "high", "low", "close")
_INT_COLUMNS = ("tick_volume", "spread", "real_volume")
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS market_data_stage (
    symbol text, timeframe text, "time" timestamptz, open float8, high float8, low float8,
    close float8, tick_volume int8, spread int8, real_volume int8
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = (
    'COPY market_data_stage (symbol, timeframe, "time", open, high, low, close, '
    "tick_volume, spread, real_volume) FROM STDIN (FORMAT BINARY)"
)
# Changed rows are updated, identical rows untouched; (xmax = 0) marks fresh inserts.
_UPSERT = """
WITH upserted AS (
    INSERT INTO market_data AS m (symbol, timeframe, "time", open, high, low, close,
                                  tick_volume, spread, real_volume)
    SELECT symbol, timeframe, "time", open, high, low, close, tick_volume, spread, real_volume
    FROM market_data_stage
    ON CONFLICT (symbol, timeframe, "time") DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, tick_volume = EXCLUDED.tick_volume,
        spread = EXCLUDED.spread, real_volume = EXCLUDED.real_volume
    WHERE (m.open, m.high, m.low, m.close, m.tick_volume, m.spread, m.real_volume)
          IS DISTINCT FROM
          (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
           EXCLUDED.tick_volume, EXCLUDED.spread, EXCLUDED.real_volume)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""
_TIMEFRAMES = {tf.name for tf in Timeframe}


def _timeframe_name(value: Any) -> str:
    if isinstance(value, Timeframe):
        return value.name
    return str(value)


def _prepare(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in BAR_FRAME_COLUMNS if c not in bars.columns]
    if missing:
        raise DataValidationError(
            f"bars frame lacks columns {missing}", counts={"missing_column": len(missing)}
        )
    frame = bars.loc[:, list(BAR_FRAME_COLUMNS)]
    times = frame["time"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"bars 'time' must be timezone-aware UTC (datetime64[ns, UTC]), got {times.dtype}",
            counts={"naive_time": len(frame)},
        )
    nulls = int(frame.isna().any(axis=1).sum())
    if nulls:
        raise DataValidationError(f"{nulls} bar(s) have missing values", counts={"null": nulls})
    timeframes = frame["timeframe"].map(_timeframe_name)
    unknown = sorted(set(timeframes) - _TIMEFRAMES)
    if unknown:
        raise DataValidationError(
            f"unknown timeframe(s) {unknown}; expected one of {sorted(_TIMEFRAMES)}",
            counts={"unknown_timeframe": int(timeframes.isin(unknown).sum())},
        )
    frame = frame.assign(
        timeframe=timeframes,
        symbol=frame["symbol"].astype(str),
        time=times.dt.tz_convert("UTC"),
    ).drop_duplicates(["symbol", "timeframe", "time"], keep="last")
    try:
        ints = {c: frame[c].astype("int64") for c in _INT_COLUMNS}
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"bar volumes/spread must be integers: {exc}") from exc
    prices = {c: frame[c].astype("float64") for c in _PRICE_COLUMNS}
    return frame.assign(**prices, **ints).reset_index(drop=True)


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def encode_copy_binary(bars: pd.DataFrame) -> list[bytes]:
    """Bars (``BAR_FRAME_COLUMNS``, UTC times) as PostgreSQL binary COPY chunks, vectorized.

    One fixed-width numpy record per row within each (symbol, timeframe) group: the first
    chunk starts with the COPY header, the last ends with the trailer.
    """
    chunks: list[bytes] = [_COPY_HEADER]
    for (symbol, timeframe), group in bars.groupby(["symbol", "timeframe"], sort=False):
        sym, tf = str(symbol).encode(), str(timeframe).encode()
        fields: list[tuple[str, str]] = [("n", ">i2")]
        fields += [("l_symbol", ">i4"), ("symbol", f"S{len(sym)}")]
        fields += [("l_timeframe", ">i4"), ("timeframe", f"S{len(tf)}")]
        fields += [("l_time", ">i4"), ("time", ">i8")]
        fields += [x for c in _PRICE_COLUMNS for x in ((f"l_{c}", ">i4"), (c, ">f8"))]
        fields += [x for c in _INT_COLUMNS for x in ((f"l_{c}", ">i4"), (c, ">i8"))]
        rec = np.empty(len(group), dtype=np.dtype(fields))
        rec["n"] = 10
        rec["l_symbol"], rec["symbol"] = len(sym), sym
        rec["l_timeframe"], rec["timeframe"] = len(tf), tf
        rec["l_time"] = 8
        rec["time"] = group["time"].astype("int64").to_numpy() // 1000 - _PG_EPOCH_US
        for c in (*_PRICE_COLUMNS, *_INT_COLUMNS):
            rec[f"l_{c}"] = 8
            rec[c] = group[c].to_numpy()
        chunks.append(rec.tobytes())
    chunks.append(_COPY_TRAILER)
    return chunks


def copy_into_stage(cur: Any, bars: pd.DataFrame) -> int:
    """COPY a checked bars frame into the session's ``market_data_stage``; rows copied."""
    cur.execute(_CREATE_STAGE)
    with cur.copy(_COPY_STAGE) as copy:
        step = 8 << 20
        for chunk in encode_copy_binary(bars):
            for i in range(0, len(chunk), step):
                copy.write(chunk[i : i + step])
    return len(bars)


def load_bars(url: str, bars: pd.DataFrame) -> int:
    """Upsert a bars frame (``BAR_FRAME_COLUMNS``) into ``market_data``; return rows inserted.

    Binary COPY into a temporary staging table, then one ``INSERT ... ON CONFLICT``.
    Idempotent: loading the same frame again inserts and changes nothing; a bar whose
    values changed is updated in place. Duplicate keys within the frame keep the last row.
    """
    frame = _prepare(bars)
    if frame.empty:
        return 0
    with connect(url) as conn, conn.transaction(), conn.cursor() as cur:
        copy_into_stage(cur, frame)
        cur.execute(_UPSERT)
        result = cur.fetchone()
    inserted, updated = (int(result[0]), int(result[1])) if result else (0, 0)
    log.info("market_data: %d bar(s) inserted, %d updated of %d", inserted, updated, len(frame))
    return inserted


def read_bars(
    url: str,
    symbol: str,
    timeframe: str | Timeframe,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Bars of one series in time order, ``start <= time < end``, as a bars frame."""
    query = (
        'SELECT symbol, timeframe, "time", open, high, low, close, tick_volume, spread, '
        'real_volume FROM market_data WHERE symbol = %s AND timeframe = %s AND "time" >= %s '
        'AND "time" < %s ORDER BY "time"'
    )
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    with connect(url) as conn:
        rows = conn.execute(query, (symbol, _timeframe_name(timeframe), lo, hi)).fetchall()
    frame = pd.DataFrame(rows, columns=list(BAR_FRAME_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


__all__ = ["copy_into_stage", "encode_copy_binary", "load_bars", "read_bars"]
