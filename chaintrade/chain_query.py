"""The chain query engine: where a chain's time went, what broke, what a change would cost.

- :func:`analyze_chain`: total duration, services, dependency graph, critical path,
  bottlenecks and a health score for one chain (:func:`analyze_steps` is the same on
  rows already loaded).
- :func:`similar_chains`: chains whose topology (services and dependency targets, as
  JSONB) contains, or equals, a given chain's, by JSONB containment.
- :func:`predict_service_impact`: from the recorded history, how many chains a service
  touches, its latency and errors, what follows it, and the chain latency if the service
  got ``added_latency_ms`` slower.

Model: a step whose start lies inside another step's interval is *nested* in the
innermost such step (the serving event inside the agent's prediction step); the others
are *top-level* and run in sequence. The critical path is the top-level sequence, each
step followed by the critical path of its longest nested child; a step's *self time* is
its duration minus that of its nested children; bottlenecks are the critical-path steps
whose self time is at least ``bottleneck_share`` of the chain's duration.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from chaintrade.chain_definitions import (
    ChainDefinition,
    HealthReport,
    assess_health,
    best_definition,
    list_definitions,
)


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One recorded step of a chain, with its place in the nesting."""

    service_name: str
    started_at: datetime
    duration_ms: float
    status: str  # "ok" | "error"
    self_ms: float
    parent: str | None
    error: str = ""
    dependencies: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """A critical-path step that takes a large share of the chain."""

    service_name: str
    self_ms: float
    share: float


