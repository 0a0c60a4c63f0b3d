"""The terminal port: the part of the MetaTrader5 module the agent calls.

The real ``MetaTrader5`` module, a bridge such as mt5linux and :class:`~live_agent.simulator.
Mt5Simulator` all satisfy it structurally. Constants come from :mod:`live_agent.mt5_constants`
(same values as the real package), not from the terminal object.
"""

from __future__ import annotations

from typing import Any, Protocol


class Terminal(Protocol):
    """MT5 functions used by the agent (results are MT5's namedtuples / numpy records)."""

    def initialize(self, *args: Any, **kwargs: Any) -> bool: ...

    def last_error(self) -> tuple[int, str]: ...

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> Any: ...

    def symbol_info(self, symbol: str) -> Any: ...

    def symbol_info_tick(self, symbol: str) -> Any: ...

    def positions_get(self, *args: Any, **kwargs: Any) -> Any: ...

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any: ...

    def order_send(self, request: dict[str, Any]) -> Any: ...

    def account_info(self) -> Any: ...

    def orders_get(self, *args: Any, **kwargs: Any) -> Any: ...

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any: ...

    def shutdown(self) -> None: ...
