"""The simulator's cached answers (per clock step and per account change) equal fresh ones;
the agent's ATR equals the textbook one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from live_agent import mt5_constants as c
from live_agent.agent import Agent, _atr
from live_agent.mt5_types import RATES_DTYPE, TradeRequest
from live_agent.parity import SignalTable
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator, SymbolSpec
from live_agent.testing import ListSink, synthetic_bars


def answers(s: Mt5Simulator) -> tuple[Any, ...]:
    rates = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 3)
    return (
        s.account_info(),
        s.positions_get(),
        s.positions_get(symbol="EURUSD"),
        s.positions_get(group="*JPY*"),
        s.symbol_info("EURUSD"),
        s.symbol_info_tick("EURUSD"),
        None if rates is None else rates.tolist(),
    )


def assert_fresh(s: Mt5Simulator) -> None:
    """What the simulator answers equals what it answers with every cache dropped."""
    cached = answers(s)
    s._account, s._position_book, s._account_last = (-1, None), (-1, ((), 0, 0)), None
    for pos in s._positions.values():
        pos.changed()
    s._infos.clear()
    s._info_fixed.clear()
    s._quotes.clear()
    s._visible_now.clear()
    s._series_at.clear()
    s._opened_count.clear()
    fresh = answers(s)
    assert fresh == cached
    assert repr(fresh) == repr(cached)  # the same types too (0 and 0.0 are equal)


def send(s: Mt5Simulator, **request: Any) -> Any:
    result = s.order_send({"symbol": "EURUSD", "magic": 7, "deviation": 50, **request})
    assert result is not None and result.retcode == c.TRADE_RETCODE_DONE, result
    return result


def test_every_call_after_each_change_of_the_account_answers_as_if_fresh() -> None:
    s = Mt5Simulator(synthetic_bars(n=60), start_bar=30, slippage_points=1)
    assert s.initialize()
    assert_fresh(s)
    before = s.account_info()
    info = s.symbol_info("EURUSD")
    assert info is not None and before is not None
    buy = send(s, action=c.TRADE_ACTION_DEAL, type=c.ORDER_TYPE_BUY, volume=0.5)
    assert s.account_info() != before  # the open position's margin and spread cost
    assert_fresh(s)
    send(
        s,
        action=c.TRADE_ACTION_SLTP,
        position=buy.order,
        sl=round(info.bid - 0.005, 5),
        tp=round(info.bid + 0.005, 5),
    )
    (pos,) = s.positions_get() or ()
    assert (pos.sl, pos.tp) == (round(info.bid - 0.005, 5), round(info.bid + 0.005, 5))
    assert_fresh(s)
    send(s, action=c.TRADE_ACTION_DEAL, type=c.ORDER_TYPE_SELL, volume=0.2, position=buy.order)
    assert (s.positions_get() or ())[0].volume == 0.3
    assert_fresh(s)
    for _ in range(5):
        moved = s.symbol_info("EURUSD")
        s.advance()
        assert s.symbol_info("EURUSD") != moved  # a new quote and clock
        assert_fresh(s)
    assert s.symbol_select("EURUSD", False)
    assert s.symbol_info("EURUSD").select is False  # type: ignore[union-attr]
    assert_fresh(s)
    while s.advance():
        pass
    assert_fresh(s)


def test_symbol_info_fields_follow_the_quote_and_the_spec() -> None:
    s = Mt5Simulator(synthetic_bars(n=20), start_bar=5)
    assert s.initialize()
    info, tick = s.symbol_info("EURUSD"), s.symbol_info_tick("EURUSD")
    assert info is not None and tick is not None
    assert (info.bid, info.bidhigh, info.bidlow) == (tick.bid, tick.bid, tick.bid)
    assert (info.ask, info.askhigh, info.asklow) == (tick.ask, tick.ask, tick.ask)
    assert info.spread == round((tick.ask - tick.bid) / info.point)
    assert info.time == tick.time and info.select and info.visible
    assert info.trade_tick_value == info.trade_tick_value_profit == info.trade_tick_value_loss
    assert info.trade_tick_value == info.trade_contract_size * info.point  # a USD account
    assert (info.name, info.digits, info.point) == ("EURUSD", 5, 1e-5)


def wilder_atr(high: list[float], low: list[float], close: list[float], period: int) -> float:
    """The textbook Wilder ATR: true range = max of the three ranges, a mean, then smoothing."""
    tr = [
        max(h - lo, abs(h - prev), abs(lo - prev))
        for h, lo, prev in zip(high[1:], low[1:], close[:-1], strict=True)
    ]
    atr = sum(tr[:period]) / period
    for value in tr[period:]:
        atr = (atr * (period - 1) + value) / period
    return atr


def test_the_agents_atr_is_wilders_to_the_last_bit() -> None:
    rng = np.random.default_rng(3)
    for n in (15, 16, 40):
        rates = np.zeros(n, dtype=RATES_DTYPE)
        rates["close"] = 1.1 + rng.normal(0, 0.001, n).cumsum()
        rates["high"] = rates["close"] + rng.uniform(0, 0.001, n)
        rates["low"] = rates["close"] - rng.uniform(0, 0.001, n)
        rates["high"][n // 2] = rates["close"][n // 2 - 1] + 0.01  # a gap up
        rates["low"][n // 3] = rates["close"][n // 3 - 1] - 0.01  # a gap down
        high, low, close = (rates[k].tolist() for k in ("high", "low", "close"))
        assert _atr(rates, 14) == wilder_atr(high, low, close, 14)
    assert _atr(rates[:14], 14) is None


def test_opened_bars_follow_the_clock_over_gaps_and_sparse_looks() -> None:
    """How many bars of each series have opened is counted from the last look (one or two
    comparisons per clock step); sparse looks, gaps in the data and coarser timeframes give
    the bars a search over all the times gives."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    m15 = synthetic_bars(n=400, start=start, timeframe="M15")
    h1 = synthetic_bars(n=100, start=start, timeframe="H1", seed=3)
    h1 = h1.drop(h1.index[[10, 11, 12, 40]])  # gaps: several bars open in one look
    d1 = synthetic_bars(n=5, start=start, timeframe="D1", seed=4)
    s = Mt5Simulator(pd.concat([m15, h1, d1], ignore_index=True), start_bar=3)
    assert s.initialize()
    frames = {c.TIMEFRAME_M15: m15, c.TIMEFRAME_H1: h1, c.TIMEFRAME_D1: d1}
    looks = {c.TIMEFRAME_M15: 1, c.TIMEFRAME_H1: 3, c.TIMEFRAME_D1: 37}  # every n-th clock step
    step = 0
    while s.advance():
        step += 1
        now = s.now
        for tf, frame in frames.items():
            if step % looks[tf]:
                continue
            rates = s.copy_rates_from_pos("EURUSD", tf, 0, 1000)
            expected = frame["time"][frame["time"] <= now]
            assert rates is not None
            assert len(rates) == len(expected)
            assert int(rates["time"][-1]) == int(expected.iloc[-1].timestamp())
    assert step == 397  # 400 clock bars, from the 4th to the close of the last


