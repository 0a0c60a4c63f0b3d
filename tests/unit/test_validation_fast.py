"""The per-bar validator (``bar_reason``) gives the same reason as ``validate_bars`` on the
two-row frame ``[previous, bar]``, for generated good and broken bars across calendars, DST
changes, holidays and weekends; the per-tick validator (``tick_reason``) likewise against
``validate_ticks``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaintrade.validation import (
    FX_NEW_YORK,
    FX_WEEKEND_CORE,
    UTC_WEEKDAYS,
    Reason,
    SessionCalendar,
    bar_reason,
    tick_reason,
    validate_bars,
    validate_ticks,
)

# Around the US DST start (2024-03-10), Christmas / New Year and ordinary weekends, whole minutes.
_WINDOWS = [
    (pd.Timestamp("2024-03-07", tz="UTC"), 6 * 1440),
    (pd.Timestamp("2024-10-31", tz="UTC"), 6 * 1440),
    (pd.Timestamp("2023-12-22", tz="UTC"), 12 * 1440),
]
times = st.builds(
    lambda w, m, missing: (
        None if missing == 0 else _WINDOWS[w][0] + pd.Timedelta(minutes=m % _WINDOWS[w][1])
    ),
    st.integers(0, len(_WINDOWS) - 1),
    st.integers(0, 20 * 1440),
    st.integers(0, 9),
)
oddities = st.sampled_from([0.0, -1.0, -5, float("nan"), None, "abc", "1.5", "", "nan", 1e9])
CALENDARS = [FX_NEW_YORK, FX_WEEKEND_CORE, UTC_WEEKDAYS]


@st.composite
def bars(draw: st.DrawFn, time: Any = None) -> dict[str, Any]:
    """A valid bar, then with some probability a few fields replaced by odd values."""
    base = draw(st.floats(0.5, 2.0))
    o, c = base, base * draw(st.floats(0.99, 1.01))
    h = max(o, c) * draw(st.floats(1.0, 1.005))
    lo = min(o, c) * draw(st.floats(0.995, 1.0))
    bar: dict[str, Any] = {
        "symbol": draw(st.sampled_from(["EURUSD", "GBPUSD"])),
        "timeframe": draw(st.sampled_from(["H1", "M1"])),
        "time": draw(times) if time is None else time,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "tick_volume": draw(st.integers(0, 1000)),
        "spread": draw(st.integers(0, 50)),
        "real_volume": 0,
    }
    for key in draw(st.lists(st.sampled_from(list(bar)[3:]), max_size=2 * draw(st.integers(0, 1)))):
        bar[key] = draw(oddities)
    if draw(st.integers(0, 9)) == 0:  # a swapped high/low
        bar["high"], bar["low"] = bar["low"], bar["high"]
    return bar


def frame_reason(rows: list[dict[str, Any]], calendar: SessionCalendar) -> str | None:
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["_row"] = np.arange(len(frame))
    result = validate_bars(frame, calendar=calendar)
    bad = result.quarantine[result.quarantine["_row"] == len(frame) - 1]
    return str(bad["reason"].iloc[0]) if len(bad) else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    previous=st.one_of(st.none(), bars()),
    bar=bars(),
    calendar=st.sampled_from(CALENDARS),
    same_time=st.booleans(),
    same_series=st.booleans(),
)
def test_bar_reason_equals_the_frame_validator(
    previous: dict[str, Any] | None,
    bar: dict[str, Any],
    calendar: SessionCalendar,
    same_time: bool,
    same_series: bool,
) -> None:
    if previous is not None and same_series:
        bar = {**bar, "symbol": previous["symbol"], "timeframe": previous["timeframe"]}
    if previous is not None and same_time:
        bar = {**bar, "time": previous["time"]}
    rows = [bar] if previous is None else [previous, bar]
    assert bar_reason(bar, previous, calendar=calendar) == frame_reason(rows, calendar)


def test_every_cheap_rule_is_reached() -> None:
    """The generator above reaches each reason (so the property is not vacuous)."""
    t = pd.Timestamp("2024-03-12 10:00", tz="UTC")
    good = {
        "symbol": "EURUSD",
        "timeframe": "H1",
        "time": t,
        "open": 1.1,
        "high": 1.2,
        "low": 1.0,
        "close": 1.15,
        "tick_volume": 5,
        "spread": 1,
        "real_volume": 0,
    }
    earlier = {**good, "time": t - pd.Timedelta(hours=1)}
    cases = {
        Reason.MISSING_VALUE: ({**good, "close": None}, None),
        Reason.INVALID_TYPE: ({**good, "open": "abc"}, None),
        Reason.NON_POSITIVE_PRICE: ({**good, "low": 0.0}, None),
        Reason.OHLC_INCONSISTENT: ({**good, "high": 1.12}, None),
        Reason.NEGATIVE_VOLUME: ({**good, "tick_volume": -1}, None),
        Reason.MARKET_CLOSED: ({**good, "time": pd.Timestamp("2024-03-09 12:00", tz="UTC")}, None),
        Reason.DUPLICATE_TIME: (good, good),
        Reason.OUT_OF_ORDER: (earlier, good),
    }
    for reason, (bar, previous) in cases.items():
        assert bar_reason(bar, previous) == reason
        rows = [bar] if previous is None else [previous, bar]
        assert frame_reason(rows, FX_WEEKEND_CORE) == reason
    assert bar_reason(good, earlier) is None
    assert bar_reason({**good, "time": t.timestamp()}, earlier) is None  # epoch seconds too


def test_closed_at_follows_new_york_across_dst() -> None:
    # Friday 17:00 New York is 22:00 UTC in winter and 21:00 UTC in summer
    winter, summer = (
        pd.Timestamp("2024-03-08 21:30", tz="UTC"),
        pd.Timestamp("2024-03-15 21:30", tz="UTC"),
    )
    assert not FX_NEW_YORK.closed_at(winter.timestamp())
    assert FX_NEW_YORK.closed_at(summer.timestamp())
    stamps = pd.date_range("2023-12-20", "2024-01-03", freq="37min", tz="UTC")
    expected = FX_NEW_YORK.is_closed(pd.Series(stamps))
    assert [FX_NEW_YORK.closed_at(s.timestamp()) for s in stamps] == expected.tolist()


@pytest.mark.parametrize(
    ("tz", "change"),
    [
        ("America/New_York", "2024-03-10 07:00"),  # DST starts
        ("Australia/Lord_Howe", "2024-04-06 15:00"),  # a half-hour DST change
        ("Asia/Kathmandu", "2024-03-09 18:15"),  # a +05:45 zone, Sunday 00:00 there
    ],
)
def test_closed_at_equals_is_closed_second_by_second(tz: str, change: str) -> None:
    """closed_at remembers whole minutes; every second of them agrees with is_closed."""
    midpoint = pd.Timestamp(change, tz="UTC")
    for grace in (0, 1):
        calendar = SessionCalendar(
            "x", tz, 6, 0, 6, 2, holidays=("03-10", "04-07"), grace_minutes=grace
        )
        stamps = pd.date_range(midpoint - pd.Timedelta(hours=3), periods=6 * 3600 // 7, freq="7s")
        expected = calendar.is_closed(pd.Series(stamps)).tolist()
        assert [calendar.closed_at(s.timestamp()) for s in stamps] == expected
        assert any(expected) and not all(expected)


def test_naive_times_are_refused_like_the_frame_validator() -> None:
    with pytest.raises(ValueError):
        bar_reason(
            {
                "symbol": "EURUSD",
                "timeframe": "H1",
                "time": pd.Timestamp("2024-03-12 10:00").to_pydatetime(),
                "open": 1.1,
                "high": 1.2,
                "low": 1.0,
                "close": 1.15,
                "tick_volume": 5,
                "spread": 1,
                "real_volume": 0,
            }
        )


# --------------------------------------------------------------------------- ticks

_T0_MS = int(pd.Timestamp("2024-03-07", tz="UTC").timestamp() * 1000)
tick_times = st.one_of(
    st.integers(_T0_MS, _T0_MS + 6 * 86_400_000),  # Thursday to Wednesday: a weekend inside
    st.sampled_from([None, float("nan"), "abc", "1709800000000"]),
)


@st.composite
def ticks(draw: st.DrawFn) -> dict[str, Any]:
    """A valid tick, then with some probability a few fields replaced by odd values."""
    bid = draw(st.floats(0.5, 2.0))
    tick: dict[str, Any] = {
        "symbol": draw(st.sampled_from(["EURUSD", "GBPUSD"])),
        "time_msc": draw(st.integers(_T0_MS, _T0_MS + 6 * 86_400_000)),
        "time": 0,
        "bid": bid,
        "ask": bid + draw(st.sampled_from([0.0, 0.0001, 0.0002])),
        "last": draw(st.sampled_from([0.0, bid])),
        "volume": draw(st.integers(0, 10)),
        "flags": draw(st.sampled_from([2, 4, 6])),
    }
    tick["time"] = int(tick["time_msc"]) // 1000
    if draw(st.integers(0, 9)) == 0:  # a crossed quote
        tick["bid"], tick["ask"] = tick["ask"] + 0.001, tick["bid"]
    for key in draw(
        st.lists(st.sampled_from(list(tick)[1:]), max_size=2 * draw(st.integers(0, 1)))
    ):
        tick[key] = draw(tick_times) if key == "time_msc" else draw(oddities)
    return tick


def frame_tick_reason(rows: list[dict[str, Any]], calendar: SessionCalendar) -> str | None:
    frame = pd.DataFrame(rows)
    frame["_row"] = np.arange(len(frame))
    result = validate_ticks(frame, calendar=calendar)
    bad = result.quarantine[result.quarantine["_row"] == len(frame) - 1]
    return str(bad["reason"].iloc[0]) if len(bad) else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    previous=st.one_of(st.none(), ticks()),
    tick=ticks(),
    calendar=st.sampled_from(CALENDARS),
    relation=st.sampled_from(["free", "same_symbol", "same_time", "copy", "earlier"]),
)
def test_tick_reason_equals_the_frame_validator(
    previous: dict[str, Any] | None,
    tick: dict[str, Any],
    calendar: SessionCalendar,
    relation: str,
) -> None:
    if previous is not None and relation != "free":
        tick = {**tick, "symbol": previous["symbol"]}
        if relation == "same_time":
            tick["time_msc"] = previous["time_msc"]
        elif relation == "copy":
            tick = dict(previous)
        elif relation == "earlier" and isinstance(previous["time_msc"], int):
            tick["time_msc"] = previous["time_msc"] - 1
    rows = [tick] if previous is None else [previous, tick]
    assert tick_reason(tick, previous, calendar=calendar) == frame_tick_reason(rows, calendar)


def test_every_cheap_tick_rule_is_reached() -> None:
    """Each reason of the per-tick path, and the same from the frame validator."""
    t = int(pd.Timestamp("2024-03-12 10:00", tz="UTC").timestamp() * 1000)
    good = {
        "symbol": "EURUSD",
        "time_msc": t,
        "time": t // 1000,
        "bid": 1.1,
        "ask": 1.1002,
        "last": 0.0,
        "volume": 0,
        "flags": 6,
    }
    later = {**good, "time_msc": t + 5, "bid": 1.1001}
    saturday = int(pd.Timestamp("2024-03-09 12:00", tz="UTC").timestamp() * 1000)
    cases = {
        Reason.MISSING_VALUE: ({**good, "bid": None}, None),
        Reason.INVALID_TYPE: ({**good, "ask": "abc"}, None),
        Reason.NON_POSITIVE_PRICE: ({**good, "bid": 0.0}, None),
        Reason.ASK_BELOW_BID: ({**good, "ask": 1.0}, None),
        Reason.NEGATIVE_VOLUME: ({**good, "volume": -1}, None),
        Reason.MARKET_CLOSED: ({**good, "time_msc": saturday}, None),
        Reason.DUPLICATE_TIME: (good, good),
        Reason.OUT_OF_ORDER: (good, later),
    }
    for reason, (tick, previous) in cases.items():
        assert tick_reason(tick, previous) == reason
        rows = [tick] if previous is None else [previous, tick]
        assert frame_tick_reason(rows, FX_WEEKEND_CORE) == reason
    assert tick_reason(later, good) is None
    assert tick_reason({**good, "bid": 1.1001}, good) is None  # same time, another quote
