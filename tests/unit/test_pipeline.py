"""Batch pipeline pieces: idempotent lake writes, purged splits with no label overlap."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chaintrade.pipeline import DemoParams, load_demo_bars, write_lake
from chaintrade.training import labels_before


def test_reingesting_the_same_bars_gives_the_same_lake(tmp_path: Path) -> None:
    bars = load_demo_bars(DemoParams(max_bars=200))
    write_lake(bars, tmp_path)
    first = pd.read_parquet(tmp_path / "bars")
    write_lake(bars, tmp_path)
    second = pd.read_parquet(tmp_path / "bars")
    assert len(second) == len(first) == len(bars)
    pd.testing.assert_frame_equal(first, second)


def _labels(n: int) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {"symbol": "X", "time": times, "event_timestamp": times + pd.Timedelta(hours=1)}
    )


def test_labels_before_cutoff_never_reach_into_it() -> None:
    labels = _labels(10)
    cutoff = labels["time"].iloc[6]
    kept = labels_before(labels, cutoff.to_pydatetime(), horizon_bars=2)
    # bars 0..5 precede the cutoff; labels 4 and 5 look at bars 6 and 7 (held out): purged
    assert kept["time"].tolist() == labels["time"].iloc[:4].tolist()