def test_rates_are_fresh_writable_copies_and_the_forming_bar_shows_its_open() -> None:
    """Bars are copied out of the simulator (a caller may write into them) and the forming
    bar is open = high = low = close with tick_volume 1, like the data's own bar otherwise."""
    bars = synthetic_bars(n=30)
    s = Mt5Simulator(bars, start_bar=10)
    assert s.initialize()
    first = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 5)
    assert first is not None and first.flags.writeable and first.dtype == RATES_DTYPE
    expected = first.tolist()
    first["close"] = -1.0
    first["time"][0] = 0
    again = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 5)
    assert again is not None and again.tolist() == expected
    row = bars.iloc[10]
    forming = again[-1]
    assert int(forming["time"]) == int(row["time"].timestamp())
    assert forming["open"] == forming["high"] == forming["low"] == forming["close"] == row["open"]
    assert (int(forming["tick_volume"]), int(forming["real_volume"])) == (1, 0)
    closed = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 4)
    assert closed is not None and closed.tolist() == expected[:-1]
    assert float(closed["close"][-1]) == bars.iloc[9]["close"]
    empty = s.copy_rates_range("EURUSD", c.TIMEFRAME_H1, 0, 1)
    assert empty is not None and len(empty) == 0 and empty.dtype == RATES_DTYPE


