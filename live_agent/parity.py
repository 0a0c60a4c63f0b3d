"""Paper = backtest: the same signal replayed through the agent and the simulator, and through
the signal backtest of the training work (:func:`chaintrade.evaluation.strategy_backtest`, what
:func:`chaintrade.training.score` runs for the MLflow metrics and the promotion gate), trade by
trade.

Conventions both sides share (each is explicit, so a difference means a bug, not a definition):

* **Signal.** A strength per closed bar, known at that bar's close (:class:`SignalTable`, an
  in-process signal source keyed by symbol and bar open time). No strength (NaN) = no
  prediction = HOLD, which also keeps the backtest position unchanged.
* **Rule.** The seed rule with the same thresholds on both sides (``Rule`` ↔ the agent's
  ``buy_threshold``/``sell_threshold``/``close_band``, ``min_confidence`` 0). A BUY while short
  (SELL while long) reverses: the agent closes the short and opens the long in the same chain.
* **Fill.** At the next bar's open: the simulator quotes the open of the forming bar; the
  backtest earns the labels' ``next_open_return`` (:func:`chaintrade.labels.next_open_returns`,
  the column training reads). The last bar's decision has no next open and is dropped on both
  sides (the simulator's market is closed there).
* **Costs.** Zero: spread 0 in the replayed bars, no slippage, ``Costs(0, 0, 0)``.
* **Sizing and stops.** A fixed lot (the backtest's unit position); no SL/TP, no ATR sizing;
  protections, rate limit, spread and position caps set wide so that risk never denies.
* **Compared.** Per closed trade: the log return in bp (the paper side from its deal prices),
  and the account-currency PnL (the simulator's deal profit against the backtest's return on
  the lot's notional). Trades still open at the end are counted, not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from chaintrade.chain import ChainContext, StepTrace
from chaintrade.errors import FatalError
from chaintrade.evaluation import Costs, Rule, strategy_backtest
from chaintrade.labels import next_open_returns
from chaintrade.schemas import BarIn, Prediction
from live_agent import mt5_constants as c
from live_agent.agent import Agent
from live_agent.execution import HISTORY_FROM, HISTORY_TO
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator, SymbolSpec

_validate_prediction = Prediction.__pydantic_validator__.validate_python


class NoSignal(FatalError):
    """The signal source has no strength for this bar."""

    reason = "no_signal"


class SignalTable:
    """An in-process signal source (the agent's ``Predictor``): strength per (symbol, bar open
    time in epoch seconds); a bar without one gets :class:`NoSignal` (the agent holds)."""

    def __init__(self, strengths: Mapping[tuple[str, int], float], confidence: float = 1.0):
        self._table = {k: float(v) for k, v in strengths.items() if math.isfinite(v)}
        self._confidence = confidence

    @classmethod
    def from_frame(cls, bars: pd.DataFrame, strength: np.ndarray) -> SignalTable:
        """``strength[i]`` for the bar in row ``i`` of ``bars`` (symbol, time)."""
        seconds = pd.DatetimeIndex(pd.to_datetime(bars["time"], utc=True)).as_unit("s").asi8
        keys = zip(bars["symbol"].astype(str), seconds.tolist(), strict=True)
        return cls(dict(zip(keys, np.asarray(strength, dtype=float).tolist(), strict=True)))

    def predict(self, bar: BarIn, chain: ChainContext, trace: StepTrace) -> Prediction:
        strength = self._table.get((bar.symbol, int(bar.time.timestamp())))
        if strength is None:
            raise NoSignal(f"no signal for {bar.symbol} at {bar.time.isoformat()}")
        prediction: Prediction = _validate_prediction(  # Prediction.model_validate, unwrapped
            {
                "symbol": bar.symbol,
                "prediction": (strength + 1.0) / 2.0,
                "strength": strength,
                "confidence": self._confidence,
                "model_name": "signal_table",
                "model_version": "0",
                "feature_timestamp": bar.time,
            }
        )
        return prediction


@dataclass(frozen=True, slots=True)
class TradeDiff:
    """One closed trade on both sides."""

    symbol: str
    side: int  # +1 long, -1 short
    entry_time: datetime  # the decision bar's open time
    exit_time: datetime
    backtest_bp: float
    paper_bp: float
    backtest_pnl: float  # account currency, the backtest's return on the paper lot's notional
    paper_pnl: float

    @property
    def diff_bp(self) -> float:
        return self.paper_bp - self.backtest_bp


@dataclass(frozen=True, slots=True)
class ParityReport:
    """The trade-by-trade comparison; ``matched`` is False when the trade lists differ."""

    trades: tuple[TradeDiff, ...]
    backtest_trades: int
    paper_trades: int
    open_at_end: tuple[int, int]  # (backtest, paper)
    matched: bool
    mismatch: str = ""

    @property
    def max_abs_diff_bp(self) -> float:
        return max((abs(t.diff_bp) for t in self.trades), default=0.0)

    @property
    def total_backtest_bp(self) -> float:
        return sum(t.backtest_bp for t in self.trades)

    @property
    def total_paper_bp(self) -> float:
        return sum(t.paper_bp for t in self.trades)

    @property
    def pnl_diff(self) -> float:
        return sum(t.paper_pnl - t.backtest_pnl for t in self.trades)

    def as_dict(self) -> dict[str, object]:
        return {
            "matched": self.matched,
            "mismatch": self.mismatch,
            "trades": len(self.trades),
            "backtest_trades": self.backtest_trades,
            "paper_trades": self.paper_trades,
            "open_at_end": list(self.open_at_end),
            "max_abs_diff_bp": self.max_abs_diff_bp,
            "total_backtest_bp": self.total_backtest_bp,
            "total_paper_bp": self.total_paper_bp,
            "pnl_diff": self.pnl_diff,
            "diff_bp": [t.diff_bp for t in self.trades],
        }


def parity_settings(rule: Rule, **overrides: object) -> AgentSettings:
    """Agent settings that follow the conventions of the module docstring."""
    values: dict[str, object] = {
        "buy_threshold": rule.buy,
        "sell_threshold": rule.sell,
        "close_band": rule.close_band,
        "lot_size": 1.0,
        "max_positions_per_symbol": 1,
        "max_positions_total": 1_000,
        "max_spread_points": 1_000_000,
        "max_orders_per_window": 1_000_000,
        "daily_loss_pct": None,
        "max_drawdown_pct": None,
        "deviation_points": 0,
        "requote_retries": 0,
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def paper_vs_backtest(
    bars: pd.DataFrame,
    strength: np.ndarray,
    *,
    rule: Rule | None = None,
    settings: AgentSettings | None = None,
    balance: float = 1_000_000.0,
) -> ParityReport:
    """Replay ``bars`` (one timeframe, any symbols) through agent + simulator with ``strength``
    as the signal, run the signal backtest on the same bars, and compare trade by trade."""
    from live_agent.testing import ListSink  # an in-memory chain sink

    rule = rule or Rule()
    settings = settings or parity_settings(rule)
    order = np.lexsort((pd.to_datetime(bars["time"], utc=True).to_numpy(), bars["symbol"]))
    frame = bars.iloc[order].reset_index(drop=True).assign(spread=0)
    strength = np.asarray(strength, dtype=float)[order]
    symbols = sorted(frame["symbol"].astype(str).unique())
    specs = {s: SymbolSpec.for_symbol(s, volume_max=1_000.0) for s in symbols}
    sim = Mt5Simulator(frame, specs=specs, balance=balance, leverage=1_000, start_bar=0)
    agent = Agent(sim, SignalTable.from_frame(frame, strength), ListSink(), settings)
    if not agent.start().ok:
        raise RuntimeError("the simulator did not reconcile")
    agent.run_replay(symbols, n_bars=len(frame))
    paper = _paper_trades(sim, settings.magic)

    seconds = pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True)).as_unit("s").asi8
    last = frame["symbol"].ne(frame["symbol"].shift(-1)).to_numpy()
    strength[last] = np.nan  # no next open for the last bar's decision
    result = strategy_backtest(
        strength,
        next_open_returns(frame).to_numpy(),
        frame["symbol"].astype(str).to_numpy(),
        seconds,
        costs=Costs(0.0, 0.0, 0.0),
        rule=rule,
        bars_per_year=1,
    )

    out: list[TradeDiff] = []
    bt_open = paper_open = 0
    mismatches: list[str] = []
    for symbol in symbols:
        rows = frame[frame["symbol"] == symbol]
        times = pd.DatetimeIndex(pd.to_datetime(rows["time"], utc=True))
        sym_seconds = seconds[rows.index]
        trips = [t for t in result.trades if t.symbol == symbol]
        closed = [t for t in trips if t.closed]
        bt_open += len(trips) - len(closed)
        mine = [p for p in paper if p.symbol == symbol]
        paper_open += sum(1 for p in mine if p.exit_s is None)
        mine = [p for p in mine if p.exit_s is not None]
        spec = specs[symbol]

        def bar(at_s: int, sym_seconds: np.ndarray = sym_seconds) -> int:
            """The row of the bar that opens at ``at_s``."""
            return int(np.searchsorted(sym_seconds, at_s))

        def decided(fill_s: int, sym_seconds: np.ndarray = sym_seconds) -> int:
            """The decision bar of a fill: the bar before the one whose open it filled at."""
            return int(np.searchsorted(sym_seconds, fill_s, side="right")) - 2

        for k, trade in enumerate(closed):
            assert trade.exit_time is not None
            start, end = bar(trade.entry_time), bar(trade.exit_time)
            if k >= len(mine):
                mismatches.append(f"{symbol}: backtest trade at {times[start]} has no paper trade")
                continue
            p = mine[k]
            assert p.exit_s is not None and p.exit_price is not None
            paper_span = (p.side, decided(p.entry_s), decided(p.exit_s))
            if paper_span != (trade.side, start, end):
                mismatches.append(
                    f"{symbol}: trade {k}: backtest {(trade.side, start, end)}, paper {paper_span}"
                )
            units = p.volume * spec.contract_size
            entry_price = float(rows["open"].iloc[start + 1])
            side, bt_log = trade.side, trade.log_return
            bt_pnl = side * entry_price * (math.exp(side * bt_log) - 1.0) * units
            out.append(
                TradeDiff(
                    symbol,
                    side,
                    times[start].to_pydatetime(),
                    times[end].to_pydatetime(),
                    bt_log * 1e4,
                    p.side * math.log(p.exit_price / p.entry_price) * 1e4,
                    bt_pnl,
                    p.profit,
                )
            )
        if len(mine) > len(closed):
            mismatches.append(f"{symbol}: {len(mine) - len(closed)} extra paper trades")
    bt_total = len(result.trades)
    return ParityReport(
        tuple(out),
        bt_total,
        len(paper),
        (bt_open, paper_open),
        matched=not mismatches and bt_total == len(paper),
        mismatch="; ".join(mismatches[:5]),
    )


@dataclass(slots=True)
class _PaperTrade:
    symbol: str
    side: int
    volume: float
    entry_price: float
    entry_s: int  # fill times (epoch seconds)
    exit_price: float | None = None
    exit_s: int | None = None
    profit: float = 0.0


def _paper_trades(sim: Mt5Simulator, magic: int) -> list[_PaperTrade]:
    """The simulator's positions of ``magic`` as trades (entry and exit deals), in order."""
    deals = sim.history_deals_get(HISTORY_FROM, HISTORY_TO) or ()
    trades: dict[int, _PaperTrade] = {}
    for d in sorted(deals, key=lambda d: (d.time_msc, d.ticket)):
        if d.magic != magic or not d.symbol:
            continue
        if d.entry == c.DEAL_ENTRY_IN:
            side = 1 if d.type == c.DEAL_TYPE_BUY else -1
            trades[d.position_id] = _PaperTrade(d.symbol, side, d.volume, d.price, d.time)
        elif d.position_id in trades:
            t = trades[d.position_id]
            t.exit_price, t.exit_s, t.profit = d.price, d.time, t.profit + d.profit
    return list(trades.values())
