"""Collectors: one snapshot of serving, agent, chain store, data quality and models per cycle.

Every collector answers, never raises: a source that cannot be read is reported as down
(with its reason) in the snapshot, and the rules turn that into an alert.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from chaintrade.db import connect
from chaintrade.errors import ChaintradeError

STEP_SERVICES = ("collector", "validator", "prediction", "decision", "risk", "execution")


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    n: int

    @classmethod
    def of(cls, values: list[float] | np.ndarray) -> Percentiles | None:
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if not len(arr):
            return None
        p50, p95, p99 = np.percentile(arr, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), len(arr))


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    name: str
    up: bool
    detail: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChainStats:
    """Chains started in ``[since, until)``."""

    since: datetime
    until: datetime
    chains: int = 0
    error_chains: int = 0
    errors_by_service: Mapping[str, int] = field(default_factory=dict)
    latency_ms: Mapping[str, Percentiles] = field(default_factory=dict)
    span_ms: Percentiles | None = None
    strengths: tuple[float, ...] = ()
    model_versions: Mapping[str, int] = field(default_factory=dict)
    last_chain_at: datetime | None = None
    incomplete_chains: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.error_chains / self.chains if self.chains else None

    @property
    def rate_per_min(self) -> float:
        minutes = max((self.until - self.since).total_seconds() / 60.0, 1e-9)
        return self.chains / minutes


@dataclass(frozen=True, slots=True)
class DataQuality:
    latest_bar: Mapping[str, datetime] = field(default_factory=dict)
    quarantine: Mapping[str, int] = field(default_factory=dict)
    ge_run: str | None = None
    ge_success: bool | None = None
    ge_failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one monitor cycle saw."""

    taken_at: datetime
    chains: ChainStats | None
    services: tuple[ServiceHealth, ...] = ()
    data: DataQuality | None = None
    db_error: str | None = None


# ------------------------------------------------------------------- Prometheus over HTTP
def scrape(name: str, url: str, timeout_s: float = 2.0) -> ServiceHealth:
    """GET ``url`` (a Prometheus ``/metrics``) and sum each sample name over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return ServiceHealth(name, False, f"{type(exc).__name__}: {exc}")
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except ValueError as exc:
        return ServiceHealth(name, False, f"unparsable metrics: {exc}")
    return ServiceHealth(name, True, "ok", totals)


# ------------------------------------------------------------------- chain store
_EVENTS_SQL = """
SELECT chain_id, service_name, event_type, "timestamp", duration_ms,
       metadata ->> 'strength', metadata ->> 'model_version'
FROM chain_history WHERE "timestamp" >= %s AND "timestamp" < %s
"""


def chain_stats(conn: psycopg.Connection[Any], since: datetime, until: datetime) -> ChainStats:
    """Chain rate, step latency percentiles, errors, strengths and versions in a window."""
    rows = conn.execute(_EVENTS_SQL, (since, until)).fetchall()
    last = conn.execute('SELECT max("timestamp") FROM chain_history').fetchone()
    by_chain: dict[Any, list[Any]] = {}
    durations: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    strengths: list[float] = []
    versions: dict[str, int] = {}
    for row in rows:
        chain_id, service, event_type, _ts, duration, strength, version = row
        by_chain.setdefault(chain_id, []).append(row)
        if duration is not None:
            durations.setdefault(service, []).append(float(duration))
        if event_type == "error":
            errors[service] = errors.get(service, 0) + 1
        if service == "prediction" and strength is not None:
            strengths.append(float(strength))
            versions[str(version)] = versions.get(str(version), 0) + 1
    spans: list[float] = []
    error_chains = incomplete = 0
    for events in by_chain.values():
        start = min(e[3] for e in events)
        end = max(e[3] + timedelta(milliseconds=float(e[4] or 0.0)) for e in events)
        spans.append((end - start).total_seconds() * 1000.0)
        if any(e[2] == "error" for e in events):
            error_chains += 1
        services = {e[1] for e in events}
        rejected = "validator" in services and "prediction" not in services
        if "collector" in services and "execution" not in services and not rejected:
            incomplete += 1
    latency = {s: p for s, v in durations.items() if (p := Percentiles.of(v)) is not None}
    return ChainStats(
        since=since,
        until=until,
        chains=len(by_chain),
        error_chains=error_chains,
        errors_by_service=errors,
        latency_ms=latency,
        span_ms=Percentiles.of(spans),
        strengths=tuple(strengths),
        model_versions=versions,
        last_chain_at=last[0] if last else None,
        incomplete_chains=incomplete,
    )


# ------------------------------------------------------------------- data quality
def data_quality(
    conn: psycopg.Connection[Any] | None, data_docs_dir: Path, quarantine_dir: Path
) -> DataQuality:
    """Latest bar per symbol (market_data), quarantined rows by reason, the latest GE run."""
    latest: dict[str, datetime] = {}
    if conn is not None:
        for symbol, ts in conn.execute(
            'SELECT symbol, max("time") FROM market_data GROUP BY symbol'
        ).fetchall():
            latest[str(symbol)] = ts
    quarantine: dict[str, int] = {}
    if quarantine_dir.is_dir():
        import pandas as pd

        for path in sorted(quarantine_dir.glob("*.parquet")):
            try:
                reasons = pd.read_parquet(path, columns=["reason"])["reason"]
            except (OSError, ValueError, KeyError):
                quarantine["unreadable_file"] = quarantine.get("unreadable_file", 0) + 1
                continue
            for reason, n in reasons.value_counts().items():
                quarantine[str(reason)] = quarantine.get(str(reason), 0) + int(n)
    runs = (
        sorted((data_docs_dir / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        if (data_docs_dir / "runs").is_dir()
        else []
    )
    if not runs:
        return DataQuality(latest, quarantine)
    try:
        run = json.loads(runs[-1].read_text())
    except (OSError, ValueError):
        return DataQuality(
            latest, quarantine, runs[-1].parent.name, False, ("run.json unreadable",)
        )
    return DataQuality(
        latest,
        quarantine,
        str(run.get("run_name", runs[-1].parent.name)),
        bool(run.get("success")),
        tuple(run.get("failed", ())),
    )


# ------------------------------------------------------------------- one snapshot
def take_snapshot(
    db_url: str | None,
    *,
    since: datetime,
    scrape_targets: Mapping[str, str],
    data_docs_dir: Path,
    quarantine_dir: Path,
    timeout_s: float = 2.0,
    now: datetime | None = None,
) -> Snapshot:
    """One cycle's view of the platform; a failing source is recorded, never raised."""
    now = now or datetime.now(UTC)
    services = [scrape(name, url, timeout_s) for name, url in scrape_targets.items()]
    chains: ChainStats | None = None
    data: DataQuality | None = None
    db_error: str | None = None
    if db_url:
        try:
            with connect(db_url, connect_timeout_s=timeout_s) as conn:
                chains = chain_stats(conn, since, now)
                data = data_quality(conn, data_docs_dir, quarantine_dir)
            services.append(ServiceHealth("database", True, "ok"))
        except (ChaintradeError, psycopg.Error) as exc:
            db_error = str(exc).splitlines()[0]
            services.append(ServiceHealth("database", False, db_error))
    if data is None:
        data = data_quality(None, data_docs_dir, quarantine_dir)
    return Snapshot(now, chains, tuple(services), data, db_error)
