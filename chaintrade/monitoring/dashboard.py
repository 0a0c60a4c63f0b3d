"""The web dashboard (FastAPI): one page rendered on the server, a JSON view, auth.

Auth: ``Authorization: Bearer <CHAINTRADE_DASHBOARD_TOKEN>`` or ``?token=`` once (kept in an
HttpOnly cookie), or basic auth with ``CHAINTRADE_DASHBOARD_USERNAME`` / ``_PASSWORD``. The app
refuses to start without one of them.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from chaintrade.errors import ConfigError
from chaintrade.monitoring.render import model_rows, render_page
from chaintrade.monitoring.settings import DashboardSettings
from chaintrade.monitoring.view import PlatformView, champion_models, load_view
from chaintrade.settings import Settings

COOKIE = "chaintrade_dashboard"


def _authorized(request: Request, s: DashboardSettings) -> bool:
    header = request.headers.get("authorization", "")
    if s.token is not None:
        token = s.token.get_secret_value()
        offered = request.cookies.get(COOKIE) or ""
        if header.lower().startswith("bearer "):
            offered = header[7:]
        if offered and secrets.compare_digest(offered, token):
            return True
    if s.password is not None and header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, s.username) and secrets.compare_digest(
            password, s.password.get_secret_value()
        )
    return False


class _ModelCache:
    """MLflow is slow to ask: its answer is kept for a minute."""

    def __init__(self, platform: Settings | None, ttl_s: float = 60.0) -> None:
        self.platform, self.ttl_s = platform, ttl_s
        self._value: tuple[dict[str, Any], ...] = ()
        self._at = -1e18

    def get(self) -> tuple[dict[str, Any], ...]:
        if self.platform is None:
            return ()
        if time.monotonic() - self._at > self.ttl_s:
            self._value, self._at = champion_models(self.platform), time.monotonic()
        return self._value


def create_app(
    db_url: str,
    settings: DashboardSettings,
    *,
    platform: Settings | None = None,
    scrape_targets: dict[str, str] | None = None,
    kill_file: Path | None = None,
    window: timedelta = timedelta(days=7),
) -> FastAPI:
    """The dashboard over ``db_url``; ``platform`` adds data quality files and MLflow models."""
    if not settings.auth_configured:
        raise ConfigError(
            "the dashboard needs auth: set CHAINTRADE_DASHBOARD_TOKEN or "
            "CHAINTRADE_DASHBOARD_PASSWORD",
            reason="dashboard_no_auth",
        )
    app = FastAPI(title="Chaintrade dashboard", docs_url=None, redoc_url=None)
    models = _ModelCache(platform)
    state_dir = settings.agent_state_dir
    kill = kill_file or (state_dir / "KILL" if state_dir else None)

    def view() -> PlatformView:
        return load_view(
            db_url,
            since=datetime.now(UTC) - window,
            data_docs_dir=platform.data_docs_dir if platform else None,
            quarantine_dir=platform.lake_dir / "quarantine" / "bars" if platform else None,
            scrape_targets=scrape_targets,
            kill_file=kill,
            state_dir=state_dir,
            models=models.get(),
        )

    @app.middleware("http")
    async def auth(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/healthz":
            return await call_next(request)
        query_token = request.query_params.get("token")
        token = settings.token.get_secret_value() if settings.token is not None else None
        if query_token and token and secrets.compare_digest(query_token, token):
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, query_token, httponly=True, samesite="strict")
            return response
        if not _authorized(request, settings):
            headers = {"WWW-Authenticate": 'Basic realm="chaintrade"'} if settings.password else {}
            return PlainTextResponse("unauthorized", status_code=401, headers=headers)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(
            render_page(view(), title="Chaintrade dashboard", refresh_s=settings.refresh_s)
        )

    @app.get("/api/view")
    def api_view() -> JSONResponse:
        v = view()
        return JSONResponse(
            {
                "taken_at": v.taken_at.isoformat(),
                "trading_state": v.trading_state,
                "realized_pnl": v.realized_pnl,
                "trades": len(v.trades),
                "open_positions": len(v.open_fills),
                "chains": v.stats.chains if v.stats else 0,
                "alerts": [
                    {
                        "raised_at": a.raised_at.isoformat(),
                        "reason": a.reason.value,
                        "severity": a.severity.value,
                        "subject": a.subject,
                        "message": a.message,
                    }
                    for a in v.alerts
                ],
                "models": model_rows(v),
                "services": [{"name": h.name, "up": h.up, "detail": h.detail} for h in v.services],
            }
        )

    return app
