"""Spark job: bars from the raw lake → features (offline store) and direction labels.

``main()`` does session, configuration and IO; the pure ``transform_*`` functions do the work
by running the one feature implementation of :mod:`chaintrade.features` per symbol.

    spark-submit spark_jobs/build_features.py --bars var/lake/bars --out var/offline
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from chaintrade.domain import BAR_FRAME_COLUMNS
from chaintrade.features import compute_features, feature_columns
from chaintrade.labels import direction_labels

FEATURES_TABLE = "bar_features"
LABELS_TABLE = "bar_labels"


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
    ]
)


def transform_features(bars: DataFrame, timeframe: str) -> DataFrame:
    """Features per symbol; rows still inside an indicator's warm-up are left out."""
    columns = ["symbol", "time", "event_timestamp", *feature_columns(timeframe)]

    def per_symbol(pdf: pd.DataFrame) -> pd.DataFrame:
        features = compute_features(_as_bars(pdf), timeframe)
        return features.loc[~features["warmup"], columns]

    return (
        bars.where(bars.timeframe == timeframe)
        .groupBy("symbol")
        .applyInPandas(per_symbol, schema=features_schema(timeframe))
    )


def transform_labels(bars: DataFrame, timeframe: str, horizon_bars: int) -> DataFrame:
    """Direction labels per symbol (the only columns that look into the future)."""

    def per_symbol(pdf: pd.DataFrame) -> pd.DataFrame:
        labels = direction_labels(_as_bars(pdf), horizon_bars=horizon_bars)
        return labels[[f.name for f in LABELS_SCHEMA.fields]]

    return (
        bars.where(bars.timeframe == timeframe)
        .groupBy("symbol")
        .applyInPandas(per_symbol, schema=LABELS_SCHEMA)
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", required=True, help="raw lake folder of bar Parquet files")
    parser.add_argument("--out", required=True, help="offline store folder")
    parser.add_argument("--timeframe", default="H1")
    parser.add_argument("--horizon-bars", type=int, default=1)
    parser.add_argument("--master", default="local[2]")
    return parser.parse_args(argv)


def run(
    bars_path: str, out_path: str, *, timeframe: str, horizon_bars: int, master: str
) -> dict[str, int]:
    """Build and write both tables; returns row counts."""
    from spark_jobs.session import spark_session

    spark = spark_session("chaintrade-build-features", master)
    try:
        bars = spark.read.parquet(bars_path)
        features = transform_features(bars, timeframe).cache()
        labels = transform_labels(bars, timeframe, horizon_bars).cache()
        out = Path(out_path)
        # One flat file per table: Feast's file source reads it without partition columns.
        features.coalesce(1).write.mode("overwrite").parquet(str(out / FEATURES_TABLE))
        labels.coalesce(1).write.mode("overwrite").parquet(str(out / LABELS_TABLE))
        return {"features": features.count(), "labels": labels.count()}
    finally:
        spark.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    counts = run(
        args.bars,
        args.out,
        timeframe=args.timeframe,
        horizon_bars=args.horizon_bars,
        master=args.master,
    )
    print(counts)


if __name__ == "__main__":
    main()
