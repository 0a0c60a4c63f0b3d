"""The agent over the simulator, with a tiny local HTTP server standing in for serving."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest

from chaintrade.chain import ChainContext, ChainEvent, StepTrace
from chaintrade.domain import HEADER_CHAIN_ID, HEADER_SOURCE_SERVICE, Action
from chaintrade.errors import ServiceUnavailable
from chaintrade.schemas import BarIn
from live_agent import mt5_constants as c
from live_agent.agent import STEPS, Agent, filling_for
from live_agent.serving_client import InvalidPrediction, PredictionRejected, ServingClient
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator

T0 = datetime(2024, 1, 2, 0, tzinfo=UTC)
OHLC = [
    (1.1000, 1.1010, 1.0990, 1.1005),
    (1.1005, 1.1030, 1.1000, 1.1020),
    (1.1020, 1.1050, 1.1015, 1.1040),
    (1.1040, 1.1060, 1.1030, 1.1050),
    (1.1050, 1.1055, 1.1020, 1.1030),
    (1.1030, 1.1040, 1.1010, 1.1015),
]
Reply = tuple[int, Any]


class ListSink:
    def __init__(self) -> None:
        self.events: list[ChainEvent] = []

    def emit(self, event: ChainEvent) -> None:
        self.events.append(event)

    def chains(self) -> dict[Any, list[ChainEvent]]:
        out: dict[Any, list[ChainEvent]] = {}
        for e in self.events:
            out.setdefault(e.chain_id, []).append(e)
        return out


class FakeServing:
    """A real HTTP server on 127.0.0.1; ``script(body) -> (status, json)`` answers each call."""

    def __init__(self, script: Callable[[dict[str, Any]], Reply]) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers), body))
                status, payload = script(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prediction_json(bar: dict[str, Any], strength: float) -> dict[str, Any]:
    return {
        "symbol": bar["symbol"],
        "prediction": (strength + 1) / 2,
        "strength": strength,
        "confidence": 0.8,
        "model_name": "chaintrade-direction",
        "model_version": "3",
        "feature_timestamp": bar["time"],
        "timings_ms": {"total": 1.0},
    }


def strengths(*values: float) -> Callable[[dict[str, Any]], Reply]:
    queue = list(values)
    return lambda body: (200, prediction_json(body["bar"], queue.pop(0)))


@pytest.fixture
def serving_factory() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], FakeServing]]:
    servers: list[FakeServing] = []

    def make(script: Callable[[dict[str, Any]], Reply]) -> FakeServing:
        servers.append(FakeServing(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "timeframe": "H1",
            "time": [T0 + timedelta(hours=i) for i in range(len(OHLC))],
            "open": [b[0] for b in OHLC],
            "high": [b[1] for b in OHLC],
            "low": [b[2] for b in OHLC],
            "close": [b[3] for b in OHLC],
            "tick_volume": 100,
            "spread": 10,
            "real_volume": 0,
        }
    )


def make_agent(url: str, **overrides: Any) -> tuple[Agent, Mt5Simulator, ListSink]:
    sim = Mt5Simulator(bars(), start_bar=1)
    settings = AgentSettings(
        serving_url=url,
        serving_token="s3cret",  # type: ignore[arg-type]
        serving_retries=1,
        retry_backoff_s=0.0,
        timeout_s=2.0,
        magic=4242,
        lot_size=0.01,
        **overrides,
    )
    sink = ListSink()
    agent = Agent.from_settings(sim, sink, settings)
    agent.start()
    return agent, sim, sink


def bar_chains(sink: ListSink) -> dict[Any, list[Any]]:
    """The bar chains (the reconciliation chain of ``start`` left out)."""
    return {
        k: v
        for k, v in sink.chains().items()
        if v[0].metadata.get("chain_name") != "reconciliation"
    }


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_replay_buys_holds_closes_and_sells_with_the_known_pnl(serving_factory: Any) -> None:
    serving = serving_factory(strengths(0.9, 0.5, 0.1, -0.9))
    agent, sim, sink = make_agent(serving.url)
    other = sim.order_send(
        {
            "action": c.TRADE_ACTION_DEAL,
            "symbol": "EURUSD",
            "volume": 0.02,
            "type": c.ORDER_TYPE_BUY,
            "magic": 999,
            "comment": "someone else",
        }
    )
    assert other is not None and other.retcode == c.TRADE_RETCODE_DONE

    summary = agent.run_replay(["EURUSD"], n_bars=4)

    assert summary.bars == 4
    actions = [o.decision.action for o in summary.outcomes if o.decision]
    assert actions == [Action.BUY, Action.HOLD, Action.CLOSE, Action.SELL]
    assert (summary.orders_sent, summary.orders_filled) == (3, 3)
    # bought 0.01 at the t2 ask 1.1021, closed at the t4 bid 1.1050: 0.0029 * 0.01 * 100000
    assert summary.realized_pnl == pytest.approx(2.90)
    assert len(summary.prediction_latencies_ms) == 4
    assert all(ms > 0 for ms in summary.prediction_latencies_ms)
    positions = sim.positions_get(symbol="EURUSD") or ()
    assert sorted((p.magic, p.type) for p in positions) == [
        (999, c.POSITION_TYPE_BUY),
        (4242, c.POSITION_TYPE_SELL),
    ]
    buy = summary.outcomes[0].orders[0]
    assert buy.price == pytest.approx(1.1021)
    close = summary.outcomes[2].orders[0]
    assert close.position == buy.position
    deals = sim.history_deals_get(position=buy.position) or ()
    assert [(d.entry, d.magic, d.comment) for d in deals] == [
        (c.DEAL_ENTRY_IN, 4242, f"ct:{buy.client_order_id}"),
        (c.DEAL_ENTRY_OUT, 4242, f"ct:{close.client_order_id}"),
    ]

    chains = bar_chains(sink)
    assert len(chains) == 4
    for events in chains.values():
        assert tuple(e.service_name for e in events) == STEPS
        assert all(e.event_type == "complete" for e in events)
    collector = next(e for e in sink.events if e.service_name == "collector")
    assert [(d.target, d.endpoint) for d in collector.dependencies] == [
        ("mt5", "copy_rates_from_pos")
    ]
    execution = next(e for e in sink.events if e.service_name == "execution")
    assert ("mt5", "order_send") in {(d.target, d.endpoint) for d in execution.dependencies}
    # the risk step reads the equity every bar, the symbol only when an order may follow
    risk_reads = [
        [d.endpoint for e in events if e.service_name == "risk" for d in e.dependencies]
        for events in chains.values()
    ]
    assert risk_reads == [
        ["symbol_info", "account_info"],  # BUY
        ["account_info"],  # HOLD
        ["symbol_info", "account_info"],  # CLOSE
        ["symbol_info", "account_info"],  # SELL
    ]

    headers, body = serving.requests[0]
    assert body["bar"]["time"] == (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert body["bar"]["close"] == 1.1020 and body["bar"]["timeframe"] == "H1"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers[HEADER_SOURCE_SERVICE] == "live_agent"
    assert headers[HEADER_CHAIN_ID] == str(next(iter(chains)))
    assert headers["X-Symbol"] == "EURUSD"  # load balancers keep a symbol on one replica


def test_serving_down_sends_no_orders_and_records_an_error_step() -> None:
    agent, sim, sink = make_agent(closed_port_url())
    summary = agent.run_replay(["EURUSD"], n_bars=2)
    assert summary.orders_sent == 0 and sim.positions_total() == 0
    assert summary.rejects == {"prediction:serving_unavailable": 2}
    for events in bar_chains(sink).values():
        assert tuple(e.service_name for e in events) == STEPS
        prediction = events[2]
        assert prediction.event_type == "error"
        assert prediction.error_context is not None
        assert prediction.error_context["type"] == "ServiceUnavailable"
        assert [(d.attempt, d.status) for d in prediction.dependencies] == [
            (1, "error"),
            (2, "error"),
        ]
        assert events[3].metadata["action"] == "HOLD"
        assert events[3].metadata["reasons"] == ["no_prediction"]


def test_same_bar_twice_is_rejected_by_the_validator_without_a_prediction(
    serving_factory: Any,
) -> None:
    serving = serving_factory(strengths(0.0, 0.0))
    agent, sim, sink = make_agent(serving.url)
    sim.advance()
    first = agent.on_closed_bar("EURUSD")
    again = agent.on_closed_bar("EURUSD")
    assert first.bar_rejected is None
    assert again.bar_rejected == "duplicate_time"
    assert len(serving.requests) == 1
    events = sink.chains()[again.chain_id]
    assert [e.service_name for e in events] == ["collector", "validator"]
    assert events[1].metadata["reason"] == "duplicate_time"


def test_risk_denial_is_counted_and_no_order_sent(serving_factory: Any) -> None:
    serving = serving_factory(strengths(0.9, 0.9))
    agent, sim, _ = make_agent(serving.url, max_spread_points=5)
    summary = agent.run_replay(["EURUSD"], n_bars=2)
    assert summary.orders_sent == 0
    assert summary.rejects == {"risk:spread_too_wide": 2}
    assert sim.positions_total() == 0


def test_lost_order_reply_is_reconciled_not_resent(serving_factory: Any) -> None:
    from live_agent.simulator import FaultConfig

    serving = serving_factory(strengths(0.9))
    sim = Mt5Simulator(bars(), faults=FaultConfig(scripted=(None,), timeout_executes=True))
    agent = Agent.from_settings(sim, ListSink(), AgentSettings(serving_url=serving.url))
    agent.start()
    summary = agent.run_replay(["EURUSD"], n_bars=1)
    (order,) = summary.outcomes[0].orders
    assert (order.filled, order.reason) == (True, "filled_reconciled")
    assert sim.positions_total() == 1


def test_requote_is_resent_with_a_fresh_price(serving_factory: Any) -> None:
    from live_agent.simulator import FaultConfig

    serving = serving_factory(strengths(0.9))
    sim = Mt5Simulator(bars(), faults=FaultConfig(scripted=(c.TRADE_RETCODE_REQUOTE,)))
    agent = Agent.from_settings(sim, ListSink(), AgentSettings(serving_url=serving.url))
    agent.start()
    summary = agent.run_replay(["EURUSD"], n_bars=1)
    assert (summary.orders_sent, summary.orders_filled) == (1, 1)


def test_filling_mode_from_symbol_flags() -> None:
    assert filling_for(c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC) == c.ORDER_FILLING_FOK
    assert filling_for(c.SYMBOL_FILLING_IOC) == c.ORDER_FILLING_IOC
    assert filling_for(0) == c.ORDER_FILLING_RETURN


BAR = BarIn(
    symbol="EURUSD",
    timeframe="H1",
    time=T0,
    open=1.1,
    high=1.2,
    low=1.0,
    close=1.15,
    tick_volume=10,
    spread=1,
)


def test_client_retries_a_5xx_then_succeeds(serving_factory: Any) -> None:
    replies: list[Reply] = [(503, {"reason": "warming_up"})]
    serving = serving_factory(
        lambda body: replies.pop(0) if replies else (200, prediction_json(body["bar"], 0.2))
    )
    trace = StepTrace()
    with ServingClient(serving.url, retries=2, backoff_s=0.0) as client:
        pred = client.predict(BAR, ChainContext(ListSink()), trace)
    assert pred.strength == 0.2
    assert [(d.target, d.endpoint, d.attempt, d.status) for d in trace.dependencies] == [
        ("serving", "/predict", 1, "error"),
        ("serving", "/predict", 2, "ok"),
    ]


def test_client_does_not_retry_a_4xx_and_keeps_the_server_reason(serving_factory: Any) -> None:
    serving = serving_factory(lambda body: (422, {"reason": "unknown_symbol"}))
    trace = StepTrace()
    with (
        ServingClient(serving.url, retries=3, backoff_s=0.0) as client,
        pytest.raises(PredictionRejected) as err,
    ):
        client.predict(BAR, ChainContext(ListSink()), trace)
    assert err.value.reason == "unknown_symbol"
    assert len(serving.requests) == 1 and len(trace.dependencies) == 1


def test_client_rejects_an_invalid_body(serving_factory: Any) -> None:
    serving = serving_factory(lambda body: (200, {"symbol": "EURUSD", "strength": 5}))
    with ServingClient(serving.url) as client, pytest.raises(InvalidPrediction):
        client.predict(BAR, ChainContext(ListSink()), StepTrace())


def test_client_gives_service_unavailable_when_nothing_listens() -> None:
    trace = StepTrace()
    with (
        ServingClient(closed_port_url(), retries=2, backoff_s=0.0) as client,
        pytest.raises(ServiceUnavailable),
    ):
        client.predict(BAR, ChainContext(ListSink()), trace)
    assert [d.attempt for d in trace.dependencies] == [1, 2, 3]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINTRADE_AGENT_SERVING_URL", "http://serving:3000/")
    monkeypatch.setenv("CHAINTRADE_AGENT_MAGIC", "77")
    monkeypatch.setenv("CHAINTRADE_AGENT_SERVING_TOKEN", "zz-secret-zz")
    s = AgentSettings()
    assert (s.serving_url, s.magic, s.mt5_timeframe) == ("http://serving:3000", 77, 16385)
    assert s.serving_token is not None and s.serving_token.get_secret_value() == "zz-secret-zz"
    assert "zz-secret-zz" not in repr(s)


def test_replay_reports_its_progress_every_1000_clock_steps_and_at_the_end() -> None:
    from chaintrade.market_data import synthetic_market
    from live_agent.parity import SignalTable

    bars = synthetic_market(["EURUSD"], timeframe="H1", n=2_500, seed=3)
    sim = Mt5Simulator(bars, start_bar=0)
    agent = Agent(sim, SignalTable({}), ListSink(), AgentSettings())
    agent.start()
    total, seen = sim.steps_left, list[int]()
    agent.run_replay(["EURUSD"], n_bars=total + 10, progress=seen.append)
    assert total == 2_500 and seen == [1_000, 2_000, 2_500] and sim.steps_left == 0
