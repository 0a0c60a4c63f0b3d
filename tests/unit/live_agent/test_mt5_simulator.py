"""The MT5 simulator: MT5 semantics for rates, fills, rejections, stops, PnL and faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from live_agent import mt5_constants as c
from live_agent.simulator import FaultConfig, Mt5Simulator, SymbolSpec

T0 = datetime(2024, 1, 2, 0, tzinfo=UTC)
# Four EURUSD H1 bars, spread 10 points (0.0001).
OHLC = [
    (1.1000, 1.1010, 1.0990, 1.1005),
    (1.1005, 1.1030, 1.1000, 1.1020),
    (1.1020, 1.1050, 1.1015, 1.1040),
    (1.1040, 1.1060, 1.1030, 1.1050),
]


def bars(
    ohlc: list[tuple[float, float, float, float]] = OHLC, symbol: str = "EURUSD"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "H1",
            "time": [T0 + timedelta(hours=i) for i in range(len(ohlc))],
            "open": [b[0] for b in ohlc],
            "high": [b[1] for b in ohlc],
            "low": [b[2] for b in ohlc],
            "close": [b[3] for b in ohlc],
            "tick_volume": 100,
            "spread": 10,
            "real_volume": 0,
        }
    )


def sim(**kwargs: object) -> Mt5Simulator:
    s = Mt5Simulator(bars(), **kwargs)  # type: ignore[arg-type]
    assert s.initialize()
    return s


def market(
    s: Mt5Simulator, order_type: int, volume: float = 1.0, **extra: object
) -> dict[str, object]:
    return {
        "action": s.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": volume,
        "type": order_type,
        "deviation": 10,
        "magic": 7,
        "comment": "test",
        "type_filling": s.ORDER_FILLING_FOK,
        **extra,
    }


def test_constants_are_module_like_attributes() -> None:
    s = sim()
    assert s.TRADE_RETCODE_DONE == 10009
    assert s.TIMEFRAME_H1 == 16385
    with pytest.raises(AttributeError):
        _ = s.NOT_A_CONSTANT


def test_calls_before_initialize_fail_like_mt5() -> None:
    s = Mt5Simulator(bars())
    assert s.account_info() is None
    assert s.last_error()[0] == c.RES_E_INTERNAL_FAIL_CONNECT
    assert s.initialize()
    assert s.last_error() == (c.RES_S_OK, "Success")


def test_copy_rates_from_pos_1_gives_closed_bars_and_pos_0_hides_the_future() -> None:
    s = sim(start_bar=2)
    closed = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 5)
    assert closed is not None
    assert closed.dtype.names == (
        "time",
        "open",
        "high",
        "low",
        "close",
        "tick_volume",
        "spread",
        "real_volume",
    )
    assert closed.dtype["time"] == np.dtype("<i8") and closed.dtype["tick_volume"] == np.dtype(
        "<u8"
    )
    assert closed.dtype["spread"] == np.dtype("<i4")
    assert list(closed["time"]) == [int(T0.timestamp()), int(T0.timestamp()) + 3600]
    assert list(closed["close"]) == [1.1005, 1.1020]
    forming = s.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 1)
    assert forming is not None
    assert forming["time"][0] == int(T0.timestamp()) + 7200
    assert (forming["open"][0], forming["high"][0], forming["low"][0], forming["close"][0]) == (
        1.1020,
        1.1020,
        1.1020,
        1.1020,
    )
    rng = s.copy_rates_range("EURUSD", c.TIMEFRAME_H1, T0, T0 + timedelta(hours=10))
    assert rng is not None and len(rng) == 3


def test_quotes_are_forming_open_plus_spread_then_last_close_at_the_end() -> None:
    s = sim()
    tick = s.symbol_info_tick("EURUSD")
    assert tick is not None
    assert (tick.bid, tick.ask) == (1.1005, 1.1006)
    while s.advance():
        pass
    tick = s.symbol_info_tick("EURUSD")
    assert tick is not None and tick.bid == 1.1050
    result = s.order_send(market(s, c.ORDER_TYPE_BUY))
    assert result is not None and result.retcode == c.TRADE_RETCODE_MARKET_CLOSED


def test_buy_fills_at_ask_and_closing_at_bid_books_the_known_profit() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_BUY, price=1.1006))
    assert opened is not None and opened.retcode == c.TRADE_RETCODE_DONE
    assert opened.price == 1.1006 and opened.volume == 1.0
    assert opened.request.magic == 7
    (pos,) = s.positions_get(symbol="EURUSD") or ()
    assert (pos.ticket, pos.type, pos.magic, pos.comment) == (
        opened.order,
        c.POSITION_TYPE_BUY,
        7,
        "test",
    )
    assert s.advance()
    closed = s.order_send(market(s, c.ORDER_TYPE_SELL, position=pos.ticket))
    assert closed is not None and closed.retcode == c.TRADE_RETCODE_DONE
    assert closed.price == 1.1020
    assert s.positions_total() == 0
    # (1.1020 - 1.1006) * 1 lot * 100000 = 140.00 USD
    deals = s.history_deals_get(T0, T0 + timedelta(days=1), position=pos.ticket) or ()
    assert [d.entry for d in deals] == [c.DEAL_ENTRY_IN, c.DEAL_ENTRY_OUT]
    assert deals[1].profit == pytest.approx(140.0)
    account = s.account_info()
    assert account is not None and account.balance == pytest.approx(10_140.0)
    assert account.margin_mode == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING


def test_sell_closed_two_bars_later_at_ask_loses_the_known_amount() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_SELL, volume=0.5))
    assert opened is not None and opened.price == 1.1005
    s.advance()
    s.advance()
    closed = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.5, position=opened.order))
    assert closed is not None and closed.price == 1.1041
    # (1.1005 - 1.1041) * 0.5 * 100000 = -180.00
    account = s.account_info()
    assert account is not None and account.balance == pytest.approx(9_820.0)


def test_partial_close_keeps_the_rest_of_the_position() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.3))
    assert opened is not None
    s.order_send(market(s, c.ORDER_TYPE_SELL, volume=0.1, position=opened.order))
    (pos,) = s.positions_get() or ()
    assert pos.volume == pytest.approx(0.2)
    too_much = s.order_send(market(s, c.ORDER_TYPE_SELL, volume=0.5, position=opened.order))
    assert too_much is not None and too_much.retcode == c.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    gone = s.order_send(market(s, c.ORDER_TYPE_SELL, volume=0.1, position=123))
    assert gone is not None and gone.retcode == c.TRADE_RETCODE_POSITION_CLOSED


@pytest.mark.parametrize("volume", [0.015, 0.001, 101.0, 0.0])
def test_volume_off_the_step_or_outside_limits_is_rejected(volume: float) -> None:
    s = sim()
    result = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=volume))
    assert result is not None and result.retcode == c.TRADE_RETCODE_INVALID_VOLUME
    assert s.positions_total() == 0


def test_filling_mode_not_allowed_by_the_symbol_is_rejected() -> None:
    spec = SymbolSpec.for_symbol("EURUSD", filling_mode=c.SYMBOL_FILLING_IOC)
    s = sim(specs={"EURUSD": spec})
    fok = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.1))
    assert fok is not None and fok.retcode == c.TRADE_RETCODE_INVALID_FILL
    ioc = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.1, type_filling=c.ORDER_FILLING_IOC))
    assert ioc is not None and ioc.retcode == c.TRADE_RETCODE_DONE
    info = s.symbol_info("EURUSD")
    assert info is not None and info.filling_mode == c.SYMBOL_FILLING_IOC


def test_margin_above_free_margin_is_no_money() -> None:
    s = sim(balance=1_000.0, leverage=100)
    # 1 lot EURUSD at 1.1006 needs 100000 * 1.1006 / 100 = 1100.60 USD
    assert s.order_calc_margin(c.ORDER_TYPE_BUY, "EURUSD", 1.0, 1.1006) == pytest.approx(1100.6)
    result = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=1.0))
    assert result is not None and result.retcode == c.TRADE_RETCODE_NO_MONEY
    check = s.order_check(market(s, c.ORDER_TYPE_BUY, volume=0.5))
    assert check is not None and check.retcode == 0 and check.margin == pytest.approx(550.3)


def test_price_beyond_deviation_is_requoted_and_slippage_worsens_fills() -> None:
    s = sim(slippage_points=3)
    far = s.order_send(market(s, c.ORDER_TYPE_BUY, price=1.1000, deviation=2))
    assert far is not None and far.retcode == c.TRADE_RETCODE_REQUOTE
    assert (far.bid, far.ask) == (1.1005, 1.1006)
    near = s.order_send(market(s, c.ORDER_TYPE_BUY, price=1.1006, deviation=5))
    assert near is not None and near.retcode == c.TRADE_RETCODE_DONE
    assert near.price == pytest.approx(1.10063)  # ask + 3 points of 0.00001


def test_take_profit_hit_in_the_bar_closes_at_tp() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_BUY, sl=1.0990, tp=1.1025))
    assert opened is not None and opened.retcode == c.TRADE_RETCODE_DONE
    s.advance()  # bar t1: high 1.1030 reaches the TP
    assert s.positions_total() == 0
    deal = (s.history_deals_get(position=opened.order) or ())[-1]
    assert deal.reason == c.DEAL_REASON_TP and deal.price == 1.1025 and deal.magic == 7
    assert deal.profit == pytest.approx(190.0)  # (1.1025 - 1.1006) * 100000


def test_stop_loss_wins_when_sl_and_tp_are_both_inside_one_bar() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_BUY, sl=1.1001, tp=1.1025))
    assert opened is not None
    s.advance()  # bar t1: low 1.1000 and high 1.1030 reach both
    deal = (s.history_deals_get(position=opened.order) or ())[-1]
    assert deal.reason == c.DEAL_REASON_SL and deal.price == 1.1001
    assert deal.profit == pytest.approx(-50.0)
    order = (s.history_orders_get(position=opened.order) or ())[-1]
    assert order.reason == c.ORDER_REASON_SL


def test_sell_stop_loss_is_triggered_by_the_ask() -> None:
    s = sim()
    opened = s.order_send(market(s, c.ORDER_TYPE_SELL, sl=1.1030))
    assert opened is not None and opened.retcode == c.TRADE_RETCODE_DONE
    s.advance()  # bar t1 high 1.1030 + spread 0.0001 = ask 1.1031 >= 1.1030
    deal = (s.history_deals_get(position=opened.order) or ())[-1]
    assert deal.reason == c.DEAL_REASON_SL
    assert deal.profit == pytest.approx(-250.0)  # (1.1005 - 1.1030) * 100000


def test_stops_on_the_wrong_side_are_invalid() -> None:
    s = sim()
    result = s.order_send(market(s, c.ORDER_TYPE_BUY, sl=1.1010))
    assert result is not None and result.retcode == c.TRADE_RETCODE_INVALID_STOPS


def test_scripted_timeout_can_still_fill_the_order() -> None:
    s = sim(faults=FaultConfig(scripted=(None, c.TRADE_RETCODE_REJECT), timeout_executes=True))
    assert s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.1)) is None
    assert s.last_error()[0] == c.RES_E_INTERNAL_FAIL_TIMEOUT
    assert s.positions_total() == 1
    rejected = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.1))
    assert rejected is not None and rejected.retcode == c.TRADE_RETCODE_REJECT
    assert s.positions_total() == 1


def test_disconnect_fails_every_call_until_initialize() -> None:
    s = sim(faults=FaultConfig(disconnect_prob=1.0))
    assert s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.1)) is None
    assert s.account_info() is None and s.positions_get() is None
    assert s.last_error()[0] == c.RES_E_INTERNAL_FAIL_CONNECT
    assert s.initialize()
    assert s.account_info() is not None


def test_random_faults_are_deterministic_for_a_seed() -> None:
    def retcodes(seed: int) -> list[int | None]:
        s = sim(faults=FaultConfig(seed=seed, requote_prob=0.3, reject_prob=0.3))
        out = []
        for _ in range(30):
            r = s.order_send(market(s, c.ORDER_TYPE_BUY, volume=0.01))
            out.append(None if r is None else r.retcode)
        return out

    first = retcodes(42)
    assert first == retcodes(42)
    assert {c.TRADE_RETCODE_DONE, c.TRADE_RETCODE_REQUOTE, c.TRADE_RETCODE_REJECT} <= set(first)


def test_group_filter_and_other_symbols() -> None:
    frame = pd.concat([bars(), bars(symbol="USDJPY", ohlc=[(150.0, 150.5, 149.5, 150.2)] * 4)])
    s = Mt5Simulator(frame)
    s.initialize()
    jpy = s.symbol_info("USDJPY")
    assert jpy is not None and jpy.digits == 3 and jpy.point == 0.001
    names = [i.name for i in s.symbols_get(group="*,!EUR*") or ()]
    assert names == ["USDJPY"]
    # USD is the base: profit is converted with the close price.
    assert s.order_calc_profit(c.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.0, 151.0) == pytest.approx(
        100_000 / 151.0, abs=0.01
    )
