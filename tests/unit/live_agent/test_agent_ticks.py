"""Tick collection in the live loop: every tick the terminal gives is accepted or quarantined
with the shared validator's reason, counted, and the agent trades as without ticks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.validation import TICK_FRAME_COLUMNS, Reason, validate_ticks
from live_agent import mt5_constants as c
from live_agent.agent import Agent, BarOutcome
from live_agent.runner import Runner
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, synthetic_bars

HOUR_MS = 3_600_000
START_BAR = 16
BARS = synthetic_bars(n=30)
T0 = int(pd.Timestamp(BARS["time"].iloc[0]).timestamp() * 1000)


def quote(time_msc: int, bid: float) -> dict[str, Any]:
    """An EURUSD tick at ``bid`` with a 1-pip spread."""
    bid = round(bid, 5)
    return {
        "symbol": "EURUSD",
        "time_msc": time_msc,
        "bid": bid,
        "ask": round(bid + 0.0001, 5),
        "flags": 6,
    }


def tick_stream() -> tuple[pd.DataFrame, dict[str, int]]:
    """Four good ticks per bar around its close, and bad ticks injected after bar 17:
    a crossed quote, non-positive bid and ask, an exact repeat of the tick before."""
    rows: list[dict[str, Any]] = []
    for k, close in enumerate(BARS["close"]):
        for q in range(4):
            rows.append(quote(T0 + k * HOUR_MS + q * 900_000 + 7, float(close) + 0.0001 * q))
        if k in (18, 21, 24):
            rows.append({**rows[-1], "time_msc": rows[-1]["time_msc"] + 1, "bid": 1.5, "ask": 1.4})
        if k in (19, 25):
            rows.append({**rows[-1], "time_msc": rows[-1]["time_msc"] + 1, "bid": 0.0})
        if k == 20:
            rows.append({**rows[-1], "time_msc": rows[-1]["time_msc"] + 1, "ask": -1.0})
        if k in (22, 23):
            rows.append(dict(rows[-1]))
    expected = {Reason.ASK_BELOW_BID: 3, Reason.NON_POSITIVE_PRICE: 3, Reason.DUPLICATE_TIME: 2}
    return pd.DataFrame(rows), expected


class BackwardTicks(Mt5Simulator):
    """The simulator, whose tick feed also carries a late tick (time going backwards) after
    each tick listed in ``after``, as a feed in arrival order would; ``fail_ticks``: the
    terminal answers no ticks."""

    def __init__(self, after: set[int], **kw: Any) -> None:
        super().__init__(BARS, start_bar=START_BAR, **kw)
        self.after, self.fail_ticks = after, False

    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> Any:
        if self.fail_ticks:
            return None
        ticks = super().copy_ticks_from(symbol, date_from, 10**9, flags)
        assert ticks is not None
        out = []
        for record in ticks:
            out.append(record)
            if int(record["time_msc"]) in self.after:
                late = record.copy()
                late["time_msc"] -= 60_000
                late["time"] = late["time_msc"] // 1000
                late["bid"] -= 0.0002
                if late["time_msc"] >= date_from * 1000:
                    out.append(late)
        return np.array(out, dtype=ticks.dtype)[:count]


def run(terminal: Any, **settings: Any) -> tuple[Agent, list[BarOutcome]]:
    agent = Agent(
        terminal,
        ScriptedServing([0.9, 0.5, 0.5, -0.9, 0.5, 0.0, 0.9]),
        ListSink(),
        AgentSettings(magic=7, **settings),
    )
    return agent, asyncio.run(Runner(agent, ["EURUSD"]).run())


def trades(agent: Agent, outcomes: list[BarOutcome]) -> list[Any]:
    return [
        (
            o.bar_time,
            o.decision and o.decision.action,
            o.risk and o.risk.reasons,
            [(x.client_order_id, x.filled, x.price, x.volume) for x in o.orders],
        )
        for o in outcomes
    ] + [agent.realized_pnl()]


def visible(stream: pd.DataFrame, sim: Mt5Simulator, first_bar: int) -> int:
    """Ticks of the stream from the open of ``first_bar`` to the clock of ``sim``."""
    first = T0 + first_bar * HOUR_MS
    msc = stream["time_msc"]
    return int(((msc >= first) & (msc <= sim.now.timestamp() * 1000)).sum())


def test_bad_ticks_are_quarantined_and_nothing_is_lost(tmp_path: Path) -> None:
    stream, expected = tick_stream()
    backward = {T0 + 26 * HOUR_MS + 2 * 900_000 + 7, T0 + 27 * HOUR_MS + 7}
    sim = BackwardTicks(backward, ticks=stream)
    agent, outcomes = run(sim, state_dir=tmp_path)

    counts = agent.tick_quarantine.counts
    assert dict(counts) == {**expected, Reason.OUT_OF_ORDER: len(backward)}
    # the loop advances, then polls: the first poll starts at the open of bar 16
    seen = visible(stream, sim, START_BAR) + len(backward)
    accepted = agent.ticks_accepted["EURUSD"]
    assert accepted + sum(counts.values()) == seen
    assert accepted == seen - sum(counts.values()) == 4 * (len(BARS) - START_BAR)
    lines = [json.loads(x) for x in (tmp_path / "quarantined_ticks.jsonl").read_text().splitlines()]
    assert sorted(x["reason"] for x in lines) == sorted(counts.elements())
    assert {x["symbol"] for x in lines} == {"EURUSD"} and all("time_msc" in x for x in lines)
    crossed = [x for x in lines if x["reason"] == Reason.ASK_BELOW_BID]
    assert all(x["bid"] == 1.5 and x["ask"] == 1.4 for x in crossed)
    last = agent.latest_tick("EURUSD")
    good = stream.iloc[-1]
    assert last is not None and (last["time_msc"], last["bid"]) == (good["time_msc"], good["bid"])

    # the agent kept trading, exactly as without tick collection
    assert any(o.filled for out in outcomes for o in out.orders)
    plain_sim = Mt5Simulator(BARS, start_bar=START_BAR, ticks=stream)
    plain, plain_outcomes = run(plain_sim, collect_ticks=False, state_dir=tmp_path / "plain")
    assert trades(agent, outcomes) == trades(plain, plain_outcomes)
    assert plain.latest_tick("EURUSD") is None and not plain.tick_quarantine.counts


def test_a_failed_tick_fetch_loses_nothing() -> None:
    stream, _ = tick_stream()
    sim = term = BackwardTicks(set(), ticks=stream)
    agent = Agent(term, ScriptedServing([0.0]), ListSink(), AgentSettings(magic=7))
    agent.start()
    first = agent.collect_ticks("EURUSD")
    assert first.error is None and first.accepted == 4  # bar 15's (the clock is bar 16's open)
    sim.advance()
    term.fail_ticks = True
    assert agent.collect_ticks("EURUSD").error == "ticks:mt5_no_ticks"
    sim.advance()
    sim.advance()
    term.fail_ticks = False
    again = agent.collect_ticks("EURUSD")
    assert again.error is None and again.accepted == 12  # bars 16 to 18
    assert [r for _, r in again.quarantined] == [Reason.ASK_BELOW_BID]  # injected in bar 18
    assert agent.collect_ticks("EURUSD").seen == 0  # nothing handled twice
    assert agent.ticks_accepted["EURUSD"] + 1 == visible(stream, sim, START_BAR - 1)


def test_ticks_small_batches_and_server_times() -> None:
    """A batch smaller than the poll's ticks hands the rest to the next poll; server stamps
    are read in ``server_timezone`` (the quote's time_msc is UTC)."""
    stream, _ = tick_stream()
    sim = Mt5Simulator(BARS, start_bar=START_BAR, ticks=stream)
    agent = Agent(
        sim,
        ScriptedServing([0.0]),
        ListSink(),
        AgentSettings(tick_batch=2, bar_times="server", server_timezone="Europe/Nicosia"),
    )
    agent.start()
    sizes = [agent.collect_ticks("EURUSD").accepted for _ in range(3)]
    sim.advance()
    sizes += [agent.collect_ticks("EURUSD").accepted for _ in range(3)]
    assert sizes == [2, 2, 0, 2, 2, 0]
    last = agent.latest_tick("EURUSD")
    assert last is not None  # bar 16's last tick, stamped 2 h ahead of UTC (Nicosia, January)
    assert last["time_msc"] == T0 + START_BAR * HOUR_MS + 3 * 900_000 + 7 - 2 * HOUR_MS


_METRICS_SCRIPT = """
import asyncio, sys
import pandas as pd
sys.path.insert(0, "tests/unit/live_agent")
from test_agent_ticks import BARS, START_BAR, tick_stream
from live_agent.agent import Agent
from live_agent.runner import AgentMetrics, Runner
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing

sim = Mt5Simulator(BARS, start_bar=START_BAR, ticks=tick_stream()[0])
agent = Agent(sim, ScriptedServing([0.0]), ListSink(), AgentSettings(magic=9))
metrics = AgentMetrics()
asyncio.run(Runner(agent, ["EURUSD"], metrics=metrics).run())
print(metrics.exposition())
"""


def test_tick_metrics_are_exported() -> None:
    # a child process: prometheus_client must not be imported in the test process
    out = subprocess.run(
        [sys.executable, "-c", _METRICS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert 'agent_ticks_quarantined_total{reason="ask_below_bid"} 3.0' in text
    assert 'agent_ticks_quarantined_total{reason="non_positive_price"} 3.0' in text
    assert 'agent_ticks_quarantined_total{reason="duplicate_time"} 2.0' in text
    accepted = 4 * (len(BARS) - START_BAR)
    assert f'agent_ticks_accepted_total{{symbol="EURUSD"}} {accepted:.1f}' in text


def test_the_agent_quarantines_spikes_as_the_frame_validator_does(tmp_path: Path) -> None:
    """A dense tick stream with price spikes and a frozen feed: the agent's per-tick answers
    (TickGuard) are those of ``validate_ticks`` over every tick it was handed."""
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = []
    walk = float(BARS["close"].iloc[0]) + np.cumsum(rng.normal(0.0, 2e-5, (len(BARS), 60)))
    for k, mids in enumerate(walk.reshape(len(BARS), 60)):
        for q, mid in enumerate(mids):
            rows.append(quote(T0 + k * HOUR_MS + q * 55_000 + 3, float(mid)))
        if k in (19, 24):  # a 2 % print, then the feed goes on where it was
            spike = {**rows[-2], "time_msc": rows[-2]["time_msc"] + 1}
            spike["bid"] = round(spike["bid"] * 1.02, 5)
            spike["ask"] = round(spike["bid"] + 0.0001, 5)
            rows.insert(len(rows) - 1, spike)
        if k == 22:  # a frozen feed: the same quote 25 times
            frozen = rows[-1]
            rows += [{**frozen, "time_msc": frozen["time_msc"] + 1 + i} for i in range(25)]
    stream = pd.DataFrame(rows)
    sim = Mt5Simulator(BARS, start_bar=START_BAR, ticks=stream)
    agent, _ = run(sim, state_dir=tmp_path)

    counts = agent.tick_quarantine.counts
    assert counts[Reason.SPIKE] == 2 and counts[Reason.STALE] >= 25 - 19  # 20th repeat on
    first_s = (T0 + START_BAR * HOUR_MS) // 1000  # the runner advances, then polls
    assert sim.initialize()  # the runner shut the terminal down at the end
    handed = sim.copy_ticks_from("EURUSD", first_s, 10**9, c.COPY_TICKS_ALL)
    assert handed is not None
    frame = pd.DataFrame(handed.tolist(), columns=list(handed.dtype.names)).assign(symbol="EURUSD")
    last = agent.latest_tick("EURUSD")
    assert last is not None
    frame = frame[frame["time_msc"] <= last["time_msc"]]  # the last poll came before the end
    expected = validate_ticks(frame[list(TICK_FRAME_COLUMNS)])
    assert expected.counts == dict(counts)
    assert agent.ticks_accepted["EURUSD"] == len(expected.good) == len(frame) - sum(counts.values())
