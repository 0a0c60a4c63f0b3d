"""One HTML page for the dashboard and the run report (Jinja2, inline CSS and SVG: nothing is
fetched from elsewhere, so a saved report is self-contained)."""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from chaintrade.monitoring import svg
from chaintrade.monitoring.view import PlatformView

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
{% if refresh_s %}<meta http-equiv="refresh" content="{{ refresh_s }}">{% endif %}
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#111}
header{background:#0f172a;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:20px;margin:0} .pill{padding:2px 10px;border-radius:10px;font-weight:600}
.ok{background:#16a34a;color:#fff} .bad{background:#dc2626;color:#fff} .warn{background:#f59e0b}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px;padding:14px}
section{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}
h2{font-size:15px;margin:4px 0 8px} table{border-collapse:collapse;width:100%;font-size:12px}
td,th{border-bottom:1px solid #e5e7eb;padding:3px 6px;text-align:left}
svg{max-width:100%;height:auto}
.critical{color:#b91c1c;font-weight:600} .warning{color:#b45309} .info{color:#1d4ed8}
.muted{color:#6b7280}
</style></head><body>
<header><h1>{{ title }}</h1>
<span id="trading-state" class="pill {{ 'ok' if view.trading_state == 'ACTIVE' else 'bad' }}">
{{ view.trading_state }}</span>
<span>realized PnL <b id="pnl">{{ '%+.2f'|format(view.realized_pnl) }}</b>
over {{ view.trades|length }} trades</span>
<span class="muted">as of {{ view.taken_at.strftime('%Y-%m-%d %H:%M:%S') }} UTC</span></header>
<main>
{% if summary %}<section><h2>Run summary</h2><table>
{% for k, v in summary %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</table></section>{% endif %}
<section id="alerts"><h2>Alerts ({{ view.alerts|length }})</h2>
{% if view.alerts %}<table><tr><th>time</th><th>severity</th><th>reason</th><th>subject</th>
<th>message</th></tr>{% for a in view.alerts %}<tr class="{{ a.severity.value }}">
<td>{{ a.raised_at.strftime('%H:%M:%S') }}</td><td>{{ a.severity.value }}</td>
<td>{{ a.reason.value }}</td><td>{{ a.subject }}</td><td>{{ a.message }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No alerts.</p>{% endif %}</section>
<section><h2>Equity and drawdown</h2>{{ plots.equity }}</section>
<section><h2>Open positions ({{ view.open_fills|length }})</h2>
{% if view.open_fills %}<table><tr><th>symbol</th><th>side</th><th>volume</th><th>price</th>
<th>opened</th><th>model</th></tr>{% for f in view.open_fills %}<tr><td>{{ f.symbol }}</td>
<td>{{ f.action }}</td><td>{{ f.volume }}</td><td>{{ '%.5f'|format(f.price) }}</td>
<td>{{ f.at.strftime('%m-%d %H:%M:%S') }}</td><td>v{{ f.model_version }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">None.</p>{% endif %}
<h2>Recent orders</h2>{% if orders %}<table><tr><th>time</th><th>symbol</th><th>action</th>
<th>volume</th><th>price</th><th>filled</th><th>reason</th></tr>{% for o in orders %}<tr>
<td>{{ o.at.strftime('%m-%d %H:%M:%S') }}</td><td>{{ o.symbol }}</td><td>{{ o.action }}</td>
<td>{{ o.volume }}</td><td>{{ o.price }}</td><td>{{ o.filled }}</td><td>{{ o.reason }}</td></tr>
{% endfor %}</table>{% else %}<p class="muted">No orders.</p>{% endif %}</section>
<section id="chains"><h2>Chains: {{ stats.chains if stats else 0 }}
({{ stats.error_chains if stats else 0 }} with errors)</h2>
{% if stats and stats.latency_ms %}<table><tr><th>step</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>n</th></tr>{% for s, p in stats.latency_ms|dictsort %}<tr><td>{{ s }}</td>
<td>{{ '%.2f'|format(p.p50) }}</td><td>{{ '%.2f'|format(p.p95) }}</td>
<td>{{ '%.2f'|format(p.p99) }}</td><td>{{ p.n }}</td></tr>{% endfor %}</table>{% endif %}
{{ plots.latency }}
{% if view.critical_path %}<h2>Critical path (latest chain with orders)</h2>
<p id="critical-path">{{ view.critical_path.critical_path|join(' → ') }}
· {{ '%.1f'|format(view.critical_path.total_duration_ms) }} ms</p>
{% for b in view.critical_path.bottlenecks %}<p>bottleneck {{ b.service }}:
{{ '%.1f'|format(b.self_ms) }} ms ({{ '%.0f'|format(100 * b.share) }} %)</p>{% endfor %}{% endif %}
</section>
<section><h2>Prediction latency</h2>{{ plots.prediction }}{{ plots.strength }}</section>
<section id="services"><h2>Service health</h2><table><tr><th>service</th><th>state</th>
<th>detail</th></tr>{% for h in view.services %}<tr><td>{{ h.name }}</td>
<td><span class="pill {{ 'ok' if h.up else 'bad' }}">{{ 'up' if h.up else 'down' }}</span></td>
<td>{{ h.detail }}</td></tr>{% endfor %}</table></section>
<section id="models"><h2>Models: validation vs live</h2><table><tr><th>model</th>
<th>aliases</th><th>validation</th><th>live</th></tr>
{% for m in models %}<tr><td>{{ m.name }} v{{ m.version }}</td><td>{{ m.aliases|join(', ') }}</td>
<td>{{ m.validation }}</td><td>{{ m.live }}</td></tr>{% endfor %}</table></section>
<section id="data"><h2>Data quality</h2>{% if view.data %}<table><tr><th>symbol</th>
<th>newest bar</th></tr>{% for s, t in view.data.latest_bar|dictsort %}<tr><td>{{ s }}</td>
<td>{{ t.strftime('%Y-%m-%d %H:%M') }}</td></tr>{% endfor %}</table>
<p>Quarantined rows: {{ view.data.quarantine or 'none' }}</p>
<p>Latest Great Expectations run: {{ view.data.ge_run or 'none' }}
{% if view.data.ge_success is not none %}
<span class="pill {{ 'ok' if view.data.ge_success else 'bad' }}">
{{ 'passed' if view.data.ge_success else 'failed' }}</span>{% endif %}</p>{% endif %}
{% for e in view.errors %}<p class="critical">{{ e }}</p>{% endfor %}</section>
</main></body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_TEMPLATE = _ENV.from_string(_PAGE)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if math.isfinite(v) else f"{k} {v}" for k, v in sorted(metrics.items())
    )


def model_rows(view: PlatformView) -> list[dict[str, Any]]:
    """Registered versions (validation metrics) joined with live metrics by version."""
    rows: list[dict[str, Any]] = []
    seen = set()
    for m in view.models:
        if "error" in m:
            rows.append({"name": m["error"], "version": "?", "aliases": [], "validation": "",
                         "live": ""})  # fmt: skip
            continue
        key = (m["name"], m["version"])
        seen.add(key)
        rows.append(
            {**m, "validation": _fmt(m["validation"]), "live": _fmt(view.live_metrics.get(key, {}))}
        )
    for (name, version), live in sorted(view.live_metrics.items()):
        if (name, version) not in seen:
            rows.append(
                {"name": name, "version": version, "aliases": [], "validation": "—",
                 "live": _fmt(live)}
            )  # fmt: skip
    return rows


def render_page(
    view: PlatformView,
    *,
    title: str,
    refresh_s: int = 0,
    summary: list[tuple[str, Any]] | None = None,
) -> str:
    """The dashboard / report HTML for ``view``."""
    stats = view.stats
    plots = {
        "equity": Markup(svg.equity_drawdown(view.equity)),
        "latency": Markup(svg.step_latency(dict(stats.latency_ms) if stats else {})),
        "prediction": Markup(svg.prediction_latency(view.chains)),
        "strength": Markup(svg.strengths(view.chains)),
    }
    return _TEMPLATE.render(
        title=title,
        refresh_s=refresh_s,
        view=view,
        stats=stats,
        plots=plots,
        orders=view.recent_orders,
        models=model_rows(view),
        summary=summary,
    )