def test_position_records_follow_swaps_partial_closes_and_stops() -> None:
    """The open positions' records are cached between changes; every change shows at once."""
    specs = {"EURUSD": SymbolSpec.for_symbol("EURUSD", swap_long=-7.0, swap_short=2.0)}
    s = Mt5Simulator(synthetic_bars(n=80), specs=specs, start_bar=20)
    assert s.initialize()
    buy = send(s, action=c.TRADE_ACTION_DEAL, type=c.ORDER_TYPE_BUY, volume=1.0)
    sell = send(s, action=c.TRADE_ACTION_DEAL, type=c.ORDER_TYPE_SELL, volume=0.5)
    day = s.now.date()
    while s.now.date() == day:  # over a rollover: both positions are charged
        assert s.advance()
        assert_fresh(s)
    by_ticket = {p.ticket: p for p in s.positions_get() or ()}
    assert by_ticket[buy.order].swap < 0 < by_ticket[sell.order].swap
    swap_before = by_ticket[buy.order].swap
    send(s, action=c.TRADE_ACTION_DEAL, type=c.ORDER_TYPE_SELL, volume=0.4, position=buy.order)
    (left,) = [p for p in s.positions_get() or () if p.ticket == buy.order]
    assert (left.volume, left.time_update) == (0.6, int(s.now.timestamp()))
    assert left.swap == round(swap_before - round(swap_before * 0.4, 2), 2)
    assert_fresh(s)
    tick = s.symbol_info_tick("EURUSD")
    assert tick is not None
    send(s, action=c.TRADE_ACTION_SLTP, position=sell.order, sl=round(tick.ask + 0.01, 5))
    (stopped,) = s.positions_get(ticket=sell.order) or ()
    assert (stopped.sl, stopped.tp) == (round(tick.ask + 0.01, 5), 0.0)
    assert_fresh(s)
    s.advance()
    (moved,) = s.positions_get(ticket=buy.order) or ()
    assert moved[:13] == left[:13] and moved.price_current != left.price_current
    assert_fresh(s)


def test_a_request_takes_the_defaults_of_left_out_keys_and_reports_its_first_bad_field() -> None:
    s = Mt5Simulator(synthetic_bars(n=20), start_bar=5)
    assert s.initialize()
    result = s.order_send(
        {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": "0.1", "comment": "c" * 40}
    )
    assert result is not None and result.retcode == c.TRADE_RETCODE_DONE
    assert type(result.request) is TradeRequest
    assert result.request == TradeRequest(
        action=c.TRADE_ACTION_DEAL,
        magic=0,
        order=0,
        symbol="EURUSD",
        volume=0.1,
        price=0.0,
        stoplimit=0.0,
        sl=0.0,
        tp=0.0,
        deviation=0,
        type=c.ORDER_TYPE_BUY,
        type_filling=c.ORDER_FILLING_FOK,
        type_time=c.ORDER_TIME_GTC,
        expiration=0,
        comment="c" * 31,
        position=0,
        position_by=0,
    )
    # the first field in TradeRequest's order that does not convert is the one reported
    assert s.order_send({"deviation": "x", "symbol": "EURUSD", "volume": "y"}) is None
    assert s.last_error() == (
        c.RES_E_INVALID_PARAMS,
        "Invalid request: could not convert string to float: 'y'",
    )
    assert s.order_send({"symbol": "EURUSD", "bogus": 1, "other": 2}) is None
    assert s.last_error() == (c.RES_E_INVALID_PARAMS, "Invalid request keys ['bogus', 'other']")


def test_the_agents_sliding_atr_equals_a_fresh_one() -> None:
    """The agent reuses the true ranges of the bars a new window shares with the last one: a
    window that slides one bar, jumps, shrinks or sees an older bar revised (a terminal that
    rewrote its history) gives the bits a fresh computation gives."""
    rng = np.random.default_rng(5)
    n = 120
    rates = np.zeros(n, dtype=RATES_DTYPE)
    rates["time"] = np.arange(n) * 3600
    rates["close"] = 1.1 + rng.normal(0, 0.001, n).cumsum()
    rates["high"] = rates["close"] + rng.uniform(0, 0.001, n)
    rates["low"] = rates["close"] - rng.uniform(0, 0.001, n)
    agent = Agent(Mt5Simulator(synthetic_bars(n=50)), SignalTable({}), ListSink(), AgentSettings())
    windows = [rates[i - 15 : i] for i in range(15, 60)]  # one bar at a time
    windows += [rates[70:85], rates[71:86], rates[73:88]]  # a jump, then a slide, then a gap
    revised = rates[73:89].copy()
    revised["high"][5] += 0.002  # a bar the last window held, changed
    windows += [revised[1:], rates[90:104], rates[91:106], rates[92:106]]  # revised; 14; 15
    for window in windows:
        last = dict(zip(RATES_DTYPE.names, window.item(-1), strict=True))
        assert agent._atr_of("EURUSD", window, last) == _atr(window, 14)
