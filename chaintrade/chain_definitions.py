"""Chain definitions: what a kind of chain should look like, and how healthy one was.

A :class:`ChainDefinition` names a kind of chain (e.g. ``bar``: one closed bar through
the live agent) with its expected services, topology, duration budget, critical path and
health rules. Definitions live in ``chain_definitions`` (``chain_id`` is ``uuid5`` of the
name, so registering is an idempotent upsert). :func:`assess_health` compares an actual
chain (a :class:`~chaintrade.chain_query.ChainAnalysis`) with its definition.

Health score: 100, minus per rule (defaults in :data:`DEFAULT_RULES`, overridable per
definition in ``health_check_rules``): each step that ended in error, each expected
service missing, each unexpected service, the chain over ``max_duration_ms``, each
service over its own budget (``service_budgets_ms``), each failed dependency call and
each retry; floored at 0. Every deduction is listed as a :class:`HealthIssue` with a
reason code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

if TYPE_CHECKING:
    from chaintrade.chain_query import ChainAnalysis

NAMESPACE = uuid.UUID("6f1c1f5e-3c2b-4d44-9a51-0c4a1f6f2b7d")

DEFAULT_RULES: dict[str, float] = {
    "error_penalty": 25.0,
    "missing_service_penalty": 15.0,
    "unexpected_service_penalty": 5.0,
    "slow_chain_penalty": 20.0,
    "slow_service_penalty": 10.0,
    "dependency_failure_penalty": 5.0,
    "retry_penalty": 2.0,
}


@dataclass(frozen=True, slots=True)
class ChainDefinition:
    """The expected shape of one kind of chain."""

    name: str
    expected_services: tuple[str, ...]
    topology: Mapping[str, Any] = field(default_factory=dict)
    max_duration_ms: int | None = None
    critical_path: tuple[str, ...] = ()
    health_rules: Mapping[str, Any] = field(default_factory=dict)

    @property
    def chain_id(self) -> uuid.UUID:
        """The definition's stable id (``uuid5`` of its name)."""
        return uuid.uuid5(NAMESPACE, self.name)

    def rule(self, name: str) -> float:
        value = self.health_rules.get(name, DEFAULT_RULES[name])
        return float(value)


# The live agent's chain: one closed bar (live_agent/agent.py), serving nested in prediction.
BAR_CHAIN = ChainDefinition(
    name="bar",
    expected_services=(
        "collector",
        "validator",
        "prediction",
        "serving",
        "decision",
        "risk",
        "execution",
    ),
    topology={
        "services": [
            "collector",
            "decision",
            "execution",
            "prediction",
            "risk",
            "serving",
            "validator",
        ],
        "edges": [
            ["collector", "validator"],
            ["validator", "prediction"],
            ["prediction", "serving"],
            ["prediction", "decision"],
            ["decision", "risk"],
            ["risk", "execution"],
        ],
    },
    max_duration_ms=1_000,
    critical_path=(
        "collector",
        "validator",
        "prediction",
        "serving",
        "decision",
        "risk",
        "execution",
    ),
    health_rules={"service_budgets_ms": {"prediction": 250.0, "execution": 500.0}},
)


# The agent's start-up reconciliation with the terminal (live_agent/agent.py).
RECONCILIATION_CHAIN = ChainDefinition(
    name="reconciliation",
    expected_services=("reconciliation",),
    topology={"services": ["reconciliation"], "edges": []},
    max_duration_ms=5_000,
    critical_path=("reconciliation",),
)

BUILTIN_DEFINITIONS: tuple[ChainDefinition, ...] = (BAR_CHAIN, RECONCILIATION_CHAIN)


@dataclass(frozen=True, slots=True)
class HealthIssue:
    """One deduction from the health score."""

    reason: str  # step_error | missing_service | unexpected_service | slow_chain | ...
    subject: str
    penalty: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """An actual chain against its definition."""

    chain_id: uuid.UUID
    definition: str | None
    score: float
    healthy: bool
    issues: tuple[HealthIssue, ...]


def assess_health(
    analysis: ChainAnalysis, definition: ChainDefinition | None = None
) -> HealthReport:
    """Score ``analysis`` (0-100) against ``definition`` (errors and calls only if None)."""
    d = definition or ChainDefinition(name="", expected_services=())
    issues: list[HealthIssue] = []
    for step in analysis.steps:
        if step.status == "error":
            issues.append(
                HealthIssue("step_error", step.service_name, d.rule("error_penalty"), step.error)
            )
        for dep in step.dependencies:
            if dep.get("status") != "ok":
                issues.append(
                    HealthIssue(
                        "dependency_failure",
                        f"{step.service_name}->{dep.get('target')}",
                        d.rule("dependency_failure_penalty"),
                        str(dep.get("error") or dep.get("status")),
                    )
                )
            if int(dep.get("attempt") or 1) > 1:
                issues.append(
                    HealthIssue(
                        "retry",
                        f"{step.service_name}->{dep.get('target')}",
                        d.rule("retry_penalty"),
                        f"attempt {dep.get('attempt')}",
                    )
                )
    if definition is not None:
        seen = set(analysis.services)
        for name in definition.expected_services:
            if name not in seen:
                issues.append(
                    HealthIssue("missing_service", name, d.rule("missing_service_penalty"))
                )
        for name in analysis.services:
            if name not in definition.expected_services:
                issues.append(
                    HealthIssue("unexpected_service", name, d.rule("unexpected_service_penalty"))
                )
        limit = definition.max_duration_ms
        if limit is not None and analysis.total_duration_ms > limit:
            issues.append(
                HealthIssue(
                    "slow_chain",
                    definition.name,
                    d.rule("slow_chain_penalty"),
                    f"{analysis.total_duration_ms:.1f} ms > {limit} ms",
                )
            )
        budgets = definition.health_rules.get("service_budgets_ms") or {}
        for step in analysis.steps:
            budget = budgets.get(step.service_name)
            if budget is not None and step.duration_ms > float(budget):
                issues.append(
                    HealthIssue(
                        "slow_service",
                        step.service_name,
                        d.rule("slow_service_penalty"),
                        f"{step.duration_ms:.1f} ms > {float(budget):g} ms",
                    )
                )
    score = max(0.0, 100.0 - sum(i.penalty for i in issues))
    threshold = float(d.health_rules.get("healthy_min_score", 80.0))
    return HealthReport(
        analysis.chain_id,
        definition.name if definition else None,
        score,
        score >= threshold,
        tuple(issues),
    )


