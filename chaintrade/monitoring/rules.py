"""Anomaly rules over monitor snapshots: each rule gives zero or more :class:`AlertRaised`.

Rules compare the current cycle with a rolling baseline of earlier cycles (a deque the
monitor keeps); with fewer than ``min_samples`` observations a rule stays silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from chaintrade.monitoring.collect import Snapshot
from chaintrade.monitoring.events import AlertRaised, AlertReason, Severity
from chaintrade.monitoring.settings import MonitorSettings
from chaintrade.monitoring.stats import psi


@dataclass
class RuleState:
    """What the rules remember between cycles."""

    history: list[Snapshot] = field(default_factory=list)
    reference_strengths: np.ndarray | None = None
    seen_chains: bool = False


def latency_spike(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """p95 of a step above ``factor`` x the median p95 of the baseline (and above a floor)."""
    if snap.chains is None:
        return []
    out = []
    for service, now in sorted(snap.chains.latency_ms.items()):
        if now.n < s.min_samples:
            continue
        base = [
            h.chains.latency_ms[service].p95
            for h in state.history
            if h.chains is not None
            and service in h.chains.latency_ms
            and h.chains.latency_ms[service].n >= s.min_samples
        ]
        if not base:
            continue
        baseline = float(np.median(base))
        limit = max(baseline * s.latency_spike_factor, s.latency_floor_ms)
        if now.p95 > limit:
            critical = now.p95 > 2 * limit
            out.append(
                AlertRaised(
                    AlertReason.LATENCY_SPIKE,
                    Severity.CRITICAL if critical else Severity.WARNING,
                    service,
                    f"{service} p95 {now.p95:.1f} ms vs baseline {baseline:.1f} ms "
                    f"(limit {limit:.1f} ms, {now.n} steps)",
                    value=now.p95,
                    threshold=limit,
                    details={"p50": now.p50, "p99": now.p99, "baseline_p95": baseline},
                )
            )
    return out


def error_rate_jump(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """Share of chains with an error step rose by more than ``error_rate_jump``."""
    c = snap.chains
    if c is None or c.error_rate is None or c.chains < s.min_samples:
        return []
    base = [
        h.chains.error_rate
        for h in state.history
        if h.chains is not None and h.chains.error_rate is not None
    ]
    baseline = float(np.mean(base)) if base else 0.0
    if c.error_rate - baseline <= s.error_rate_jump:
        return []
    return [
        AlertRaised(
            AlertReason.ERROR_RATE_JUMP,
            Severity.CRITICAL,
            "chains",
            f"{c.error_chains}/{c.chains} chains with errors ({c.error_rate:.0%}, baseline "
            f"{baseline:.0%}); by step: {dict(c.errors_by_service)}",
            value=c.error_rate,
            threshold=baseline + s.error_rate_jump,
        )
    ]


def missing_chains(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """Chains stopped arriving (after some were seen), or chains stop before execution."""
    c = snap.chains
    if c is None:
        return []
    out = []
    if c.last_chain_at is not None:
        age = (snap.taken_at - c.last_chain_at).total_seconds()
        if state.seen_chains and age > s.missing_chains_after_s:
            out.append(
                AlertRaised(
                    AlertReason.MISSING_CHAINS,
                    Severity.CRITICAL,
                    "live_agent",
                    f"no chain for {age:.0f} s (limit {s.missing_chains_after_s:.0f} s)",
                    value=age,
                    threshold=s.missing_chains_after_s,
                )
            )
    if c.incomplete_chains and c.incomplete_chains >= max(1, c.chains // 10):
        out.append(
            AlertRaised(
                AlertReason.MISSING_CHAINS,
                Severity.WARNING,
                "chain_steps",
                f"{c.incomplete_chains}/{c.chains} chains ended before execution",
                value=float(c.incomplete_chains),
            )
        )
    return out


def stale_data(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """The newest bar of a symbol is older than ``stale_data_after_s``; a failed GE run."""
    d = snap.data
    if d is None:
        return []
    out = []
    for symbol, latest in sorted(d.latest_bar.items()):
        age = (snap.taken_at - latest).total_seconds()
        if age > s.stale_data_after_s:
            out.append(
                AlertRaised(
                    AlertReason.STALE_DATA,
                    Severity.WARNING,
                    symbol,
                    f"newest bar {latest.isoformat()} is {age / 3600:.1f} h old",
                    value=age,
                    threshold=s.stale_data_after_s,
                )
            )
    if d.ge_success is False:
        out.append(
            AlertRaised(
                AlertReason.DATA_QUALITY,
                Severity.WARNING,
                d.ge_run or "great_expectations",
                "latest Great Expectations run failed: " + "; ".join(d.ge_failed[:3]),
            )
        )
    return out


def prediction_shift(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """PSI of the window's strengths against the first full window's (the reference)."""
    c = snap.chains
    if c is None or len(c.strengths) < s.min_samples:
        return []
    current = np.asarray(c.strengths)
    if state.reference_strengths is None:
        return []
    value = psi(state.reference_strengths, current)
    if not value > s.prediction_shift_psi:
        return []
    return [
        AlertRaised(
            AlertReason.PREDICTION_SHIFT,
            Severity.WARNING,
            "prediction",
            f"strength distribution shifted: PSI {value:.2f} (limit {s.prediction_shift_psi}); "
            f"mean {current.mean():+.3f} vs {state.reference_strengths.mean():+.3f}",
            value=value,
            threshold=s.prediction_shift_psi,
        )
    ]


def services_down(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    return [
        AlertRaised(AlertReason.SERVICE_DOWN, Severity.CRITICAL, h.name, h.detail or "down")
        for h in snap.services
        if not h.up
    ]


RULES = (
    latency_spike,
    error_rate_jump,
    missing_chains,
    stale_data,
    prediction_shift,
    services_down,
)


def evaluate(snap: Snapshot, state: RuleState, s: MonitorSettings) -> list[AlertRaised]:
    """Run every rule, then fold the snapshot into the state (baseline, reference)."""
    alerts = [a for rule in RULES for a in rule(snap, state, s)]
    remember(snap, state, s)
    return alerts


def remember(snap: Snapshot, state: RuleState, s: MonitorSettings) -> None:
    c = snap.chains
    if c is not None and c.chains:
        state.seen_chains = True
        if state.reference_strengths is None and len(c.strengths) >= s.min_samples:
            state.reference_strengths = np.asarray(c.strengths)
        state.history.append(snap)
        del state.history[: -s.baseline_cycles]


def dedupe(alerts: Sequence[AlertRaised]) -> list[AlertRaised]:
    """Keep the first alert per reason + subject."""
    seen: set[str] = set()
    out = []
    for a in alerts:
        if a.dedup_key not in seen:
            seen.add(a.dedup_key)
            out.append(a)
    return out