@dataclass(frozen=True, slots=True)
class ChainAnalysis:
    """Everything :func:`analyze_chain` says about one chain."""

    chain_id: uuid.UUID
    started_at: datetime | None
    total_duration_ms: float
    services: tuple[str, ...]
    steps: tuple[StepInfo, ...]
    edges: tuple[tuple[str, str, str], ...]  # (from, to, kind: next | nested | calls)
    critical_path: tuple[str, ...]
    bottlenecks: tuple[Bottleneck, ...]
    errors: tuple[str, ...]
    health: HealthReport | None = None

    @property
    def health_score(self) -> float | None:
        return None if self.health is None else self.health.score

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for APIs and dashboards)."""
        return {
            "chain_id": str(self.chain_id),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "total_duration_ms": self.total_duration_ms,
            "services": list(self.services),
            "dependency_graph": [{"from": a, "to": b, "kind": k} for a, b, k in self.edges],
            "critical_path": list(self.critical_path),
            "bottlenecks": [
                {"service": b.service_name, "self_ms": b.self_ms, "share": b.share}
                for b in self.bottlenecks
            ],
            "errors": list(self.errors),
            "health_score": self.health_score,
            "health_issues": [
                {"reason": i.reason, "subject": i.subject, "penalty": i.penalty, "detail": i.detail}
                for i in (self.health.issues if self.health else ())
            ],
        }


_STEPS_SQL = (
    'SELECT service_name, event_type, "timestamp", duration_ms, error_context, dependencies '
    'FROM chain_history WHERE chain_id = %s ORDER BY "timestamp", service_name'
)


def analyze_steps(
    chain_id: uuid.UUID,
    rows: Sequence[Mapping[str, Any]],
    definition: ChainDefinition | None = None,
    *,
    bottleneck_share: float = 0.2,
) -> ChainAnalysis:
    """Analyze ``chain_history`` rows of one chain (keys as the table's columns)."""
    spans = sorted(
        (
            (
                r["timestamp"],
                float(r.get("duration_ms") or 0.0),
                r["service_name"],
                r,
            )
            for r in rows
        ),
        key=lambda s: (s[0], -s[1]),
    )
    n = len(spans)
    if n == 0:
        return ChainAnalysis(chain_id, None, 0.0, (), (), (), (), (), ())
    ends = [s[0] + timedelta(milliseconds=s[1]) for s in spans]
    parents: list[int | None] = []
    for i, (start, _, _, _) in enumerate(spans):
        parent = None
        for j in range(i):  # innermost enclosing step: the latest-starting one that covers it
            if spans[j][0] <= start < ends[j]:
                parent = j
        parents.append(parent)
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        if p is not None:
            children.setdefault(p, []).append(i)
    self_ms = [
        max(0.0, spans[i][1] - sum(spans[c][1] for c in children.get(i, []))) for i in range(n)
    ]
    started = spans[0][0]
    total = (max(ends) - started).total_seconds() * 1000.0

    edges: list[tuple[str, str, str]] = []
    top = [i for i in range(n) if parents[i] is None]
    for a, b in itertools.pairwise(top):
        edges.append((spans[a][2], spans[b][2], "next"))
    for i, p in enumerate(parents):
        if p is not None:
            edges.append((spans[p][2], spans[i][2], "nested"))
    calls: set[tuple[str, str, str]] = set()
    steps: list[StepInfo] = []
    errors: list[str] = []
    for i, (start, duration, name, row) in enumerate(spans):
        deps = _json_list(row.get("dependencies"))
        for d in deps:
            calls.add((name, str(d.get("target")), "calls"))
        status = "error" if row.get("event_type") == "error" else "ok"
        err_ctx = _json_obj(row.get("error_context"))
        error = ""
        if status == "error":
            error = f"{err_ctx.get('type', '')}: {err_ctx.get('message', '')}".strip(": ")
            errors.append(name)
        steps.append(
            StepInfo(
                name,
                start,
                duration,
                status,
                self_ms[i],
                spans[parents[i]][2] if parents[i] is not None else None,  # type: ignore[index]
                error,
                tuple(deps),
            )
        )
    edges.extend(sorted(calls))

    def path_from(i: int) -> list[int]:
        kids = children.get(i, [])
        if not kids:
            return [i]
        longest = max(kids, key=lambda c: spans[c][1])
        return [i, *path_from(longest)]

    critical: list[int] = []
    for i in top:
        critical.extend(path_from(i))
    ranked = sorted(critical, key=lambda i: self_ms[i], reverse=True)
    bottlenecks = [
        Bottleneck(spans[i][2], self_ms[i], self_ms[i] / total if total > 0 else 0.0)
        for i in ranked
        if total > 0 and self_ms[i] >= bottleneck_share * total
    ]
    if not bottlenecks and ranked and total > 0:
        i = ranked[0]
        bottlenecks = [Bottleneck(spans[i][2], self_ms[i], self_ms[i] / total)]
    services = tuple(dict.fromkeys(s[2] for s in spans))
    analysis = ChainAnalysis(
        chain_id=chain_id,
        started_at=started,
        total_duration_ms=total,
        services=services,
        steps=tuple(steps),
        edges=tuple(edges),
        critical_path=tuple(spans[i][2] for i in critical),
        bottlenecks=tuple(bottlenecks),
        errors=tuple(errors),
    )
    health = assess_health(analysis, definition)
    return replace(analysis, health=health)


def _json_list(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        value = json.loads(value)
    return [v for v in value or [] if isinstance(v, Mapping)]


def _json_obj(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, Mapping) else {}


def analyze_chain(
    conn: psycopg.Connection[Any],
    chain_id: uuid.UUID | str,
    definition: ChainDefinition | str | None = None,
    *,
    bottleneck_share: float = 0.2,
) -> ChainAnalysis:
    """Analyze one recorded chain.

    ``definition``: a definition, the name of a registered one, or None to pick the
    registered definition that best matches the chain's services (none registered: the
    health score counts errors and dependency failures only).
    """
    cid = chain_id if isinstance(chain_id, uuid.UUID) else uuid.UUID(str(chain_id))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_STEPS_SQL, (cid,)).fetchall()
    definitions = list_definitions(conn) if not isinstance(definition, ChainDefinition) else []
    chosen: ChainDefinition | None
    if isinstance(definition, ChainDefinition):
        chosen = definition
    elif isinstance(definition, str):
        chosen = next((d for d in definitions if d.name == definition), None)
        if chosen is None:
            raise KeyError(f"no active chain definition named {definition!r}")
    else:
        chosen = best_definition([r["service_name"] for r in rows], definitions)
    return analyze_steps(cid, rows, chosen, bottleneck_share=bottleneck_share)


# --------------------------------------------------------------------------- similar


_TOPOLOGY_SQL = """
SELECT jsonb_build_object(
    'services', (SELECT coalesce(jsonb_agg(DISTINCT service_name), '[]'::jsonb)
                 FROM chain_history WHERE chain_id = %(cid)s),
    'targets', (SELECT coalesce(jsonb_agg(DISTINCT d ->> 'target'), '[]'::jsonb)
                FROM chain_history h, jsonb_array_elements(h.dependencies) d
                WHERE h.chain_id = %(cid)s)),
    (SELECT min("timestamp") FROM chain_history WHERE chain_id = %(cid)s)
"""

_SIMILAR_SQL = """
WITH recent AS (
    SELECT chain_id, min("timestamp") AS started_at,
           jsonb_agg(DISTINCT service_name) AS services,
           coalesce(jsonb_agg(DISTINCT d ->> 'target')
                    FILTER (WHERE d IS NOT NULL), '[]'::jsonb) AS targets
    FROM chain_history
    LEFT JOIN LATERAL jsonb_array_elements(dependencies) d ON TRUE
    WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s AND chain_id <> %(cid)s
    GROUP BY chain_id
), topo AS (
    SELECT chain_id, started_at,
           jsonb_build_object('services', services, 'targets', targets) AS topology
    FROM recent
)
SELECT chain_id, started_at, topology FROM topo
WHERE topology @> %(t)s::jsonb {exact}
ORDER BY started_at DESC
LIMIT %(limit)s
"""


def chain_topology(conn: psycopg.Connection[Any], chain_id: uuid.UUID | str) -> dict[str, Any]:
    """``{"services": [...], "targets": [...]}`` of one chain (sorted, distinct)."""
    cid = chain_id if isinstance(chain_id, uuid.UUID) else uuid.UUID(str(chain_id))
    row = conn.execute(_TOPOLOGY_SQL, {"cid": cid}).fetchone()
    topo = dict(row[0]) if row else {"services": [], "targets": []}
    return {k: sorted(v) for k, v in topo.items()}


def similar_chains(
    conn: psycopg.Connection[Any],
    chain_id: uuid.UUID | str,
    *,
    exact: bool = False,
    window: timedelta = timedelta(days=1),
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Chains within ``window`` of this one whose topology contains its topology.

    ``exact``: the same topology (containment both ways). Newest first.
    """
    cid = chain_id if isinstance(chain_id, uuid.UUID) else uuid.UUID(str(chain_id))
    row = conn.execute(_TOPOLOGY_SQL, {"cid": cid}).fetchone()
    if row is None or row[1] is None:
        return []
    topology, started = row
    sql = _SIMILAR_SQL.format(exact="AND topology <@ %(t)s::jsonb" if exact else "")
    params = {
        "cid": cid,
        "t": json.dumps(topology),
        "since": started - window,
        "until": started + window,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


# ---------------------------------------------------------------------------- impact


@dataclass(frozen=True, slots=True)
class ServiceImpact:
    """What the history says about one service, and the cost of making it slower."""

    service_name: str
    chains: int
    chains_with_service: int
    share_of_chains: float
    service_p50_ms: float | None
    service_p95_ms: float | None
    service_error_rate: float
    share_of_chain_time: float
    chain_p50_ms: float | None
    chain_p95_ms: float | None
    predicted_chain_p50_ms: float | None
    predicted_chain_p95_ms: float | None
    downstream: tuple[str, ...]
    failure_propagation: float  # P(a later step fails or is missing | this service failed)
    details: dict[str, Any] = field(default_factory=dict)


_IMPACT_SQL = """
SELECT chain_id, service_name, event_type, "timestamp", duration_ms
FROM chain_history
WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s
  AND chain_id IN (SELECT DISTINCT chain_id FROM chain_history
                   WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s
                   ORDER BY chain_id LIMIT %(max_chains)s)
ORDER BY chain_id, "timestamp"
"""


def predict_service_impact(
    conn: psycopg.Connection[Any],
    service_name: str,
    *,
    added_latency_ms: float = 0.0,
    since: datetime,
    until: datetime,
    max_chains: int = 50_000,
) -> ServiceImpact:
    """Service impact from the chains recorded in ``[since, until)``.

    The predicted chain latency adds ``added_latency_ms`` to every chain that contains
    the service (each step of a chain is on its critical path: steps run in sequence,
    nested calls inside their caller), then takes the percentiles again.
    """
    rows = conn.execute(
        _IMPACT_SQL, {"since": since, "until": until, "max_chains": max_chains}
    ).fetchall()
    by_chain: dict[Any, list[tuple[str, str, datetime, float]]] = {}
    for cid, name, etype, ts, dur in rows:
        by_chain.setdefault(cid, []).append((name, etype, ts, float(dur or 0.0)))
    totals: list[float] = []
    predicted: list[float] = []
    durations: list[float] = []
    errors = failed_then_broken = with_service = 0
    time_in_service = time_total = 0.0
    after: Counter[str] = Counter()
    expected_after = _usually_after(by_chain, service_name)
    for steps in by_chain.values():
        start = min(s[2] for s in steps)
        end = max(s[2] + timedelta(milliseconds=s[3]) for s in steps)
        total = (end - start).total_seconds() * 1000.0
        totals.append(total)
        mine = [s for s in steps if s[0] == service_name]
        if not mine:
            predicted.append(total)
            continue
        with_service += 1
        predicted.append(total + added_latency_ms)
        durations.extend(s[3] for s in mine)
        time_in_service += sum(s[3] for s in mine)
        time_total += total
        first = mine[0][2]
        later = [s for s in steps if s[2] > first and s[0] != service_name]
        after.update(dict.fromkeys((s[0] for s in later), 1))
        if any(s[1] == "error" for s in mine):
            errors += 1
            if any(s[1] == "error" for s in later) or expected_after - {s[0] for s in later}:
                failed_then_broken += 1
    n = len(by_chain)
    downstream = tuple(name for name, c in after.most_common() if c >= max(1, with_service // 2))
    return ServiceImpact(
        service_name=service_name,
        chains=n,
        chains_with_service=with_service,
        share_of_chains=with_service / n if n else 0.0,
        service_p50_ms=_pct(durations, 50),
        service_p95_ms=_pct(durations, 95),
        service_error_rate=errors / with_service if with_service else 0.0,
        share_of_chain_time=time_in_service / time_total if time_total else 0.0,
        chain_p50_ms=_pct(totals, 50),
        chain_p95_ms=_pct(totals, 95),
        predicted_chain_p50_ms=_pct(predicted, 50),
        predicted_chain_p95_ms=_pct(predicted, 95),
        downstream=downstream,
        failure_propagation=failed_then_broken / errors if errors else 0.0,
        details={"added_latency_ms": added_latency_ms, "since": since, "until": until},
    )


def _usually_after(
    by_chain: Mapping[Any, list[tuple[str, str, datetime, float]]], service_name: str
) -> set[str]:
    """Services that follow ``service_name`` in most of the chains where it succeeded."""
    counts: Counter[str] = Counter()
    ok = 0
    for steps in by_chain.values():
        mine = [s for s in steps if s[0] == service_name]
        if not mine or any(s[1] == "error" for s in mine):
            continue
        ok += 1
        counts.update({s[0] for s in steps if s[2] > mine[0][2] and s[0] != service_name})
    return {name for name, c in counts.items() if ok and c * 2 >= ok}


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


__all__ = [
    "Bottleneck",
    "ChainAnalysis",
    "ServiceImpact",
    "StepInfo",
    "analyze_chain",
    "analyze_steps",
    "chain_topology",
    "predict_service_impact",
    "similar_chains",
]
