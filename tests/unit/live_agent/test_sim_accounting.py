"""A hypothesis state machine over the simulator's position accounting.

Random opens, partial and full closes, SL/TP changes and clock steps; after every step the
account must add up: balance = deposit + realized profit of closing deals, equity = balance +
floating profit, every open position's volume = its IN deal minus its OUT deals, and the model's
own bookkeeping of open tickets matches the terminal's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from live_agent import mt5_constants as c
from live_agent.simulator import Mt5Simulator
from live_agent.testing import synthetic_bars

BARS = synthetic_bars(("EURUSD", "USDJPY"), n=80, seed=5)
DEPOSIT = 100_000.0


class Accounting(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Mt5Simulator(BARS, start_bar=2, balance=DEPOSIT, leverage=500)
        self.sim.initialize()
        self.open: dict[int, float] = {}  # ticket -> volume, as we believe

    def _send(self, request: dict[str, Any]) -> Any:
        result = self.sim.order_send(request)
        assert result is not None
        return result

    @rule(
        symbol=st.sampled_from(["EURUSD", "USDJPY"]),
        buy=st.booleans(),
        steps=st.integers(1, 30),
    )
    def open_position(self, symbol: str, buy: bool, steps: int) -> None:
        volume = round(steps * 0.01, 2)
        r = self._send(
            {
                "action": c.TRADE_ACTION_DEAL,
                "symbol": symbol,
                "volume": volume,
                "type": c.ORDER_TYPE_BUY if buy else c.ORDER_TYPE_SELL,
                "magic": 1,
            }
        )
        if r.retcode == c.TRADE_RETCODE_DONE:
            self.open[r.order] = volume
        else:
            assert r.retcode in (c.TRADE_RETCODE_MARKET_CLOSED, c.TRADE_RETCODE_NO_MONEY)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), full=st.booleans())
    def close_position(self, data: st.DataObject, full: bool) -> None:
        ticket = data.draw(st.sampled_from(sorted(self.open)))
        (pos,) = self.sim.positions_get(ticket=ticket) or ()
        volume = pos.volume if full else round(max(0.01, round(pos.volume / 2, 2)), 2)
        r = self._send(
            {
                "action": c.TRADE_ACTION_DEAL,
                "symbol": pos.symbol,
                "volume": volume,
                "type": c.ORDER_TYPE_SELL if pos.type == c.POSITION_TYPE_BUY else c.ORDER_TYPE_BUY,
                "position": ticket,
            }
        )
        if r.retcode == c.TRADE_RETCODE_DONE:
            left = round(self.open[ticket] - volume, 2)
            if left <= 0:
                del self.open[ticket]
            else:
                self.open[ticket] = left
        else:
            assert r.retcode == c.TRADE_RETCODE_MARKET_CLOSED

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), points=st.integers(50, 400))
    def set_stops(self, data: st.DataObject, points: int) -> None:
        ticket = data.draw(st.sampled_from(sorted(self.open)))
        (pos,) = self.sim.positions_get(ticket=ticket) or ()
        info = self.sim.symbol_info(pos.symbol)
        assert info is not None
        sign = 1 if pos.type == c.POSITION_TYPE_BUY else -1
        ref = info.bid if sign == 1 else info.ask
        self._send(
            {
                "action": c.TRADE_ACTION_SLTP,
                "symbol": pos.symbol,
                "position": ticket,
                "sl": round(ref - sign * points * info.point, info.digits),
                "tp": round(ref + sign * points * info.point, info.digits),
            }
        )

    @rule()
    def advance(self) -> None:
        self.sim.advance()
        alive = {p.ticket for p in self.sim.positions_get() or ()}
        for ticket in set(self.open) - alive:  # stopped out or taken profit
            deals = self.sim.history_deals_get(position=ticket) or ()
            assert any(d.reason in (c.DEAL_REASON_SL, c.DEAL_REASON_TP) for d in deals)
            del self.open[ticket]

    @invariant()
    def positions_match_the_model(self) -> None:
        positions = self.sim.positions_get() or ()
        assert {p.ticket: p.volume for p in positions} == pytest.approx(self.open)

    @invariant()
    def volumes_match_deals(self) -> None:
        for p in self.sim.positions_get() or ():
            deals = self.sim.history_deals_get(position=p.ticket) or ()
            inn = sum(d.volume for d in deals if d.entry == c.DEAL_ENTRY_IN)
            out = sum(d.volume for d in deals if d.entry == c.DEAL_ENTRY_OUT)
            assert inn - out == pytest.approx(p.volume)

    @invariant()
    def balance_and_equity_add_up(self) -> None:
        account = self.sim.account_info()
        assert account is not None
        deals = self.sim.history_deals_get() or ()
        realized = sum(d.profit for d in deals if d.entry == c.DEAL_ENTRY_OUT)
        assert account.balance == pytest.approx(DEPOSIT + realized, abs=0.011)
        floating = sum(p.profit for p in self.sim.positions_get() or ())
        assert account.equity == pytest.approx(account.balance + floating, abs=0.011)
        assert account.margin_free == pytest.approx(account.equity - account.margin, abs=0.011)


Accounting.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_position_accounting = Accounting.TestCase
