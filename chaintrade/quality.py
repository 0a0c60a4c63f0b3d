"""Great Expectations guards for raw bars and ticks, with Data Docs kept per run.

``great_expectations`` (a ~6 s import) is imported inside ``run_checkpoint`` only,
so importing this module stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from chaintrade.domain import BAR_FRAME_COLUMNS
from chaintrade.errors import DataValidationError

SUITE_NAME = "raw_bars"
TICK_SUITE_NAME = "raw_ticks"
_PRICES = ("open", "high", "low", "close")
_TICK_COLUMNS = ("symbol", "time_msc", "time", "bid", "ask", "last", "volume", "flags")


@dataclass(frozen=True)
class QualityReport:
    """Outcome of one validation run: ``failed`` holds readable ``expectation: reason`` lines."""

    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)
    docs_index: Path = Path()
    site_index: Path = Path()
    suite: str = SUITE_NAME

    def raise_for_failure(self) -> None:
        """Raise ``DataValidationError`` listing the failed expectations, if any."""
        if self.success:
            return
        counts: dict[str, int] = {}
        for line in self.failed:
            name = line.split(":", 1)[0].split("(", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        raise DataValidationError(
            f"{len(self.failed)} of {self.evaluated} {self.suite} expectations failed "
            f"(Data Docs: {self.docs_index}):\n  " + "\n  ".join(self.failed),
            counts=counts,
        )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "run"


def _expectations(bars: pd.DataFrame) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(BAR_FRAME_COLUMNS), exact_match=True)
    ]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("symbol", "time", *_PRICES)]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in _PRICES
    ]
    exps.append(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True)
    )
    exps += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B=c, or_equal=True)
        for c in ("open", "close")
    ]
    exps += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=c, column_B="low", or_equal=True)
        for c in ("open", "close")
    ]
    exps.append(gxe.ExpectColumnValuesToBeBetween(column="tick_volume", min_value=0))
    # Strictly increasing time within each symbol (one expectation per symbol).
    symbols = sorted(bars["symbol"].dropna().astype(str).unique()) if "symbol" in bars else []
    for symbol in symbols:
        exps.append(
            gxe.ExpectColumnValuesToBeIncreasing(
                column="time",
                strictly=True,
                row_condition=f"symbol == {symbol!r}",
                condition_parser="pandas",
            )
        )
    return exps


def _fmt(value: Any) -> str:
    """Short human form of an unexpected value (numpy scalars, timestamps, pairs)."""
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _describe(result: Any) -> str:
    """``expectation_type(args): reason`` for one failed expectation result."""
    config = result.expectation_config
    kwargs = config.kwargs
    args = [
        f"{k}={kwargs[k]}"
        for k in ("column", "column_A", "column_B", "min_value", "strictly")
        if kwargs.get(k) is not None
    ]
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict):
        condition = condition.get("pass_through_filter", condition)
    if condition:
        args.append(f"where {condition}")
    head = f"{config.type}({', '.join(args)})"
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return f"{head}: could not run: {info.get('exception_message')}"
    res = result.result or {}
    if "unexpected_count" in res:
        examples = res.get("partial_unexpected_list") or []
        sample = f", e.g. {', '.join(_fmt(v) for v in examples[:3])}" if examples else ""
        total = res.get("element_count")
        of = f" of {total}" if total is not None else ""
        return f"{head}: {res['unexpected_count']}{of} rows violate it{sample}"
    if "observed_value" in res:
        details = res.get("details") or {}
        extra = f" (mismatched: {details.get('mismatched')})" if details.get("mismatched") else ""
        return f"{head}: observed {res['observed_value']}{extra}"
    return f"{head}: failed"


def _tick_expectations(ticks: pd.DataFrame) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(_TICK_COLUMNS), exact_match=False)
    ]
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=c)
        for c in ("symbol", "time_msc", "time", "bid", "ask")
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
        for c in ("bid", "ask")
    ]
    exps.append(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ask", column_B="bid", or_equal=True)
    )
    exps.append(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    symbols = sorted(ticks["symbol"].dropna().astype(str).unique()) if "symbol" in ticks else []
    for symbol in symbols:
        exps.append(
            gxe.ExpectColumnValuesToBeIncreasing(
                column="time_msc",
                strictly=False,
                row_condition=f"symbol == {symbol!r}",
                condition_parser="pandas",
            )
        )
    return exps


def validate_bars_with_ge(bars: pd.DataFrame, *, run_name: str, docs_dir: Path) -> QualityReport:
    """Validate a bar frame with the ``raw_bars`` suite; Data Docs for this run are kept.

    Each run gets its own Data Docs site under ``docs_dir/runs/<UTC stamp>_<run_name>/``
    (``docs_index``); ``docs_dir/index.html`` (``site_index``) lists every run kept, newest
    first, with its outcome.
    """
    return run_checkpoint(
        bars,
        suite_name=SUITE_NAME,
        expectations=_expectations(bars),
        run_name=run_name,
        docs_dir=docs_dir,
    )


def validate_ticks_with_ge(ticks: pd.DataFrame, *, run_name: str, docs_dir: Path) -> QualityReport:
    """Validate a tick frame with the ``raw_ticks`` suite (like ``validate_bars_with_ge``)."""
    return run_checkpoint(
        ticks,
        suite_name=TICK_SUITE_NAME,
        expectations=_tick_expectations(ticks),
        run_name=run_name,
        docs_dir=docs_dir,
    )


def _write_site_index(docs_dir: Path) -> Path:
    """``docs_dir/index.html``: one line per kept run, newest first."""
    import html
    import json

    runs = []
    for entry in sorted((docs_dir / "runs").glob("*/run.json"), reverse=True):
        info = json.loads(entry.read_text())
        runs.append((entry.parent.name, info))
    rows = "\n".join(
        f'<tr><td><a href="runs/{html.escape(name)}/index.html">{html.escape(name)}</a></td>'
        f"<td>{html.escape(info['suite'])}</td>"
        f"<td>{'passed' if info['success'] else 'FAILED'}</td>"
        f"<td>{info['evaluated'] - len(info['failed'])}/{info['evaluated']}</td>"
        f"<td>{html.escape('; '.join(info['failed'])[:500])}</td></tr>"
        for name, info in runs
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Chaintrade data quality"
        "</title><style>body{font-family:sans-serif}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        "<h1>Chaintrade data quality: Great Expectations runs</h1>"
        "<table><tr><th>run</th><th>suite</th><th>outcome</th><th>expectations met</th>"
        f"<th>failures</th></tr>{rows}</table></body></html>"
    )
    index = docs_dir / "index.html"
    index.write_text(page)
    return index


def run_checkpoint(
    frame: pd.DataFrame,
    *,
    suite_name: str,
    expectations: list[Any],
    run_name: str,
    docs_dir: Path,
) -> QualityReport:
    """Run one suite over ``frame`` as a GX Checkpoint with ``UpdateDataDocsAction``.

    Uses an ephemeral GX context: pandas datasource, dataframe asset, whole-dataframe batch.
    """
    import json

    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs_dir = Path(docs_dir).resolve()
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = docs_dir / "runs" / f"{stamp}_{suite_name}_{_safe_name(run_name)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(run_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch_definition = (
        context.data_sources.add_pandas(suite_name)
        .add_dataframe_asset(name=suite_name)
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}_checkpoint",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=["local_site"])],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        run_id=RunIdentifier(run_name=_safe_name(run_name)),
    )
    failed: list[str] = []
    evaluated = 0
    for validation in result.run_results.values():
        for res in validation.results:
            evaluated += 1
            if not res.success:
                failed.append(_describe(res))
    success = bool(result.success)
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "suite": suite_name,
                "run_name": run_name,
                "success": success,
                "evaluated": evaluated,
                "failed": failed,
                "rows": len(frame),
            }
        )
    )
    return QualityReport(
        success=success,
        evaluated=evaluated,
        failed=failed,
        docs_index=run_dir / "index.html",
        site_index=_write_site_index(docs_dir),
        suite=suite_name,
    )
