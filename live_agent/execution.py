"""Order execution: the retcode policy table, the order state machine, the intent journal and
the executor that sends market orders without ever doubling one.

Rules:

* Every ``TRADE_RETCODE_*`` has exactly one :class:`RetcodePolicy` in :data:`RETCODE_POLICY`
  (a test holds the table complete). Re-price and resend only on REQUOTE / PRICE_CHANGED /
  PRICE_OFF; never resend on an invalid request or a reject; PAUSE new exposure on market closed,
  no money, trading or autotrading disabled and account limits.
* An ambiguous outcome (``order_send`` gives ``None``, raises, or answers TIMEOUT / CONNECTION /
  ERROR / PLACED) is resolved by looking the client id up in positions and deal history (magic +
  comment) -- and the intent is *not* resent: if it is not found it ends REJECTED (not filled)
  when the lookup worked, and stays UNKNOWN (blocking new exposure) when it did not.
* Every intent is journaled (fsynced JSON lines) *before* it is sent, so an agent that crashes
  between ``order_send`` and its answer finds the intent at restart and resolves it the same way.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Literal

import msgspec

from chaintrade.chain import StepTrace
from chaintrade.domain import Action
from chaintrade.errors import ServiceUnavailable
from live_agent import mt5_constants as c
from live_agent.terminal import Terminal

HISTORY_FROM = datetime(1970, 1, 2, tzinfo=UTC)
HISTORY_TO = datetime(2100, 1, 1, tzinfo=UTC)
COMMENT_PREFIX = "ct:"


class RetcodePolicy(StrEnum):
    FILLED = "filled"
    RETRY_REPRICE = "retry_reprice"
    NO_RETRY = "no_retry"
    PAUSE = "pause"
    AMBIGUOUS = "ambiguous"


_P = RetcodePolicy
#: What to do after each trade return code (all of them, by the package's values).
RETCODE_POLICY: dict[int, RetcodePolicy] = {
    c.TRADE_RETCODE_DONE: _P.FILLED,
    c.TRADE_RETCODE_DONE_PARTIAL: _P.FILLED,
    c.TRADE_RETCODE_REQUOTE: _P.RETRY_REPRICE,
    c.TRADE_RETCODE_PRICE_CHANGED: _P.RETRY_REPRICE,
    c.TRADE_RETCODE_PRICE_OFF: _P.RETRY_REPRICE,
    c.TRADE_RETCODE_PLACED: _P.AMBIGUOUS,  # accepted, fill not confirmed
    c.TRADE_RETCODE_ERROR: _P.AMBIGUOUS,
    c.TRADE_RETCODE_TIMEOUT: _P.AMBIGUOUS,
    c.TRADE_RETCODE_CONNECTION: _P.AMBIGUOUS,
    c.TRADE_RETCODE_MARKET_CLOSED: _P.PAUSE,
    c.TRADE_RETCODE_NO_MONEY: _P.PAUSE,
    c.TRADE_RETCODE_TRADE_DISABLED: _P.PAUSE,
    c.TRADE_RETCODE_SERVER_DISABLES_AT: _P.PAUSE,
    c.TRADE_RETCODE_CLIENT_DISABLES_AT: _P.PAUSE,
    c.TRADE_RETCODE_TOO_MANY_REQUESTS: _P.PAUSE,
    c.TRADE_RETCODE_LIMIT_ORDERS: _P.PAUSE,
    c.TRADE_RETCODE_LIMIT_VOLUME: _P.PAUSE,
    c.TRADE_RETCODE_LIMIT_POSITIONS: _P.PAUSE,
    c.TRADE_RETCODE_ONLY_REAL: _P.PAUSE,
    c.TRADE_RETCODE_REJECT: _P.NO_RETRY,
    c.TRADE_RETCODE_CANCEL: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_VOLUME: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_PRICE: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_STOPS: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_EXPIRATION: _P.NO_RETRY,
    c.TRADE_RETCODE_ORDER_CHANGED: _P.NO_RETRY,
    c.TRADE_RETCODE_NO_CHANGES: _P.NO_RETRY,
    c.TRADE_RETCODE_LOCKED: _P.NO_RETRY,
    c.TRADE_RETCODE_FROZEN: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_FILL: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_ORDER: _P.NO_RETRY,
    c.TRADE_RETCODE_POSITION_CLOSED: _P.NO_RETRY,
    c.TRADE_RETCODE_INVALID_CLOSE_VOLUME: _P.NO_RETRY,
    c.TRADE_RETCODE_CLOSE_ORDER_EXIST: _P.NO_RETRY,
    c.TRADE_RETCODE_REJECT_CANCEL: _P.NO_RETRY,
    c.TRADE_RETCODE_LONG_ONLY: _P.NO_RETRY,
    c.TRADE_RETCODE_SHORT_ONLY: _P.NO_RETRY,
    c.TRADE_RETCODE_CLOSE_ONLY: _P.NO_RETRY,
    c.TRADE_RETCODE_FIFO_CLOSE: _P.NO_RETRY,
}


def policy_for(retcode: int) -> RetcodePolicy:
    """The policy of ``retcode``; an unknown code is ambiguous (look it up, never resend)."""
    return RETCODE_POLICY.get(retcode, RetcodePolicy.AMBIGUOUS)


class OrderState(StrEnum):
    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    REQUOTED = "REQUOTED"
    UNKNOWN = "UNKNOWN"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"


_S = OrderState
#: Allowed transitions of the order state machine.
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    _S.CREATED: frozenset({_S.SUBMITTED, _S.CANCELED, _S.UNKNOWN}),  # UNKNOWN: crash
    _S.SUBMITTED: frozenset({_S.FILLED, _S.REJECTED, _S.REQUOTED, _S.UNKNOWN}),
    _S.REQUOTED: frozenset({_S.SUBMITTED, _S.REJECTED, _S.CANCELED, _S.UNKNOWN}),
    _S.UNKNOWN: frozenset({_S.FILLED, _S.REJECTED}),
    _S.FILLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.CANCELED: frozenset(),
}
TERMINAL_STATES = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# The order path reads enum members as plain globals (``OrderState.FILLED`` is a slow class
# attribute lookup) and their values from tables (``member.value`` is a Python property).
_CREATED, _SUBMITTED, _REQUOTED = _S.CREATED, _S.SUBMITTED, _S.REQUOTED
_FILLED, _REJECTED, _CANCELED = _S.FILLED, _S.REJECTED, _S.CANCELED
_P_FILLED, _P_RETRY_REPRICE, _P_AMBIGUOUS = _P.FILLED, _P.RETRY_REPRICE, _P.AMBIGUOUS
_BUY = Action.BUY
_STATE_VALUE: dict[OrderState, str] = {s: s.value for s in OrderState}
_ACTION_VALUE: dict[Action, str] = {a: a.value for a in Action}


class IllegalTransition(RuntimeError):
    """A state change the order state machine does not allow (a bug, never a market event)."""


def transition(current: OrderState, new: OrderState) -> OrderState:
    """``new`` when ``current → new`` is allowed; raises :class:`IllegalTransition` otherwise."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current} -> {new}")
    return new


