"""The live agent's per-tick guard (``TickGuard``) gives every tick of a sequence the reason
that ``validate_ticks`` gives it in the frame of the whole sequence; spikes inserted into
real EURUSD prices are caught, and the real prices themselves pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaintrade.market_data import inject_faults, load_bars
from chaintrade.validation import (
    FX_NEW_YORK,
    FX_WEEKEND_CORE,
    Reason,
    SessionCalendar,
    TickGuard,
    TickRules,
    validate_ticks,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"
_T0_MS = int(pd.Timestamp("2024-03-12 08:00", tz="UTC").timestamp() * 1000)  # a Tuesday
_SATURDAY_MS = int(pd.Timestamp("2024-03-16 12:00", tz="UTC").timestamp() * 1000)
POINT = 1e-5


def tick(symbol: str, time_msc: int, bid_points: int, spread: int = 10) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "time_msc": time_msc,
        "time": time_msc // 1000,
        "bid": round(bid_points * POINT, 5),
        "ask": round((bid_points + spread) * POINT, 5),
        "last": 0.0,
        "volume": 0,
        "flags": 6,
    }


def frame_reasons(
    rows: list[dict[str, Any]], calendar: SessionCalendar, rules: TickRules
) -> list[str | None]:
    """The reason ``validate_ticks`` gives each row of ``rows`` (None: good)."""
    frame = pd.DataFrame(rows)
    frame["_row"] = np.arange(len(frame))
    result = validate_ticks(frame, calendar=calendar, rules=rules)
    out: list[str | None] = [None] * len(rows)
    for row, reason in zip(result.quarantine["_row"], result.quarantine["reason"], strict=True):
        out[int(row)] = str(reason)
    return out


def guard_reasons(
    rows: list[dict[str, Any]], calendar: SessionCalendar, rules: TickRules
) -> list[str | None]:
    guard = TickGuard(calendar, rules)
    return [guard.check(row) for row in rows]


# --------------------------------------------------------------------------- property

RULES = [
    TickRules(spike_z=5.0, spike_window=8, min_context=4, spike_min_move=2e-4,
              spike_confirm=2, spike_reset_ms=60_000, stale_run=3),
    TickRules(spike_z=8.0, spike_window=5, min_context=5, spike_min_move=0.0,
              spike_confirm=3, spike_reset_ms=5_000, stale_run=2),
    TickRules(spike_z=3.0, spike_window=20, min_context=2, spike_min_move=5e-4,
              spike_confirm=1, spike_reset_ms=600_000, stale_run=4),
]  # fmt: skip
ODD = [None, float("nan"), "abc", "1.5", 0.0, -1.0, 1e9]
KINDS = ["step"] * 8 + ["spike", "shift", "repeat", "copy", "earlier", "gap", "odd", "closed"]


@st.composite
def tick_sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A random walk of quotes per symbol with spikes, level shifts, repeated quotes, copies
    of earlier ticks, late ticks, session gaps, broken fields and weekend stamps mixed in."""
    symbols = draw(st.sampled_from([["EURUSD"], ["EURUSD", "GBPUSD"]]))
    level = {s: 110_000 + 20_000 * i for i, s in enumerate(symbols)}
    t = _T0_MS
    rows: list[dict[str, Any]] = []
    last: dict[str, dict[str, Any]] = {}
    for _ in range(draw(st.integers(1, 80))):
        symbol = draw(st.sampled_from(symbols))
        kind = draw(st.sampled_from(KINDS))
        t += 30 * 60_000 if kind == "gap" else draw(st.integers(0, 3))
        level[symbol] += draw(st.integers(-6, 6))
        bid = level[symbol]
        row = tick(symbol, t, bid, spread=draw(st.integers(0, 20)))
        if kind == "spike":
            row = tick(
                symbol, t, bid + draw(st.sampled_from([-1, 1])) * draw(st.integers(50, 3000))
            )
        elif kind == "shift":
            level[symbol] += draw(st.sampled_from([-1, 1])) * draw(st.integers(50, 1000))
            row = tick(symbol, t, level[symbol])
        elif kind == "repeat" and symbol in last:
            row = {**last[symbol], "time_msc": t, "time": t // 1000}
        elif kind == "copy" and rows:
            row = dict(draw(st.sampled_from(rows)))
        elif kind == "earlier":
            row["time_msc"] = t - draw(st.integers(1, 5_000))
        elif kind == "odd":
            row[draw(st.sampled_from(["time_msc", "bid", "ask", "last", "volume"]))] = draw(
                st.sampled_from(ODD)
            )
        elif kind == "closed":
            row = tick(symbol, _SATURDAY_MS + t - _T0_MS, bid)
        rows.append(row)
        if kind == "repeat":  # a burst of the same quote
            for _ in range(draw(st.integers(0, 4))):
                t += draw(st.integers(1, 3))
                rows.append({**row, "time_msc": t, "time": t // 1000})
        last[str(row["symbol"])] = rows[-1]
    return rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tick_sequences(), rules=st.sampled_from(RULES))
def test_the_guard_over_a_sequence_equals_the_frame_validator(
    rows: list[dict[str, Any]], rules: TickRules
) -> None:
    assert guard_reasons(rows, FX_WEEKEND_CORE, rules) == frame_reasons(
        rows, FX_WEEKEND_CORE, rules
    )


# --------------------------------------------------------------------------- rules by hand

QUIET = TickRules(min_context=10, spike_window=50)


def walk(n: int, start: int = 110_000, symbol: str = "EURUSD") -> list[dict[str, Any]]:
    """n ticks 500 ms apart zig-zagging by 1-3 points (a quiet EURUSD)."""
    steps = [1, -2, 3, -1, 2, -3]
    out, bid = [], start
    for i in range(n):
        bid += steps[i % len(steps)]
        out.append(tick(symbol, _T0_MS + 500 * i, bid))
    return out


def both(rows: list[dict[str, Any]], rules: TickRules = QUIET) -> list[str | None]:
    guarded = guard_reasons(rows, FX_WEEKEND_CORE, rules)
    assert guarded == frame_reasons(rows, FX_WEEKEND_CORE, rules)
    return guarded


def test_a_spike_is_rejected_and_does_not_move_the_reference() -> None:
    rows = walk(40)
    rows[30] = tick("EURUSD", rows[30]["time_msc"], 110_000 + 300)  # 30 pips for one tick
    assert both(rows) == [None] * 30 + [Reason.SPIKE] + [None] * 9
    # the same jump within the warm-up (fewer than min_context moves) is not judged
    early = walk(40)
    early[5] = tick("EURUSD", early[5]["time_msc"], 110_000 + 300)
    assert Reason.SPIKE not in both(early)


def test_a_level_shift_is_accepted_after_spike_confirm_ticks() -> None:
    rows = walk(40)
    for r in rows[30:]:
        r["bid"], r["ask"] = round(r["bid"] + 0.005, 5), round(r["ask"] + 0.005, 5)
    reasons = both(rows)
    confirm = QUIET.spike_confirm
    assert reasons[30 : 30 + confirm] == [Reason.SPIKE] * (confirm - 1) + [None]
    assert reasons[30 + confirm :] == [None] * (10 - confirm)


def test_no_spike_is_judged_across_a_session_gap() -> None:
    rows = walk(40)
    for r in rows[30:]:  # the market reopens 50 pips away after an hour without ticks
        r["time_msc"] += 3_600_000
        r["bid"], r["ask"] = round(r["bid"] + 0.005, 5), round(r["ask"] + 0.005, 5)
    assert both(rows) == [None] * 40


def test_a_stale_quote_is_rejected_from_the_stale_run_th_repeat() -> None:
    rows = walk(60)
    for i in range(30, 30 + 25):
        rows[i] = {**rows[29], "time_msc": rows[i]["time_msc"], "time": rows[i]["time"]}
    run = QUIET.stale_run
    assert both(rows) == [None] * (30 + run - 1) + [Reason.STALE] * (26 - run) + [None] * 5


def test_symbols_keep_their_own_state() -> None:
    eur, gbp = walk(40), walk(40, start=127_000, symbol="GBPUSD")
    rows = [r for pair in zip(eur, gbp, strict=True) for r in pair]
    assert both(rows) == [None] * 80
    rows[61] = tick("GBPUSD", rows[61]["time_msc"], 127_000 + 400)
    assert [i for i, r in enumerate(both(rows)) if r] == [61]


def test_out_of_order_and_duplicates_leave_the_state_alone() -> None:
    rows = walk(30)
    late = {**rows[20], "time_msc": rows[20]["time_msc"] - 1}
    again = dict(rows[25])
    seq = [*rows[:26], late, again, *rows[26:]]
    reasons = both(seq)
    assert reasons[26:28] == [Reason.OUT_OF_ORDER, Reason.DUPLICATE_TIME]
    assert reasons.count(None) == 30


# --------------------------------------------------------------------------- real prices


def ticks_from_bars(bars: pd.DataFrame, per_bar: int = 30) -> pd.DataFrame:
    """EURUSD ticks from real H1 bars: every 2 minutes along open → low/high → close (the
    low first in an up bar), a 1-pip spread, a tick only when the quote changes."""
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    up = c >= o
    path = np.stack([o, np.where(up, lo, h), np.where(up, h, lo), c], axis=1)
    pos = np.linspace(0.0, 3.0, per_bar)
    seg = np.minimum(pos.astype(int), 2)
    price = path[:, seg] + (pos - seg) * (path[:, seg + 1] - path[:, seg])
    start = bars["time"].astype("int64").to_numpy() // 1_000_000
    t = start[:, None] + np.arange(per_bar) * (3_600_000 // per_bar)
    bid = np.round(price.ravel(), 5)
    keep = np.r_[True, bid[1:] != bid[:-1]]
    bid, t_msc = bid[keep], t.ravel()[keep]
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "time_msc": t_msc,
            "time": pd.to_datetime(t_msc, unit="ms", utc=True),
            "bid": bid,
            "ask": np.round(bid + 0.0001, 5),
            "last": 0.0,
            "volume": 0,
            "flags": 6,
        }
    )


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def test_real_eurusd_prices_pass_and_spikes_inserted_into_them_are_caught() -> None:
    real = ticks_from_bars(load_bars(DATA, symbol="EURUSD", timeframe="H1"))
    assert len(real) > 130_000
    rules = TickRules()
    clean = validate_ticks(real, calendar=FX_NEW_YORK, rules=rules)
    assert clean.rejected == 0
    guard = TickGuard(FX_NEW_YORK, rules)
    assert not any(guard.check(r) for r in records(real))

    faulty = inject_faults(real, {"spike": 40}, seed=7)
    rows = records(faulty.drop(columns="fault"))
    want = [Reason.SPIKE if f == "spike" else None for f in faulty["fault"]]
    assert frame_reasons(rows, FX_NEW_YORK, rules) == want
    assert guard_reasons(rows, FX_NEW_YORK, rules) == want
