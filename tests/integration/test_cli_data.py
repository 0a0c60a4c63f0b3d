"""``chaintrade data``: generate, validate (counts per reason, exit code) and ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from chaintrade.cli import app
from chaintrade.db import connect
from chaintrade.settings import get_settings

pytestmark = pytest.mark.integration
runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"


def test_generate_then_validate_counts_each_injected_fault(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    done = runner.invoke(
        app,
        [
            "data",
            "generate",
            str(out),
            "--symbols",
            "2",
            "--bars",
            "3000",
            "--timeframe",
            "M1",
            "--fault",
            "spike=2",
            "--fault",
            "duplicate=3",
            "--format",
            "mt5",
        ],
    )
    assert done.exit_code == 0, done.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["SYN000_M1.csv", "SYN001_M1.csv"]
    checked = runner.invoke(
        app, ["data", "validate", str(out), "--calendar", "utc_weekdays", "--json"]
    )
    assert checked.exit_code == 1, checked.output  # rejected rows block by default
    summary = json.loads(checked.output[checked.output.index("{") : checked.output.rindex("}") + 1])
    for info in summary.values():
        assert info["counts"] == {"duplicate_time": 3, "spike": 2}
        assert info["rows"] == 3003 and info["good"] == 2998  # 2 spiked rows were good ones
    tolerant = runner.invoke(app, ["data", "validate", str(out), "--max-rejected", "0.01"])
    assert tolerant.exit_code == 0, tolerant.output
    assert "duplicate_time" in tolerant.output and "spike" in tolerant.output


def test_validate_the_real_sample_passes(tmp_path: Path) -> None:
    done = runner.invoke(
        app, ["data", "validate", str(SAMPLE), "--symbol", "EURUSD", "--calendar", "fx_new_york"]
    )
    assert done.exit_code == 0, done.output
    assert "OK" in done.output


def test_an_unreadable_file_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "X_H1.csv"
    bad.write_text("time,open,high,low\n2024-01-01 00:00,1,1,1\n")
    done = runner.invoke(app, ["data", "validate", str(bad)])
    assert done.exit_code == 2
    assert "missing columns ['close', 'volume']" in " ".join(done.output.split())


def test_ingest_twice_fills_lake_and_market_data_once(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAINTRADE_DB_URL", clean_db)
    monkeypatch.setenv("CHAINTRADE_HOME", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        args = ["data", "ingest", str(SAMPLE), "--symbol", "EURUSD", "--calendar", "fx_new_york"]
        for _ in range(2):
            done = runner.invoke(app, args)
            assert done.exit_code == 0, done.output
    finally:
        get_settings.cache_clear()
    lake = pd.read_parquet(tmp_path / "var" / "lake" / "bars" / "symbol=EURUSD")
    assert len(lake) == 5000
    with connect(clean_db) as conn:
        row = conn.execute("SELECT count(*) FROM market_data").fetchone()
    assert row is not None and row[0] == 5000
    runs = list((tmp_path / "var" / "data_docs" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "index.html").is_file() for r in runs)


def test_ingest_blocks_a_file_with_too_many_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "EURUSD_H1.csv"
    bad.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-02 00:00,1.1,1.0,1.2,1.1,1\n"
        "2024-01-02 01:00,1.1,1.2,1.0,1.1,1\n"
    )
    done = runner.invoke(
        app, ["data", "ingest", str(bad), "--no-db", "--no-ge", "--lake", str(tmp_path / "lake")]
    )
    assert done.exit_code == 1, done.output
    assert "BLOCKED" in done.output and "ohlc_inconsistent" in done.output
    assert not (tmp_path / "lake" / "bars").exists()
    quarantined = pd.read_parquet(tmp_path / "lake" / "quarantine" / "bars" / "EURUSD_H1.parquet")
    assert quarantined["reason"].tolist() == ["ohlc_inconsistent"]