class OrderOutcome(msgspec.Struct, frozen=True, gc=False):
    """What became of one order intent."""

    client_order_id: str
    symbol: str
    action: Action
    volume: float
    filled: bool
    reason: str  # "filled", "filled_reconciled", or a reject reason code
    retcode: int | None = None
    price: float | None = None
    position: int | None = None
    state: OrderState = OrderState.CREATED
    policy: RetcodePolicy | None = None
    requested_price: float | None = None
    slippage_points: float | None = None
    attempts: int = 0


class OrderIntent(msgspec.Struct, frozen=True, gc=False):
    """One market order the agent wants: open (``position`` None) or close ``position``."""

    client_order_id: str
    symbol: str
    action: Action
    volume: float
    position: int | None = None
    sl_distance: float = 0.0  # price units; 0 = none
    tp_distance: float = 0.0

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.client_order_id}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]


class OrderJournal:
    """Append-only JSON lines of intent states (fsynced); in memory when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._last = {r["client_order_id"]: OrderState(r["state"]) for r in self.rows()}

    def last_state(self, client_order_id: str) -> OrderState | None:
        """The last recorded state of an intent, or None when it was never journaled."""
        return self._last.get(client_order_id)

    def record(self, intent: OrderIntent, state: OrderState, **extra: Any) -> None:
        row = {
            "client_order_id": intent.client_order_id,
            "symbol": intent.symbol,
            "action": _ACTION_VALUE[intent.action],
            "volume": intent.volume,
            "position": intent.position,
            "state": _STATE_VALUE[state],
            **extra,
        }
        self._memory.append(row)
        self._last[intent.client_order_id] = state
        if self.path is None:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self._memory)
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
        return out

    def open_intents(self) -> list[tuple[OrderIntent, OrderState]]:
        """Intents whose last state is not terminal (sent or about to be, outcome unknown)."""
        last: dict[str, dict[str, Any]] = {}
        for row in self.rows():
            last[row["client_order_id"]] = row
        return [
            (
                OrderIntent(
                    r["client_order_id"],
                    r["symbol"],
                    Action(r["action"]),
                    r["volume"],
                    r["position"],
                ),
                OrderState(r["state"]),
            )
            for r in last.values()
            if OrderState(r["state"]) not in TERMINAL_STATES
        ]


def traced_call(
    terminal: Terminal,
    trace: StepTrace,
    endpoint: str,
    fn: Callable[..., Any],
    *args: Any,
    **kw: Any,
) -> Any:
    """A terminal call traced as an ``mt5`` dependency; ``None`` answers and errors give None.

    Other exceptions are recorded and propagate (as with ``trace.dependency``)."""
    started = perf_counter_ns()
    try:
        try:
            # a call with ``**kw`` costs a dict copy and a slower call path: most have none
            result = fn(*args, **kw) if kw else fn(*args)
        except (OSError, EOFError, TimeoutError) as exc:  # bridges raise on lost links
            lost = ServiceUnavailable(f"{endpoint}: {exc!r}", reason="mt5_error")
            lost.__cause__ = exc
            trace.record_dependency("mt5", endpoint, started, 1, lost)
            return None
        if result is None:
            code, message = terminal.last_error()
    except BaseException as exc:
        trace.record_dependency("mt5", endpoint, started, 1, exc)
        raise
    if result is None:
        none = ServiceUnavailable(f"{endpoint}: {code} {message}", reason="mt5_none")
        trace.record_dependency("mt5", endpoint, started, 1, none)
        return None
    trace.record_dependency("mt5", endpoint, started)
    return result


def filling_for(filling_mode_flags: int) -> int:
    """ORDER_FILLING_* from a symbol's ``filling_mode`` flags: FOK, else IOC, else RETURN."""
    if filling_mode_flags & c.SYMBOL_FILLING_FOK:
        return c.ORDER_FILLING_FOK
    if filling_mode_flags & c.SYMBOL_FILLING_IOC:
        return c.ORDER_FILLING_IOC
    return c.ORDER_FILLING_RETURN


