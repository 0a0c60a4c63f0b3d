"""The HTML run report: one self-contained file (inline CSS and SVG) after the demo and after
each paper or live session: trades, PnL, chains, latencies, data quality, with plots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaintrade.monitoring.render import render_page
from chaintrade.monitoring.view import champion_models, load_view
from chaintrade.settings import Settings


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            out += _flatten(value, name + ".")
        elif isinstance(value, list | tuple | Mapping):
            out.append((name, json.dumps(value, default=str)[:300]))
        else:
            out.append((name, value))
    return out


def write_run_report(
    db_url: str,
    out_path: Path,
    *,
    since: datetime | None = None,
    title: str = "Chaintrade run report",
    summary: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> Path:
    """Render the report of everything recorded since ``since`` (default: 1 day) to
    ``out_path``; ``summary`` (e.g. the demo's summary.json) is shown on top."""
    view = load_view(
        db_url,
        since=since or datetime.now(UTC) - timedelta(days=1),
        data_docs_dir=settings.data_docs_dir if settings else None,
        quarantine_dir=settings.lake_dir / "quarantine" / "bars" if settings else None,
        models=champion_models(settings) if settings else (),
    )
    html = render_page(view, title=title, summary=_flatten(summary) if summary else None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path
