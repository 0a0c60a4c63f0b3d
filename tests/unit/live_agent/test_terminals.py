"""Terminal adapters: one interface for the simulator, the MetaTrader5 module and a bridge."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from chaintrade.errors import ConfigError
from live_agent import mt5_constants as c
from live_agent.agent import Agent
from live_agent.mt5_types import RATES_DTYPE
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.terminals import ModuleTerminal, load_terminal
from live_agent.testing import ListSink, ScriptedServing, synthetic_bars


class RemoteLike:
    """A bridge client whose answers are plain lists/tuples (as an RPyC proxy may give)."""

    def __init__(self, sim: Mt5Simulator) -> None:
        self.sim = sim
        self.obtained = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def copy_rates_from_pos(self, *args: Any) -> Any:
        rates = self.sim.copy_rates_from_pos(*args)
        return None if rates is None else [tuple(r) for r in rates]

    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        found = self.sim.positions_get(*args, **kwargs)
        return None if found is None else list(found)


def test_sim_kind_needs_bars_and_unknown_kinds_are_refused() -> None:
    sim = load_terminal("sim", bars=synthetic_bars(n=10), start_bar=3)
    assert isinstance(sim, Mt5Simulator)
    with pytest.raises(ConfigError):
        load_terminal("sim")
    with pytest.raises(ConfigError) as err:
        load_terminal("zmq")
    assert err.value.reason == "terminal_kind"


def test_mt5_kind_without_the_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # as off Windows: import fails
    with pytest.raises(ConfigError) as err:
        load_terminal("mt5")
    assert err.value.reason == "missing_package" and "MetaTrader5" in str(err.value)


def test_bridge_kind_without_rpyc_says_to_install_the_bridge_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as if not installed: every import of rpyc fails, also of modules imported before
    for name in {"rpyc", "rpyc.utils.classic"} | {m for m in sys.modules if m.startswith("rpyc.")}:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError) as err:
        load_terminal("bridge", host="wine-box", port=18812)
    assert err.value.reason == "missing_package" and "chaintrade[bridge]" in str(err.value)


def test_module_adapter_passes_calls_and_normalizes_answers() -> None:
    sim = Mt5Simulator(synthetic_bars(n=10), start_bar=3)
    term = load_terminal("bridge", module=RemoteLike(sim))
    assert isinstance(term, ModuleTerminal)
    assert term.initialize() and term.last_error() == (c.RES_S_OK, "Success")
    rates = term.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 2)
    assert rates.dtype == RATES_DTYPE and len(rates) == 2
    np.testing.assert_array_equal(rates, sim.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 1, 2))
    assert term.positions_get(symbol="EURUSD") == ()
    assert term.TRADE_RETCODE_DONE == c.TRADE_RETCODE_DONE
    assert term.account_info().balance == 10_000.0
    sim.shutdown()
    assert term.positions_get() is None
    assert term.last_error()[0] == c.RES_E_INTERNAL_FAIL_CONNECT


def test_the_same_agent_code_trades_through_the_module_adapter() -> None:
    sim = Mt5Simulator(synthetic_bars(n=30), start_bar=3)
    term = load_terminal("mt5", module=sim)
    agent = Agent(term, ScriptedServing([0.9]), ListSink(), AgentSettings(magic=5))
    assert agent.start().ok
    sim.advance()
    outcome = agent.on_closed_bar("EURUSD")
    assert [o.filled for o in outcome.orders] == [True]
    assert [p.magic for p in sim.positions_get() or ()] == [5]
