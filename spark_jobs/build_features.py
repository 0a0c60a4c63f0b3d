"""Spark job: bars from the raw lake → features and labels (the offline store), per timeframe.

``main()`` does session, configuration and IO; the pure ``transform_*`` functions do the work
by running the one feature implementation (:mod:`chaintrade.features`) and the labels
(:mod:`chaintrade.labels`) per symbol with ``applyInPandas``.

Scale-out without a second implementation: each symbol's bars are cut into time chunks of
about ``chunk_bars`` bars; every chunk is computed by the same pandas code over its own bars
plus the ``LOOKBACK_BARS`` bars before it (exactly that many, counted across earlier chunks,
so windowed features are identical and recursive ones — EMA, Wilder — equal the full-history
values to far below 1e-9, the online path's guarantee) and the ``future_bars`` bars after it
(for the labels). Only the chunk's own rows are kept. A symbol's first ``MAX_WARMUP_BARS``
rows are the warm-up: they are left out of the features table, never filled.

Output (partitioned Parquet, UTC microsecond timestamps, ``symbol`` a flat column)::

    <out>/bar_features/timeframe=<TF>/part-*.parquet   symbol, time, event_timestamp, {f}_<TF>
    <out>/bar_labels/timeframe=<TF>/part-*.parquet     symbol, time, event_timestamp,
                                                       forward_return, label,
                                                       next_open_return,
                                                       tb_label, tb_return, tb_bars

    spark-submit spark_jobs/build_features.py --bars var/lake/bars --out var/offline \\
        --timeframes M1 M5 M15 H1 --master spark://127.0.0.1:7077
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chaintrade.domain import BAR_FRAME_COLUMNS
from chaintrade.features import LOOKBACK_BARS, compute_features, feature_columns, to_timeframe
from chaintrade.labels import NEXT_OPEN_RETURN, all_labels, horizon_to_bars

FEATURES_TABLE = "bar_features"
LABELS_TABLE = "bar_labels"
DEFAULT_CHUNK_BARS = 250_000


@dataclass(frozen=True)
class LabelParams:
    """Label settings: direction horizon in bars, triple-barrier multiples of ATR and limit."""

    horizon_bars: int = 1
    take_profit: float = 2.0
    stop_loss: float = 1.0
    max_bars: int = 15

    @property
    def future_bars(self) -> int:
        """Bars after a chunk its labels read: the horizon, the time limit, and the two bars
        of ``next_open_return`` (open of t + 1 and t + 2)."""
        return max(self.horizon_bars, self.max_bars, 2)


def _as_bars(pdf: pd.DataFrame) -> pd.DataFrame:
    """Arrow hands timestamps over naive (session time zone = UTC): make them aware again."""
    out = pdf[list(BAR_FRAME_COLUMNS)].copy()
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out.sort_values("time", kind="stable").reset_index(drop=True)


def features_schema(timeframe: str) -> T.StructType:
    fields = [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("time", T.TimestampType(), False),
        T.StructField("event_timestamp", T.TimestampType(), False),
    ]
    fields += [T.StructField(c, T.DoubleType(), True) for c in feature_columns(timeframe)]
    return T.StructType(fields)


LABELS_SCHEMA = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("time", T.TimestampType(), False),
        T.StructField("event_timestamp", T.TimestampType(), False),
        T.StructField("forward_return", T.DoubleType(), False),
        T.StructField("label", T.LongType(), False),
        T.StructField(NEXT_OPEN_RETURN, T.DoubleType(), True),
        T.StructField("tb_label", T.LongType(), True),
        T.StructField("tb_return", T.DoubleType(), True),
        T.StructField("tb_bars", T.LongType(), True),
    ]
)


def _combined_schema(timeframe: str) -> T.StructType:
    fields = [*features_schema(timeframe).fields, T.StructField("warmup", T.BooleanType(), False)]
    fields += [T.StructField(f.name, f.dataType, True) for f in LABELS_SCHEMA.fields[3:]]
    return T.StructType(fields)


# --------------------------------------------------------------------------- chunk plan


def _chunk_span(timeframe: str, chunk_bars: int) -> timedelta:
    return to_timeframe(timeframe).duration * chunk_bars


def _with_chunk(bars: DataFrame, timeframe: str, chunk_bars: int) -> DataFrame:
    span_us = int(_chunk_span(timeframe, chunk_bars) / timedelta(microseconds=1))
    micros = F.unix_micros(F.col("time"))
    return bars.withColumn("chunk", F.floor(micros / F.lit(span_us)).cast("long"))


def _edges(bars: DataFrame, keep: int) -> pd.DataFrame:
    """Per (symbol, chunk): its first and last ``keep`` bar times (small; goes to the driver)."""

    def per_chunk(pdf: pd.DataFrame) -> pd.DataFrame:
        times = pdf["time"].sort_values(kind="stable")
        head, tail = times.iloc[:keep], times.iloc[-keep:]
        return pd.DataFrame(
            {
                "symbol": pdf["symbol"].iloc[0],
                "chunk": pdf["chunk"].iloc[0],
                "end": ["head"] * len(head) + ["tail"] * len(tail),
                "time": pd.concat([head, tail], ignore_index=True),
            }
        )

    schema = "symbol string, chunk long, end string, time timestamp"
    edges = bars.select("symbol", "chunk", "time").groupBy("symbol", "chunk")
    out = edges.applyInPandas(per_chunk, schema=schema).toPandas()
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out


def chunk_plan(edges: pd.DataFrame, back: int, ahead: int) -> pd.DataFrame:
    """Which bars of chunk ``chunk`` the computation of chunk ``target`` needs.

    Rows (symbol, chunk, target, lo, hi): chunk ``target`` takes the bars of ``chunk`` with
    lo <= time <= hi — all of its own bars, the last ``back`` bars before it and the first
    ``ahead`` bars after it, counted across as many neighbouring chunks as it takes.
    """
    rows: list[tuple[str, int, int, pd.Timestamp | None, pd.Timestamp | None]] = []
    for symbol, per_symbol in edges.groupby("symbol", sort=True):
        chunks = sorted(per_symbol["chunk"].unique())
        by_chunk = {c: g for c, g in per_symbol.groupby("chunk")}
        for i, target in enumerate(chunks):
            rows.append((str(symbol), int(target), int(target), None, None))
            need = back
            for c in reversed(chunks[:i]):
                if need <= 0:
                    break
                tail = by_chunk[c].loc[by_chunk[c]["end"] == "tail", "time"].sort_values()
                take = tail.iloc[-need:]
                rows.append((str(symbol), int(c), int(target), take.iloc[0], None))
                need -= len(take)
            need = ahead
            for c in chunks[i + 1 :]:
                if need <= 0:
                    break
                head = by_chunk[c].loc[by_chunk[c]["end"] == "head", "time"].sort_values()
                take = head.iloc[:need]
                rows.append((str(symbol), int(c), int(target), None, take.iloc[-1]))
                need -= len(take)
    return pd.DataFrame(rows, columns=["symbol", "chunk", "target", "lo", "hi"])


def _spread_to_chunks(bars: DataFrame, plan: pd.DataFrame) -> DataFrame:
    """Each bar once per chunk that needs it (its own, and neighbours near its edges)."""
    spark = bars.sparkSession
    far_past = pd.Timestamp("1900-01-01", tz="UTC")
    far_future = pd.Timestamp("2200-01-01", tz="UTC")
    lo = pd.to_datetime(plan["lo"], utc=True).fillna(far_past)
    table = plan.assign(lo=lo, hi=pd.to_datetime(plan["hi"], utc=True).fillna(far_future))
    schema = "symbol string, chunk long, target long, lo timestamp, hi timestamp"
    plan_df = spark.createDataFrame(table, schema=schema)
    joined = bars.join(F.broadcast(plan_df), on=["symbol", "chunk"], how="inner")
    inside = (F.col("time") >= F.col("lo")) & (F.col("time") <= F.col("hi"))
    return joined.where(inside).drop("lo", "hi")


# --------------------------------------------------------------------------- transforms


def transform_bars(
    bars: DataFrame,
    timeframe: str,
    labels: LabelParams | None = None,
    *,
    chunk_bars: int = DEFAULT_CHUNK_BARS,
    lookback_bars: int = LOOKBACK_BARS,
) -> DataFrame:
    """Features (with ``warmup``) and labels of every bar of ``timeframe``, one row per bar.

    Label columns are null where a label is not defined yet (no future bars, ATR warm-up).
    Runs one Spark action to plan the chunks (their edge times) before returning.
    """
    params = labels or LabelParams()
    tf = to_timeframe(timeframe).name
    schema = _combined_schema(tf)
    names = [f.name for f in schema.fields]
    columns = [*BAR_FRAME_COLUMNS]
    selected = _with_chunk(bars.where(F.col("timeframe") == tf), tf, chunk_bars)
    selected = selected.select(*columns, "chunk")
    keep = max(lookback_bars, params.future_bars)
    plan = chunk_plan(_edges(selected, keep), lookback_bars, params.future_bars)
    spread = _spread_to_chunks(selected, plan)

    def per_chunk(pdf: pd.DataFrame) -> pd.DataFrame:
        target = int(pdf["target"].iloc[0])
        own = (pdf["chunk"] == target).to_numpy()
        frame = pdf.assign(_own=own)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
        bars_ = frame[list(BAR_FRAME_COLUMNS)]
        features = compute_features(bars_, tf)
        # A chunk after the first starts with >= lookback bars of history: no warm-up there.
        label_frame = all_labels(
            bars_,
            horizon_bars=params.horizon_bars,
            take_profit=params.take_profit,
            stop_loss=params.stop_loss,
            max_bars=params.max_bars,
        )
        out = features.merge(
            label_frame.drop(columns="event_timestamp"), on=["symbol", "time"], how="left"
        )
        out = out.loc[frame["_own"].to_numpy()]
        return out[names]

    if plan.empty:
        return bars.sparkSession.createDataFrame([], schema)
    return spread.groupBy("symbol", "target").applyInPandas(per_chunk, schema=schema)


def transform_features(
    bars: DataFrame, timeframe: str, *, chunk_bars: int = DEFAULT_CHUNK_BARS
) -> DataFrame:
    """Features per symbol; rows still inside an indicator's warm-up are left out."""
    combined = transform_bars(bars, timeframe, chunk_bars=chunk_bars)
    return _features_only(combined, timeframe)


