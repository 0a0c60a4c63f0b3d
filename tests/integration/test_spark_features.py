"""The Spark job runs the one feature implementation: its output equals the in-process one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from chaintrade.features import MAX_WARMUP_BARS, compute_features, feature_columns
from chaintrade.labels import all_labels, direction_labels
from chaintrade.market_data import synthetic_bars
from chaintrade.pipeline import DemoParams, load_demo_bars, write_lake
from spark_jobs.build_features import (
    LabelParams,
    chunk_plan,
    run,
    transform_bars,
    transform_features,
    transform_labels,
)
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


def _expected_features(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    columns = ["symbol", "event_timestamp", *feature_columns(timeframe)]
    expected = []
    for _, group in bars.groupby("symbol"):
        f = compute_features(group.sort_values("time").reset_index(drop=True), timeframe)
        expected.append(f.loc[~f["warmup"], columns])
    return pd.concat(expected).sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)


def _sorted(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df.copy()
    for c in ("time", "event_timestamp"):
        if c in out:
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out[columns].sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)


def test_spark_features_equal_in_process_features(spark: SparkSession, bars: pd.DataFrame) -> None:
    out = transform_features(spark.createDataFrame(bars), "H1").toPandas()
    want = _expected_features(bars, "H1")
    got = _sorted(out, list(want.columns))
    assert len(got) == len(bars) - 2 * MAX_WARMUP_BARS  # each symbol loses its warm-up rows
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-12)


def test_chunks_with_warmup_overlap_equal_the_full_history_within_1e_9(
    spark: SparkSession,
) -> None:
    """Small chunks (about 150 M5 bars, so ~14 per symbol) still give the full-history numbers:
    every chunk is computed over its bars plus the LOOKBACK_BARS bars before it."""
    a = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-05 20:00", n=2000, seed=3)
    b = synthetic_bars("USDJPY", timeframe="M5", start="2024-01-02", n=1500, seed=3)
    bars = pd.concat([a, b], ignore_index=True)
    params = LabelParams(horizon_bars=3, max_bars=15)
    combined = transform_bars(spark.createDataFrame(bars), "M5", params, chunk_bars=150)
    combined = combined.toPandas()
    assert len(combined) == len(bars)  # one row per bar, no duplicates from the overlap
    want = _expected_features(bars, "M5")
    got = _sorted(combined[~combined["warmup"]], list(want.columns))
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-9)
    # labels need the bars AFTER a chunk: they are equal exactly (windowed, no recursion)
    labels = all_labels(bars, horizon_bars=3, max_bars=15)
    got_labels = combined[combined["label"].notna()]
    assert len(got_labels) == len(labels)
    merged = labels.merge(
        got_labels.assign(time=pd.to_datetime(got_labels["time"], utc=True)),
        on=["symbol", "time"],
        suffixes=("", "_spark"),
    )
    assert len(merged) == len(labels)
    np.testing.assert_allclose(merged["forward_return"], merged["forward_return_spark"], atol=0)
    np.testing.assert_allclose(
        merged["next_open_return"], merged["next_open_return_spark"], rtol=0, atol=0
    )
    assert (merged["tb_label"].fillna(9) == merged["tb_label_spark"].fillna(9)).all()


def test_chunk_plan_counts_overlap_bars_across_short_chunks() -> None:
    t = pd.date_range("2024-01-01", periods=10, freq="min", tz="UTC")
    edges = pd.DataFrame(
        {
            "symbol": "S",
            "chunk": [0, 0, 0, 1, 1, 2, 2, 2, 2, 2] * 2,
            "end": ["head"] * 10 + ["tail"] * 10,
            "time": list(t) * 2,
        }
    )
    plan = chunk_plan(edges, back=4, ahead=1)
    chunk2 = plan[plan["target"] == 2].set_index("chunk")
    assert chunk2.loc[1, "lo"] == t[3]  # both bars of chunk 1 ...
    assert chunk2.loc[0, "lo"] == t[1]  # ... and the last two of chunk 0: four bars back
    chunk0 = plan[plan["target"] == 0].set_index("chunk")
    assert chunk0.loc[1, "hi"] == t[3] and 2 not in chunk0.index  # one bar ahead


def test_spark_labels_equal_in_process_labels(spark: SparkSession, bars: pd.DataFrame) -> None:
    out = transform_labels(spark.createDataFrame(bars), "H1", horizon_bars=2).toPandas()
    want = direction_labels(bars, horizon_bars=2)
    assert len(out) == len(want) == len(bars) - 2 * 2
    got = out.sort_values(["symbol", "time"]).reset_index(drop=True)
    want = want.sort_values(["symbol", "time"]).reset_index(drop=True)
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    np.testing.assert_allclose(got["forward_return"], want["forward_return"], rtol=0, atol=0)
    np.testing.assert_allclose(got["next_open_return"], want["next_open_return"], rtol=0, atol=0)


def test_chunks_read_the_two_opens_after_them_for_the_next_open_return(
    spark: SparkSession,
) -> None:
    """A one-bar horizon and time limit still give each chunk the two bars after it that
    ``next_open_return`` reads (open of t + 1 and t + 2); NaN only at the very end."""
    bars = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-02", n=600, seed=4)
    assert LabelParams(horizon_bars=1, max_bars=1).future_bars == 2
    spark_labels = transform_labels(spark.createDataFrame(bars), "M5", 1, chunk_bars=40, max_bars=1)
    want = direction_labels(bars, horizon_bars=1)
    got = spark_labels.toPandas().sort_values("time").reset_index(drop=True)
    assert len(got) == len(want) == len(bars) - 1
    assert got["next_open_return"].isna().sum() == 1  # the last label: no bar t + 2 yet
    np.testing.assert_allclose(got["next_open_return"], want["next_open_return"], rtol=0, atol=0)


def test_job_writes_utc_micros_parquet_partitioned_by_timeframe(tmp_path: Path) -> None:
    h1 = load_demo_bars(DemoParams(max_bars=300))
    m15 = synthetic_bars("EURUSD", timeframe="M15", start="2024-01-02", n=300, seed=8)
    write_lake(pd.concat([h1, m15], ignore_index=True), tmp_path / "lake")
    counts = run(
        str(tmp_path / "lake" / "bars"),
        str(tmp_path / "offline"),
        timeframe=["H1", "M15"],
        horizon_bars=1,
        master="local[2]",
    )
    root = tmp_path / "offline" / "bar_features"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "timeframe=H1",
        "timeframe=M15",
    ]
    features = pd.read_parquet(root / "timeframe=H1")
    m15_features = pd.read_parquet(root / "timeframe=M15")
    assert counts["features"] == len(features) + len(m15_features)
    assert len(features) == len(h1) - 2 * MAX_WARMUP_BARS
    assert list(m15_features.columns) == [
        "symbol",
        "time",
        "event_timestamp",
        *feature_columns("M15"),
    ]
    assert str(features["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert features["symbol"].dtype == object  # a flat string column, not a partition category
    assert (features["event_timestamp"] - features["time"] == pd.Timedelta(hours=1)).all()
    labels = pd.read_parquet(tmp_path / "offline" / "bar_labels" / "timeframe=H1")
    assert list(labels.columns) == [
        "symbol", "time", "event_timestamp", "forward_return", "label", "next_open_return",
        "tb_label", "tb_return", "tb_bars",
    ]  # fmt: skip
    assert len(labels) == len(h1) - 2
    # re-running one timeframe replaces its partition only
    run(
        str(tmp_path / "lake" / "bars"),
        str(tmp_path / "offline"),
        timeframe="H1",
        horizon_bars=1,
        master="local[2]",
    )
    assert len(pd.read_parquet(root / "timeframe=M15")) == len(m15_features)
    assert len(pd.read_parquet(root / "timeframe=H1")) == len(features)
