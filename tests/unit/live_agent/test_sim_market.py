"""The simulator's market model: swaps at rollover (triple on Wednesday), trade sessions and
tick replay with the package's tick record and flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from live_agent import mt5_constants as c
from live_agent.mt5_types import TICK_DTYPE
from live_agent.simulator import Mt5Simulator, SymbolSpec
from live_agent.testing import synthetic_bars

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # 2024-01-01 is a Monday


def deal(sim: Mt5Simulator, order_type: int, volume: float = 1.0, **kw: Any) -> Any:
    result = sim.order_send(
        {
            "action": c.TRADE_ACTION_DEAL,
            "symbol": "EURUSD",
            "volume": volume,
            "type": order_type,
            "magic": 7,
            **kw,
        }
    )
    assert result is not None
    return result


def advance_to(sim: Mt5Simulator, when: datetime) -> None:
    while sim.now < when:
        assert sim.advance()


def test_swaps_are_charged_each_night_triple_on_wednesday_none_at_the_weekend() -> None:
    spec = SymbolSpec.for_symbol("EURUSD", swap_long=-5.0, swap_short=2.0)
    sim = Mt5Simulator(synthetic_bars(n=24 * 9, start=MONDAY), specs={"EURUSD": spec}, start_bar=10)
    sim.initialize()
    assert sim.symbol_info("EURUSD").swap_mode == c.SYMBOL_SWAP_MODE_POINTS
    buy = deal(sim, c.ORDER_TYPE_BUY)
    sell = deal(sim, c.ORDER_TYPE_SELL, volume=0.5)
    # -5 points x 1e-5 x 100,000 x 1 lot = -5 USD a night; +2 x ... x 0.5 lot = +1 USD
    nights = {
        MONDAY + timedelta(days=1): 1,  # Monday's rollover
        MONDAY + timedelta(days=2): 2,
        MONDAY + timedelta(days=3): 5,  # Wednesday: three nights
        MONDAY + timedelta(days=4): 6,
        MONDAY + timedelta(days=5): 7,  # Friday
        MONDAY + timedelta(days=7, hours=5): 7,  # Saturday and Sunday: none
    }
    for when, count in nights.items():
        advance_to(sim, when)
        swaps = {p.ticket: p.swap for p in sim.positions_get() or ()}
        assert swaps == {buy.order: -5.0 * count, sell.order: 1.0 * count}, when
    account = sim.account_info()
    floating = sum(p.profit for p in sim.positions_get() or ())
    assert account.equity == pytest.approx(10_000.0 + floating - 35.0 + 7.0, abs=0.011)
    close = deal(sim, c.ORDER_TYPE_SELL, position=buy.order)
    (out,) = sim.history_deals_get(ticket=close.order) or ()
    assert out.swap == -35.0
    assert sim.account_info().balance == pytest.approx(10_000.0 + out.profit - 35.0)


def test_orders_outside_the_trade_sessions_get_market_closed() -> None:
    sessions = tuple((day, 8 * 60, 17 * 60) for day in range(5))  # Mon-Fri 08:00-17:00
    spec = SymbolSpec.for_symbol("EURUSD", sessions=sessions)
    sim = Mt5Simulator(synthetic_bars(n=48, start=MONDAY), specs={"EURUSD": spec}, start_bar=7)
    sim.initialize()
    assert sim.now.hour == 7
    assert deal(sim, c.ORDER_TYPE_BUY).retcode == c.TRADE_RETCODE_MARKET_CLOSED
    sim.advance()
    opened = deal(sim, c.ORDER_TYPE_BUY)
    assert opened.retcode == c.TRADE_RETCODE_DONE
    advance_to(sim, MONDAY + timedelta(hours=17))
    closing = deal(sim, c.ORDER_TYPE_SELL, position=opened.order)
    assert closing.retcode == c.TRADE_RETCODE_MARKET_CLOSED  # closing too: the market is shut


def test_generated_ticks_show_no_future_and_carry_the_package_flags() -> None:
    bars = synthetic_bars(n=10, start=MONDAY, spread=12)
    sim = Mt5Simulator(bars, start_bar=3)
    sim.initialize()
    ticks = sim.copy_ticks_range("EURUSD", MONDAY, MONDAY + timedelta(days=1), c.COPY_TICKS_ALL)
    assert ticks.dtype == TICK_DTYPE
    # bars 0-2 closed (4 ticks each) and the forming bar's first tick, at the clock
    assert len(ticks) == 13 and ticks["time_msc"][-1] == int(sim.now.timestamp()) * 1000
    assert np.all(np.diff(ticks["time_msc"]) > 0) and np.all(
        ticks["time"] == ticks["time_msc"] // 1000
    )
    first = bars.iloc[0]
    assert ticks["bid"][0] == first["open"] and ticks["bid"][3] == first["close"]
    assert {ticks["bid"][1], ticks["bid"][2]} == {first["high"], first["low"]}
    np.testing.assert_allclose(ticks["ask"] - ticks["bid"], 12e-5)
    assert ticks["flags"][0] == c.TICK_FLAG_BID | c.TICK_FLAG_ASK
    info = sim.copy_ticks_range("EURUSD", MONDAY, sim.now, c.COPY_TICKS_INFO)
    assert len(info) == np.count_nonzero(ticks["flags"])
    assert len(sim.copy_ticks_range("EURUSD", MONDAY, sim.now, c.COPY_TICKS_TRADE)) == 0
    two = sim.copy_ticks_from("EURUSD", MONDAY + timedelta(hours=1), 2, c.COPY_TICKS_ALL)
    hour_ms = int((MONDAY + timedelta(hours=1)).timestamp()) * 1000
    assert two["time_msc"].tolist() == [hour_ms, hour_ms + 900_000]
    assert sim.copy_ticks_from("XAUUSD", MONDAY, 5, c.COPY_TICKS_ALL) is None
    assert sim.last_error()[0] == c.RES_E_NOT_FOUND
    assert sim.copy_ticks_from("EURUSD", MONDAY, 5, 99) is None


def test_recorded_ticks_are_replayed_with_their_flags() -> None:
    start_ms = int(MONDAY.timestamp() * 1000)
    recorded = pd.DataFrame(
        {
            "symbol": "EURUSD",
            "time_msc": [start_ms + 10, start_ms + 20, start_ms + 3_600_500, start_ms + 9_000_000],
            "bid": [1.1, 1.1, 1.1002, 1.1003],
            "ask": [1.1001, 1.1001, 1.1003, 1.1004],
            "last": [0.0, 1.10005, 0.0, 0.0],
            "volume": [0, 3, 0, 0],
            "flags": [
                c.TICK_FLAG_BID | c.TICK_FLAG_ASK,
                c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME | c.TICK_FLAG_BUY,
                c.TICK_FLAG_BID | c.TICK_FLAG_ASK,
                c.TICK_FLAG_BID,
            ],
        }
    )
    sim = Mt5Simulator(synthetic_bars(n=5, start=MONDAY), start_bar=2, ticks=recorded)
    sim.initialize()  # the clock stands at 02:00: the last tick (02:30) is still in the future
    everything = sim.copy_ticks_from("EURUSD", MONDAY, 100, c.COPY_TICKS_ALL)
    assert everything["time_msc"].tolist() == recorded["time_msc"].tolist()[:3]
    trades = sim.copy_ticks_from("EURUSD", MONDAY, 100, c.COPY_TICKS_TRADE)
    assert trades["last"].tolist() == [1.10005] and trades["volume"].tolist() == [3]
    assert len(sim.copy_ticks_from("EURUSD", MONDAY, 100, c.COPY_TICKS_INFO)) == 2
    sim.advance()
    assert len(sim.copy_ticks_from("EURUSD", MONDAY, 100, c.COPY_TICKS_ALL)) == 4