def transform_labels(
    bars: DataFrame,
    timeframe: str,
    horizon_bars: int,
    *,
    chunk_bars: int = DEFAULT_CHUNK_BARS,
    take_profit: float = 2.0,
    stop_loss: float = 1.0,
    max_bars: int = 15,
) -> DataFrame:
    """Direction labels (+ triple-barrier columns) per symbol: the only columns that see ahead."""
    params = LabelParams(horizon_bars, take_profit, stop_loss, max_bars)
    return _labels_only(transform_bars(bars, timeframe, params, chunk_bars=chunk_bars))


def _features_only(combined: DataFrame, timeframe: str) -> DataFrame:
    names = [f.name for f in features_schema(timeframe).fields]
    return combined.where(~F.col("warmup")).select(*names)


def _labels_only(combined: DataFrame) -> DataFrame:
    names = [f.name for f in LABELS_SCHEMA.fields]
    return combined.where(F.col("label").isNotNull()).select(*names)


# --------------------------------------------------------------------------- job


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bars", required=True, help="raw lake folder of bar Parquet files")
    parser.add_argument("--out", required=True, help="offline store folder")
    parser.add_argument("--timeframes", nargs="+", default=["H1"], help="e.g. M1 M5 M15 H1")
    parser.add_argument(
        "--horizon-bars", type=int, default=None, help="label horizon in bars (per timeframe)"
    )
    parser.add_argument(
        "--horizon-minutes", type=int, default=15, help="label horizon as a duration (default)"
    )
    parser.add_argument("--take-profit", type=float, default=2.0, help="ATR units")
    parser.add_argument("--stop-loss", type=float, default=1.0, help="ATR units")
    parser.add_argument("--max-bars", type=int, default=15, help="triple-barrier time limit")
    parser.add_argument("--chunk-bars", type=int, default=DEFAULT_CHUNK_BARS)
    parser.add_argument(
        "--master", default=None, help="default: spark-submit's --master (local[*] without it)"
    )
    return parser.parse_args(argv)


