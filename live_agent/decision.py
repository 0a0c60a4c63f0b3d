"""The seed decision rule: strength thresholds → BUY / SELL / CLOSE / HOLD, with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from chaintrade.domain import Action
from chaintrade.schemas import Prediction


class DecisionReason:
    """Reason codes carried by decisions (stable strings)."""

    NO_PREDICTION = "no_prediction"
    STALE_PREDICTION = "stale_prediction"
    LOW_CONFIDENCE = "low_confidence"
    STRONG_UP = "strength_above_buy_threshold"
    STRONG_DOWN = "strength_below_sell_threshold"
    WEAK_CLOSE = "strength_in_close_band"
    WEAK_FLAT = "strength_in_close_band_no_position"
    NEUTRAL = "strength_between_bands"


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """Thresholds: > buy → BUY, < sell → SELL, |s| < close_band → CLOSE (if open), else HOLD."""

    buy_threshold: float = 0.7
    sell_threshold: float = -0.7
    close_band: float = 0.3
    min_confidence: float = 0.0


class Decision(msgspec.Struct, frozen=True, gc=False):
    """What to do for one bar and why."""

    action: Action
    strength: float | None
    reasons: tuple[str, ...]


def decide(
    prediction: Prediction | None,
    *,
    position_open: bool,
    rule: DecisionRule | None = None,
    not_before: datetime | None = None,
) -> Decision:
    """Apply the rule; no prediction or one older than ``not_before`` holds (fail closed)."""
    rule = rule or DecisionRule()
    if prediction is None:
        return Decision(Action.HOLD, None, (DecisionReason.NO_PREDICTION,))
    strength = prediction.strength
    if not_before is not None and _utc(prediction.feature_timestamp) < _utc(not_before):
        return Decision(Action.HOLD, strength, (DecisionReason.STALE_PREDICTION,))
    if prediction.confidence < rule.min_confidence:
        return Decision(Action.HOLD, strength, (DecisionReason.LOW_CONFIDENCE,))
    if strength > rule.buy_threshold:
        return Decision(Action.BUY, strength, (DecisionReason.STRONG_UP,))
    if strength < rule.sell_threshold:
        return Decision(Action.SELL, strength, (DecisionReason.STRONG_DOWN,))
    if abs(strength) < rule.close_band:
        if position_open:
            return Decision(Action.CLOSE, strength, (DecisionReason.WEAK_CLOSE,))
        return Decision(Action.HOLD, strength, (DecisionReason.WEAK_FLAT,))
    return Decision(Action.HOLD, strength, (DecisionReason.NEUTRAL,))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
