"""Broker server time: MT5 stamps bars with the broker's wall clock; with ``bar_times="server"``
the agent reads them in ``server_timezone`` and works in UTC, across the broker's DST change."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from pydantic import ValidationError

from live_agent.agent import Agent, _utc_iso
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, synthetic_bars

ZONE = "Europe/Nicosia"  # UTC+2 in winter, UTC+3 from 2024-03-31 (a typical MT5 server zone)


def server_stamped(start_utc: datetime, n: int) -> tuple[pd.DataFrame, list[datetime]]:
    """Hourly bars whose ``time`` is the Nicosia wall clock written as if it were UTC."""
    bars = synthetic_bars(n=n, start=start_utc)
    true_utc = [t.to_pydatetime() for t in pd.to_datetime(bars["time"], utc=True)]
    wall = [t.astimezone(ZoneInfo(ZONE)).replace(tzinfo=UTC) for t in true_utc]
    return bars.assign(time=wall), true_utc


@pytest.mark.parametrize(
    ("start", "offset_h"),
    [(datetime(2024, 3, 28, 8, tzinfo=UTC), 2), (datetime(2024, 4, 2, 8, tzinfo=UTC), 3)],
)
def test_server_stamped_bars_are_read_as_utc_on_both_sides_of_dst(
    start: datetime, offset_h: int
) -> None:
    bars, true_utc = server_stamped(start, 30)
    assert bars["time"].iloc[0] - timedelta(hours=offset_h) == true_utc[0]
    sim = Mt5Simulator(bars, start_bar=16)
    serving = ScriptedServing([0.0])
    settings = AgentSettings(server_timezone=ZONE, bar_times="server")
    agent = Agent(sim, serving, ListSink(), settings)
    assert agent.start().ok
    sim.advance()
    assert agent.has_new_bar("EURUSD")
    outcome = agent.on_closed_bar("EURUSD")
    assert outcome.bar_rejected is None
    assert outcome.bar_time == true_utc[16]  # the bar that just closed, in UTC
    assert serving.calls[-1].time == true_utc[16]
    assert not agent.has_new_bar("EURUSD")  # the same stamp, read the same way


def test_utc_bar_times_are_left_alone_and_unknown_zones_are_refused() -> None:
    bars = synthetic_bars(n=30, start=datetime(2024, 4, 2, 8, tzinfo=UTC))
    sim = Mt5Simulator(bars, start_bar=16)
    agent = Agent(sim, ScriptedServing([0.0]), ListSink(), AgentSettings(server_timezone=ZONE))
    agent.start()
    sim.advance()
    assert agent.on_closed_bar("EURUSD").bar_time == bars["time"].iloc[16].to_pydatetime()
    with pytest.raises(ValidationError):
        AgentSettings(server_timezone="Mars/Olympus")


def test_the_chain_bar_time_text_is_isoformat() -> None:
    """The validator step's ``bar_time`` (built from cached parts) is ``isoformat()`` exactly."""
    rng = random.Random(11)
    stamps = [0, 59, 86_399, 86_400, 951_782_400, 4_102_444_799, -1, -86_401]
    stamps += [rng.randrange(-(10**9), 4 * 10**9) for _ in range(20_000)]
    for seconds in stamps:
        assert _utc_iso(seconds) == datetime.fromtimestamp(seconds, UTC).isoformat(), seconds
