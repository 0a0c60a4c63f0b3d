"""A basic pre-trade risk check: position caps, lot sizing, spread limit and a kill switch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from chaintrade.domain import Action
from live_agent import mt5_constants as c


class RiskReason:
    """Reason codes of risk verdicts (stable strings)."""

    APPROVED = "approved"
    NO_ORDER = "no_order"
    HALTED = "halted"
    MAX_POSITIONS = "max_positions"
    MAX_POSITIONS_TOTAL = "max_positions_total"
    SPREAD_TOO_WIDE = "spread_too_wide"
    TRADE_DISABLED = "trade_disabled"
    INVALID_VOLUME_SPEC = "invalid_volume_spec"
    NOTHING_TO_CLOSE = "nothing_to_close"
    INPUTS_UNAVAILABLE = "risk_inputs_unavailable"
    # the risk engine (live_agent.risk_engine)
    REDUCING = "reducing_only"
    NOT_RECONCILED = "not_reconciled"
    OUTSIDE_TRADING_HOURS = "outside_trading_hours"
    RATE_LIMITED = "order_rate_limited"
    SIZE_BELOW_MIN = "size_below_volume_min"
    NO_STOP_DISTANCE = "no_stop_distance"
    MAX_VOLUME_SYMBOL = "max_volume_symbol"
    MAX_VOLUME_TOTAL = "max_volume_total"
    MAX_NOTIONAL_SYMBOL = "max_notional_symbol"
    MAX_NOTIONAL_TOTAL = "max_notional_total"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits of the skeleton risk check."""

    lot_size: float = 0.01
    max_positions_per_symbol: int = 1
    max_positions_total: int = 5
    max_spread_points: int = 30
    halted: bool = False


@dataclass(frozen=True, slots=True)
class SymbolTerms:
    """The parts of ``SymbolInfo`` the risk check reads."""

    volume_min: float
    volume_max: float
    volume_step: float
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    """``approved`` with the volume to send, or denied with every failing reason."""

    approved: bool
    volume: float
    reasons: tuple[str, ...]


def size_volume(lot_size: float, terms: SymbolTerms) -> float | None:
    """``lot_size`` rounded down to the volume step and clamped to [min, max]; None if unusable."""
    step, vmin, vmax = terms.volume_step, terms.volume_min, terms.volume_max
    if not (step > 0 and vmin > 0 and vmax >= vmin):
        return None
    volume = math.floor(lot_size / step + 1e-9) * step
    volume = min(max(volume, vmin), vmax)
    decimals = len(f"{step:.10f}".rstrip("0").split(".")[1])
    return round(volume, decimals)


def check(
    action: Action,
    *,
    limits: RiskLimits,
    terms: SymbolTerms | None,
    positions_symbol: int,
    positions_total: int,
    spread_points: int | None,
) -> RiskVerdict:
    """Judge one decided action. CLOSE is always allowed (it only reduces exposure)."""
    if action == Action.HOLD:
        return RiskVerdict(False, 0.0, (RiskReason.NO_ORDER,))
    if action == Action.CLOSE:
        if positions_symbol == 0:
            return RiskVerdict(False, 0.0, (RiskReason.NOTHING_TO_CLOSE,))
        return RiskVerdict(True, 0.0, (RiskReason.APPROVED,))
    if terms is None or spread_points is None:
        return RiskVerdict(False, 0.0, (RiskReason.INPUTS_UNAVAILABLE,))
    reasons: list[str] = []
    if limits.halted:
        reasons.append(RiskReason.HALTED)
    if not _mode_allows(terms.trade_mode, action):
        reasons.append(RiskReason.TRADE_DISABLED)
    if positions_symbol >= limits.max_positions_per_symbol:
        reasons.append(RiskReason.MAX_POSITIONS)
    if positions_total >= limits.max_positions_total:
        reasons.append(RiskReason.MAX_POSITIONS_TOTAL)
    if spread_points > limits.max_spread_points:
        reasons.append(RiskReason.SPREAD_TOO_WIDE)
    volume = size_volume(limits.lot_size, terms)
    if volume is None:
        reasons.append(RiskReason.INVALID_VOLUME_SPEC)
    if reasons:
        return RiskVerdict(False, 0.0, tuple(reasons))
    assert volume is not None
    return RiskVerdict(True, volume, (RiskReason.APPROVED,))


def _mode_allows(trade_mode: int, action: Action) -> bool:
    if trade_mode == c.SYMBOL_TRADE_MODE_FULL:
        return True
    if trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY:
        return action == Action.BUY
    if trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY:
        return action == Action.SELL
    return False
