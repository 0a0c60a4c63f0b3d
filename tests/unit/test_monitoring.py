"""Monitoring without services: statistics, anomaly rules, trade pairing, alert texts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import SecretStr

from chaintrade.alerts import failure_alert
from chaintrade.monitoring import rules
from chaintrade.monitoring.collect import ChainStats, DataQuality, Percentiles, Snapshot
from chaintrade.monitoring.events import AlertReason, Severity
from chaintrade.monitoring.settings import MonitorSettings, TelegramSettings
from chaintrade.monitoring.stats import classification, psi, trade_metrics
from chaintrade.monitoring.trades import Fill, pair_fills

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
S = MonitorSettings(min_samples=5, latency_spike_factor=3.0, latency_floor_ms=1.0)


def snap(
    at: datetime,
    *,
    chains: int = 20,
    errors: int = 0,
    p95: float = 10.0,
    strengths: tuple[float, ...] = (),
    last: datetime | None = None,
    data: DataQuality | None = None,
) -> Snapshot:
    stats = ChainStats(
        since=at - timedelta(seconds=10),
        until=at,
        chains=chains,
        error_chains=errors,
        latency_ms={"prediction": Percentiles(p95 / 2, p95, p95 * 1.2, chains)},
        strengths=strengths,
        last_chain_at=last or at,
    )
    return Snapshot(at, stats, data=data)


def run(snaps: list[Snapshot]) -> list[list[rules.AlertRaised]]:
    state = rules.RuleState()
    return [rules.evaluate(s, state, S) for s in snaps]


def reasons(alerts: list[rules.AlertRaised]) -> list[str]:
    return [a.reason.value for a in alerts]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, rng.normal(0, 1, 5000)) < 0.02
    assert psi(ref, rng.normal(1.5, 1, 5000)) > 0.5
    assert psi(np.zeros(10), np.zeros(10)) == pytest.approx(0.0, abs=1e-9)


def test_classification_and_trade_metrics_by_hand() -> None:
    m = classification(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (m["accuracy"], m["precision"], m["recall"]) == pytest.approx((0.6, 2 / 3, 2 / 3))
    t = trade_metrics(np.array([3.0, -1.0, 2.0, -2.0]))
    assert t["profit_factor"] == pytest.approx(5 / 3)
    assert t["hit_rate"] == 0.5 and t["pnl"] == pytest.approx(2.0)
    assert t["sharpe"] == pytest.approx(0.5 / np.std([3, -1, 2, -2], ddof=1))


def test_latency_spike_fires_against_the_rolling_baseline_only() -> None:
    out = run([snap(T0 + timedelta(seconds=10 * k), p95=10.0) for k in range(5)]
              + [snap(T0 + timedelta(seconds=60), p95=25.0),
                 snap(T0 + timedelta(seconds=70), p95=80.0)])  # fmt: skip
    assert all(not a for a in out[:6])  # 25 < 3 x 10
    (spike,) = out[6]
    assert spike.reason == AlertReason.LATENCY_SPIKE and spike.subject == "prediction"
    assert spike.severity == Severity.CRITICAL and spike.threshold == pytest.approx(30.0)


def test_error_rate_jump() -> None:
    out = run([snap(T0, errors=1), snap(T0 + timedelta(seconds=10), errors=8)])
    assert reasons(out[0]) == [] and reasons(out[1]) == ["error_rate_jump"]
    assert out[1][0].value == pytest.approx(0.4)


def test_missing_chains_after_chains_were_seen() -> None:
    first = snap(T0)
    later = snap(T0 + timedelta(seconds=300), chains=0, last=T0)
    out = run([first, later])
    assert reasons(out[0]) == [] and reasons(out[1]) == ["missing_chains"]
    # a monitor that never saw a chain does not claim any are missing
    assert reasons(run([later])[0]) == []


def test_stale_data_and_failed_quality_run() -> None:
    data = DataQuality(
        latest_bar={"EURUSD": T0 - timedelta(hours=5), "GBPUSD": T0 - timedelta(minutes=30)},
        ge_run="run-1",
        ge_success=False,
        ge_failed=("expect_column_values_to_not_be_null: 3 rows",),
    )
    (alerts,) = run([snap(T0, data=data)])
    assert [(a.reason.value, a.subject) for a in alerts] == [
        ("stale_data", "EURUSD"),
        ("data_quality", "run-1"),
    ]


def test_prediction_shift_against_the_first_full_window() -> None:
    rng = np.random.default_rng(1)
    calm = [tuple(rng.normal(0, 0.1, 200)) for _ in range(2)]
    shifted = tuple(rng.normal(0.5, 0.1, 200))
    out = run([snap(T0, strengths=calm[0]), snap(T0 + timedelta(seconds=10), strengths=calm[1]),
               snap(T0 + timedelta(seconds=20), strengths=shifted)])  # fmt: skip
    assert reasons(out[0]) == reasons(out[1]) == []
    assert reasons(out[2]) == ["prediction_shift"] and (out[2][0].value or 0.0) > 1.0


def test_rules_stay_silent_below_min_samples() -> None:
    out = run([snap(T0, chains=3, p95=1.0), snap(T0 + timedelta(seconds=10), chains=3, p95=500.0,
                                                  errors=3)])  # fmt: skip
    assert out == [[], []]


def _fill(k: int, symbol: str, action: str, price: float) -> Fill:
    at = T0 + timedelta(hours=k)
    return Fill(at, at, symbol, action, price, 0.1, f"c{k}", "m", "1", 0.9)


def test_fills_pair_first_in_first_out_per_symbol() -> None:
    fills = [
        _fill(0, "EURUSD", "BUY", 1.1000),
        _fill(1, "GBPUSD", "SELL", 1.3000),
        _fill(2, "EURUSD", "CLOSE", 1.1010),
        _fill(3, "GBPUSD", "CLOSE", 1.3020),
        _fill(4, "EURUSD", "CLOSE", 1.2000),  # nothing open: ignored
        _fill(5, "EURUSD", "SELL", 1.1000),
    ]
    closed, still_open = pair_fills(fills)
    assert [(t.symbol, t.side) for t in closed] == [("EURUSD", 1), ("GBPUSD", -1)]
    assert [t.pnl(100_000) for t in closed] == pytest.approx([10.0, -20.0])
    assert [(f.symbol, f.action) for f in still_open] == [("EURUSD", "SELL")]


def test_alert_text_and_dedup_key() -> None:
    (a,) = run([snap(T0, errors=0), snap(T0 + timedelta(seconds=10), errors=20)])[1]
    assert a.dedup_key == "error_rate_jump|chains"
    assert "CRITICAL" in a.text() and "20/20" in a.text()
    with pytest.raises(AttributeError):
        a.severity = Severity.INFO  # type: ignore[misc]
    assert replace(a, subject="x").dedup_key == "error_rate_jump|x"


def test_failure_alert_from_an_airflow_context() -> None:
    ti = SimpleNamespace(dag_id="chaintrade_training", task_id="train", run_id="manual__1")
    alert = failure_alert({"task_instance": ti, "exception": ValueError("bad cutoff")})
    assert alert.reason == AlertReason.TASK_FAILED and alert.subject == "chaintrade_training.train"
    assert "ValueError: bad cutoff" in alert.message


def test_telegram_allow_list_parsing_and_secret_token() -> None:
    s = TelegramSettings(token=SecretStr("123:abc"), chat_ids="42, -100200")
    assert s.allowed_chats == frozenset({42, -100200}) and s.configured
    assert "123:abc" not in repr(s)


def test_degradation_rules_need_enough_samples_and_name_the_model() -> None:
    import pandas as pd

    from chaintrade.monitoring.feedback import degradation_alerts, live_metrics

    labelled = pd.DataFrame(
        {
            "model_name": ["m"] * 12 + ["m"] * 3,
            "model_version": ["1"] * 12 + ["2"] * 3,
            "label": [1.0, 0.0] * 6 + [1.0, 1.0, 1.0],
            "predicted": [0, 1] * 6 + [0, 0, 0],  # always wrong
        }
    )
    trades = pd.DataFrame({"model_name": ["m"] * 6, "model_version": ["1"] * 6,
                           "pnl": [-1.0, -2.0, 0.5, -1.0, -1.0, -0.5]})  # fmt: skip
    metrics = live_metrics(labelled, trades)
    assert metrics[("m", "1")]["accuracy"] == 0.0 and metrics[("m", "2")]["predictions"] == 3
    alerts = degradation_alerts(metrics, {"rsi_14_H1": 0.4, "atr_14_H1": 0.1}, S)
    assert [(a.reason.value, a.severity.value, a.subject) for a in alerts] == [
        ("model_degraded", "critical", "m v1"),  # v2 has 3 predictions < min_samples
        ("model_degraded", "warning", "m v1 trades"),
        ("feature_drift", "warning", "features"),
    ]
    assert "rsi_14_H1 0.40" in alerts[2].message and "atr_14_H1" not in alerts[2].message


def test_a_symbol_degrading_under_a_healthy_model_retrains_that_symbol_only() -> None:
    import pandas as pd

    from chaintrade.monitoring.feedback import (
        degradation_alerts,
        live_metrics,
        retrain_decision,
        symbol_metrics,
    )

    labelled = pd.DataFrame(
        {
            "symbol": ["EURUSD"] * 10 + ["GBPUSD"] * 6,
            "model_name": ["m"] * 16,
            "model_version": ["1"] * 16,
            "label": [1.0, 0.0] * 5 + [1.0, 0.0] * 3,
            "predicted": [1, 0] * 5 + [0, 1] * 3,  # right on EURUSD, wrong on GBPUSD
        }
    )
    metrics = live_metrics(labelled, pd.DataFrame())
    per_symbol = symbol_metrics(labelled)
    assert metrics[("m", "1")]["accuracy"] == 10 / 16  # the model version looks fine
    assert per_symbol["GBPUSD"]["accuracy"] == 0.0 and per_symbol["EURUSD"]["predictions"] == 10
    alerts = degradation_alerts(metrics, {}, S, per_symbol)
    assert [(a.severity.value, a.subject) for a in alerts] == [("critical", "GBPUSD")]
    retrain, reason, symbols = retrain_decision(alerts, per_symbol, ["EURUSD", "GBPUSD"], S)
    assert retrain and symbols == ("GBPUSD",)
    assert reason == "live accuracy 0.00 over 6 predictions (limit 0.45)"

    # the same thresholds decide both ways: too few predictions, or none degraded, is healthy
    strict = MonitorSettings(min_samples=7)
    assert degradation_alerts(metrics, {}, strict, per_symbol) == []
    assert retrain_decision([], per_symbol, ["EURUSD"], strict) == (False, "healthy", ())
    # drift alone retrains every symbol of the window, unless drift is only reported
    drifted = degradation_alerts(metrics, {"rsi_14_H1": 0.4}, strict, per_symbol)
    assert not retrain_decision(drifted, per_symbol, ["EURUSD"], strict, on_drift=False)[0]
    assert retrain_decision(drifted, per_symbol, ["GBPUSD", "EURUSD"], strict)[::2] == (
        True,
        ("EURUSD", "GBPUSD"),
    )
