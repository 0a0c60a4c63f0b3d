"""The skeleton pre-trade risk check: every denial carries its reasons."""

from __future__ import annotations

import pytest

from chaintrade.domain import Action
from live_agent import mt5_constants as c
from live_agent.risk import RiskLimits, RiskReason, SymbolTerms, check, size_volume

TERMS = SymbolTerms(volume_min=0.01, volume_max=50.0, volume_step=0.01)


def verdict(action: Action = Action.BUY, *, limits: RiskLimits | None = None, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "limits": limits or RiskLimits(lot_size=0.1),
        "terms": TERMS,
        "positions_symbol": 0,
        "positions_total": 0,
        "spread_points": 10,
    }
    args.update(kw)
    return check(action, **args)  # type: ignore[arg-type]


def test_approved_with_the_sized_volume() -> None:
    v = verdict()
    assert (v.approved, v.volume, v.reasons) == (True, 0.1, (RiskReason.APPROVED,))


@pytest.mark.parametrize(
    ("lot", "terms", "expected"),
    [
        (0.037, TERMS, 0.03),
        (0.001, TERMS, 0.01),
        (80.0, TERMS, 50.0),
        (0.3, SymbolTerms(volume_min=0.1, volume_max=10, volume_step=0.1), 0.3),
        (1.26, SymbolTerms(volume_min=1, volume_max=100, volume_step=0.25), 1.25),
        (1.0, SymbolTerms(volume_min=0.01, volume_max=1, volume_step=0), None),
    ],
)
def test_lot_rounded_down_to_step_and_clamped(
    lot: float, terms: SymbolTerms, expected: float | None
) -> None:
    assert size_volume(lot, terms) == expected


def test_position_caps_deny_with_reasons() -> None:
    v = verdict(positions_symbol=1, positions_total=5)
    assert not v.approved and v.volume == 0.0
    assert v.reasons == (RiskReason.MAX_POSITIONS, RiskReason.MAX_POSITIONS_TOTAL)


def test_wide_spread_and_kill_switch_deny() -> None:
    v = verdict(Action.SELL, limits=RiskLimits(halted=True, max_spread_points=5))
    assert v.reasons == (RiskReason.HALTED, RiskReason.SPREAD_TOO_WIDE)


def test_symbol_trade_mode_is_respected() -> None:
    long_only = SymbolTerms(0.01, 10, 0.01, trade_mode=c.SYMBOL_TRADE_MODE_LONGONLY)
    assert verdict(Action.BUY, terms=long_only).approved
    assert verdict(Action.SELL, terms=long_only).reasons == (RiskReason.TRADE_DISABLED,)


def test_missing_inputs_fail_closed() -> None:
    assert verdict(terms=None).reasons == (RiskReason.INPUTS_UNAVAILABLE,)
    assert verdict(spread_points=None).reasons == (RiskReason.INPUTS_UNAVAILABLE,)


def test_close_is_allowed_even_when_halted_and_hold_sends_nothing() -> None:
    halted = RiskLimits(halted=True)
    assert verdict(Action.CLOSE, limits=halted, positions_symbol=1).approved
    assert verdict(Action.CLOSE, positions_symbol=0).reasons == (RiskReason.NOTHING_TO_CLOSE,)
    hold = verdict(Action.HOLD)
    assert (hold.approved, hold.reasons) == (False, (RiskReason.NO_ORDER,))
