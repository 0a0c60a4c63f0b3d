"""The bridge adapter against a real RPyC classic server process (as mt5linux runs under Wine)
whose ``MetaTrader5`` module is the simulator. Its records are ``MetaTrader5.<Name>`` types, which
the client cannot unpickle (as with the real package on Linux), so they cross by their fields."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chaintrade.errors import ServiceUnavailable
from live_agent import mt5_constants as c
from live_agent.agent import Agent
from live_agent.mt5_types import RATES_DTYPE, SymbolInfo, TradePosition
from live_agent.settings import AgentSettings
from live_agent.terminals import ModuleTerminal, load_terminal
from live_agent.testing import ListSink, ScriptedServing

pytest.importorskip("rpyc")
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import collections, sys, types
    from rpyc.core.service import ClassicService
    from rpyc.utils.server import ThreadedServer
    from live_agent import mt5_constants as c
    from live_agent.simulator import Mt5Simulator
    from live_agent.testing import synthetic_bars

    sim = Mt5Simulator(synthetic_bars(n=40), start_bar=16)
    server_types = {}

    def foreign(value):
        '''A record as a namedtuple class of this process only (like MetaTrader5's).'''
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            name = type(value).__name__
            kind = server_types.get(name)
            if kind is None:  # MetaTrader5.<Name>: picklable here, unknown to the client
                kind = server_types[name] = collections.namedtuple(name, value._fields)
                kind.__module__ = "MetaTrader5"
                setattr(module, name, kind)
            return kind(*(foreign(v) for v in value))
        if isinstance(value, tuple):
            return tuple(foreign(v) for v in value)
        return value

    def wrap(fn):
        return lambda *a, **k: foreign(fn(*a, **k))

    module = types.ModuleType("MetaTrader5")
    for name, value in c.PACKAGE_CONSTANTS.items():
        setattr(module, name, value)
    for name in ("initialize", "shutdown", "last_error", "account_info", "terminal_info",
                 "symbol_info", "symbol_info_tick", "symbol_select", "copy_rates_from_pos",
                 "copy_rates_range", "positions_get", "orders_get", "history_orders_get",
                 "history_deals_get", "order_check"):
        setattr(module, name, wrap(getattr(sim, name)))

    def order_send(request):
        assert type(request) is dict, type(request)  # the real package wants a plain dict
        return foreign(sim.order_send(request))

    module.order_send = order_send
    module.advance = sim.advance  # the test drives the replay clock
    sys.modules["MetaTrader5"] = module
    server = ThreadedServer(ClassicService, hostname="127.0.0.1", port=0,
                            protocol_config={"allow_pickle": True})
    print(server.port, flush=True)
    server.start()
    """
)


@pytest.fixture
def bridge_port(tmp_path: Path) -> Iterator[int]:
    script = tmp_path / "mt5_bridge_server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the bridge server did not start: {err[-2000:]}")
        port = int(line)
        deadline = time.monotonic() + 30
        while True:  # the port is bound before start() listens on it
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_the_agent_trades_through_a_real_rpyc_bridge(bridge_port: int) -> None:
    term = load_terminal("bridge", host="127.0.0.1", port=bridge_port)
    assert isinstance(term, ModuleTerminal)
    assert term.initialize() and term.last_error() == (c.RES_S_OK, "Success")
    info = term.symbol_info("EURUSD")
    assert type(info) is SymbolInfo and info.point == 1e-5  # rebuilt here from its fields
    rates = term.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 3)
    assert rates.dtype == RATES_DTYPE and len(rates) == 3 and isinstance(rates, np.ndarray)

    agent = Agent(term, ScriptedServing([0.9]), ListSink(), AgentSettings(magic=77))
    assert agent.start().ok  # reconciliation: positions, orders, deals over the bridge
    term.module.advance()
    outcome = agent.on_closed_bar("EURUSD")
    assert outcome.bar_rejected is None and outcome.error is None
    (order,) = outcome.orders
    assert order.filled and order.retcode == c.TRADE_RETCODE_DONE
    (position,) = term.positions_get(symbol="EURUSD")
    assert type(position) is TradePosition
    assert (position.magic, position.comment) == (77, f"ct:{order.client_order_id}")
    deals = term.history_deals_get(0, 2**31)
    assert [d.magic for d in deals if d.symbol] == [77]


def test_an_unreachable_bridge_is_a_clear_service_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceUnavailable) as err:
        load_terminal("bridge", host="127.0.0.1", port=port)
    assert err.value.reason == "bridge_unreachable"
