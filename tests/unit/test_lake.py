"""The raw lake: symbol/date partitions, idempotent re-ingest, readers old and new."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chaintrade.lake import read_bars, read_ticks, write_bars, write_ticks
from chaintrade.market_data import synthetic_bars, synthetic_ticks


def _bars() -> pd.DataFrame:
    return pd.concat(
        [
            synthetic_bars(s, timeframe="H1", start="2024-01-02", n=60, seed=1)
            for s in ("EURUSD", "GBPUSD")
        ],
        ignore_index=True,
    )


def test_bars_are_partitioned_by_symbol_and_date_without_key_columns(tmp_path: Path) -> None:
    bars = _bars()
    written = write_bars(bars, tmp_path)
    # 60 hourly bars from Tue 00:00 span Tue, Wed and Thu 00:00-11:00: 3 days x 2 symbols
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        f"bars/symbol={s}/date=2024-01-0{d}/part.parquet"
        for s in ("EURUSD", "GBPUSD")
        for d in (2, 3, 4)
    )
    one = pd.read_parquet(written[0])
    assert "symbol" not in one.columns and "date" not in one.columns
    # how serving and the agent read a symbol's folder
    folder = pd.read_parquet(tmp_path / "bars" / "symbol=EURUSD")
    assert len(folder) == 60
    assert folder["time"].is_monotonic_increasing


def test_ingesting_the_same_bars_twice_gives_the_same_lake(tmp_path: Path) -> None:
    bars = _bars()
    write_bars(bars, tmp_path)
    first = read_bars(tmp_path)
    write_bars(bars, tmp_path)
    second = read_bars(tmp_path)
    assert len(second) == 120
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(second, bars)


def test_overlapping_ingests_merge_and_a_corrected_bar_wins(tmp_path: Path) -> None:
    bars = _bars()
    write_bars(bars.iloc[:40], tmp_path)
    fixed = bars.iloc[30:].copy()
    fixed.loc[35, "close"] = 9.0  # EURUSD 11:00 on Wed, corrected by the second file
    write_bars(fixed, tmp_path)
    lake = read_bars(tmp_path)
    assert len(lake) == 120
    assert lake.loc[
        (lake["symbol"] == "EURUSD") & (lake["time"] == bars.loc[35, "time"]), "close"
    ].tolist() == [9.0]


def test_reads_filter_by_symbol_timeframe_and_time(tmp_path: Path) -> None:
    write_bars(_bars(), tmp_path)
    part = read_bars(
        tmp_path,
        symbols=["GBPUSD"],
        timeframe="H1",
        start="2024-01-03 00:00",
        end="2024-01-03 06:00",
    )
    assert part["symbol"].unique().tolist() == ["GBPUSD"]
    assert part["time"].tolist() == list(
        pd.date_range("2024-01-03 00:00", periods=6, freq="h", tz="UTC")
    )


def test_an_old_flat_symbol_file_is_migrated_not_doubled(tmp_path: Path) -> None:
    bars = _bars()
    legacy = tmp_path / "bars" / "symbol=EURUSD"
    legacy.mkdir(parents=True)
    bars[bars["symbol"] == "EURUSD"].drop(columns="symbol").to_parquet(legacy / "bars.parquet")
    write_bars(bars, tmp_path)
    assert not (legacy / "bars.parquet").exists()
    assert len(read_bars(tmp_path)) == 120


def test_ticks_lake_is_idempotent(tmp_path: Path) -> None:
    ticks = synthetic_ticks("EURUSD", start="2024-01-02 23:50", n=2000, seed=1)
    write_ticks(ticks, tmp_path)
    write_ticks(ticks, tmp_path)
    back = read_ticks(tmp_path)
    pd.testing.assert_frame_equal(back, ticks)
    assert sorted(p.name for p in (tmp_path / "ticks" / "symbol=EURUSD").iterdir()) == [
        "date=2024-01-02",
        "date=2024-01-03",
    ]
