"""The one validator: every rule on hand-built rows, on the real EURUSD sample and on
generated faults (each caught with its reason, no good row dropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaintrade.market_data import (
    BAR_FAULTS,
    TICK_FAULTS,
    inject_faults,
    load_bars,
    synthetic_market,
    synthetic_ticks,
)
from chaintrade.validation import (
    FX_NEW_YORK,
    FX_WEEKEND_CORE,
    UTC_WEEKDAYS,
    Reason,
    TickRules,
    validate_bars,
    validate_ticks,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"


def bars(
    rows: list[tuple[str, float, float, float, float]], symbol: str = "EURUSD"
) -> pd.DataFrame:
    """Bars from (time, open, high, low, close); volume 10, spread 5."""
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "H1",
            "time": pd.to_datetime([r[0] for r in rows], utc=True),
            "open": [r[1] for r in rows],
            "high": [r[2] for r in rows],
            "low": [r[3] for r in rows],
            "close": [r[4] for r in rows],
            "tick_volume": 10,
            "spread": 5,
            "real_volume": 0,
        }
    )


def flat_walk(n: int, start: str = "2024-01-02 00:00") -> pd.DataFrame:
    """n H1 bars on a Tuesday onward, a zig-zag of +-2 pips, each with a 1-pip wick."""
    times = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = 1.1 + 0.0002 * (np.arange(n) % 2)
    open_ = np.r_[1.1, close[:-1]]
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "timeframe": "H1",
            "time": times,
            "open": open_,
            "high": np.maximum(open_, close) + 0.0001,
            "low": np.minimum(open_, close) - 0.0001,
            "close": close,
            "tick_volume": 10,
            "spread": 5,
            "real_volume": 0,
        }
    )


# --------------------------------------------------------------------------- row rules


def test_each_row_rule_gives_its_reason_and_good_rows_go_on() -> None:
    frame = bars(
        [
            ("2024-01-02 00:00", 1.10, 1.11, 1.09, 1.105),  # good
            ("2024-01-02 01:00", 1.10, 1.09, 1.08, 1.105),  # high below close
            ("2024-01-02 02:00", 0.0, 1.11, 1.09, 1.105),  # zero open
            ("2024-01-02 03:00", 1.10, 1.11, 1.09, np.nan),  # missing close
            ("2024-01-02 04:00", 1.10, 1.11, 1.09, 1.105),  # negative volume (below)
            ("2024-01-02 05:00", 1.10, 1.11, 1.09, 1.105),  # good
            ("2024-01-02 05:00", 1.10, 1.11, 1.09, 1.105),  # duplicate time
            ("2024-01-02 04:30", 1.10, 1.11, 1.09, 1.105),  # earlier than 05:00: out of order
            ("2024-01-06 12:00", 1.10, 1.11, 1.09, 1.105),  # Saturday
        ]
    )
    frame.loc[4, "tick_volume"] = -1
    result = validate_bars(frame)

    assert result.quarantine["reason"].tolist() == [
        Reason.OHLC_INCONSISTENT,
        Reason.NON_POSITIVE_PRICE,
        Reason.MISSING_VALUE,
        Reason.NEGATIVE_VOLUME,
        Reason.DUPLICATE_TIME,
        Reason.OUT_OF_ORDER,
        Reason.MARKET_CLOSED,
    ]
    assert result.good["time"].tolist() == [
        pd.Timestamp("2024-01-02 00:00", tz="UTC"),
        pd.Timestamp("2024-01-02 05:00", tz="UTC"),
    ]
    assert result.counts == {
        "ohlc_inconsistent": 1,
        "non_positive_price": 1,
        "missing_value": 1,
        "negative_volume": 1,
        "duplicate_time": 1,
        "out_of_order": 1,
        "market_closed": 1,
    }
    assert result.rejected == 7 and result.total == 9
    assert result.blocks() and not result.blocks(max_rejected_fraction=0.8)


def test_the_same_time_in_two_symbols_is_not_a_duplicate() -> None:
    a = bars([("2024-01-02 00:00", 1.1, 1.2, 1.0, 1.1)], symbol="EURUSD")
    b = bars([("2024-01-02 00:00", 1.3, 1.4, 1.2, 1.3)], symbol="GBPUSD")
    assert validate_bars(pd.concat([a, b], ignore_index=True)).rejected == 0


def test_non_numeric_price_is_an_invalid_type() -> None:
    frame = bars(
        [("2024-01-02 00:00", 1.1, 1.2, 1.0, 1.1), ("2024-01-02 01:00", 1.1, 1.2, 1.0, 1.1)]
    )
    frame["close"] = frame["close"].astype(object)
    frame.loc[1, "close"] = "1.1x"
    result = validate_bars(frame)
    assert result.counts == {"invalid_type": 1}
    assert len(result.good) == 1


def test_missing_columns_and_naive_times_are_refused() -> None:
    frame = bars([("2024-01-02 00:00", 1.1, 1.2, 1.0, 1.1)])
    with pytest.raises(ValueError, match="spread"):
        validate_bars(frame.drop(columns="spread"))
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_bars(frame.assign(time=frame["time"].dt.tz_localize(None)))


# --------------------------------------------------------------------------- calendar


def test_fx_new_york_calendar_closes_friday_17_to_sunday_17_new_york() -> None:
    times = pd.to_datetime(
        [
            "2024-07-05 20:59",  # Fri 16:59 EDT: open
            "2024-07-05 21:00",  # Fri 17:00 EDT: the closing quote (grace minute)
            "2024-07-05 21:01",  # closed
            "2024-07-07 20:59",  # Sun 16:59 EDT: closed
            "2024-07-07 21:00",  # Sun 17:00 EDT: open
            "2024-01-07 21:30",  # Sun 16:30 EST (winter): closed
            "2024-01-07 22:00",  # Sun 17:00 EST: open
            "2024-12-25 12:00",  # Christmas (Wednesday): closed
            "2024-12-25 22:00",  # 17:00 New York on Christmas: the 26th's session
        ],
        utc=True,
    )
    assert FX_NEW_YORK.is_closed(times).tolist() == [
        False,
        False,
        True,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    # the default window: Saturday 00:00 to Sunday 21:00 UTC only
    assert FX_WEEKEND_CORE.is_closed(times).tolist() == [False] * 3 + [True] + [False] * 5
    assert FX_WEEKEND_CORE.is_closed(pd.to_datetime(["2024-07-06 00:02"], utc=True)).tolist() == [
        True
    ]


def test_gaps_inside_open_sessions_are_findings_not_rejections() -> None:
    frame = flat_walk(30)  # Tue 00:00 .. Wed 05:00
    holed = frame.drop(index=[10, 11, 12]).reset_index(drop=True)
    result = validate_bars(holed, calendar=UTC_WEEKDAYS)
    assert result.rejected == 0
    assert result.gaps["missing_bars"].tolist() == [3]
    assert result.gaps["after"].iloc[0] == pd.Timestamp("2024-01-02 09:00", tz="UTC")
    assert result.findings == {"gap": 1, "gap_missing_bars": 3}
    # the weekend is no gap under the calendar that says it is closed
    fri_mon = bars(
        [("2024-01-05 23:00", 1.1, 1.2, 1.0, 1.1), ("2024-01-08 00:00", 1.1, 1.2, 1.0, 1.1)]
    )
    assert validate_bars(fri_mon, calendar=UTC_WEEKDAYS).gaps.empty
    assert validate_bars(holed).gaps.empty  # no calendar: gaps are not judged


# --------------------------------------------------------------------------- history rules


def test_a_wick_spike_that_reverts_is_rejected_but_a_level_shift_is_not() -> None:
    frame = flat_walk(60)
    spiked = frame.copy()
    spiked.loc[40, "high"] = 1.13  # 300 pips above a market that moves 2 pips a bar
    result = validate_bars(spiked)
    assert result.counts == {"spike": 1}
    assert result.quarantine["time"].iloc[0] == frame["time"].iloc[40]

    shifted = frame.copy()  # the same jump, but the market stays there: a real move
    shifted.loc[40:, ["open", "high", "low", "close"]] += 0.03
    shifted.loc[40, "open"] = frame.loc[39, "close"]
    shifted.loc[40, "low"] = frame.loc[39, "close"] - 0.0001
    assert validate_bars(shifted).rejected == 0


def test_history_rules_never_reject_the_first_rows_for_lack_of_context() -> None:
    frame = flat_walk(15)
    frame.loc[1, "high"] = 1.5  # a spike on the second bar: no context yet, not judged
    assert validate_bars(frame).counts == {}
    two = flat_walk(2)
    assert validate_bars(two).rejected == 0


def test_a_stale_run_is_rejected_from_its_first_repeat() -> None:
    frame = flat_walk(40)
    last = frame.loc[19, "close"]
    frame.loc[20:25, ["open", "high", "low", "close"]] = last  # 6 flat bars at the last close
    result = validate_bars(frame, stale_run=5)
    assert result.counts == {"stale": 6}
    assert result.quarantine["time"].tolist() == frame["time"].iloc[20:26].tolist()
    # 4 repeats are a quiet market, not a stale feed
    short = flat_walk(40)
    short.loc[20:23, ["open", "high", "low", "close"]] = short.loc[19, "close"]
    assert validate_bars(short, stale_run=5).rejected == 0


def test_tick_rules_on_hand_built_ticks() -> None:
    ms = 1_704_189_600_000  # 2024-01-02 10:00 UTC
    ticks = pd.DataFrame(
        {
            "symbol": "EURUSD",
            "time_msc": [ms, ms + 10, ms + 20, ms + 20, ms + 15, ms + 30, 1_704_542_400_000],
            "bid": [1.1, 1.1001, 1.1002, 1.1002, 1.1003, 1.1004, 1.1],
            "ask": [1.1001, 1.1002, 1.1000, 1.1003, 1.1004, 1.1005, 1.1001],
            "last": 0.0,
            "volume": 0,
            "flags": 6,
        }
    )
    ticks["time"] = pd.to_datetime(ticks["time_msc"], unit="ms", utc=True)
    ticks.loc[3, "bid"] = 1.1002
    copy = ticks.iloc[[1]]
    frame = pd.concat([ticks.iloc[:2], copy, ticks.iloc[2:], copy], ignore_index=True)
    result = validate_ticks(frame)
    # ask < bid; 15 ms after a 20 ms tick; Saturday 12:00; a copy of the +10 ms tick right
    # after it (a duplicate) and again at the end (a replay of an old tick: out of order)
    assert list(
        zip(result.quarantine["time_msc"] - ms, result.quarantine["reason"], strict=True)
    ) == [
        (10, "duplicate_time"),
        (20, "ask_below_bid"),
        (15, "out_of_order"),
        (1_704_542_400_000 - ms, "market_closed"),
        (10, "out_of_order"),
    ]
    assert len(result.good) == 4


# --------------------------------------------------------------------------- real data


def test_the_real_eurusd_sample_passes_every_rule_under_the_new_york_calendar() -> None:
    real = load_bars(DATA, symbol="EURUSD", timeframe="H1")
    result = validate_bars(real, calendar=FX_NEW_YORK)
    assert result.rejected == 0
    assert result.gaps.empty  # weekends, Christmas and New Year are explained by the calendar
    # the same data judged on the UTC-weekday calendar: Sunday-evening bars are closed hours
    utc = validate_bars(real, calendar=UTC_WEEKDAYS)
    assert utc.counts == {"market_closed": 108}


def _check_faults(faulty: pd.DataFrame, result_of: object, expected: dict[str, str]) -> None:
    faulty = faulty.assign(_row=np.arange(len(faulty)))
    result = result_of(faulty.drop(columns="fault"))  # type: ignore[operator]
    got = np.full(len(faulty), None, dtype=object)
    got[result.quarantine["_row"].to_numpy()] = result.quarantine["reason"].to_numpy()
    want = faulty["fault"].map(expected).to_numpy(dtype=object)
    want[pd.isna(want)] = None
    wrong = np.flatnonzero(got != want)
    assert wrong.size == 0, faulty.iloc[wrong[:5]].assign(got=got[wrong[:5]])
    assert len(result.good) == int(faulty["fault"].isna().sum())


def test_every_bar_fault_injected_into_the_real_sample_is_caught_with_its_reason() -> None:
    real = load_bars(DATA, symbol="EURUSD", timeframe="H1")
    faulty = inject_faults(real, {f: 2 for f in BAR_FAULTS}, seed=5, spacing=200)
    assert set(faulty["fault"].dropna()) == set(BAR_FAULTS)
    _check_faults(faulty, lambda f: validate_bars(f, calendar=FX_NEW_YORK), BAR_FAULTS)


@pytest.mark.parametrize("timeframe", ["M1", "H1"])
def test_every_bar_fault_in_a_generated_market_is_caught(timeframe: str) -> None:
    market = synthetic_market(3, timeframe=timeframe, n=8_000, seed=2)
    faulty = inject_faults(market, {f: 4 for f in BAR_FAULTS}, seed=3)
    _check_faults(faulty, lambda f: validate_bars(f, calendar=UTC_WEEKDAYS), BAR_FAULTS)


def test_every_tick_fault_in_generated_ticks_is_caught() -> None:
    ticks = pd.concat(
        [
            synthetic_ticks(s, start="2024-01-05 18:00", n=40_000, seed=1)
            for s in ("EURUSD", "GBPUSD")
        ],
        ignore_index=True,
    )
    faulty = inject_faults(ticks, {f: 4 for f in TICK_FAULTS}, seed=3)
    # a stale feed is told from a quiet market only from the stale_run-th repeat on: the
    # first repeats of an injected run pass, as they would in the live agent
    stale = (faulty["fault"] == "stale").to_numpy()
    run = np.zeros(len(faulty), dtype=np.int64)
    for i in np.flatnonzero(stale):
        run[i] = run[i - 1] + 1
    early = stale & (run < TickRules().stale_run)
    assert early.sum() == 4 * (TickRules().stale_run - 1)
    faulty.loc[early, "fault"] = None
    _check_faults(faulty, lambda f: validate_ticks(f, calendar=UTC_WEEKDAYS), TICK_FAULTS)


def test_clean_generated_data_loses_no_row() -> None:
    market = synthetic_market(2, timeframe="M1", n=200_000, seed=11)
    result = validate_bars(market, calendar=UTC_WEEKDAYS)
    assert result.rejected == 0 and result.gaps.empty
    ticks = synthetic_ticks("EURUSD", start="2024-01-01", n=200_000, seed=4)
    assert validate_ticks(ticks, calendar=UTC_WEEKDAYS).rejected == 0
