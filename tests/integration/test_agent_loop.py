"""The agent over the simulator: crash recovery, reconciliation, disconnects, serving failures,
trading states, protections across restarts, the rate limit and a deterministic replay.

No external service is needed (the simulator is the product's paper-trading terminal and
serving is scripted); the tests live here because they run the whole loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaintrade.chain import ChainEvent
from chaintrade.chain_store import ChainWriter, chain_events
from chaintrade.db import connect
from chaintrade.domain import Action
from chaintrade.errors import ServiceUnavailable
from live_agent import mt5_constants as c
from live_agent.agent import STEPS, Agent, ReplaySummary
from live_agent.execution import OrderJournal, OrderState
from live_agent.risk_engine import RiskReason
from live_agent.serving_client import InvalidPrediction
from live_agent.settings import AgentSettings
from live_agent.simulator import FaultConfig, Mt5Simulator
from live_agent.testing import (
    ListSink,
    Script,
    ScriptedServing,
    prediction_for,
    synthetic_bars,
)

pytestmark = pytest.mark.integration
MAGIC = 31337


class Crash(BaseException):
    """The agent process dies (not an error the agent may catch)."""


class Proxy:
    """The simulator with switchable failures."""

    def __init__(self, sim: Mt5Simulator) -> None:
        self.sim = sim
        self.crash_after_lost_reply = False
        self.orders_get_fails = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def order_send(self, request: dict[str, Any]) -> Any:
        result = self.sim.order_send(request)
        if result is None and self.crash_after_lost_reply:
            raise Crash("killed between order_send and its answer")
        return result

    def orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return None if self.orders_get_fails else self.sim.orders_get(*args, **kwargs)


def sim_of(n: int = 60, faults: FaultConfig | None = None, **kw: Any) -> Mt5Simulator:
    return Mt5Simulator(synthetic_bars(n=n), start_bar=16, faults=faults, **kw)


def agent_of(terminal: Any, script: list[Script], state: Path | None = None, **kw: Any) -> Agent:
    settings = AgentSettings(magic=MAGIC, state_dir=state, **kw)
    return Agent(terminal, ScriptedServing(script), ListSink(), settings)


def own(sim: Mt5Simulator) -> list[Any]:
    return [p for p in sim.positions_get() or () if p.magic == MAGIC]


def step(agent: Agent, sim: Mt5Simulator, symbol: str = "EURUSD") -> Any:
    sim.advance()
    return agent.on_closed_bar(symbol)


def test_ambiguous_submit_then_crash_leaves_one_position(tmp_path: Path) -> None:
    sim = sim_of(faults=FaultConfig(scripted=(None,), timeout_executes=True))
    proxy = Proxy(sim)
    proxy.crash_after_lost_reply = True
    first = agent_of(proxy, [0.9], tmp_path)
    assert first.start().ok
    with pytest.raises(Crash):
        step(first, sim)
    assert len(own(sim)) == 1  # the order went through; the agent never saw the answer
    ((intent, state),) = OrderJournal(tmp_path / "orders.jsonl").open_intents()
    assert state == OrderState.SUBMITTED

    second = agent_of(sim, [0.9], tmp_path)  # the restart, over the same terminal
    report = second.start()
    assert report.ok and report.own_positions == 1
    assert [(o.client_order_id, o.reason, o.filled) for o in report.resolved] == [
        (intent.client_order_id, "filled_reconciled", True)
    ]
    for _ in range(3):  # the signal stays BUY: the position cap holds, nothing is resent
        out = step(second, sim)
        assert out.decision is not None and out.decision.action == Action.BUY
        assert RiskReason.MAX_POSITIONS in out.risk.reasons and out.orders == ()
    assert len(own(sim)) == 1
    assert OrderJournal(tmp_path / "orders.jsonl").open_intents() == []


def test_restart_reconciles_and_never_touches_other_magics(tmp_path: Path) -> None:
    sim = sim_of()
    sim.initialize()
    foreign = sim.order_send(
        {
            "action": c.TRADE_ACTION_DEAL,
            "symbol": "EURUSD",
            "volume": 0.05,
            "type": c.ORDER_TYPE_SELL,
            "magic": 1,
            "comment": "manual",
        }
    )
    assert foreign is not None and foreign.retcode == c.TRADE_RETCODE_DONE
    agent = agent_of(sim, [0.9, 0.0, 0.0], tmp_path)
    assert agent.start().foreign_positions == 1
    assert step(agent, sim).orders[0].filled  # BUY
    closed = step(agent, sim)  # |strength| < close band: CLOSE own positions only
    assert closed.decision.action == Action.CLOSE and [o.filled for o in closed.orders] == [True]
    report = agent_of(sim, [0.0], tmp_path).start()
    assert (report.ok, report.own_positions, report.foreign_positions) == (True, 0, 1)
    (kept,) = sim.positions_get() or ()
    assert (kept.ticket, kept.magic, kept.volume) == (foreign.order, 1, 0.05)


def test_failed_reconciliation_refuses_to_trade_until_it_succeeds() -> None:
    sim = sim_of()
    proxy = Proxy(sim)
    proxy.orders_get_fails = True
    agent = agent_of(proxy, [0.9])
    report = agent.start()
    assert (report.ok, report.reason) == (False, "terminal_unavailable")
    out = step(agent, sim)
    assert RiskReason.NOT_RECONCILED in out.risk.reasons and out.orders == ()
    proxy.orders_get_fails = False
    out = step(agent, sim)  # reconciled again before this bar
    assert agent.last_reconcile is not None and agent.last_reconcile.ok
    assert [o.filled for o in out.orders] == [True]


def test_terminal_disconnect_mid_order_is_resolved_after_reconnect() -> None:
    sim = sim_of(faults=FaultConfig(disconnect_prob=1.0))
    agent = agent_of(sim, [0.9])
    agent.start()
    (order,) = step(agent, sim).orders  # the link drops inside order_send
    assert (order.filled, order.state) == (False, OrderState.UNKNOWN)
    assert not own(sim)
    lost = step(agent, sim)  # the collector finds the terminal gone and reconnects
    assert lost.error == "collector:mt5_no_bars" and lost.orders == ()
    step(agent, sim)  # reconciliation resolves the unknown intent before trading
    report = agent.last_reconcile
    assert report is not None and report.ok
    assert [(o.client_order_id, o.reason) for o in report.resolved] == [
        (order.client_order_id, "restart_not_filled")
    ]


@pytest.mark.parametrize(
    "failure",
    [
        ServiceUnavailable("down", reason="serving_unavailable"),
        ServiceUnavailable("timed out", reason="serving_timeout"),  # slow
        InvalidPrediction("strength 5.0 is not in [-1, 1]"),  # garbage
    ],
    ids=["down", "slow", "garbage"],
)
def test_serving_failures_give_no_new_exposure_and_open_the_breaker(failure: Exception) -> None:
    sim = sim_of()
    agent = agent_of(sim, [failure], breaker_failures=3, breaker_reset_s=3600)
    agent.start()
    summary = agent.run_replay(["EURUSD"], n_bars=6)
    assert summary.orders_sent == 0 and not own(sim)
    errors = [o.error for o in summary.outcomes]
    assert errors[3:] == ["prediction:circuit_open"] * 3
    assert len(agent._serving.calls) == 3  # type: ignore[attr-defined]
    assert all(o.decision and o.decision.action == Action.HOLD for o in summary.outcomes)


def test_bad_bars_are_quarantined_with_a_reason() -> None:
    bars = synthetic_bars(n=40)
    bars.loc[20, ["high", "low"]] = [1.0, 1.2]  # high below low
    sim = Mt5Simulator(bars, start_bar=16)
    agent = agent_of(sim, [0.9])
    agent.start()
    outs = [step(agent, sim) for _ in range(6)]
    rejected = [o for o in outs if o.bar_rejected]
    assert len(rejected) == 1 and rejected[0].decision is None and rejected[0].orders == ()
    assert len(agent._serving.calls) == 5  # type: ignore[attr-defined]


def test_kill_switch_file_halts_everything_and_reducing_only_closes(tmp_path: Path) -> None:
    sim = sim_of()
    agent = agent_of(sim, [0.9, 0.9, 0.0, 0.0], tmp_path, max_positions_per_symbol=2)
    agent.start()
    assert step(agent, sim).orders[0].filled
    (tmp_path / "KILL").touch()
    halted = step(agent, sim)
    assert halted.risk.reasons == (RiskReason.HALTED,) and halted.orders == ()
    halted_close = step(agent, sim)  # HALTED sends no orders at all, closes included
    assert halted_close.decision.action == Action.CLOSE and halted_close.orders == ()
    (tmp_path / "KILL").unlink()
    agent.risk.reduce("operator")
    agent._serving = ScriptedServing([0.9, 0.0])
    reducing = step(agent, sim)
    assert reducing.risk.reasons == (RiskReason.REDUCING,)
    closing = step(agent, sim)
    assert [o.filled for o in closing.orders] == [True] and not own(sim)


def test_manual_halt_survives_a_restart(tmp_path: Path) -> None:
    sim = sim_of()
    agent_of(sim, [0.9], tmp_path).risk.halt("operator")
    again = agent_of(sim, [0.9], tmp_path)
    again.start()
    out = step(again, sim)
    assert out.risk.reasons == (RiskReason.HALTED,) and not own(sim)


def test_order_rate_limit_in_the_loop() -> None:
    sim = sim_of()
    agent = agent_of(
        sim, [0.9], max_positions_per_symbol=5, max_orders_per_window=1, order_window_s=7200
    )
    agent.start()
    outs = [step(agent, sim) for _ in range(3)]
    assert [len(o.orders) for o in outs] == [1, 0, 1]
    assert outs[1].risk.reasons == (RiskReason.RATE_LIMITED,)


def test_market_closed_pauses_new_exposure() -> None:
    sim = sim_of(faults=FaultConfig(scripted=(c.TRADE_RETCODE_MARKET_CLOSED,)))
    agent = agent_of(sim, [0.9], pause_s=3600 * 2)
    agent.start()
    assert step(agent, sim).orders[0].reason == "market_closed"
    assert step(agent, sim).risk.reasons == (RiskReason.PAUSED,)
    assert step(agent, sim).orders[0].filled  # two hours later


def test_atr_sizing_and_stops_in_the_loop() -> None:
    sim = sim_of()
    agent = agent_of(sim, [0.9], risk_pct=1.0, atr_sl_mult=2.0, atr_tp_mult=3.0)
    agent.start()
    assert step(agent, sim).orders[0].filled
    (pos,) = own(sim)
    # 1% of 10,000 over a 2 x ATR stop at 1 USD per point per lot
    stop = pos.price_open - pos.sl
    assert pos.volume == pytest.approx(int(100.0 / (stop / 0.00001) * 100) / 100, abs=0.011)
    assert pos.tp - pos.price_open == pytest.approx(1.5 * stop, abs=2e-5)


def _fingerprint(summary: ReplaySummary, events: list[ChainEvent]) -> Any:
    orders = [
        (o.client_order_id, o.action, o.volume, o.filled, o.reason, o.retcode, o.price, o.state)
        for out in summary.outcomes
        for o in out.orders
    ]
    decisions = [(o.bar_time, o.decision and o.decision.action, o.risk) for o in summary.outcomes]
    steps = [(e.service_name, e.event_type, e.metadata) for e in events]
    return orders, decisions, steps, summary.realized_pnl, summary.rejects


def _replay(tmp: Path) -> Any:
    faults = FaultConfig(
        seed=3, requote_prob=0.2, reject_prob=0.05, timeout_prob=0.1, timeout_executes=True
    )
    sim = Mt5Simulator(
        synthetic_bars(("EURUSD", "GBPUSD"), n=150, seed=11),
        start_bar=16,
        faults=faults,
        slippage_points=1,
    )
    script: list[Script] = [
        lambda bar: prediction_for(bar, round(((bar.close * 1e5) % 200) / 100 - 1, 3))
    ]
    agent = agent_of(sim, script, tmp, max_positions_per_symbol=2, atr_sl_mult=1.5)
    agent.start()
    summary = agent.run_replay(["EURUSD", "GBPUSD"], n_bars=140)
    return _fingerprint(summary, agent._sink.events)  # type: ignore[attr-defined]


def test_a_replay_twice_gives_identical_orders_events_and_pnl(tmp_path: Path) -> None:
    first, second = _replay(tmp_path / "a"), _replay(tmp_path / "b")
    orders, _, steps, pnl, _ = first
    assert len(orders) > 10 and pnl != 0.0  # it really traded
    assert {s[0] for s in steps} == {*STEPS, "reconciliation"}
    assert first == second


def test_a_restart_that_sees_the_same_bar_again_does_not_double_the_order(
    tmp_path: Path,
) -> None:
    sim = sim_of()
    first = agent_of(sim, [0.9], tmp_path, max_positions_per_symbol=3)
    first.start()
    assert step(first, sim).orders[0].filled
    second = agent_of(sim, [0.9], tmp_path, max_positions_per_symbol=3)
    second.start()
    (again,) = second.on_closed_bar("EURUSD").orders  # the same closed bar, no advance
    assert (again.filled, again.reason) == (False, "duplicate_intent")
    assert len(own(sim)) == 1


def test_bars_missed_by_serving_are_kept_and_forwarded_in_order(tmp_path: Path) -> None:
    sim = sim_of()
    down = ServiceUnavailable("down", reason="serving_unavailable")
    first = agent_of(sim, [down, down], tmp_path, breaker_failures=5)
    first.start()
    missed = [step(first, sim).bar_time for _ in range(2)]
    assert [b.time for b in first.bar_spool.pending()] == missed
    second = agent_of(sim, [0.5], tmp_path)  # a restart: the spool is on disk
    second.start()
    out = step(second, sim)
    calls = second._serving.calls  # type: ignore[attr-defined]
    assert [b.time for b in calls] == [*missed, out.bar_time]
    assert len(second.bar_spool) == 0 and out.error is None


def test_each_reconciliation_is_a_chain_with_its_terminal_calls(tmp_path: Path) -> None:
    sim = sim_of()
    proxy = Proxy(sim)
    proxy.orders_get_fails = True
    agent = agent_of(proxy, [0.9], tmp_path)
    assert not agent.start().ok
    proxy.orders_get_fails = False
    assert agent.reconcile().ok
    sink: Any = agent._sink
    chains = [
        events
        for events in sink.chains().values()
        if events[0].metadata.get("chain_name") == "reconciliation"
    ]
    assert len(chains) == 2 and all(len(events) == 1 for events in chains)
    failed, ok = chains[0][0], chains[1][0]
    assert (failed.service_name, failed.endpoint, failed.event_type) == (
        "reconciliation",
        "reconcile",
        "complete",
    )
    assert (failed.metadata["ok"], failed.metadata["reason"]) == (False, "terminal_unavailable")
    assert [(d.endpoint, d.status) for d in failed.dependencies] == [
        ("positions_get", "ok"),
        ("orders_get", "error"),
        ("history_deals_get", "ok"),
    ]
    assert (ok.metadata["ok"], ok.metadata["magic"], ok.metadata["own_positions"]) == (
        True,
        MAGIC,
        0,
    )


def test_reconciliation_chains_reach_postgresql_through_the_chain_writer(
    clean_db: str, tmp_path: Path
) -> None:
    sim = sim_of()
    with ChainWriter(clean_db, spool_dir=tmp_path / "spool") as writer:
        agent = Agent(sim, ScriptedServing([0.9]), writer, AgentSettings(magic=MAGIC))
        report = agent.start()
        assert writer.flush(timeout=30)
    assert report.ok
    with connect(clean_db) as conn:
        (chain_id,) = conn.execute(
            "SELECT chain_id FROM chain_history WHERE service_name = 'reconciliation'"
        ).fetchone() or (None,)
    (event,) = chain_events(clean_db, chain_id)
    assert event["event_type"] == "complete" and event["metadata"]["chain_name"] == "reconciliation"
    assert event["metadata"]["ok"] is True and event["metadata"]["magic"] == MAGIC
    assert {d["endpoint"] for d in event["dependencies"]} >= {"positions_get", "orders_get"}


def test_the_agent_cli_creates_the_chain_tables_or_warns_and_trades_on(
    empty_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from live_agent.cli import prepare_chain_tables

    assert prepare_chain_tables(empty_db, tmp_path)
    with connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('chain_history') IS NOT NULL").fetchone() == (True,)
    assert prepare_chain_tables(empty_db, tmp_path)  # idempotent

    down = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    assert not prepare_chain_tables(down, tmp_path)
    warning = capsys.readouterr().err
    assert "postgres@127.0.0.1:1/nowhere" in warning and str(tmp_path) in warning
