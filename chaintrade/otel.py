"""Export recorded chains as OpenTelemetry spans (OTLP/HTTP, JSON encoding).

For users who already run a tracing backend (Jaeger, Tempo, an OpenTelemetry
Collector): each chain becomes one trace (trace id = the chain id's 128 bits) with a
root span ``chain``; each step is a span of its service (``service.name`` resource),
nested steps (the serving event inside the agent's prediction step) under their caller;
each dependency call is a CLIENT child span. Dependency calls carry only a duration, so
they are laid end to end from the step's start (attribute
``chaintrade.timing = "approximate"``).

No OpenTelemetry package is needed: the OTLP/JSON body is built here and POSTed with
httpx to ``<endpoint>/v1/traces`` (the collector's default is ``http://localhost:4318``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from chaintrade.chain_query import analyze_steps

SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_OK = 1
STATUS_ERROR = 2

_ROWS_SQL = (
    'SELECT event_id, chain_id, request_id, service_name, event_type, "timestamp", duration_ms, '
    "endpoint, user_id, metadata, error_context, dependencies, performance_metrics "
    'FROM chain_history WHERE chain_id = ANY(%s) ORDER BY chain_id, "timestamp"'
)


def _span_id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def _nanos(ts: datetime) -> str:
    return str(int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1_000)


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def _attrs(prefix: str, values: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for k, v in (values or {}).items():
        if v is None:
            continue
        if isinstance(v, Mapping | list | tuple):
            v = json.dumps(v, default=str)
        out.append(_attr(f"{prefix}{k}", v))
    return out


def chain_spans(chain_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The spans of one chain, grouped by service name (OTLP/JSON span objects)."""
    trace_id = chain_id.hex
    analysis = analyze_steps(chain_id, rows)
    by_service: dict[str, list[Any]] = {}
    if not rows:
        return by_service
    ordered = sorted(rows, key=lambda r: (r["timestamp"], -(r.get("duration_ms") or 0.0)))
    root_id = _span_id(chain_id, "root")
    start = analysis.started_at
    assert start is not None
    end = start + timedelta(milliseconds=analysis.total_duration_ms)
    by_service.setdefault("chain", []).append(
        {
            "traceId": trace_id,
            "spanId": root_id,
            "name": "chain",
            "kind": SPAN_KIND_INTERNAL,
            "startTimeUnixNano": _nanos(start),
            "endTimeUnixNano": _nanos(end),
            "attributes": [
                _attr("chaintrade.chain_id", str(chain_id)),
                _attr("chaintrade.critical_path", " > ".join(analysis.critical_path)),
            ],
            "status": {"code": STATUS_ERROR if analysis.errors else STATUS_OK},
        }
    )
    span_of: dict[str, str] = {}
    open_spans: list[tuple[datetime, datetime, str]] = []  # (start, end, span id)
    for r in ordered:
        ts: datetime = r["timestamp"]
        dur = float(r.get("duration_ms") or 0.0)
        t_end = ts + timedelta(milliseconds=dur)
        parent = root_id
        for s0, s1, sid in open_spans:  # innermost enclosing step
            if s0 <= ts < s1:
                parent = sid
        sid = _span_id(r["event_id"])
        span_of[str(r["event_id"])] = sid
        open_spans.append((ts, t_end, sid))
        is_error = r.get("event_type") == "error"
        err = r.get("error_context") or {}
        span: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": sid,
            "parentSpanId": parent,
            "name": r.get("endpoint") or r["service_name"],
            "kind": SPAN_KIND_SERVER if parent != root_id else SPAN_KIND_INTERNAL,
            "startTimeUnixNano": _nanos(ts),
            "endTimeUnixNano": _nanos(t_end),
            "attributes": [
                _attr("chaintrade.event_id", str(r["event_id"])),
                _attr("chaintrade.request_id", str(r.get("request_id"))),
                _attr("chaintrade.event_type", r.get("event_type")),
                *([_attr("enduser.id", r["user_id"])] if r.get("user_id") else []),
                *_attrs("chaintrade.metadata.", r.get("metadata")),
                *_attrs("chaintrade.metric.", r.get("performance_metrics")),
            ],
            "status": (
                {"code": STATUS_ERROR, "message": str(err.get("message", ""))}
                if is_error
                else {"code": STATUS_OK}
            ),
        }
        by_service.setdefault(r["service_name"], []).append(span)
        cursor = ts
        for n, d in enumerate(r.get("dependencies") or []):
            d_end = cursor + timedelta(milliseconds=float(d.get("duration_ms") or 0.0))
            failed = d.get("status") != "ok"
            by_service[r["service_name"]].append(
                {
                    "traceId": trace_id,
                    "spanId": _span_id(r["event_id"], "dep", n),
                    "parentSpanId": sid,
                    "name": f"{d.get('target')} {d.get('endpoint')}",
                    "kind": SPAN_KIND_CLIENT,
                    "startTimeUnixNano": _nanos(cursor),
                    "endTimeUnixNano": _nanos(d_end),
                    "attributes": [
                        _attr("peer.service", d.get("target")),
                        _attr("chaintrade.attempt", int(d.get("attempt") or 1)),
                        _attr("chaintrade.timing", "approximate"),
                    ],
                    "status": (
                        {"code": STATUS_ERROR, "message": str(d.get("error") or d.get("status"))}
                        if failed
                        else {"code": STATUS_OK}
                    ),
                }
            )
            cursor = d_end
    return by_service


def otlp_body(chains: Mapping[uuid.UUID, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """An OTLP ``ExportTraceServiceRequest`` (JSON form) for chains' ``chain_history`` rows."""
    per_service: dict[str, list[Any]] = {}
    for chain_id, rows in chains.items():
        for service, spans in chain_spans(chain_id, rows).items():
            per_service.setdefault(service, []).extend(spans)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service)]},
                "scopeSpans": [{"scope": {"name": "chaintrade.chain"}, "spans": spans}],
            }
            for service, spans in sorted(per_service.items())
        ]
    }


def load_chains(
    conn: psycopg.Connection[Any], chain_ids: Iterable[uuid.UUID | str]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """``chain_history`` rows of the given chains, by chain."""
    ids = [c if isinstance(c, uuid.UUID) else uuid.UUID(str(c)) for c in chain_ids]
    out: dict[uuid.UUID, list[dict[str, Any]]] = {c: [] for c in ids}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_ROWS_SQL, (ids,)):
            out[row["chain_id"]].append(row)
    return out


def export_chains(
    conn: psycopg.Connection[Any],
    chain_ids: Iterable[uuid.UUID | str],
    endpoint: str = "http://localhost:4318",
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    client: httpx.Client | None = None,
) -> int:
    """POST the chains to an OTLP/HTTP endpoint; returns the number of spans sent."""
    body = otlp_body(load_chains(conn, chain_ids))
    spans = sum(len(ss["spans"]) for rs in body["resourceSpans"] for ss in rs["scopeSpans"])
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    own = client is None
    http = client or httpx.Client(timeout=timeout_s)
    try:
        response = http.post(url, json=body, headers=dict(headers or {}))
        response.raise_for_status()
    finally:
        if own:
            http.close()
    return spans


__all__ = ["chain_spans", "export_chains", "load_chains", "otlp_body"]
