from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from chaintrade.errors import DataValidationError
from chaintrade.market_data import synthetic_bars, synthetic_ticks
from chaintrade.quality import QualityReport, validate_bars_with_ge, validate_ticks_with_ge

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def good_bars() -> pd.DataFrame:
    parts = [
        synthetic_bars(symbol, timeframe="H1", start="2024-01-01", n=200, seed=4)
        for symbol in ("EURUSD", "GBPUSD")
    ]
    return pd.concat(parts, ignore_index=True)


def test_good_bars_pass_and_data_docs_are_written(good_bars: pd.DataFrame, tmp_path: Path) -> None:
    report = validate_bars_with_ge(good_bars, run_name="good bars", docs_dir=tmp_path / "docs")

    assert report.success, report.failed
    assert report.failed == []
    # 1 column set + 6 not-null + 4 positive + 5 OHLC pairs + 1 volume + 2 symbols x increasing time
    assert report.evaluated == 19
    docs = (tmp_path / "docs").resolve()
    assert report.docs_index.parent.parent == docs / "runs"
    assert report.docs_index.parent.name.endswith("_raw_bars_good_bars")
    assert report.docs_index.is_file()
    assert "raw_bars" in report.docs_index.read_text()
    assert report.site_index == docs / "index.html"
    assert "raw_bars" in report.site_index.read_text() and "passed" in report.site_index.read_text()
    report.raise_for_failure()  # no-op


def test_every_run_keeps_its_own_data_docs(good_bars: pd.DataFrame, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    first = validate_bars_with_ge(good_bars, run_name="monday", docs_dir=docs)
    bad = good_bars.copy()
    bad.loc[3, "low"] = -1.0
    second = validate_bars_with_ge(bad, run_name="tuesday", docs_dir=docs)
    assert first.docs_index != second.docs_index
    assert first.docs_index.is_file() and second.docs_index.is_file()
    index = second.site_index.read_text()
    assert "monday" in index and "tuesday" in index
    assert index.index("tuesday") < index.index("monday")  # newest first
    assert "FAILED" in index


def test_tick_suite_passes_good_ticks_and_names_ask_below_bid(tmp_path: Path) -> None:
    ticks = synthetic_ticks("EURUSD", start="2024-01-02", n=500, seed=1)
    good = validate_ticks_with_ge(ticks, run_name="ticks", docs_dir=tmp_path / "docs")
    assert good.success, good.failed
    assert good.suite == "raw_ticks" and good.docs_index.is_file()
    bad = ticks.copy()
    bad.loc[10, "ask"] = bad.loc[10, "bid"] - 0.0001
    report = validate_ticks_with_ge(bad, run_name="bad ticks", docs_dir=tmp_path / "docs")
    assert not report.success
    assert len(report.failed) == 1 and "column_A=ask, column_B=bid" in report.failed[0]
    with pytest.raises(DataValidationError, match="raw_ticks expectations failed"):
        report.raise_for_failure()


def test_high_below_low_fails_with_a_readable_reason(
    good_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bad = good_bars.copy()
    bad.loc[7, "high"] = bad.loc[7, "low"] - 0.001
    report = validate_bars_with_ge(bad, run_name="bad bars", docs_dir=tmp_path / "docs")

    assert not report.success
    high_low = [line for line in report.failed if "column_A=high, column_B=low" in line]
    assert len(high_low) == 1
    assert "expect_column_pair_values_a_to_be_greater_than_b" in high_low[0]
    assert "1 of 400 rows violate it" in high_low[0]
    assert report.docs_index.is_file()
    with pytest.raises(DataValidationError, match="column_A=high, column_B=low") as raised:
        report.raise_for_failure()
    assert raised.value.counts["expect_column_pair_values_a_to_be_greater_than_b"] >= 1


def test_time_going_backwards_within_one_symbol_is_caught(
    good_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bad = good_bars.copy()
    bad.loc[250, "time"] = bad.loc[249, "time"]  # a duplicate GBPUSD bar
    report = validate_bars_with_ge(bad, run_name="dup", docs_dir=tmp_path / "docs")

    assert not report.success
    assert len(report.failed) == 1
    assert "expect_column_values_to_be_increasing" in report.failed[0]
    assert "GBPUSD" in report.failed[0]


def test_missing_column_is_reported_not_raised(good_bars: pd.DataFrame, tmp_path: Path) -> None:
    report = validate_bars_with_ge(
        good_bars.drop(columns=["spread"]), run_name="no spread", docs_dir=tmp_path / "docs"
    )
    assert not report.success
    assert any(
        "expect_table_columns_to_match_set" in line and "spread" in line for line in report.failed
    )


def test_report_is_frozen() -> None:
    report = QualityReport(success=True, evaluated=0, failed=[], docs_index=Path("x"))
    with pytest.raises(AttributeError):
        report.success = False  # type: ignore[misc]


def test_importing_quality_does_not_import_great_expectations() -> None:
    code = "import sys, chaintrade.quality\nprint('great_expectations' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
