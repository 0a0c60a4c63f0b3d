"""``BarIn.checked``: the hot path's constructor gives what ``BarIn(...)`` gives, or raises as
it does, for any input (plain and odd types, every boundary of every rule)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chaintrade.schemas import BarIn

PRICES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1.17, math.inf, -math.inf, math.nan]),
    st.integers(-3, 3),
    st.builds(np.float64, st.floats(0.5, 2.0)),
    st.sampled_from(["1.1", None, True]),
)
COUNTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, True, False, 1.0, 2.5, "3", None]),
    st.builds(np.int64, st.integers(0, 10)),
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), None])
TIMES = st.one_of(
    st.builds(
        lambda d, tz: d.replace(tzinfo=tz),
        st.datetimes(datetime(1969, 12, 30), datetime(2100, 1, 1)),
        ZONES,
    ),
    st.sampled_from([datetime(1970, 1, 1, tzinfo=UTC), 0, 1_500_000_000, "2018-01-01T00:00Z"]),
)
SYMBOLS = st.one_of(st.text(max_size=40), st.sampled_from(["EURUSD", "", "X" * 32, "X" * 33]))
TIMEFRAMES = st.one_of(
    st.sampled_from(["M1", "M5", "M15", "M30", "H1", "H4", "D1", "H1\n", "h1", "W1", ""]),
    st.text(max_size=4),
)


def build(kind: Any, values: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", kind(**values)
    except ValidationError as exc:
        return "invalid", [(e["loc"], e["type"]) for e in exc.errors()]


@settings(max_examples=3000, deadline=None)
@given(
    symbol=SYMBOLS,
    timeframe=TIMEFRAMES,
    time=TIMES,
    open=PRICES,
    high=PRICES,
    low=PRICES,
    close=PRICES,
    tick_volume=COUNTS,
    spread=COUNTS,
    real_volume=COUNTS,
)
def test_checked_equals_the_validator(**values: Any) -> None:
    fast_kind, fast = build(BarIn.checked, values)
    slow_kind, slow = build(BarIn, values)
    assert fast_kind == slow_kind
    assert fast == slow
    if fast_kind == "ok":
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.model_dump() == slow.model_dump()
        assert repr(fast) == repr(slow)
        assert hash(fast) == hash(slow)
        assert fast.model_dump_json() == slow.model_dump_json()


PLAIN_PRICES = st.one_of(
    st.floats(0.0, 10.0), st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, math.inf])
)
PLAIN_COUNTS = st.integers(-1, 2**63)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PLAIN_TIMES = st.one_of(
    st.builds(
        lambda d, tz: d.replace(tzinfo=tz),
        st.datetimes(datetime(1969, 12, 31, 20), datetime(2100, 1, 1)),
        st.sampled_from([UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5))]),
    ),
    st.sampled_from([EPOCH, EPOCH - timedelta(microseconds=1), EPOCH - timedelta(seconds=1)]),
)


@settings(max_examples=3000, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "", "X" * 32, "X" * 33]),
    timeframe=st.sampled_from(["H1", "M15", "D1", "H2"]),
    time=PLAIN_TIMES,
    open=PLAIN_PRICES,
    high=PLAIN_PRICES,
    low=PLAIN_PRICES,
    close=PLAIN_PRICES,
    tick_volume=PLAIN_COUNTS,
    spread=PLAIN_COUNTS,
    real_volume=PLAIN_COUNTS,
)
def test_checked_equals_the_validator_on_plain_values(**values: Any) -> None:
    """The agent's own input types (the fast path's): every boundary of every rule."""
    test_checked_equals_the_validator.hypothesis.inner_test(**values)  # type: ignore[attr-defined]


def test_checked_bar_is_frozen_and_dumps_like_a_validated_one() -> None:
    values = dict(
        symbol="EURUSD",
        timeframe="H1",
        time=datetime(2018, 1, 2, 10, tzinfo=UTC),
        open=1.2,
        high=1.21,
        low=1.19,
        close=1.205,
        tick_volume=120,
        spread=3,
        real_volume=0,
    )
    bar = BarIn.checked(**values)  # type: ignore[arg-type]
    assert bar == BarIn(**values)  # type: ignore[arg-type]
    assert BarIn.model_validate_json(bar.model_dump_json()) == bar
    with pytest.raises(ValidationError):
        bar.open = 2.0
    with pytest.raises(ValidationError, match="finite"):
        BarIn.checked(**{**values, "close": math.inf})  # type: ignore[arg-type]