def best_definition(
    services: Sequence[str], definitions: Sequence[ChainDefinition]
) -> ChainDefinition | None:
    """The definition whose expected services overlap ``services`` most (Jaccard)."""
    have = set(services)
    best: tuple[float, ChainDefinition] | None = None
    for d in definitions:
        want = set(d.expected_services)
        union = have | want
        score = len(have & want) / len(union) if union else 0.0
        if score > 0 and (best is None or score > best[0]):
            best = (score, d)
    return best[1] if best else None


# --------------------------------------------------------------------------- registry


def register_definition(conn: psycopg.Connection[Any], definition: ChainDefinition) -> uuid.UUID:
    """Insert or update ``definition`` (keyed by its name); returns its ``chain_id``."""
    with conn.transaction():
        conn.execute(
            "UPDATE chain_definitions SET is_active = FALSE, updated_at = now() "
            "WHERE chain_name = %s AND is_active AND chain_id <> %s",
            (definition.name, definition.chain_id),
        )
        conn.execute(
            """
            INSERT INTO chain_definitions (chain_id, chain_name, service_topology,
                expected_services, max_duration_ms, critical_path, health_check_rules)
            VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s::jsonb)
            ON CONFLICT (chain_id) DO UPDATE SET
                chain_name = EXCLUDED.chain_name,
                service_topology = EXCLUDED.service_topology,
                expected_services = EXCLUDED.expected_services,
                max_duration_ms = EXCLUDED.max_duration_ms,
                critical_path = EXCLUDED.critical_path,
                health_check_rules = EXCLUDED.health_check_rules,
                is_active = TRUE,
                updated_at = now()
            """,
            (
                definition.chain_id,
                definition.name,
                json.dumps(dict(definition.topology)),
                list(definition.expected_services),
                definition.max_duration_ms,
                list(definition.critical_path),
                json.dumps(dict(definition.health_rules)),
            ),
        )
    return definition.chain_id


def _from_row(row: Mapping[str, Any]) -> ChainDefinition:
    return ChainDefinition(
        name=row["chain_name"],
        expected_services=tuple(row["expected_services"]),
        topology=row["service_topology"] or {},
        max_duration_ms=row["max_duration_ms"],
        critical_path=tuple(row["critical_path"] or ()),
        health_rules=row["health_check_rules"] or {},
    )


_SELECT = (
    "SELECT chain_name, service_topology, expected_services, max_duration_ms, critical_path, "
    "health_check_rules FROM chain_definitions WHERE is_active"
)


def get_definition(conn: psycopg.Connection[Any], name: str) -> ChainDefinition | None:
    """The active definition named ``name``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " AND chain_name = %s", (name,)).fetchone()
    return _from_row(row) if row else None


def list_definitions(conn: psycopg.Connection[Any]) -> list[ChainDefinition]:
    """Every active definition, by name."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SELECT + " ORDER BY chain_name").fetchall()
    return [_from_row(r) for r in rows]


def deactivate_definition(conn: psycopg.Connection[Any], name: str) -> bool:
    """Mark the definition inactive (kept for history); True if one was active."""
    cur = conn.execute(
        "UPDATE chain_definitions SET is_active = FALSE, updated_at = now() "
        "WHERE chain_name = %s AND is_active",
        (name,),
    )
    return cur.rowcount > 0


def register_builtin_definitions(url: str) -> list[uuid.UUID]:
    """Upsert the platform's own chain definitions (idempotent; run after migrations)."""
    from chaintrade.db import connect

    with connect(url) as conn:
        return [register_definition(conn, d) for d in BUILTIN_DEFINITIONS]


__all__ = [
    "BAR_CHAIN",
    "BUILTIN_DEFINITIONS",
    "DEFAULT_RULES",
    "RECONCILIATION_CHAIN",
    "ChainDefinition",
    "HealthIssue",
    "HealthReport",
    "assess_health",
    "best_definition",
    "deactivate_definition",
    "get_definition",
    "list_definitions",
    "register_builtin_definitions",
    "register_definition",
]
