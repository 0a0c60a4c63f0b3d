"""The Spark job runs the one feature implementation: its output equals the in-process one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from chaintrade.features import compute_features, feature_columns
from chaintrade.labels import direction_labels
from chaintrade.pipeline import DemoParams, load_demo_bars, write_lake
from spark_jobs.build_features import run, transform_features, transform_labels
from spark_jobs.session import spark_session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("chaintrade-tests", "local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_demo_bars(DemoParams(max_bars=400)).reset_index(drop=True)


def _spark_bars(spark: SparkSession, bars: pd.DataFrame):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(bars)


def test_spark_features_equal_in_process_features(spark: SparkSession, bars: pd.DataFrame) -> None:
    out = transform_features(_spark_bars(spark, bars), "H1").toPandas()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    columns = ["symbol", "event_timestamp", *feature_columns("H1")]
    expected = []
    for _, group in bars.groupby("symbol"):
        f = compute_features(group.reset_index(drop=True), "H1")
        expected.append(f.loc[~f["warmup"], columns])
    want = pd.concat(expected).sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    got = out[columns].sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    assert len(got) == len(bars) - 2 * 33  # each symbol loses exactly its warm-up rows
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-12)


def test_spark_labels_equal_in_process_labels(spark: SparkSession, bars: pd.DataFrame) -> None:
    out = transform_labels(_spark_bars(spark, bars), "H1", horizon_bars=2).toPandas()
    want = direction_labels(bars, horizon_bars=2)
    assert len(out) == len(want) == len(bars) - 2 * 2
    got = out.sort_values(["symbol", "time"]).reset_index(drop=True)
    want = want.sort_values(["symbol", "time"]).reset_index(drop=True)
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()


def test_job_writes_utc_micros_parquet_feast_can_read(bars: pd.DataFrame, tmp_path: Path) -> None:
    write_lake(bars, tmp_path / "lake")
    counts = run(
        str(tmp_path / "lake" / "bars"),
        str(tmp_path / "offline"),
        timeframe="H1",
        horizon_bars=1,
        master="local[2]",
    )
    features = pd.read_parquet(tmp_path / "offline" / "bar_features")
    assert counts["features"] == len(features) == len(bars) - 2 * 33
    assert str(features["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert features["symbol"].dtype == object  # a flat string column, not a partition category
    # feature known at the bar's close: one timeframe after the bar's open
    assert (features["event_timestamp"] - features["time"] == pd.Timedelta(hours=1)).all()
