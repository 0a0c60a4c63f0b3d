# ruff: noqa: E501  (comments copied verbatim from the MetaTrader5 package)
"""Every constant of the MetaTrader5 Python package, with the same names and values.

Copied from MetaTrader5 5.0.6231 ``__init__.py`` (MIT licence, (c) MetaQuotes Ltd.), so the
agent and the simulator use the values of the real terminal on any platform. The extra MQL5
constants at the end are *not* exported by the package; they are kept out of
:data:`PACKAGE_CONSTANTS`.
"""

from __future__ import annotations

from typing import Final

# --- Begin: copied from MetaTrader5/__init__.py (MIT, MetaQuotes Ltd.) ---
MT5_PACKAGE_VERSION: Final = "5.0.6231"
# timeframes
TIMEFRAME_M1: Final = 1
TIMEFRAME_M2: Final = 2
TIMEFRAME_M3: Final = 3
TIMEFRAME_M4: Final = 4
TIMEFRAME_M5: Final = 5
TIMEFRAME_M6: Final = 6
TIMEFRAME_M10: Final = 10
TIMEFRAME_M12: Final = 12
TIMEFRAME_M15: Final = 15
TIMEFRAME_M20: Final = 20
TIMEFRAME_M30: Final = 30
TIMEFRAME_H1: Final = 1 | 0x4000
TIMEFRAME_H2: Final = 2 | 0x4000
TIMEFRAME_H4: Final = 4 | 0x4000
TIMEFRAME_H3: Final = 3 | 0x4000
TIMEFRAME_H6: Final = 6 | 0x4000
TIMEFRAME_H8: Final = 8 | 0x4000
TIMEFRAME_H12: Final = 12 | 0x4000
TIMEFRAME_D1: Final = 24 | 0x4000
TIMEFRAME_W1: Final = 1 | 0x8000
TIMEFRAME_MN1: Final = 1 | 0xC000
# tick copy flags
COPY_TICKS_ALL: Final = -1
COPY_TICKS_INFO: Final = 1
COPY_TICKS_TRADE: Final = 2
# tick flags
TICK_FLAG_BID: Final = 0x02
TICK_FLAG_ASK: Final = 0x04
TICK_FLAG_LAST: Final = 0x08
TICK_FLAG_VOLUME: Final = 0x10
TICK_FLAG_BUY: Final = 0x20
TICK_FLAG_SELL: Final = 0x40
# position type, ENUM_POSITION_TYPE
POSITION_TYPE_BUY: Final = 0  # Buy
POSITION_TYPE_SELL: Final = 1  # Sell
# position reason, ENUM_POSITION_REASON
POSITION_REASON_CLIENT: Final = 0  # The position was opened as a result of activation of an order placed from a desktop terminal
POSITION_REASON_MOBILE: Final = 1  # The position was opened as a result of activation of an order placed from a mobile application
POSITION_REASON_WEB: Final = (
    2  # The position was opened as a result of activation of an order placed from the web platform
)
POSITION_REASON_EXPERT: Final = 3  # The position was opened as a result of activation of an order placed from an MQL5 program, i.e. an Expert Advisor or a script
# order types, ENUM_ORDER_TYPE
ORDER_TYPE_BUY: Final = 0  # Market Buy order
ORDER_TYPE_SELL: Final = 1  # Market Sell order
ORDER_TYPE_BUY_LIMIT: Final = 2  # Buy Limit pending order
ORDER_TYPE_SELL_LIMIT: Final = 3  # Sell Limit pending order
ORDER_TYPE_BUY_STOP: Final = 4  # Buy Stop pending order
ORDER_TYPE_SELL_STOP: Final = 5  # Sell Stop pending order
ORDER_TYPE_BUY_STOP_LIMIT: Final = (
    6  # Upon reaching the order price, a pending Buy Limit order is placed at the StopLimit price
)
ORDER_TYPE_SELL_STOP_LIMIT: Final = (
    7  # Upon reaching the order price, a pending Sell Limit order is placed at the StopLimit price
)
ORDER_TYPE_CLOSE_BY: Final = 8  # Order to close a position by an opposite one
# order state, ENUM_ORDER_STATE
ORDER_STATE_STARTED: Final = 0  # Order checked, but not yet accepted by broker
ORDER_STATE_PLACED: Final = 1  # Order accepted
ORDER_STATE_CANCELED: Final = 2  # Order canceled by client
ORDER_STATE_PARTIAL: Final = 3  # Order partially executed
ORDER_STATE_FILLED: Final = 4  # Order fully executed
ORDER_STATE_REJECTED: Final = 5  # Order rejected
ORDER_STATE_EXPIRED: Final = 6  # Order expired
ORDER_STATE_REQUEST_ADD: Final = 7  # Order is being registered (placing to the trading system)
ORDER_STATE_REQUEST_MODIFY: Final = 8  # Order is being modified (changing its parameters)
ORDER_STATE_REQUEST_CANCEL: Final = 9  # Order is being deleted (deleting from the trading system)
# ENUM_ORDER_TYPE_FILLING
ORDER_FILLING_FOK: Final = 0  # Fill Or Kill order
ORDER_FILLING_IOC: Final = 1  # Immediately Or Cancel
ORDER_FILLING_RETURN: Final = 2  # Return remaining volume to book
ORDER_FILLING_BOC: Final = 3  # Book Or Cancel order
# ENUM_ORDER_TYPE_TIME
ORDER_TIME_GTC: Final = 0  # Good till cancel order
ORDER_TIME_DAY: Final = 1  # Good till current trade day order
ORDER_TIME_SPECIFIED: Final = 2  # Good till expired order
ORDER_TIME_SPECIFIED_DAY: Final = 3  # The order will be effective till 23:59:59 of the specified day. If this time is outside a trading session, the order expires in the nearest trading time.
# ENUM_ORDER_REASON
ORDER_REASON_CLIENT: Final = 0  # The order was placed from a desktop terminal
ORDER_REASON_MOBILE: Final = 1  # The order was placed from a mobile application
ORDER_REASON_WEB: Final = 2  # The order was placed from a web platform
ORDER_REASON_EXPERT: Final = (
    3  # The order was placed from an MQL5-program, i.e. by an Expert Advisor or a script
)
ORDER_REASON_SL: Final = 4  # The order was placed as a result of Stop Loss activation
ORDER_REASON_TP: Final = 5  # The order was placed as a result of Take Profit activation
ORDER_REASON_SO: Final = 6  # The order was placed as a result of the Stop Out event
# deal types, ENUM_DEAL_TYPE
DEAL_TYPE_BUY: Final = 0  # Buy
DEAL_TYPE_SELL: Final = 1  # Sell
DEAL_TYPE_BALANCE: Final = 2  # Balance
DEAL_TYPE_CREDIT: Final = 3  # Credit
DEAL_TYPE_CHARGE: Final = 4  # Additional charge
DEAL_TYPE_CORRECTION: Final = 5  # Correction
DEAL_TYPE_BONUS: Final = 6  # Bonus
DEAL_TYPE_COMMISSION: Final = 7  # Additional commission
DEAL_TYPE_COMMISSION_DAILY: Final = 8  # Daily commission
DEAL_TYPE_COMMISSION_MONTHLY: Final = 9  # Monthly commission
DEAL_TYPE_COMMISSION_AGENT_DAILY: Final = 10  # Daily agent commission
DEAL_TYPE_COMMISSION_AGENT_MONTHLY: Final = 11  # Monthly agent commission
DEAL_TYPE_INTEREST: Final = 12  # Interest rate
DEAL_TYPE_BUY_CANCELED: Final = 13  # Canceled buy deal.
DEAL_TYPE_SELL_CANCELED: Final = 14  # Canceled sell deal.
DEAL_DIVIDEND: Final = 15  # Dividend operations
DEAL_DIVIDEND_FRANKED: Final = 16  # Franked (non-taxable) dividend operations
DEAL_TAX: Final = 17  # Tax charges
# ENUM_DEAL_ENTRY
DEAL_ENTRY_IN: Final = 0  # Entry in
DEAL_ENTRY_OUT: Final = 1  # Entry out
DEAL_ENTRY_INOUT: Final = 2  # Reverse
DEAL_ENTRY_OUT_BY: Final = 3  # Close a position by an opposite one
# ENUM_DEAL_REASON
DEAL_REASON_CLIENT: Final = (
    0  # The deal was executed as a result of activation of an order placed from a desktop terminal
)
DEAL_REASON_MOBILE: Final = 1  # The deal was executed as a result of activation of an order placed from a mobile application
DEAL_REASON_WEB: Final = (
    2  # The deal was executed as a result of activation of an order placed from the web platform
)
DEAL_REASON_EXPERT: Final = 3  # The deal was executed as a result of activation of an order placed from an MQL5 program, i.e. an Expert Advisor or a script
DEAL_REASON_SL: Final = 4  # The deal was executed as a result of Stop Loss activation
DEAL_REASON_TP: Final = 5  # The deal was executed as a result of Take Profit activation
DEAL_REASON_SO: Final = 6  # The deal was executed as a result of the Stop Out event
DEAL_REASON_ROLLOVER: Final = 7  # The deal was executed due to a rollover
DEAL_REASON_VMARGIN: Final = 8  # The deal was executed after charging the variation margin
DEAL_REASON_SPLIT: Final = 9  # The deal was executed after the split (price reduction) of an instrument, which had an open position during split announcement
# ENUM_TRADE_REQUEST_ACTIONS, Trade Operation Types
TRADE_ACTION_DEAL: Final = (
    1  # Place a trade order for an immediate execution with the specified parameters (market order)
)
TRADE_ACTION_PENDING: Final = (
    5  # Place a trade order for the execution under specified conditions (pending order)
)
TRADE_ACTION_SLTP: Final = 6  # Modify Stop Loss and Take Profit values of an opened position
TRADE_ACTION_MODIFY: Final = 7  # Modify the parameters of the order placed previously
TRADE_ACTION_REMOVE: Final = 8  # Delete the pending order placed previously
TRADE_ACTION_CLOSE_BY: Final = 10  # Close a position by an opposite one
# ENUM_SYMBOL_CHART_MODE
SYMBOL_CHART_MODE_BID: Final = 0
SYMBOL_CHART_MODE_LAST: Final = 1
# ENUM_SYMBOL_CALC_MODE
SYMBOL_CALC_MODE_FOREX: Final = 0
SYMBOL_CALC_MODE_FUTURES: Final = 1
SYMBOL_CALC_MODE_CFD: Final = 2
SYMBOL_CALC_MODE_CFDINDEX: Final = 3
SYMBOL_CALC_MODE_CFDLEVERAGE: Final = 4
SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE: Final = 5
SYMBOL_CALC_MODE_EXCH_STOCKS: Final = 32
SYMBOL_CALC_MODE_EXCH_FUTURES: Final = 33
SYMBOL_CALC_MODE_EXCH_OPTIONS: Final = 34
SYMBOL_CALC_MODE_EXCH_OPTIONS_MARGIN: Final = 36
SYMBOL_CALC_MODE_EXCH_BONDS: Final = 37
SYMBOL_CALC_MODE_EXCH_STOCKS_MOEX: Final = 38
SYMBOL_CALC_MODE_EXCH_BONDS_MOEX: Final = 39
SYMBOL_CALC_MODE_SERV_COLLATERAL: Final = 64
# ENUM_SYMBOL_TRADE_MODE
SYMBOL_TRADE_MODE_DISABLED: Final = 0
SYMBOL_TRADE_MODE_LONGONLY: Final = 1
SYMBOL_TRADE_MODE_SHORTONLY: Final = 2
SYMBOL_TRADE_MODE_CLOSEONLY: Final = 3
SYMBOL_TRADE_MODE_FULL: Final = 4
# ENUM_SYMBOL_TRADE_EXECUTION
SYMBOL_TRADE_EXECUTION_REQUEST: Final = 0
SYMBOL_TRADE_EXECUTION_INSTANT: Final = 1
SYMBOL_TRADE_EXECUTION_MARKET: Final = 2
SYMBOL_TRADE_EXECUTION_EXCHANGE: Final = 3
# ENUM_SYMBOL_SWAP_MODE
SYMBOL_SWAP_MODE_DISABLED: Final = 0
SYMBOL_SWAP_MODE_POINTS: Final = 1
SYMBOL_SWAP_MODE_CURRENCY_SYMBOL: Final = 2
SYMBOL_SWAP_MODE_CURRENCY_MARGIN: Final = 3
SYMBOL_SWAP_MODE_CURRENCY_DEPOSIT: Final = 4
SYMBOL_SWAP_MODE_INTEREST_CURRENT: Final = 5
SYMBOL_SWAP_MODE_INTEREST_OPEN: Final = 6
SYMBOL_SWAP_MODE_REOPEN_CURRENT: Final = 7
SYMBOL_SWAP_MODE_REOPEN_BID: Final = 8
# ENUM_DAY_OF_WEEK
DAY_OF_WEEK_SUNDAY: Final = 0
DAY_OF_WEEK_MONDAY: Final = 1
DAY_OF_WEEK_TUESDAY: Final = 2
DAY_OF_WEEK_WEDNESDAY: Final = 3
DAY_OF_WEEK_THURSDAY: Final = 4
DAY_OF_WEEK_FRIDAY: Final = 5
DAY_OF_WEEK_SATURDAY: Final = 6
# ENUM_SYMBOL_ORDER_GTC_MODE
SYMBOL_ORDERS_GTC: Final = 0
SYMBOL_ORDERS_DAILY: Final = 1
SYMBOL_ORDERS_DAILY_NO_STOPS: Final = 2
# ENUM_SYMBOL_OPTION_RIGHT
SYMBOL_OPTION_RIGHT_CALL: Final = 0
SYMBOL_OPTION_RIGHT_PUT: Final = 1
# ENUM_SYMBOL_OPTION_MODE
SYMBOL_OPTION_MODE_EUROPEAN: Final = 0
SYMBOL_OPTION_MODE_AMERICAN: Final = 1
# ENUM_ACCOUNT_TRADE_MODE
ACCOUNT_TRADE_MODE_DEMO: Final = 0
ACCOUNT_TRADE_MODE_CONTEST: Final = 1
ACCOUNT_TRADE_MODE_REAL: Final = 2
# ENUM_ACCOUNT_STOPOUT_MODE
ACCOUNT_STOPOUT_MODE_PERCENT: Final = 0
ACCOUNT_STOPOUT_MODE_MONEY: Final = 1
# ENUM_ACCOUNT_MARGIN_MODE
ACCOUNT_MARGIN_MODE_RETAIL_NETTING: Final = 0
ACCOUNT_MARGIN_MODE_EXCHANGE: Final = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: Final = 2
# ENUM_BOOK_TYPE
BOOK_TYPE_SELL: Final = 1
BOOK_TYPE_BUY: Final = 2
BOOK_TYPE_SELL_MARKET: Final = 3
BOOK_TYPE_BUY_MARKET: Final = 4
# order send/check return codes
TRADE_RETCODE_REQUOTE: Final = 10004
TRADE_RETCODE_REJECT: Final = 10006
TRADE_RETCODE_CANCEL: Final = 10007
TRADE_RETCODE_PLACED: Final = 10008
TRADE_RETCODE_DONE: Final = 10009
TRADE_RETCODE_DONE_PARTIAL: Final = 10010
TRADE_RETCODE_ERROR: Final = 10011
TRADE_RETCODE_TIMEOUT: Final = 10012
TRADE_RETCODE_INVALID: Final = 10013
TRADE_RETCODE_INVALID_VOLUME: Final = 10014
TRADE_RETCODE_INVALID_PRICE: Final = 10015
TRADE_RETCODE_INVALID_STOPS: Final = 10016
TRADE_RETCODE_TRADE_DISABLED: Final = 10017
TRADE_RETCODE_MARKET_CLOSED: Final = 10018
TRADE_RETCODE_NO_MONEY: Final = 10019
TRADE_RETCODE_PRICE_CHANGED: Final = 10020
TRADE_RETCODE_PRICE_OFF: Final = 10021
TRADE_RETCODE_INVALID_EXPIRATION: Final = 10022
TRADE_RETCODE_ORDER_CHANGED: Final = 10023
TRADE_RETCODE_TOO_MANY_REQUESTS: Final = 10024
TRADE_RETCODE_NO_CHANGES: Final = 10025
TRADE_RETCODE_SERVER_DISABLES_AT: Final = 10026
TRADE_RETCODE_CLIENT_DISABLES_AT: Final = 10027
TRADE_RETCODE_LOCKED: Final = 10028
TRADE_RETCODE_FROZEN: Final = 10029
TRADE_RETCODE_INVALID_FILL: Final = 10030
TRADE_RETCODE_CONNECTION: Final = 10031
TRADE_RETCODE_ONLY_REAL: Final = 10032
TRADE_RETCODE_LIMIT_ORDERS: Final = 10033
TRADE_RETCODE_LIMIT_VOLUME: Final = 10034
TRADE_RETCODE_INVALID_ORDER: Final = 10035
TRADE_RETCODE_POSITION_CLOSED: Final = 10036
TRADE_RETCODE_INVALID_CLOSE_VOLUME: Final = 10038
TRADE_RETCODE_CLOSE_ORDER_EXIST: Final = 10039
TRADE_RETCODE_LIMIT_POSITIONS: Final = 10040
TRADE_RETCODE_REJECT_CANCEL: Final = 10041
TRADE_RETCODE_LONG_ONLY: Final = 10042
TRADE_RETCODE_SHORT_ONLY: Final = 10043
TRADE_RETCODE_CLOSE_ONLY: Final = 10044
TRADE_RETCODE_FIFO_CLOSE: Final = 10045
# function error codes, last_error()
RES_S_OK: Final = 1  # generic success
RES_E_FAIL: Final = -1  # generic fail
RES_E_INVALID_PARAMS: Final = -2  # invalid arguments/parameters
RES_E_NO_MEMORY: Final = -3  # no memory condition
RES_E_NOT_FOUND: Final = -4  # no history
RES_E_INVALID_VERSION: Final = -5  # invalid version
RES_E_AUTH_FAILED: Final = -6  # authorization failed
RES_E_UNSUPPORTED: Final = -7  # unsupported method
RES_E_AUTO_TRADING_DISABLED: Final = -8  # auto-trading disabled
RES_E_INTERNAL_FAIL: Final = -10000  # internal IPC general error
RES_E_INTERNAL_FAIL_SEND: Final = -10001  # internal IPC send failed
RES_E_INTERNAL_FAIL_RECEIVE: Final = -10002  # internal IPC recv failed
RES_E_INTERNAL_FAIL_INIT: Final = -10003  # internal IPC initialization fail
RES_E_INTERNAL_FAIL_CONNECT: Final = -10004  # internal IPC no ipc
RES_E_INTERNAL_FAIL_TIMEOUT: Final = -10005  # internal timeout
# --- End of the copy ---


#: Every constant the MetaTrader5 package exports, by name (the simulator exposes these).
PACKAGE_CONSTANTS: Final[dict[str, int]] = {
    _name: _value
    for _name, _value in dict(globals()).items()
    if _name.isupper() and isinstance(_value, int) and not _name.startswith("MT5_")
}

# MQL5 flags of SymbolInfo.filling_mode (ENUM_SYMBOL_FILLING_MODE bits). The Python package
# does not export them; they are the values MQL5 documents.
SYMBOL_FILLING_FOK: Final = 1
SYMBOL_FILLING_IOC: Final = 2
SYMBOL_FILLING_BOC: Final = 4

#: TRADE_RETCODE_* value -> name, for reason codes.
RETCODE_NAMES: Final[dict[int, str]] = {
    _value: _name
    for _name, _value in PACKAGE_CONSTANTS.items()
    if _name.startswith("TRADE_RETCODE_")
}


def retcode_reason(retcode: int) -> str:
    """A stable, lower-case reason code for a trade return code (``10030`` -> ``invalid_fill``)."""
    name = RETCODE_NAMES.get(retcode)
    return name.removeprefix("TRADE_RETCODE_").lower() if name else f"retcode_{retcode}"
