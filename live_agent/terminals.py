"""Terminal adapters: the real MetaTrader5 module, the mt5linux bridge, and the simulator.

:func:`load_terminal` gives the agent one object with the MetaTrader5 function names for any
of the three. The real module and the bridge client are imported lazily (only when asked for),
so the agent installs and its tests run without ``MetaTrader5``, ``mt5linux`` or ``rpyc``.

* ``mt5``: ``import MetaTrader5`` (Windows; the package only exists there).
* ``bridge``: ``mt5linux.MetaTrader5(host=..., port=...)``, the RPyC client of a Python server
  running next to a terminal under Wine. Its answers can be RPyC proxies (netrefs) of the
  remote objects; rates are copied into local numpy records with ``rpyc.classic.obtain`` so the
  agent never holds a proxy across calls.
* ``sim``: :class:`~live_agent.simulator.Mt5Simulator` over recorded or generated bars.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from chaintrade.errors import ConfigError
from live_agent import mt5_constants as c
from live_agent.mt5_types import RATES_DTYPE
from live_agent.terminal import Terminal

TerminalKind = Literal["sim", "mt5", "bridge"]
TERMINAL_KINDS: tuple[str, ...] = ("sim", "mt5", "bridge")


class ModuleTerminal:
    """The :class:`~live_agent.terminal.Terminal` port over an object with MT5's functions.

    ``module`` is ``MetaTrader5`` itself or an ``mt5linux.MetaTrader5`` client; ``obtain`` turns a
    remote answer into a local value (identity for the real module).
    """

    def __init__(self, module: Any, *, obtain: Callable[[Any], Any] | None = None) -> None:
        self._mt5 = module
        self._obtain = obtain or (lambda value: value)

    @property
    def module(self) -> Any:
        return self._mt5

    def __getattr__(self, name: str) -> Any:
        """MT5 constants (``TRADE_RETCODE_DONE``...) with the package's values."""
        try:
            return c.PACKAGE_CONSTANTS[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None

    # session
    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self._mt5.initialize(*args, **kwargs))

    def shutdown(self) -> None:
        self._mt5.shutdown()

    def last_error(self) -> tuple[int, str]:
        err = self._obtain(self._mt5.last_error())
        if err is None:
            return (c.RES_E_FAIL, "no last_error")
        code, message = tuple(err)[:2]
        return int(code), str(message)

    def account_info(self) -> Any:
        return self._obtain(self._mt5.account_info())

    def terminal_info(self) -> Any:
        return self._obtain(self._mt5.terminal_info())

    # market data
    def symbol_info(self, symbol: str) -> Any:
        return self._obtain(self._mt5.symbol_info(symbol))

    def symbol_info_tick(self, symbol: str) -> Any:
        return self._obtain(self._mt5.symbol_info_tick(symbol))

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        return bool(self._mt5.symbol_select(symbol, enable))

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Any:
        return _rates(
            self._obtain(self._mt5.copy_rates_from_pos(symbol, timeframe, start_pos, count))
        )

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime, date_to: datetime
    ) -> Any:
        return _rates(
            self._obtain(self._mt5.copy_rates_range(symbol, timeframe, date_from, date_to))
        )

    # trading state
    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.positions_get(*args, **kwargs)))

    def orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.orders_get(*args, **kwargs)))

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.history_orders_get(*args, **kwargs)))

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.history_deals_get(*args, **kwargs)))

    def order_check(self, request: Mapping[str, Any]) -> Any:
        return self._obtain(self._mt5.order_check(dict(request)))

    def order_send(self, request: Mapping[str, Any]) -> Any:
        return self._obtain(self._mt5.order_send(dict(request)))


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _rates(value: Any) -> np.ndarray | None:
    """Rates as local ``RATES_DTYPE`` records (a bridge may answer with a list or a proxy)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.names is None:
        return np.array([tuple(row) for row in value], dtype=RATES_DTYPE)
    return array.astype(RATES_DTYPE, copy=True)


def _import(name: str, hint: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"the {name!r} package is needed: {hint}", reason="missing_package"
        ) from exc


def _rpyc_obtain() -> Callable[[Any], Any]:
    try:
        classic = importlib.import_module("rpyc.utils.classic")
    except ImportError:
        return lambda value: value
    obtain: Callable[[Any], Any] = classic.obtain
    return lambda value: (
        value if value is None or isinstance(value, (bool, int, float, str)) else obtain(value)
    )


def load_terminal(
    kind: str,
    *,
    bars: pd.DataFrame | None = None,
    host: str = "127.0.0.1",
    port: int = 18812,
    module: Any = None,
    **sim_options: Any,
) -> Terminal:
    """A terminal of ``kind`` (``sim``, ``mt5`` or ``bridge``).

    ``sim`` needs ``bars`` (options go to :class:`~live_agent.simulator.Mt5Simulator`);
    ``mt5`` imports ``MetaTrader5``; ``bridge`` connects ``mt5linux.MetaTrader5(host, port)``.
    ``module`` replaces the imported module or bridge client (tests, other bridges).
    """
    if kind == "sim":
        from live_agent.simulator import Mt5Simulator

        if bars is None:
            raise ConfigError("the simulator needs bars to replay", reason="sim_no_bars")
        return Mt5Simulator(bars, **sim_options)
    if kind == "mt5":
        mt5 = (
            module
            if module is not None
            else _import("MetaTrader5", "pip install MetaTrader5 (Windows)")
        )
        return ModuleTerminal(mt5)
    if kind == "bridge":
        if module is None:
            mt5linux = _import("mt5linux", "pip install mt5linux (and rpyc)")
            module = mt5linux.MetaTrader5(host=host, port=port)
        return ModuleTerminal(module, obtain=_rpyc_obtain())
    raise ConfigError(
        f"unknown terminal {kind!r}; use one of {TERMINAL_KINDS}", reason="terminal_kind"
    )
