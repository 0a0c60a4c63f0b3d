"""Terminal adapters: the real MetaTrader5 module, the mt5linux bridge, and the simulator.

:func:`load_terminal` gives the agent one object with the MetaTrader5 function names for any
of the three. The real module and the bridge client are imported lazily (only when asked for),
so the agent installs and its tests run without ``MetaTrader5``, ``mt5linux`` or ``rpyc``.

* ``mt5``: ``import MetaTrader5`` (Windows; the package only exists there).
* ``bridge``: the remote ``MetaTrader5`` module of an RPyC classic server next to a terminal
  under Wine (the server mt5linux starts, ``python -m mt5linux`` in Wine's Python), reached
  with ``rpyc`` alone (the ``bridge`` extra). Answers are copied by value
  (``rpyc.classic.obtain``); the package's own record types, which do not exist on this side,
  become the same-named records of :mod:`live_agent.mt5_types`. Requests travel as remote
  ``dict`` objects and dates as epoch seconds (the package accepts both), so the terminal sees
  the plain types it expects.
* ``sim``: :class:`~live_agent.simulator.Mt5Simulator` over recorded or generated bars.
"""

from __future__ import annotations

import importlib
import math
import pickle
from collections import namedtuple
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from chaintrade.errors import ConfigError, ServiceUnavailable
from live_agent import mt5_constants as c
from live_agent import mt5_types
from live_agent.mt5_types import RATES_DTYPE, TICK_DTYPE
from live_agent.terminal import Terminal

TerminalKind = Literal["sim", "mt5", "bridge"]
TERMINAL_KINDS: tuple[str, ...] = ("sim", "mt5", "bridge")


class ModuleTerminal:
    """The :class:`~live_agent.terminal.Terminal` port over an object with MT5's functions.

    ``module`` is ``MetaTrader5`` itself or an ``mt5linux.MetaTrader5`` client; ``obtain`` turns a
    remote answer into a local value (identity for the real module).
    """

    def __init__(
        self,
        module: Any,
        *,
        obtain: Callable[[Any], Any] | None = None,
        to_remote: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._mt5 = module
        self._obtain = obtain or (lambda value: value)
        self._to_remote = to_remote or (lambda request: request)

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
        self, symbol: str, timeframe: int, date_from: datetime | int, date_to: datetime | int
    ) -> Any:
        answer = self._mt5.copy_rates_range(symbol, timeframe, _date(date_from), _date(date_to))
        return _rates(self._obtain(answer))

    def copy_ticks_from(
        self, symbol: str, date_from: datetime | int, count: int, flags: int
    ) -> Any:
        answer = self._mt5.copy_ticks_from(symbol, _date(date_from), count, flags)
        return _records(self._obtain(answer), TICK_DTYPE)

    def copy_ticks_range(
        self, symbol: str, date_from: datetime | int, date_to: datetime | int, flags: int
    ) -> Any:
        answer = self._mt5.copy_ticks_range(symbol, _date(date_from), _date(date_to), flags)
        return _records(self._obtain(answer), TICK_DTYPE)

    # trading state
    def positions_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.positions_get(*args, **kwargs)))

    def orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return _tuple(self._obtain(self._mt5.orders_get(*args, **kwargs)))

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _dates(args, kwargs)
        return _tuple(self._obtain(self._mt5.history_orders_get(*args, **kwargs)))

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _dates(args, kwargs)
        return _tuple(self._obtain(self._mt5.history_deals_get(*args, **kwargs)))

    def order_check(self, request: Mapping[str, Any]) -> Any:
        return self._obtain(self._mt5.order_check(self._to_remote(dict(request))))

    def order_send(self, request: Mapping[str, Any]) -> Any:
        return self._obtain(self._mt5.order_send(self._to_remote(dict(request))))


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _date(value: datetime | int) -> int:
    """A date argument as epoch seconds (MT5 takes a datetime or an int; an int crosses a bridge
    by value)."""
    return math.floor(value.timestamp()) if isinstance(value, datetime) else int(value)


def _dates(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = tuple(_date(a) if isinstance(a, datetime) else a for a in args)
    kwargs = {k: _date(v) if isinstance(v, datetime) else v for k, v in kwargs.items()}
    return args, kwargs


def _rates(value: Any) -> np.ndarray | None:
    """Rates as local ``RATES_DTYPE`` records (a bridge may answer with a list or a proxy)."""
    return _records(value, RATES_DTYPE)


def _records(value: Any, dtype: np.dtype[Any]) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.names is None:
        return np.array([tuple(row) for row in value], dtype=dtype)
    return array.astype(dtype, copy=True)


def _import(name: str, hint: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"the {name!r} package is needed: {hint}", reason="missing_package"
        ) from exc


_PLAIN = (bool, int, float, str, bytes)


def _localize(value: Any) -> Any:
    """A remote record (or a sequence of them) rebuilt here from its fields, as the
    same-named :mod:`live_agent.mt5_types` record (a plain namedtuple for unknown names)."""
    if value is None or isinstance(value, _PLAIN):
        return value
    as_dict = getattr(value, "_asdict", None)
    if as_dict is None:
        return tuple(_localize(v) for v in value)
    data = {str(k): _localize(v) for k, v in dict(as_dict()).items()}
    name = str(value.__class__.__name__)
    known = getattr(mt5_types, name, None)
    if isinstance(known, type) and getattr(known, "_fields", None) == tuple(data):
        return known(**data)
    return namedtuple(name, list(data))(**data)


def _rpyc_obtain() -> Callable[[Any], Any]:
    classic = _import("rpyc.utils.classic", "pip install 'chaintrade[bridge]' (rpyc)")

    def obtain(value: Any) -> Any:
        if value is None or isinstance(value, _PLAIN):
            return value
        try:
            return classic.obtain(value)
        except (ImportError, AttributeError, TypeError, pickle.PickleError):
            return _localize(value)  # MetaTrader5's own record types do not exist here

    return obtain


def connect_bridge(host: str, port: int, *, timeout_s: float = 30.0) -> ModuleTerminal:
    """The remote ``MetaTrader5`` module of an RPyC classic server (mt5linux's) at host:port."""
    classic = _import("rpyc.utils.classic", "pip install 'chaintrade[bridge]' (rpyc)")
    try:
        conn = classic.connect(host, port, keepalive=True)
    except OSError as exc:
        raise ServiceUnavailable(
            f"no MT5 bridge at {host}:{port}: {exc}", reason="bridge_unreachable"
        ) from exc
    conn._config["sync_request_timeout"] = timeout_s
    remote_dict = conn.builtins.dict
    return ModuleTerminal(
        conn.modules["MetaTrader5"],
        obtain=_rpyc_obtain(),
        to_remote=lambda request: remote_dict(tuple(request.items())),
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
    ``mt5`` imports ``MetaTrader5``; ``bridge`` connects to the RPyC server at host:port.
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
            return connect_bridge(host, port)
        return ModuleTerminal(module)
    raise ConfigError(
        f"unknown terminal {kind!r}; use one of {TERMINAL_KINDS}", reason="terminal_kind"
    )