def _outcome(
    intent: OrderIntent,
    reason: str,
    state: OrderState,
    retcode: int | None,
    policy: RetcodePolicy | None,
    requested_price: float | None,
    attempts: int,
) -> OrderOutcome:
    """An outcome that did not fill (yet)."""
    return OrderOutcome(
        intent.client_order_id,
        intent.symbol,
        intent.action,
        intent.volume,
        filled=False,
        reason=reason,
        retcode=retcode,
        state=state,
        policy=policy,
        requested_price=requested_price,
        attempts=attempts,
    )


class Executor:
    """Sends intents with the retcode policy; resolves ambiguous outcomes by lookup."""

    def __init__(
        self,
        terminal: Terminal,
        *,
        magic: int,
        deviation_points: int,
        requote_retries: int,
        journal: OrderJournal | None = None,
    ) -> None:
        self._terminal = terminal
        self._magic = magic
        self._deviation = deviation_points
        self._requote_retries = requote_retries
        self.journal = journal or OrderJournal(None)

    def submit(self, trace: StepTrace, intent: OrderIntent, info: Any) -> OrderOutcome:
        """Send one intent (journaled first); resent only after a re-price retcode.

        An intent id already in the journal is never sent again (``duplicate_intent``): client
        ids are derived from the bar, so a restarted agent that sees the same bar again cannot
        double the order."""
        journal, terminal = self.journal, self._terminal
        seen = journal.last_state(intent.client_order_id)
        if seen is not None:
            return OrderOutcome(
                intent.client_order_id,
                intent.symbol,
                intent.action,
                intent.volume,
                False,
                "duplicate_intent",
                state=seen,
            )
        is_buy = intent.action == _BUY
        request: dict[str, Any] = {
            "action": c.TRADE_ACTION_DEAL,
            "symbol": intent.symbol,
            "volume": intent.volume,
            "type": c.ORDER_TYPE_BUY if is_buy else c.ORDER_TYPE_SELL,
            "deviation": self._deviation,
            "magic": self._magic,
            "comment": intent.comment,
            "type_time": c.ORDER_TIME_GTC,
            "type_filling": filling_for(int(info.filling_mode)),
        }
        opening = intent.position is None
        if not opening:
            request["position"] = intent.position
        point, digits = float(info.point), int(info.digits)
        sign = 1.0 if is_buy else -1.0
        state = _CREATED
        journal.record(intent, state)
        # the outcome so far, as plain values (one OrderOutcome per return, no copies)
        reason, retcode, policy, requested = "not_sent", None, None, None
        for attempt in range(1, self._requote_retries + 2):
            tick = traced_call(
                terminal, trace, "symbol_info_tick", terminal.symbol_info_tick, intent.symbol
            )
            if tick is None:
                state = transition(state, _CANCELED)
                journal.record(intent, state, reason="no_quote")
                return _outcome(intent, "no_quote", state, retcode, policy, requested, attempt - 1)
            price = float(tick.ask if is_buy else tick.bid)
            request["price"] = price
            if opening and intent.sl_distance > 0:
                request["sl"] = round(price - sign * intent.sl_distance, digits)
            if opening and intent.tp_distance > 0:
                request["tp"] = round(price + sign * intent.tp_distance, digits)
            state = transition(state, _SUBMITTED)
            journal.record(intent, state, attempt=attempt, price=price)
            requested = price
            # traced as ``trace.dependency("mt5", "order_send", attempt)`` would, without its
            # timer object: the dependency is recorded before a no-reply is resolved
            started = perf_counter_ns()
            try:
                try:
                    result = terminal.order_send(request)
                except (OSError, EOFError, TimeoutError) as exc:
                    raise ServiceUnavailable(repr(exc), reason="no_reply") from exc
                if result is None:
                    code, message = terminal.last_error()
                    raise ServiceUnavailable(
                        f"order_send gave no reply: {code} {message}", reason="no_reply"
                    )
            except BaseException as exc:
                trace.record_dependency("mt5", "order_send", started, attempt, exc)
                if not isinstance(exc, ServiceUnavailable):
                    raise
                sent = _outcome(intent, reason, state, retcode, policy, requested, attempt)
                return self.resolve(trace, intent, state, sent, "no_reply")
            trace.record_dependency("mt5", "order_send", started, attempt)
            retcode = int(result.retcode)
            policy = policy_for(retcode)
            if policy is _P_FILLED:
                fill = float(result.price)
                state = transition(state, _FILLED)
                journal.record(intent, state, retcode=retcode, price=fill)
                slip = (fill - price) * sign / point if point > 0 and fill else None
                return OrderOutcome(
                    intent.client_order_id,
                    intent.symbol,
                    intent.action,
                    intent.volume,
                    filled=True,
                    reason="filled",
                    retcode=retcode,
                    price=fill,
                    position=intent.position or int(result.order),
                    state=state,
                    policy=policy,
                    requested_price=requested,
                    slippage_points=round(slip, 3) if slip is not None else None,
                    attempts=attempt,
                )
            if policy is _P_AMBIGUOUS:
                sent = _outcome(intent, reason, state, retcode, policy, requested, attempt)
                return self.resolve(trace, intent, state, sent, c.retcode_reason(retcode))
            reason = c.retcode_reason(retcode)
            if policy is _P_RETRY_REPRICE and attempt <= self._requote_retries:
                state = transition(state, _REQUOTED)
                journal.record(intent, state, retcode=retcode)
                continue
            state = transition(state, _REJECTED)
            journal.record(intent, state, retcode=retcode)
            return _outcome(intent, reason, state, retcode, policy, requested, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def resolve(
        self,
        trace: StepTrace,
        intent: OrderIntent,
        state: OrderState,
        outcome: OrderOutcome,
        why: str,
    ) -> OrderOutcome:
        """After an ambiguous answer: find the intent by magic + comment; never resend."""
        if state != OrderState.UNKNOWN:
            state = transition(state, OrderState.UNKNOWN)
            self.journal.record(intent, state, why=why)
        found = self.lookup(trace, intent)
        if found is None:
            return msgspec.structs.replace(outcome, reason=f"{why}_unknown", state=state)
        if found is False:
            state = transition(state, OrderState.REJECTED)
            self.journal.record(intent, state, reason=f"{why}_not_filled")
            return msgspec.structs.replace(outcome, reason=f"{why}_not_filled", state=state)
        price, position = found
        state = transition(state, OrderState.FILLED)
        self.journal.record(intent, state, price=price, reconciled=True)
        return msgspec.structs.replace(
            outcome,
            filled=True,
            reason="filled_reconciled",
            price=price,
            position=intent.position or position,
            state=state,
        )

    def lookup(
        self, trace: StepTrace, intent: OrderIntent
    ) -> tuple[float, int] | Literal[False] | None:
        """``(price, position)`` when the intent filled, False when it did not, None if unknown."""
        comment = intent.comment
        terminal = self._terminal
        positions = traced_call(
            terminal, trace, "positions_get", terminal.positions_get, symbol=intent.symbol
        )
        deals = traced_call(
            terminal,
            trace,
            "history_deals_get",
            terminal.history_deals_get,
            HISTORY_FROM,
            HISTORY_TO,
        )
        if positions is None or deals is None:
            return None
        if intent.position is None:
            for p in positions:
                if p.magic == self._magic and p.comment == comment:
                    return float(p.price_open), int(p.ticket)
        for d in deals:
            if d.magic == self._magic and d.comment == comment:
                return float(d.price), int(d.position_id)
        return False

    def recover(self, trace: StepTrace) -> tuple[list[OrderOutcome], list[OrderOutcome]]:
        """Resolve the journal's open intents (after a crash): ``(resolved, still unknown)``."""
        resolved: list[OrderOutcome] = []
        unknown: list[OrderOutcome] = []
        for intent, state in self.journal.open_intents():
            base = OrderOutcome(
                intent.client_order_id,
                intent.symbol,
                intent.action,
                intent.volume,
                False,
                "restart",
            )
            out = self.resolve(trace, intent, state, base, "restart")
            (unknown if out.state == OrderState.UNKNOWN else resolved).append(out)
        return resolved, unknown
