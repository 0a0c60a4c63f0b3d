"""The performance monitor: every ``interval_s`` take a snapshot, run the anomaly rules, send
new alerts to the sinks and update the monitor's own Prometheus gauges."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaintrade.monitoring import rules
from chaintrade.monitoring.collect import Snapshot, take_snapshot
from chaintrade.monitoring.events import AlertRaised, AlertSink
from chaintrade.monitoring.settings import MonitorSettings

log = logging.getLogger(__name__)


@dataclass
class MonitorGauges:
    """The monitor's gauges in their own registry (``exposition()`` or an HTTP port)."""

    registry: Any = None

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        r = self.registry = self.registry or CollectorRegistry()
        self.chains = Gauge("chaintrade_monitor_chains", "Chains in the last cycle", registry=r)
        self.chain_rate = Gauge(
            "chaintrade_monitor_chain_rate_per_min", "Chains per minute", registry=r
        )
        self.error_rate = Gauge(
            "chaintrade_monitor_chain_error_rate", "Share of chains with an error", registry=r
        )
        self.latency = Gauge(
            "chaintrade_monitor_step_latency_ms",
            "Step latency percentiles of the last cycle",
            ["service", "quantile"],
            registry=r,
        )
        self.last_chain_age = Gauge(
            "chaintrade_monitor_last_chain_age_seconds", "Seconds since the last chain", registry=r
        )
        self.service_up = Gauge(
            "chaintrade_monitor_service_up", "1 when the service answered", ["service"], registry=r
        )
        self.data_age = Gauge(
            "chaintrade_monitor_data_age_seconds", "Age of the newest bar", ["symbol"], registry=r
        )
        self.quarantined = Gauge(
            "chaintrade_monitor_quarantined_rows", "Quarantined rows by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.alerts = Counter(
            "chaintrade_monitor_alerts", "Alerts raised", ["reason", "severity"], registry=r
        )
        self.cycles = Counter("chaintrade_monitor_cycles", "Monitor cycles run", registry=r)

    def observe(self, snap: Snapshot, alerts: Sequence[AlertRaised]) -> None:
        self.cycles.inc()
        c = snap.chains
        if c is not None:
            self.chains.set(c.chains)
            self.chain_rate.set(c.rate_per_min)
            self.error_rate.set(c.error_rate or 0.0)
            for service, p in c.latency_ms.items():
                for q, v in (("0.5", p.p50), ("0.95", p.p95), ("0.99", p.p99)):
                    self.latency.labels(service, q).set(v)
            if c.last_chain_at is not None:
                self.last_chain_age.set((snap.taken_at - c.last_chain_at).total_seconds())
        for h in snap.services:
            self.service_up.labels(h.name).set(1 if h.up else 0)
        if snap.data is not None:
            for symbol, latest in snap.data.latest_bar.items():
                self.data_age.labels(symbol).set((snap.taken_at - latest).total_seconds())
            for reason, n in snap.data.quarantine.items():
                self.quarantined.labels(reason).set(n)
        for a in alerts:
            self.alerts.labels(a.reason.value, a.severity.value).inc()

    def exposition(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


@dataclass
class Monitor:
    """One monitor over the platform; ``cycle()`` once, ``run()`` until ``stop()``."""

    settings: MonitorSettings
    db_url: str | None
    data_docs_dir: Path
    quarantine_dir: Path
    sinks: Sequence[AlertSink] = ()
    gauges: MonitorGauges | None = None
    state: rules.RuleState = field(default_factory=rules.RuleState)
    _last: datetime | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def scrape_targets(self) -> dict[str, str]:
        s = self.settings
        targets = {"serving": s.serving_metrics_url, "live_agent": s.agent_metrics_url}
        return {k: v for k, v in targets.items() if v}

    def cycle(self, now: datetime | None = None) -> tuple[Snapshot, list[AlertRaised]]:
        """Collect, evaluate, send; returns the snapshot and the alerts raised."""
        now = now or datetime.now(UTC)
        window = now - timedelta(seconds=self.settings.window_s)
        since = max(self._last, window) if self._last is not None else window
        snap = take_snapshot(
            self.db_url,
            since=since,
            scrape_targets=self.scrape_targets(),
            data_docs_dir=self.data_docs_dir,
            quarantine_dir=self.quarantine_dir,
            timeout_s=self.settings.http_timeout_s,
            now=now,
        )
        self._last = now
        alerts = rules.dedupe(rules.evaluate(snap, self.state, self.settings))
        for alert in alerts:
            log.warning("alert %s %s: %s", alert.reason.value, alert.subject, alert.message)
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception:  # a broken sink must not stop the monitor
                    log.exception("alert sink %s failed", type(sink).__name__)
        if self.gauges is not None:
            self.gauges.observe(snap, alerts)
        return snap, alerts

    def run(self, max_cycles: int | None = None) -> int:
        """Cycle every ``interval_s`` until :meth:`stop`; returns the cycles run."""
        n = 0
        while not self._stop.is_set():
            self.cycle()
            n += 1
            if max_cycles is not None and n >= max_cycles:
                break
            self._stop.wait(self.settings.interval_s)
        return n

    def stop(self) -> None:
        self._stop.set()
