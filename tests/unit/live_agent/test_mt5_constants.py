"""Our MT5 constants equal the real MetaTrader5 package's."""

from __future__ import annotations

import ast
import operator
from pathlib import Path

from live_agent import mt5_constants as c

# the real package's __init__.py (MIT), kept as text: see tests/data/metatrader5/README.md
REAL_INIT = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "metatrader5"
    / "MetaTrader5-5.0.6231-__init__.py.txt"
)
_BINOPS = {ast.BitOr: operator.or_, ast.Add: operator.add, ast.LShift: operator.lshift}


def _evaluate(node: ast.expr) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError(f"unexpected constant expression {ast.dump(node)}")


def _real_constants(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                found[target.id] = _evaluate(stmt.value)
    return found


def test_known_values_match_the_real_terminal() -> None:
    assert c.TIMEFRAME_H1 == 16385
    assert c.TIMEFRAME_MN1 == 49153
    assert c.TRADE_RETCODE_DONE == 10009
    assert c.TRADE_RETCODE_INVALID_FILL == 10030
    assert c.ORDER_FILLING_IOC == 1
    assert c.ORDER_FILLING_RETURN == 2
    assert c.TRADE_ACTION_DEAL == 1
    assert c.RES_E_INTERNAL_FAIL_TIMEOUT == -10005
    assert c.PACKAGE_CONSTANTS["ACCOUNT_MARGIN_MODE_RETAIL_HEDGING"] == 2


def test_mql5_only_flags_are_not_presented_as_package_constants() -> None:
    assert "SYMBOL_FILLING_FOK" not in c.PACKAGE_CONSTANTS
    assert (c.SYMBOL_FILLING_FOK, c.SYMBOL_FILLING_IOC) == (1, 2)


def test_retcode_reason_is_a_lower_case_code() -> None:
    assert c.retcode_reason(10030) == "invalid_fill"
    assert c.retcode_reason(10004) == "requote"
    assert c.retcode_reason(1) == "retcode_1"


def test_every_constant_of_the_real_package_is_ours_with_the_same_value() -> None:
    real = _real_constants(REAL_INIT)
    assert len(real) > 200
    missing = sorted(set(real) - set(c.PACKAGE_CONSTANTS))
    assert missing == []
    different = {
        k: (v, c.PACKAGE_CONSTANTS[k]) for k, v in real.items() if c.PACKAGE_CONSTANTS[k] != v
    }
    assert different == {}
    assert set(c.PACKAGE_CONSTANTS) == set(real)
