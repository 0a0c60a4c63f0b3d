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


def _as_epoch(time: Any, kind: str) -> Any:
    """A UTC time as the live agent's int epoch seconds, or another type ``_epoch_s`` reads."""
    if time is None:
        return None
    seconds = int(time.timestamp())
    return {
        "int": seconds,
        "float": float(seconds),
        "np.int64": np.int64(seconds),
        "np.float64": np.float64(seconds),
        "datetime": time.to_pydatetime(),
        "new_york": time.tz_convert("America/New_York"),
        "timestamp": time,
    }[kind]


def _as_kind(value: Any, kind: str) -> Any:
    """A plain number as numpy scalar, int or bool (other values as they are)."""
    if type(value) not in (int, float) or value != value or abs(value) == float("inf"):
        return value
    if kind == "np":
        return np.float64(value) if type(value) is float else np.int64(value)
    if kind == "int":
        return int(value)
    if kind == "bool" and value in (0, 1):
        return bool(value)
    return value


_TIME_KINDS = ["int", "float", "np.int64", "np.float64", "datetime", "new_york", "timestamp"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    previous=bars(),
    bar=bars(),
    calendar=st.sampled_from(CALENDARS),
    time_kind=st.sampled_from(_TIME_KINDS),
    number_kind=st.sampled_from(["same", "np", "int", "bool"]),
    relation=st.sampled_from(["free", "same_time", "earlier", "later"]),
    extreme=st.sampled_from([None, float("inf"), -float("inf"), True, False, 1]),
)
def test_bar_reason_reads_every_input_type_as_the_frame_validator(
    previous: dict[str, Any],
    bar: dict[str, Any],
    calendar: SessionCalendar,
    time_kind: str,
    number_kind: str,
    relation: str,
    extreme: Any,
) -> None:
    """Times as int/float/numpy seconds, datetimes or Timestamps, numbers as floats, ints,
    numpy scalars or bools, inf: the agent's (int seconds) path gives the frame's reason."""
    bar = {**bar, "symbol": previous["symbol"], "timeframe": previous["timeframe"]}
    if previous["time"] is not None:
        shift = {"free": None, "same_time": 0, "earlier": -60, "later": 3600}[relation]
        if shift is not None:
            bar["time"] = previous["time"] + pd.Timedelta(seconds=shift)
    if extreme is not None:
        bar["open"] = extreme
    rows = [
        {k: _as_kind(v, number_kind) if k in list(row)[3:] else v for k, v in row.items()}
        for row in (previous, bar)
    ]
    expected = frame_reason(rows, calendar)
    typed = [{**row, "time": _as_epoch(row["time"], time_kind)} for row in rows]
    assert bar_reason(typed[1], typed[0], calendar=calendar) == expected
    bar_reason(typed[0], calendar=calendar)  # remembered now, as in the agent loop
    assert bar_reason(typed[1], typed[0], calendar=calendar) == expected


def _h1_bars(start: str, hours: int) -> list[dict[str, Any]]:
    """The live agent's bar dicts (int epoch seconds) of an H1 series, weekends included."""
    first = int(pd.Timestamp(start, tz="UTC").timestamp())
    return [
        {
            "time": first + 3600 * i,
            "open": 1.1,
            "high": 1.1 + 0.001 * (i % 3),
            "low": 1.1 - 0.001 * (i % 5 == 0),
            "close": 1.1,
            "tick_volume": i,
            "spread": 1,
            "real_volume": 0,
            "symbol": "EURUSD",
            "timeframe": "H1",
        }
        for i in range(hours)
    ]


@pytest.mark.parametrize("calendar", CALENDARS)
@pytest.mark.parametrize("start", ["2024-03-08 12:00", "2023-12-22 12:00"])  # DST, holidays
def test_the_agent_pattern_gives_the_frame_reason(calendar: SessionCalendar, start: str) -> None:
    """Each bar checked as ``bar``, then the same dict as ``previous`` (the remembered path),
    across a weekend, a DST change or the holidays, with a duplicate and a late bar."""
    series = _h1_bars(start, 96)
    series.insert(40, dict(series[39]))  # a duplicate time
    series.insert(60, {**series[10], "tick_volume": 7})  # a late bar
    previous: dict[str, Any] | None = None
    for bar in series:
        reason = bar_reason(bar, previous, calendar=calendar)
        rows = [bar] if previous is None else [previous, bar]
        frame = [{**row, "time": pd.Timestamp(row["time"], unit="s", tz="UTC")} for row in rows]
        assert reason == frame_reason(frame, calendar)
        if reason is None:
            previous = bar


def test_a_remembered_previous_follows_its_mutations() -> None:
    """A ``previous`` changed in place after it was checked is judged by its new values."""
    t = int(pd.Timestamp("2024-03-12 10:00", tz="UTC").timestamp())
    previous = _h1_bars("2024-03-12 09:00", 1)[0]
    bar = {**previous, "time": t}
    bar_reason(previous)
    for key, value, expected in [
        ("time", t, Reason.DUPLICATE_TIME),
        ("time", t + 60, Reason.OUT_OF_ORDER),
        ("time", float(t + 60), Reason.OUT_OF_ORDER),
        ("low", 0.0, None),  # a bad previous: no longer out of order
        ("low", 1.0, Reason.OUT_OF_ORDER),
        ("time", None, None),
        ("time", "abc", None),
        ("time", pd.Timestamp(t, unit="s", tz="UTC"), Reason.DUPLICATE_TIME),
    ]:
        previous[key] = value
        assert bar_reason(bar, previous) == expected
        assert bar_reason(bar, dict(previous)) == expected  # a fresh mapping: nothing remembered
        bar_reason(previous)  # remember it with its new values, as the agent loop would


@pytest.mark.parametrize(
    ("close", "reopen", "grace"),
    [
        ((5, 0), (0, 0), 1),  # UTC weekdays
        ((5, 0), (6, 21), 1),  # the FX weekend core
        ((6, 23), (0, 0), 120),  # the grace runs past the end of the week: never closed
        ((0, 0), (6, 23), 0),  # closed from Monday 00:00
        ((3, 10), (1, 4), 2),  # wraps mid-week
        ((2, 5), (2, 5), 0),  # an empty window
    ],
)
def test_closed_at_spans_of_fixed_calendars_equal_is_closed(
    close: tuple[int, int], reopen: tuple[int, int], grace: int
) -> None:
    """Fixed-offset calendars without holidays remember spans of seconds, not minutes; in
    order, back and forth, and at fractions of a second they agree with is_closed."""
    calendar = SessionCalendar("x", "UTC", *close, *reopen, grace_minutes=grace)
    ordered = pd.date_range("2024-03-01", "2024-03-09", freq="59s", tz="UTC")
    rng = np.random.default_rng(3)
    jumps = pd.to_datetime(rng.integers(1_600_000_000, 1_800_000_000, 3000), unit="s", utc=True)
    jumps = jumps + pd.to_timedelta(rng.choice([0.0, 0.5, 0.9999999]), unit="s")
    # every second around each edge, shuffled: spans are entered on both sides of an edge
    edges = ordered[1:][np.diff(calendar.is_closed(pd.Series(ordered))) != 0]
    near = [e.value + k * 1_000_000_000 for e in edges for k in range(-150, 150)]
    shuffled = pd.to_datetime(rng.permutation(np.array(near, dtype=np.int64)), utc=True)
    for stamps in (ordered, jumps, ordered[::-1], shuffled):
        expected = calendar.is_closed(pd.Series(stamps)).tolist()
        assert [calendar.closed_at(s.timestamp()) for s in stamps] == expected


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
