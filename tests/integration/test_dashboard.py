"""The web dashboard: auth, the JSON view, and the page in headless Chromium (screenshots kept
under var/test-artifacts/dashboard/)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chaintrade.chain_store import write_events
from chaintrade.db import connect
from chaintrade.errors import ConfigError
from chaintrade.monitoring.dashboard import create_app
from chaintrade.monitoring.events import AlertRaised, AlertReason, Severity
from chaintrade.monitoring.settings import DashboardSettings
from chaintrade.monitoring.store import write_alerts
from chaintrade.monitoring.testing import serve_in_thread
from chaintrade.schemas import BarIn, Prediction
from chaintrade.settings import PROJECT_ROOT
from live_agent.agent import Agent
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.testing import ListSink, ScriptedServing, prediction_for, synthetic_bars

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts" / "dashboard"


def alternating() -> Callable[[BarIn], Prediction]:
    """Open long, close, open short, close, ... (the seed rule's thresholds)."""
    cycle = itertools.cycle([0.9, 0.1, -0.9, -0.1])
    return lambda bar: prediction_for(bar, next(cycle))


@pytest.fixture
def recorded(clean_db: str, tmp_path: Path) -> str:
    """A short paper session in chain_history and one stored alert."""
    sink = ListSink()
    agent = Agent(
        Mt5Simulator(synthetic_bars(n=60), start_bar=16),
        ScriptedServing([alternating()]),
        sink,
        AgentSettings(magic=7, state_dir=tmp_path / "agent"),
    )
    agent.start()
    agent.run_replay(["EURUSD"], n_bars=40)
    with connect(clean_db) as conn:
        write_events(conn, sink.events)
    write_alerts(
        clean_db,
        [AlertRaised(AlertReason.STALE_DATA, Severity.WARNING, "EURUSD", "newest bar 5.0 h old")],
    )
    return clean_db


def test_the_dashboard_refuses_to_run_without_auth(clean_db: str) -> None:
    with pytest.raises(ConfigError, match="CHAINTRADE_DASHBOARD_TOKEN"):
        create_app(clean_db, DashboardSettings())


def test_token_and_basic_auth(recorded: str) -> None:
    app = create_app(recorded, DashboardSettings(token="t0k", password="pw", refresh_s=0))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/").status_code == 401
        assert http.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/", auth=("admin", "nope")).status_code == 401
        assert http.get("/", auth=("admin", "pw")).status_code == 200
        view = http.get("/api/view", headers={"Authorization": "Bearer t0k"}).json()
        login = http.get("/?token=t0k", follow_redirects=False)
        assert login.status_code == 303 and "t0k" not in login.headers["location"]
    assert view["trading_state"] == "ACTIVE" and view["chains"] >= 40
    assert view["trades"] > 5 and [a["reason"] for a in view["alerts"]] == ["stale_data"]


def test_the_page_in_chromium_shows_trading_state_orders_and_alerts(
    recorded: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (apt install chromium)"
        )
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kill = tmp_path / "agent" / "KILL"
    app = create_app(recorded, DashboardSettings(password="pw", refresh_s=0), kill_file=kill)
    with serve_in_thread(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            with pytest.raises(PlaywrightError, match="AUTH"):  # basic auth asked, none given
                browser.new_page().goto(url)
            page = browser.new_context(
                http_credentials={"username": "admin", "password": "pw"},
                viewport={"width": 1400, "height": 1000},
            ).new_page()
            page.goto(url)
            state = page.locator("#trading-state").inner_text()
            alerts = page.locator("#alerts").inner_text()
            chains = page.locator("#chains").inner_text()
            svgs = page.locator("svg").count()
            page.screenshot(path=str(ARTIFACTS / "dashboard_active.png"), full_page=True)
            kill.write_text("halted by test\n")
            page.reload()
            halted = page.locator("#trading-state").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard_halted.png"))
        finally:
            browser.close()
    assert state.strip() == "ACTIVE" and halted.strip() == "HALTED (kill file)"
    assert "stale_data" in alerts and "newest bar 5.0 h old" in alerts
    assert "prediction" in chains and "Critical path" in chains and svgs >= 4
