"""The risk engine: sizing, caps, rate limit, hours, protections across restarts, states."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chaintrade.domain import Action
from live_agent import mt5_constants as c
from live_agent import risk_engine
from live_agent.risk_engine import (
    Exposure,
    MarketView,
    ProtectionState,
    ProtectionStore,
    RiskConfig,
    RiskEngine,
    RiskReason,
    RiskVerdict,
    SymbolTerms,
    TradingState,
    atr_volume,
    parse_hours,
    round_volume,
)

NOW = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)  # a Wednesday
TERMS = SymbolTerms(volume_min=0.01, volume_max=5.0, volume_step=0.01)
# EURUSD on a USD account: 1 point = 0.00001, 1 lot = 100,000 EUR -> 1 USD per point per lot
MARKET = MarketView(
    terms=TERMS, price=1.1, spread_points=10, tick_size=0.00001, tick_value=1.0, atr=0.0010
)


def engine(**kw: object) -> RiskEngine:
    cfg = {"max_positions_per_symbol": 3, "max_positions_total": 10, **kw}
    return RiskEngine(RiskConfig(**cfg))  # type: ignore[arg-type]


def buy(
    e: RiskEngine,
    *,
    market: MarketView = MARKET,
    exposures: list[Exposure] | None = None,
    now: datetime = NOW,
    equity: float = 10_000.0,
    action: Action = Action.BUY,
) -> RiskVerdict:
    held = exposures if exposures is not None else []
    return e.evaluate(action, "EURUSD", now=now, equity=equity, market=market, exposures=held)


def test_atr_sizing_risks_the_configured_share_of_equity() -> None:
    # stop = 2 x ATR 0.0010 = 200 points = 200 USD per lot; 1% of 10,000 = 100 USD -> 0.5 lot
    assert atr_volume(10_000, 1.0, 0.0020, MARKET) == pytest.approx(0.5)
    v = buy(engine(risk_pct=1.0, atr_sl_mult=2.0))
    assert (v.approved, v.volume) == (True, 0.5)
    # 0.7%: 70 / 200 = 0.35 lot; 0.37% -> 0.185 rounded down to the step: 0.18
    assert buy(engine(risk_pct=0.37, atr_sl_mult=2.0)).volume == 0.18


def test_lot_step_min_and_max() -> None:
    assert round_volume(0.5379, TERMS) == 0.53
    assert round_volume(0.009, TERMS) is None  # below min: denied, not rounded up
    assert round_volume(80.0, TERMS) == 5.0
    assert round_volume(1.26, SymbolTerms(1, 100, 0.25)) == 1.25
    small = buy(engine(risk_pct=0.001, atr_sl_mult=2.0))
    assert small.reasons == (RiskReason.SIZE_BELOW_MIN,)
    bad = buy(engine(), market=MarketView(SymbolTerms(0.01, 1, 0), 1.1, 10, 1e-5, 1.0))
    assert bad.reasons == (RiskReason.INVALID_VOLUME_SPEC,)


def test_atr_sizing_without_atr_fails_closed() -> None:
    no_atr = MarketView(TERMS, 1.1, 10, 0.00001, 1.0, atr=None)
    assert buy(engine(risk_pct=1.0), market=no_atr).reasons == (RiskReason.NO_STOP_DISTANCE,)


def test_fixed_lot_when_atr_sizing_is_off() -> None:
    assert buy(engine(lot_size=0.07)).volume == 0.07


def test_exposure_volume_and_notional_caps() -> None:
    held = [Exposure("EURUSD", 0.2, 22_000.0), Exposure("GBPUSD", 0.3, 39_000.0)]
    e = engine(lot_size=0.1, max_volume_per_symbol=0.25)
    assert buy(e, exposures=held).reasons == (RiskReason.MAX_VOLUME_SYMBOL,)
    e = engine(lot_size=0.1, max_volume_total=0.55)
    assert buy(e, exposures=held).reasons == (RiskReason.MAX_VOLUME_TOTAL,)
    # 0.1 lot at 1.1 = 10,000 EUR = 11,000 USD; with 22,000 held -> 33,000
    e = engine(lot_size=0.1, max_notional_per_symbol=30_000.0)
    assert buy(e, exposures=held).reasons == (RiskReason.MAX_NOTIONAL_SYMBOL,)
    e = engine(lot_size=0.1, max_notional_per_symbol=33_000.0, max_notional_total=70_000.0)
    assert buy(e, exposures=held).reasons == (RiskReason.MAX_NOTIONAL_TOTAL,)
    assert buy(engine(lot_size=0.1, max_notional_total=72_000.0), exposures=held).approved


def test_position_caps() -> None:
    held = [Exposure("EURUSD", 0.01, 1_100.0), Exposure("USDJPY", 0.01, 1_000.0)]
    e = engine(max_positions_per_symbol=1, max_positions_total=2)
    assert buy(e, exposures=held).reasons == (
        RiskReason.MAX_POSITIONS,
        RiskReason.MAX_POSITIONS_TOTAL,
    )


def test_order_rate_limit_over_a_sliding_window() -> None:
    e = engine(max_orders_per_window=2, order_window_s=60.0)
    e.record_order(NOW)
    e.record_order(NOW + timedelta(seconds=10))
    assert buy(e, now=NOW + timedelta(seconds=30)).reasons == (RiskReason.RATE_LIMITED,)
    assert buy(e, now=NOW + timedelta(seconds=61)).approved


def test_spread_filter_and_trade_mode() -> None:
    wide = MarketView(TERMS, 1.1, 45, 0.00001, 1.0)
    assert buy(engine(max_spread_points=30), market=wide).reasons == (RiskReason.SPREAD_TOO_WIDE,)
    long_only = MarketView(
        SymbolTerms(0.01, 5, 0.01, c.SYMBOL_TRADE_MODE_LONGONLY), 1.1, 1, 1e-5, 1
    )
    assert buy(engine(), market=long_only).approved
    assert buy(engine(), market=long_only, action=Action.SELL).reasons == (
        RiskReason.TRADE_DISABLED,
    )


def test_trading_hours_and_days() -> None:
    assert parse_hours("07:00-11:30, 13:00-24:00") == ((420, 690), (780, 1440))
    e = engine(trading_hours=parse_hours("08:00-17:00"), trading_days=frozenset({0, 1, 2, 3, 4}))
    at = NOW.replace(hour=7, minute=59)
    assert buy(e, now=at).reasons == (RiskReason.OUTSIDE_TRADING_HOURS,)
    assert buy(e, now=at.replace(hour=8, minute=0)).approved
    saturday = datetime(2024, 1, 6, 12, tzinfo=UTC)
    assert buy(e, now=saturday).reasons == (RiskReason.OUTSIDE_TRADING_HOURS,)


def test_missing_inputs_fail_closed_and_hold_sends_nothing() -> None:
    e = engine()
    v = e.evaluate(Action.BUY, "EURUSD", now=NOW, equity=None, market=MARKET, exposures=[])
    assert v.reasons == (RiskReason.INPUTS_UNAVAILABLE,)
    v = e.evaluate(Action.BUY, "EURUSD", now=NOW, equity=1.0, market=None, exposures=[])
    assert v.reasons == (RiskReason.INPUTS_UNAVAILABLE,)
    v = e.evaluate(Action.BUY, "EURUSD", now=NOW, equity=1.0, market=MARKET, exposures=None)
    assert v.reasons == (RiskReason.INPUTS_UNAVAILABLE,)
    assert buy(e, action=Action.HOLD).reasons == (RiskReason.NO_ORDER,)


def test_daily_loss_reduces_until_the_next_day() -> None:
    e = engine(daily_loss_pct=5.0, max_drawdown_pct=None)
    assert e.update_equity(10_000.0, NOW) == TradingState.ACTIVE
    assert e.update_equity(9_600.0, NOW + timedelta(hours=1)) == TradingState.ACTIVE
    assert e.update_equity(9_500.0, NOW + timedelta(hours=2)) == TradingState.REDUCING
    assert buy(e).reasons == (RiskReason.REDUCING,)
    held = [Exposure("EURUSD", 0.01, 1_100.0)]
    assert buy(e, action=Action.CLOSE, exposures=held).approved  # closing is allowed
    assert e.update_equity(9_800.0, NOW + timedelta(hours=3)) == TradingState.REDUCING
    assert e.update_equity(9_800.0, NOW + timedelta(days=1)) == TradingState.ACTIVE


def test_max_drawdown_halts_until_resumed() -> None:
    e = engine(daily_loss_pct=None, max_drawdown_pct=10.0)
    e.update_equity(10_000.0, NOW)
    e.update_equity(11_000.0, NOW + timedelta(days=1))
    assert e.update_equity(9_950.0, NOW + timedelta(days=2)) == TradingState.ACTIVE
    assert e.update_equity(9_900.0, NOW + timedelta(days=3)) == TradingState.HALTED  # 10% of peak
    held = [Exposure("EURUSD", 0.01, 1_100.0)]
    assert buy(e, action=Action.CLOSE, exposures=held).reasons == (RiskReason.HALTED,)
    e.resume(equity=9_900.0)
    assert e.trading_state()[0] == TradingState.ACTIVE


def test_protections_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "protections.json"
    cfg = RiskConfig(daily_loss_pct=5.0, max_drawdown_pct=20.0)
    first = RiskEngine(cfg, ProtectionStore(path))
    first.update_equity(10_000.0, NOW)
    first.update_equity(9_400.0, NOW + timedelta(hours=1))
    assert first.trading_state() == (TradingState.REDUCING, "daily_loss")

    second = RiskEngine(cfg, ProtectionStore(path))  # a restart: same day, same state
    assert second.trading_state() == (TradingState.REDUCING, "daily_loss")
    assert second.protections.day_start_equity == 10_000.0
    second.update_equity(9_500.0, NOW + timedelta(days=1))  # a new day: active again
    assert second.trading_state()[0] == TradingState.ACTIVE
    second.update_equity(7_900.0, NOW + timedelta(days=2))  # 21% below the 10,000 peak
    third = RiskEngine(cfg, ProtectionStore(path))
    assert third.trading_state() == (TradingState.HALTED, "max_drawdown")


def test_manual_halt_and_reduce_persist_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "protections.json"
    e = RiskEngine(RiskConfig(), ProtectionStore(path))
    e.halt("operator")
    assert RiskEngine(RiskConfig(), ProtectionStore(path)).trading_state() == (
        TradingState.HALTED,
        "operator",
    )
    e.reduce()
    assert (
        RiskEngine(RiskConfig(), ProtectionStore(path)).trading_state()[0] == TradingState.REDUCING
    )
    e.resume()
    assert RiskEngine(RiskConfig(), ProtectionStore(path)).trading_state()[0] == TradingState.ACTIVE


def test_kill_switch_file_halts_while_it_exists(tmp_path: Path) -> None:
    kill = tmp_path / "KILL"
    e = engine(kill_switch_file=kill)
    assert buy(e).approved
    kill.touch()
    assert e.trading_state() == (TradingState.HALTED, "kill_switch_file")
    assert buy(e).reasons == (RiskReason.HALTED,)
    kill.unlink()
    assert buy(e, now=NOW + timedelta(hours=1)).approved


def test_kill_switch_file_is_looked_up_once_per_bar(tmp_path: Path) -> None:
    """With a decision time the file is read once per bar (and second); without, every call."""
    kill = tmp_path / "KILL"
    e = engine(kill_switch_file=kill)
    assert e.trading_state(NOW) == (TradingState.ACTIVE, "")
    kill.touch()
    assert buy(e).approved  # the same bar: the look-up of this bar stands
    assert e.trading_state(NOW)[0] == TradingState.ACTIVE
    assert e.trading_state() == (TradingState.HALTED, "kill_switch_file")  # a fresh look
    later = NOW + timedelta(hours=1)
    assert buy(e, now=later).reasons == (RiskReason.HALTED,)
    assert e.update_equity(10_000.0, later) == TradingState.HALTED


def test_not_reconciled_and_paused_deny_new_exposure() -> None:
    e = engine()
    e.reconciled = False
    assert RiskReason.NOT_RECONCILED in buy(e).reasons
    e.reconciled = True
    e.pause(NOW + timedelta(minutes=5), "market_closed")
    assert buy(e).reasons == (RiskReason.PAUSED,)
    assert buy(e, now=NOW + timedelta(minutes=5)).approved


def test_sizing_uses_the_orders_own_stop_distance_when_given() -> None:
    # a 100-point SL (0.0010) at 1 USD/point/lot: 1% of 10,000 = 100 USD -> 1.0 lot
    m = MarketView(TERMS, 1.1, 10, 0.00001, 1.0, atr=0.0010, stop_distance=0.0010)
    assert buy(engine(risk_pct=1.0, atr_sl_mult=2.0), market=m).volume == 1.0


@pytest.mark.parametrize(
    ("lot", "terms", "expected"),
    [
        (0.037, TERMS, 0.03),
        (80.0, TERMS, 5.0),
        (0.3, SymbolTerms(volume_min=0.1, volume_max=10, volume_step=0.1), 0.3),
        (1.26, SymbolTerms(volume_min=1, volume_max=100, volume_step=0.25), 1.25),
        (1.0, SymbolTerms(volume_min=0.01, volume_max=1, volume_step=0), None),
    ],
)
def test_lot_rounded_down_to_the_step_and_capped(
    lot: float, terms: SymbolTerms, expected: float | None
) -> None:
    assert round_volume(lot, terms) == expected


def test_a_bad_volume_spec_denies_with_its_reason() -> None:
    bad = MarketView(SymbolTerms(0.01, 1.0, 0.0), 1.1, 10, 0.00001, 1.0)
    assert buy(engine(), market=bad).reasons == (RiskReason.INVALID_VOLUME_SPEC,)


def test_every_failing_check_is_listed() -> None:
    wide = MarketView(TERMS, 1.1, 45, 0.00001, 1.0)
    held = [Exposure("EURUSD", 0.01, 1_100.0)]
    e = engine(halted=True, max_spread_points=30, max_positions_per_symbol=1)
    assert buy(e, market=wide, exposures=held, action=Action.SELL).reasons == (
        RiskReason.HALTED,
        RiskReason.SPREAD_TOO_WIDE,
        RiskReason.MAX_POSITIONS,
    )


def test_close_needs_a_position_and_is_refused_only_when_halted() -> None:
    held = [Exposure("EURUSD", 0.01, 1_100.0)]
    assert buy(engine(), action=Action.CLOSE, exposures=[]).reasons == (
        RiskReason.NOTHING_TO_CLOSE,
    )
    reducing = engine()
    reducing.reduce("test")
    assert buy(reducing, action=Action.CLOSE, exposures=held).approved
    assert buy(reducing, exposures=held).reasons == (RiskReason.REDUCING,)
    halted = engine(halted=True)
    assert buy(halted, action=Action.CLOSE, exposures=held).reasons == (RiskReason.HALTED,)


def test_trading_hours_follow_the_broker_server_clock_across_dst() -> None:
    """Europe/Nicosia: UTC+2 until 2024-03-31, then UTC+3; the window is 09:00-17:00 there."""
    e = engine(trading_hours=parse_hours("09:00-17:00"), timezone="Europe/Nicosia")
    winter, summer = datetime(2024, 3, 29, tzinfo=UTC), datetime(2024, 4, 2, tzinfo=UTC)
    assert buy(e, now=winter.replace(hour=6, minute=59)).reasons == (
        RiskReason.OUTSIDE_TRADING_HOURS,
    )
    assert buy(e, now=winter.replace(hour=7)).approved  # 09:00 server time
    assert buy(e, now=winter.replace(hour=14, minute=30)).approved  # 16:30
    assert buy(e, now=summer.replace(hour=6)).approved  # 09:00 server time after the change
    assert not buy(e, now=summer.replace(hour=14, minute=30)).approved  # 17:30
    saturday_server = datetime(2024, 3, 29, 22, 30, tzinfo=UTC)  # 00:30 Saturday in Nicosia
    days = engine(trading_days=frozenset({0, 1, 2, 3, 4}), timezone="Europe/Nicosia")
    assert buy(days, now=saturday_server).reasons == (RiskReason.OUTSIDE_TRADING_HOURS,)
    assert buy(days, now=saturday_server - timedelta(hours=1)).approved  # Friday 23:30


def test_the_daily_loss_resets_at_server_midnight_across_dst(tmp_path: Path) -> None:
    store = ProtectionStore(tmp_path / "protections.json")
    e = RiskEngine(
        RiskConfig(daily_loss_pct=5.0, max_drawdown_pct=None, timezone="Europe/Nicosia"), store
    )
    for day, midnight_utc in (
        (datetime(2024, 3, 28, tzinfo=UTC), 22),
        (datetime(2024, 4, 2, tzinfo=UTC), 21),
    ):
        start = day.replace(hour=midnight_utc) - timedelta(hours=20)
        assert e.update_equity(10_000.0, start) == TradingState.ACTIVE
        late = day.replace(hour=midnight_utc - 1, minute=30)  # 23:30 server time
        assert e.update_equity(9_400.0, late) == TradingState.REDUCING
        # a restart just before server midnight keeps REDUCING; at midnight the new day begins
        again = RiskEngine(e.config, store)
        assert again.update_equity(9_400.0, late + timedelta(minutes=29)) == TradingState.REDUCING
        assert again.update_equity(9_400.0, day.replace(hour=midnight_utc)) == TradingState.ACTIVE
        assert again.protections.day_start_equity == 9_400.0
        e = again


class CountingStore(ProtectionStore):
    """In memory; counts saves."""

    def __init__(self) -> None:
        super().__init__(None)
        self.saves = 0

    def save(self, state: ProtectionState) -> None:
        self.saves += 1


def reference_update(s: ProtectionState, cfg: RiskConfig, equity: float, now: datetime) -> bool:
    """The protections step as first written (no caching); whether it changed the state."""
    before = (s.day, s.day_start_equity, s.peak_equity, s.daily_loss_day, s.drawdown_halted)
    day = now.astimezone(ZoneInfo(cfg.timezone)).date().isoformat()
    if s.day != day:
        s.day, s.day_start_equity = day, equity
    s.peak_equity = max(s.peak_equity, equity)
    assert cfg.daily_loss_pct is not None and cfg.max_drawdown_pct is not None
    if s.day_start_equity > 0:
        loss = s.day_start_equity - equity
        if loss >= s.day_start_equity * cfg.daily_loss_pct / 100.0 and s.daily_loss_day != day:
            s.daily_loss_day = day
            s.history.append(f"daily_loss:{day}")
    limit = cfg.max_drawdown_pct
    if not s.drawdown_halted and s.peak_equity - equity >= s.peak_equity * limit / 100.0:
        s.drawdown_halted = True
        s.history.append(f"max_drawdown:{day}")
    return (s.day, s.day_start_equity, s.peak_equity, s.daily_loss_day, s.drawdown_halted) != before


@pytest.mark.parametrize(
    "zone",
    [
        "UTC",
        "Europe/Nicosia",
        "America/New_York",
        "Asia/Beirut",  # DST changes at midnight: a server day without 00:00
        "America/Santiago",  # changes at 24:00
        "Australia/Lord_Howe",  # a half-hour DST shift
        "Pacific/Chatham",  # a +12:45 offset
    ],
)
def test_protections_match_the_uncached_day_logic_over_a_year_of_dst_changes(zone: str) -> None:
    """The server day is cached as an interval of UTC seconds: every step through 2024 (60 and
    37 minutes forward, 53 back, so midnights and DST changes are hit from both sides) gives the
    protections, saves and state of the plain per-call conversion."""
    cfg = RiskConfig(daily_loss_pct=1.0, max_drawdown_pct=4.0, timezone=zone)
    store = CountingStore()
    e, ref = RiskEngine(cfg, store), ProtectionState()
    rng, equity, saves = random.Random(zone), 10_000.0, 0
    for step_min in (60, 37, -53):
        now = (
            datetime(2024, 1, 1, tzinfo=UTC)
            if step_min > 0
            else datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
        )
        while now.year == 2024:
            equity += rng.gauss(0.0, 25.0)
            state = e.update_equity(equity, now)
            saves += reference_update(ref, cfg, equity, now)
            assert (e.protections, store.saves) == (ref, saves), now
            assert e.protections.day == now.astimezone(ZoneInfo(zone)).date().isoformat()
            expected = (
                TradingState.HALTED
                if ref.drawdown_halted
                else TradingState.REDUCING
                if ref.daily_loss_day == ref.day
                else TradingState.ACTIVE
            )
            assert state == e.trading_state(now)[0] == expected, now
            if ref.drawdown_halted:  # resume both, so the drawdown keeps being tested
                e.resume(equity)
                ref.drawdown_halted, ref.peak_equity = False, equity
                ref.history.append("resume")
                saves += 1
            now += timedelta(minutes=step_min)


def test_a_new_server_day_is_seen_however_the_time_is_given() -> None:
    """Naive times, other zones and the same instant in another zone give the same day."""
    e = engine(timezone="America/New_York", daily_loss_pct=None, max_drawdown_pct=None)
    local = ZoneInfo("America/New_York")
    e.update_equity(1.0, datetime(2024, 3, 10, 4, 59, tzinfo=UTC))  # 23:59 on the 9th
    assert e.protections.day == "2024-03-09"
    e.update_equity(1.0, datetime(2024, 3, 10, 0, 0, tzinfo=local))
    assert e.protections.day == "2024-03-10"
    e.update_equity(1.0, datetime(2024, 3, 10, 3, 59, tzinfo=ZoneInfo("Europe/Nicosia")))
    assert e.protections.day == "2024-03-09"  # 20:59 on the 9th in New York
    naive = datetime(2024, 11, 3, 12, 0)
    e.update_equity(1.0, naive)
    assert e.protections.day == naive.astimezone(local).date().isoformat()


def test_the_kill_switch_file_appearing_between_bars_halts_the_next_bar(tmp_path: Path) -> None:
    kill = tmp_path / "KILL"
    e = engine(kill_switch_file=kill)
    assert e.update_equity(10_000.0, NOW) == TradingState.ACTIVE
    assert buy(e).approved and e.trading_state(NOW) == (TradingState.ACTIVE, "")
    kill.touch()
    later = NOW + timedelta(hours=1)
    assert e.update_equity(10_000.0, later) == TradingState.HALTED
    assert buy(e, now=later).reasons == (RiskReason.HALTED,)
    assert e.trading_state(later) == (TradingState.HALTED, "kill_switch_file")
    kill.unlink()
    assert e.update_equity(10_000.0, later + timedelta(hours=1)) == TradingState.ACTIVE


def test_the_kill_switch_look_up_of_a_bar_lasts_at_most_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(risk_engine, "monotonic", lambda: clock[0])
    kill = tmp_path / "KILL"
    e = engine(kill_switch_file=kill)
    assert e.update_equity(10_000.0, NOW) == TradingState.ACTIVE
    kill.touch()
    clock[0] += 0.9
    assert e.trading_state(NOW)[0] == TradingState.ACTIVE
    clock[0] += 0.2  # 1.1 s after the look-up: looked up again, same bar or not
    assert e.trading_state(NOW)[0] == TradingState.HALTED


def test_manual_and_direct_state_changes_show_at_once() -> None:
    """The ACTIVE shortcut of trading_state reads the live state every call."""
    e = engine()
    assert e.update_equity(10_000.0, NOW) == TradingState.ACTIVE
    e.halt("op")
    assert e.trading_state(NOW) == (TradingState.HALTED, "op")
    e.reduce("op")
    assert e.trading_state(NOW) == (TradingState.REDUCING, "op")
    assert buy(e).reasons == (RiskReason.REDUCING,)
    e.resume()
    assert e.trading_state(NOW) == (TradingState.ACTIVE, "")
    e.protections.daily_loss_day = e.protections.day
    assert e.trading_state(NOW) == (TradingState.REDUCING, "daily_loss")
    e.protections.daily_loss_day = "2000-01-01"
    assert e.update_equity(10_000.0, NOW) == TradingState.ACTIVE


def test_the_rate_limit_uses_the_time_of_each_call() -> None:
    """Epoch seconds are kept for the last ``now``; a new ``now`` is converted afresh."""
    e = engine(max_orders_per_window=1, order_window_s=60.0)
    assert buy(e).approved
    e.record_order(NOW)
    assert buy(e).reasons == (RiskReason.RATE_LIMITED,)
    assert buy(e, now=NOW + timedelta(seconds=59, microseconds=999_999)).reasons == (
        RiskReason.RATE_LIMITED,
    )
    assert buy(e, now=NOW + timedelta(seconds=60)).approved
    assert buy(e, now=NOW.astimezone(ZoneInfo("Asia/Tokyo")) + timedelta(seconds=60)).approved


@pytest.mark.parametrize(
    "zone", ["Europe/Nicosia", "America/New_York", "Asia/Beirut", "Australia/Lord_Howe"]
)
def test_the_cached_server_day_ends_exactly_at_server_midnight(zone: str) -> None:
    """A microsecond either side of every quarter hour, forth and back (all midnights and DST
    changes of these zones fall on one) around the 2024 changes: the plain conversion's day."""
    e = engine(timezone=zone, daily_loss_pct=None, max_drawdown_pct=None)
    tick, local = timedelta(microseconds=1), ZoneInfo(zone)
    for start, end in (
        (datetime(2024, 3, 8), datetime(2024, 4, 9)),
        (datetime(2024, 9, 27), datetime(2024, 11, 6)),
    ):
        now = start.replace(tzinfo=UTC)
        while now < end.replace(tzinfo=UTC):
            for t in (now - tick, now, now - tick):  # and back again
                e.update_equity(1.0, t)
                assert e.protections.day == t.astimezone(local).date().isoformat(), t
            now += timedelta(minutes=15)
