"""Every Grafana dashboard's SQL runs against the migrated database and every PromQL metric
is one the code defines; the provisioned datasources are the ones the panels name."""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from chaintrade.chain import ChainEvent, Dependency
from chaintrade.chain_definitions import BAR_CHAIN, register_definition
from chaintrade.chain_metrics import aggregate_chain_metrics
from chaintrade.chain_store import write_events
from chaintrade.db import connect
from chaintrade.settings import PROJECT_ROOT

GRAFANA = PROJECT_ROOT / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OURS = {"chain_tracing.json", "platform.json"}  # seeded below: every panel must show rows
SERVICES = ("collector", "validator", "prediction", "serving", "decision", "risk", "execution")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # rows keep their panels inside


def targets(kind: str) -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, query) for every target of datasource ``kind``."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("uid") == kind:
                    query = target.get("rawSql") if kind == "timescaledb" else target.get("expr")
                    assert query, f"{path.name}: {panel['title']!r} has an empty query"
                    yield path.name, panel["title"], query
        for var in dashboard.get("templating", {}).get("list", []):
            if (var.get("datasource") or {}).get("uid") == kind and var.get("type") == "query":
                yield path.name, f"variable {var['name']}", str(var["query"])


def test_dashboards_use_only_the_provisioned_datasources() -> None:
    assert {"chain_tracing.json", "platform.json"} <= {p.name for p in DASHBOARDS}
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "chaintrade.yaml").read_text()
    )
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        for panel in panels(dashboard):
            for ds in [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]:
                if ds:
                    assert uids.get(ds["uid"]) == ds["type"], f"{path.name}: {panel['title']}"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "chaintrade.yaml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"


# ----------------------------------------------------------------------------- SQL

FROM = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
TO = FROM + timedelta(hours=2)
_TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^)]+?)\s*\)")
_TIME_GROUP = re.compile(r"\$__timeGroupAlias\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)")


def expand(sql: str) -> str:
    """Grafana's PostgreSQL macros and the dashboard variables, as Grafana would expand
    them for the last two hours (a 1 minute interval, every service selected)."""
    sql = _TIME_GROUP.sub(
        lambda m: (
            f"date_bin(INTERVAL '{m.group(2).strip(chr(39)).replace('$__interval', '1m')}', "
            f"{m.group(1)}, TIMESTAMPTZ '2000-01-01') AS \"time\""
        ),
        sql,
    )
    sql = _TIME_FILTER.sub(
        lambda m: f"{m.group(1)} BETWEEN '{FROM.isoformat()}' AND '{TO.isoformat()}'", sql
    )
    services = ", ".join(f"'{s}'" for s in SERVICES)
    sql = sql.replace("${service}", services).replace("$service", services)
    assert "$" not in sql, f"a macro or variable the test does not know: {sql}"
    return sql


@pytest.fixture
def seeded(clean_db: str) -> str:
    """Two bar chains (one with an error) inside the dashboards' time range, aggregated."""
    start = FROM + timedelta(minutes=30)
    events = []
    for n, fail in enumerate((True, False)):
        cid = uuid.uuid4()
        t = start + timedelta(seconds=n)

        def ev(
            service: str, at: float, dur: float, cid: uuid.UUID = cid, t: datetime = t, **kw: Any
        ) -> ChainEvent:
            return ChainEvent(cid, cid, service, kw.pop("event_type", "complete"),
                              t + timedelta(milliseconds=at), dur, **kw)  # fmt: skip

        events += [
            ev("collector", 0, 2),
            ev("validator", 2, 1),
            ev("prediction", 3, 20, dependencies=(Dependency("serving", "/predict", 1, 18, "ok"),)),
            ev("serving", 4, 15),
            ev("decision", 23, 1),
            ev("risk", 24, 2),
            ev("execution", 26, 4, event_type="error" if fail else "complete",
               error_context={"type": "OrderRejected", "message": "no money"} if fail else None),
        ]  # fmt: skip
    with connect(clean_db) as conn:
        write_events(conn, events)
        register_definition(conn, BAR_CHAIN)
        conn.commit()
        aggregate_chain_metrics(conn, FROM, TO, periods=("1m",))
    return clean_db


def test_every_dashboard_sql_runs_on_the_migrated_database(seeded: str) -> None:
    queries = list(targets("timescaledb"))
    assert any(name == "chain_tracing.json" for name, _, _ in queries)
    empty = []
    with connect(seeded, autocommit=True) as conn:
        for name, title, sql in queries:
            try:
                rows = conn.execute(expand(sql)).fetchall()
            except Exception as exc:  # name the panel, then fail
                raise AssertionError(f"{name}: {title!r}: {exc}") from exc
            if name in OURS and not rows:
                empty.append(f"{name}: {title}")
    assert not empty, f"panels without rows on seeded chains: {empty}"


# --------------------------------------------------------------------------- PromQL

_METRIC_CALLS = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "and", "or", "unless", "offset", "inf", "nan"}  # fmt: skip


def defined_metrics() -> set[str]:
    """Sample names of every prometheus_client metric constructed in the code (by AST)."""
    names: set[str] = set()
    for folder in ("chaintrade", "serving", "live_agent"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if kind in _METRIC_CALLS and isinstance(first, ast.Constant):
                    base = str(first.value).removesuffix("_total")
                    names.update(base + s for s in _SUFFIXES[kind])
    return names


def promql_metrics(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[m.end() :].lstrip().startswith("("):
            continue  # a function
        if m.group().lower() not in _PROMQL_WORDS:
            names.add(m.group())
    return names


def test_promql_reading_shows_what_the_parser_sees() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(a_seconds_bucket{stage="x"}[5m]))) / b'
    )
    assert promql_metrics(expr) == {"a_seconds_bucket", "b"}


def test_every_promql_metric_is_defined_in_the_code() -> None:
    defined = defined_metrics()
    assert "chaintrade_serving_stage_seconds_bucket" in defined and "agent_bars_total" in defined
    seen, unknown = set(), []
    for name, title, expr in targets("prometheus"):
        for metric in promql_metrics(expr):
            seen.add(metric)
            if metric not in defined:
                unknown.append(f"{name}: {title}: {metric}")
    assert not unknown, f"metrics no code defines: {unknown}"
    assert {"agent_orders_total", "chaintrade_serving_cache_total"} <= seen


def test_dashboards_are_valid_json_with_unique_panel_ids() -> None:
    for path in DASHBOARDS:
        ids = [p["id"] for p in panels(json.loads(path.read_text()))]
        assert len(ids) == len(set(ids)), path.name


def test_readme_names_every_dashboard() -> None:
    readme = (GRAFANA / "README.md").read_text()
    assert all(p.name in readme for p in DASHBOARDS)