def _write(df: DataFrame, timeframe: str, path: Path) -> None:
    (
        df.withColumn("timeframe", F.lit(timeframe))
        .write.mode("overwrite")
        .partitionBy("timeframe")
        .parquet(str(path))
    )


def run(
    bars_path: str,
    out_path: str,
    *,
    timeframe: str | Sequence[str] = "H1",
    horizon_bars: int | None = None,
    horizon: timedelta = timedelta(minutes=15),
    take_profit: float = 2.0,
    stop_loss: float = 1.0,
    max_bars: int = 15,
    chunk_bars: int = DEFAULT_CHUNK_BARS,
    master: str | None = "local[2]",
    spark_conf: dict[str, str] | None = None,
) -> dict[str, int]:
    """Build and write both tables for each timeframe; returns total row counts.

    Each timeframe replaces only its own ``timeframe=<TF>`` partition. ``horizon_bars``, when
    given, applies to every timeframe; otherwise ``horizon`` is converted per timeframe.
    ``master=None`` keeps the master spark-submit was given.
    """
    from spark_jobs.session import spark_session

    timeframes = [timeframe] if isinstance(timeframe, str) else list(timeframe)
    spark = spark_session("chaintrade-build-features", master, spark_conf)
    counts = {"features": 0, "labels": 0}
    try:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
        bars = spark.read.parquet(bars_path)
        out = Path(out_path)
        for tf in timeframes:
            h = horizon_bars if horizon_bars is not None else horizon_to_bars(tf, horizon)
            params = LabelParams(h, take_profit, stop_loss, max_bars)
            combined = transform_bars(bars, tf, params, chunk_bars=chunk_bars)
            combined = combined.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                features = _features_only(combined, tf)
                labels = _labels_only(combined)
                _write(features, tf, out / FEATURES_TABLE)
                _write(labels, tf, out / LABELS_TABLE)
                counts["features"] += features.count()
                counts["labels"] += labels.count()
            finally:
                combined.unpersist()
        return counts
    finally:
        spark.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    counts = run(
        args.bars,
        args.out,
        timeframe=args.timeframes,
        horizon_bars=args.horizon_bars,
        horizon=timedelta(minutes=args.horizon_minutes),
        take_profit=args.take_profit,
        stop_loss=args.stop_loss,
        max_bars=args.max_bars,
        chunk_bars=args.chunk_bars,
        master=args.master,
    )
    print(counts)


if __name__ == "__main__":
    main()


__all__ = [
    "FEATURES_TABLE",
    "LABELS_SCHEMA",
    "LABELS_TABLE",
    "LabelParams",
    "chunk_plan",
    "features_schema",
    "main",
    "run",
    "transform_bars",
    "transform_features",
    "transform_labels",
]
