"""The seed decision rule at its boundaries, and failing closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chaintrade.domain import Action
from chaintrade.schemas import Prediction
from live_agent.decision import DecisionReason, DecisionRule, decide

T = datetime(2024, 1, 2, 10, tzinfo=UTC)


def prediction(strength: float, *, confidence: float = 0.8, at: datetime = T) -> Prediction:
    return Prediction(
        symbol="EURUSD",
        prediction=(strength + 1) / 2,
        strength=strength,
        confidence=confidence,
        model_name="m",
        model_version="1",
        feature_timestamp=at,
    )


@pytest.mark.parametrize(
    ("strength", "position_open", "action"),
    [
        (0.71, False, Action.BUY),
        (0.70, False, Action.HOLD),
        (-0.71, True, Action.SELL),
        (-0.70, True, Action.HOLD),
        (0.29, True, Action.CLOSE),
        (-0.29, True, Action.CLOSE),
        (0.29, False, Action.HOLD),
        (0.30, True, Action.HOLD),
        (-0.30, True, Action.HOLD),
        (0.5, True, Action.HOLD),
        (0.0, True, Action.CLOSE),
        (1.0, True, Action.BUY),
    ],
)
def test_thresholds_at_the_boundaries(strength: float, position_open: bool, action: Action) -> None:
    decision = decide(prediction(strength), position_open=position_open)
    assert decision.action == action
    assert decision.strength == strength
    assert decision.reasons


def test_no_prediction_holds_with_a_reason() -> None:
    decision = decide(None, position_open=True)
    assert (decision.action, decision.reasons) == (Action.HOLD, (DecisionReason.NO_PREDICTION,))


def test_prediction_older_than_the_bar_is_stale_and_holds() -> None:
    old = prediction(0.95, at=T - timedelta(hours=1))
    decision = decide(old, position_open=False, not_before=T)
    assert (decision.action, decision.reasons) == (Action.HOLD, (DecisionReason.STALE_PREDICTION,))
    naive_fresh = prediction(0.95, at=T.replace(tzinfo=None))
    assert decide(naive_fresh, position_open=False, not_before=T).action == Action.BUY


def test_custom_thresholds_and_confidence_floor() -> None:
    rule = DecisionRule(buy_threshold=0.5, sell_threshold=-0.5, close_band=0.1, min_confidence=0.6)
    assert decide(prediction(0.55), position_open=False, rule=rule).action == Action.BUY
    weak = decide(prediction(0.55, confidence=0.5), position_open=False, rule=rule)
    assert (weak.action, weak.reasons) == (Action.HOLD, (DecisionReason.LOW_CONFIDENCE,))


def test_decision_is_immutable() -> None:
    decision = decide(prediction(0.9), position_open=False)
    with pytest.raises(AttributeError):
        decision.action = Action.SELL  # type: ignore[misc]
