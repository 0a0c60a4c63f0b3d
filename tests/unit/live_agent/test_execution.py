"""Execution: every retcode's policy, the order state machine, ambiguity, the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaintrade.chain import StepTrace
from chaintrade.domain import Action
from chaintrade.errors import ServiceUnavailable
from live_agent import mt5_constants as c
from live_agent.execution import (
    RETCODE_POLICY,
    TERMINAL_STATES,
    TRANSITIONS,
    Executor,
    IllegalTransition,
    OrderIntent,
    OrderJournal,
    OrderState,
    RetcodePolicy,
    policy_for,
    traced_call,
    transition,
)
from live_agent.simulator import FaultConfig, Mt5Simulator, SymbolSpec
from live_agent.testing import synthetic_bars

MAGIC = 777


class Counting:
    """The simulator, counting ``order_send`` calls; ``raise_on_send`` raises after sending."""

    def __init__(self, sim: Mt5Simulator, raise_on_send: BaseException | None = None) -> None:
        self.sim, self.sends, self.raise_on_send = sim, 0, raise_on_send
        self.fail_lookups = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def order_send(self, request: dict[str, Any]) -> Any:
        self.sends += 1
        result = self.sim.order_send(request)
        if self.raise_on_send is not None:
            raise self.raise_on_send
        return result

    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        return None if self.fail_lookups else self.sim.positions_get(*args, **kwargs)


def setup(
    faults: FaultConfig | None = None, journal: Path | None = None, **sim_kw: Any
) -> tuple[Executor, Counting, Any]:
    sim = Mt5Simulator(synthetic_bars(n=20), start_bar=5, faults=faults, **sim_kw)
    sim.initialize()
    term = Counting(sim)
    ex = Executor(
        term, magic=MAGIC, deviation_points=10, requote_retries=2, journal=OrderJournal(journal)
    )
    return ex, term, sim.symbol_info("EURUSD")


def intent(action: Action = Action.BUY, volume: float = 0.1) -> OrderIntent:
    return OrderIntent(OrderIntent.new_id(), "EURUSD", action, volume)


def test_the_policy_table_names_every_trade_retcode_once() -> None:
    retcodes = {v for k, v in c.PACKAGE_CONSTANTS.items() if k.startswith("TRADE_RETCODE_")}
    assert set(RETCODE_POLICY) == retcodes
    assert policy_for(99_999) == RetcodePolicy.AMBIGUOUS  # unknown: look up, never resend


EXPECTED = {
    RetcodePolicy.FILLED: (True, 1, OrderState.FILLED),
    RetcodePolicy.RETRY_REPRICE: (True, 2, OrderState.FILLED),  # re-priced, then filled
    RetcodePolicy.NO_RETRY: (False, 1, OrderState.REJECTED),
    RetcodePolicy.PAUSE: (False, 1, OrderState.REJECTED),
    RetcodePolicy.AMBIGUOUS: (False, 1, OrderState.REJECTED),  # looked up: not filled
}


@pytest.mark.parametrize(
    "retcode", sorted(RETCODE_POLICY), ids=lambda r: c.RETCODE_NAMES[r].removeprefix("TRADE_")
)
def test_every_retcode_follows_its_policy(retcode: int) -> None:
    ex, term, info = setup(FaultConfig(scripted=(retcode,)))
    out = ex.submit(StepTrace(), intent(), info)
    policy = RETCODE_POLICY[retcode]
    filled, sends, state = EXPECTED[policy]
    assert (out.filled, term.sends, out.state) == (filled, sends, state)
    assert len(term.sim.positions_get() or ()) == (1 if filled else 0)
    if policy in (RetcodePolicy.NO_RETRY, RetcodePolicy.PAUSE):
        assert (out.retcode, out.policy, out.reason) == (retcode, policy, c.retcode_reason(retcode))
    if policy == RetcodePolicy.AMBIGUOUS:
        assert out.reason == f"{c.retcode_reason(retcode)}_not_filled"


def test_requotes_stop_after_the_configured_resends() -> None:
    rq = c.TRADE_RETCODE_REQUOTE
    ex, term, info = setup(FaultConfig(scripted=(rq, rq, rq, rq)))
    out = ex.submit(StepTrace(), intent(), info)
    assert (out.filled, term.sends, out.reason, out.state) == (
        False,
        3,
        "requote",
        OrderState.REJECTED,
    )


def test_lost_reply_that_executed_is_found_not_resent() -> None:
    ex, term, info = setup(FaultConfig(scripted=(None,), timeout_executes=True))
    out = ex.submit(StepTrace(), intent(), info)
    assert (out.filled, out.reason, term.sends) == (True, "filled_reconciled", 1)
    assert len(term.sim.positions_get() or ()) == 1


def test_lost_reply_that_did_not_execute_is_not_resent() -> None:
    ex, term, info = setup(FaultConfig(scripted=(None,), timeout_executes=False))
    out = ex.submit(StepTrace(), intent(), info)
    assert (out.filled, out.reason, out.state, term.sends) == (
        False,
        "no_reply_not_filled",
        OrderState.REJECTED,
        1,
    )
    assert not term.sim.positions_get()


def test_a_raising_bridge_is_ambiguous_and_resolved_by_lookup() -> None:
    ex, term, info = setup()
    term.raise_on_send = EOFError("connection closed by peer")
    out = ex.submit(StepTrace(), intent(), info)
    assert (out.filled, out.reason, term.sends) == (True, "filled_reconciled", 1)


def test_failed_lookup_leaves_the_intent_unknown_and_open_in_the_journal(tmp_path: Path) -> None:
    ex, term, info = setup(FaultConfig(scripted=(None,), timeout_executes=True), tmp_path / "j")
    term.fail_lookups = True
    out = ex.submit(StepTrace(), intent(), info)
    assert (out.filled, out.state, out.reason) == (False, OrderState.UNKNOWN, "no_reply_unknown")
    ((open_intent, state),) = OrderJournal(tmp_path / "j").open_intents()
    assert (open_intent.client_order_id, state) == (out.client_order_id, OrderState.UNKNOWN)
    term.fail_lookups = False
    resolved, unknown = ex.recover(StepTrace())
    assert [o.reason for o in resolved] == ["filled_reconciled"] and not unknown
    assert OrderJournal(tmp_path / "j").open_intents() == []


def test_slippage_and_requested_price_are_recorded() -> None:
    ex, _, info = setup(slippage_points=3)
    out = ex.submit(StepTrace(), intent(), info)
    assert out.filled and out.requested_price == info.ask
    assert out.price == pytest.approx(info.ask + 3 * info.point)
    assert out.slippage_points == pytest.approx(3.0)


def test_filling_mode_comes_from_the_symbols_allowed_set() -> None:
    spec = SymbolSpec.for_symbol("EURUSD", filling_mode=c.SYMBOL_FILLING_IOC)
    ex, term, info = setup(specs={"EURUSD": spec})
    assert ex.submit(StepTrace(), intent(), info).filled
    (order,) = [o for o in term.sim.history_orders_get() or () if o.magic == MAGIC]
    assert order.type_filling == c.ORDER_FILLING_IOC


def test_sl_tp_distances_are_set_from_the_fill_side() -> None:
    ex, term, info = setup()
    i = OrderIntent("abc", "EURUSD", Action.SELL, 0.1, None, sl_distance=0.002, tp_distance=0.003)
    assert ex.submit(StepTrace(), i, info).filled
    (pos,) = term.sim.positions_get() or ()
    assert pos.sl == pytest.approx(info.bid + 0.002) and pos.tp == pytest.approx(info.bid - 0.003)
    assert (pos.magic, pos.comment) == (MAGIC, "ct:abc")


def test_order_state_machine() -> None:
    assert {OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED} == TERMINAL_STATES
    assert transition(OrderState.CREATED, OrderState.SUBMITTED) == OrderState.SUBMITTED
    with pytest.raises(IllegalTransition):
        transition(OrderState.FILLED, OrderState.SUBMITTED)
    with pytest.raises(IllegalTransition):
        transition(OrderState.UNKNOWN, OrderState.SUBMITTED)  # never resend an unknown order
    reachable, todo = {OrderState.CREATED}, [OrderState.CREATED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert reachable == set(OrderState)


def test_journal_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    j = OrderJournal(path)
    i = intent()
    j.record(i, OrderState.CREATED)
    j.record(i, OrderState.SUBMITTED)
    with path.open("a") as fh:
        fh.write('{"client_order_id": "x", "sta')
    assert [(x.client_order_id, s) for x, s in OrderJournal(path).open_intents()] == [
        (i.client_order_id, OrderState.SUBMITTED)
    ]


def test_a_journaled_intent_is_never_sent_twice(tmp_path: Path) -> None:
    ex, term, info = setup(journal=tmp_path / "j")
    i = intent()
    assert ex.submit(StepTrace(), i, info).filled
    again = Executor(
        term,
        magic=MAGIC,
        deviation_points=10,
        requote_retries=2,
        journal=OrderJournal(tmp_path / "j"),
    )  # after a restart
    out = again.submit(StepTrace(), i, info)
    assert (out.filled, out.reason, out.state, term.sends) == (
        False,
        "duplicate_intent",
        OrderState.FILLED,
        1,
    )


def test_traced_call_gives_none_for_lost_links_and_empty_answers_and_lets_bugs_through() -> None:
    sim = Mt5Simulator(synthetic_bars(n=20), start_bar=5)
    sim.initialize()
    trace = StepTrace()

    def lost() -> None:
        raise ConnectionResetError("pipe")

    def bug() -> None:
        raise ValueError("bad argument")

    assert traced_call(sim, trace, "symbol_info", sim.symbol_info, "EURUSD") is not None
    assert traced_call(sim, trace, "symbol_info", sim.symbol_info, "NOPE") is None
    assert traced_call(sim, trace, "positions_get", lost) is None
    with pytest.raises(ValueError, match="bad argument"):
        traced_call(sim, trace, "orders_get", bug)
    ok, empty, broken, raised = trace.dependencies
    assert (ok.target, ok.endpoint, ok.status, ok.error) == ("mt5", "symbol_info", "ok", None)
    code, message = sim.last_error()
    assert (empty.status, empty.error) == (
        "error",
        repr(ServiceUnavailable(f"symbol_info: {code} {message}", reason="mt5_none")),
    )
    assert (broken.endpoint, broken.status) == ("positions_get", "error")
    assert broken.error == "ServiceUnavailable(\"positions_get: ConnectionResetError('pipe')\")"
    assert (raised.endpoint, raised.status, raised.error) == (
        "orders_get",
        "error",
        "ValueError('bad argument')",
    )


def test_order_send_is_traced_per_attempt_before_a_lost_reply_is_looked_up() -> None:
    rq = c.TRADE_RETCODE_REQUOTE
    ex, _, info = setup(FaultConfig(scripted=(rq,)))
    trace = StepTrace()
    assert ex.submit(trace, intent(), info).filled
    assert [(d.endpoint, d.attempt, d.status) for d in trace.dependencies] == [
        ("symbol_info_tick", 1, "ok"),
        ("order_send", 1, "ok"),
        ("symbol_info_tick", 1, "ok"),
        ("order_send", 2, "ok"),
    ]
    ex, term, info = setup()
    term.raise_on_send = EOFError("closed")
    trace = StepTrace()
    assert ex.submit(trace, intent(), info).reason == "filled_reconciled"
    _, send, *lookups = trace.dependencies
    assert (send.endpoint, send.status, send.error) == (
        "order_send",
        "error",
        repr(ServiceUnavailable(repr(EOFError("closed")), reason="no_reply")),
    )
    assert [d.endpoint for d in lookups] == ["positions_get", "history_deals_get"]


def test_an_interrupt_in_order_send_propagates_and_is_no_failed_call() -> None:
    ex, term, info = setup()
    term.raise_on_send = KeyboardInterrupt()
    trace = StepTrace()
    with pytest.raises(KeyboardInterrupt):
        ex.submit(trace, intent(), info)
    assert [d.endpoint for d in trace.dependencies] == ["symbol_info_tick"]


def test_journal_rows_hold_plain_values_in_order() -> None:
    ex, _, info = setup()
    i = intent(Action.SELL)
    out = ex.submit(StepTrace(), i, info)
    rows = ex.journal.rows()
    head = {"client_order_id": i.client_order_id, "symbol": "EURUSD", "action": "SELL",
            "volume": 0.1, "position": None}  # fmt: skip
    assert rows == [
        {**head, "state": "CREATED"},
        {**head, "state": "SUBMITTED", "attempt": 1, "price": out.requested_price},
        {**head, "state": "FILLED", "retcode": out.retcode, "price": out.price},
    ]
    assert list(rows[1])[-2:] == ["attempt", "price"]  # the extras follow, in call order
    assert {type(r["state"]) for r in rows} == {type(r["action"]) for r in rows} == {str}


def test_traced_call_passes_keywords() -> None:
    sim = Mt5Simulator(synthetic_bars(n=20), start_bar=5)
    sim.initialize()
    trace = StepTrace()
    assert traced_call(sim, trace, "positions_get", sim.positions_get, symbol="EURUSD") == ()
    assert [(d.endpoint, d.status) for d in trace.dependencies] == [("positions_get", "ok")]
