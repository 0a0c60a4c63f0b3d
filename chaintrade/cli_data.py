"""``chaintrade data``: generate, validate and ingest market data (for users and the DAGs).

Exit codes: 0 = good (nothing blocks), 1 = the data blocks downstream steps (more rejected
rows than ``--max-rejected`` allows, or a Great Expectations suite failed), 2 = usage or
input error (unreadable file, ambiguous format).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

data_app = typer.Typer(help="Market data: generate, validate, ingest.", no_args_is_help=True)
console = Console()

CalendarOpt = Annotated[
    str | None,
    typer.Option(
        help="Market calendar: fx_new_york, utc_weekdays or fx_weekend_core (default). "
        "A calendar other than the default also reports gaps."
    ),
]
MaxRejectedOpt = Annotated[
    float, typer.Option(help="Fraction of rejected rows tolerated before the data blocks.")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _calendar(name: str | None) -> Any:
    from chaintrade.validation import CALENDARS

    if name is None:
        return None
    if name not in CALENDARS:
        raise typer.BadParameter(f"unknown calendar {name!r}; expected one of {sorted(CALENDARS)}")
    return CALENDARS[name]


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir() and not any(p.glob("*.parquet")):
            out += sorted(
                x for x in p.rglob("*") if x.suffix.lower() in (".csv", ".txt", ".parquet")
            )
        else:
            out.append(p)
    return out


def _load(path: Path, symbol: str | None, timeframe: str | None, tz: str | None) -> Any:
    from chaintrade.market_data import is_tick_file, load_bars, load_ticks

    try:
        if is_tick_file(path):
            return "ticks", load_ticks(path, symbol=symbol, tz=tz)
        return "bars", load_bars(path, symbol=symbol, timeframe=timeframe, tz=tz)
    except (ValueError, OSError) as exc:
        console.print(f"[red]{path}: {exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc


def _validate(kind: str, frame: pd.DataFrame, calendar: Any) -> Any:
    from chaintrade.validation import validate_bars, validate_ticks

    if kind == "ticks":
        return validate_ticks(frame, calendar=calendar)
    return validate_bars(frame, calendar=calendar)


def _counts_table(title: str, rows: list[tuple[str, str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("file")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    for row in rows:
        table.add_row(row[0], row[1], str(row[2]))
    return table


@data_app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Folder to write into.")],
    symbols: Annotated[int, typer.Option(help="How many symbols (SYN000, SYN001, ...).")] = 3,
    bars: Annotated[int, typer.Option(help="Bars per symbol.")] = 100_000,
    timeframe: Annotated[str, typer.Option(help="Bar timeframe.")] = "M1",
    ticks: Annotated[int, typer.Option(help="Also write this many ticks per symbol.")] = 0,
    start: Annotated[str, typer.Option(help="First bar (UTC).")] = "2020-01-01",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Inject faults, e.g. --fault spike=5 --fault duplicate=3."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv or mt5.")] = "parquet",
) -> None:
    """Write a seeded synthetic market (bars, optionally ticks and faults), one file per symbol."""
    from chaintrade.market_data import inject_faults, synthetic_market, synthetic_ticks

    faults = {}
    for item in fault or []:
        name, _, count = item.partition("=")
        faults[name] = int(count or 1)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"SYN{i:03d}" for i in range(symbols)]
    written = 0
    with _progress() as progress:
        task = progress.add_task("generating", total=len(names))
        for i, name in enumerate(names):
            frame = synthetic_market([name], timeframe=timeframe, start=start, n=bars, seed=seed)
            if faults:
                frame = inject_faults(frame, faults, seed=seed + i).drop(columns="fault")
            written += _write(frame, out / f"{name}_{timeframe}", fmt, kind="bars")
            if ticks:
                tick_frame = synthetic_ticks(name, start=start, n=ticks, seed=seed)
                if faults:
                    tick_faults = {k: v for k, v in faults.items() if k != "ohlc"}
                    tick_frame = inject_faults(tick_frame, tick_faults, seed=seed + i).drop(
                        columns="fault"
                    )
                written += _write(tick_frame, out / f"{name}_ticks", fmt, kind="ticks")
            progress.advance(task)
    console.print(f"wrote {written:,} rows under {out}")


def _write(frame: pd.DataFrame, stem: Path, fmt: str, *, kind: str) -> int:
    if fmt == "parquet":
        frame.to_parquet(stem.with_suffix(".parquet"), index=False)
    elif fmt == "csv":
        frame.to_csv(stem.with_suffix(".csv"), index=False)
    elif fmt == "mt5":
        _write_mt5(frame, stem.with_suffix(".csv"), kind=kind)
    else:
        raise typer.BadParameter(f"unknown format {fmt!r}; expected parquet, csv or mt5")
    return len(frame)


def _write_mt5(frame: pd.DataFrame, path: Path, *, kind: str) -> None:
    """The tab-separated layout of MT5's "Export bars"/"Export ticks"."""
    time = frame["time"]
    out = pd.DataFrame({"<DATE>": time.dt.strftime("%Y.%m.%d")})
    if kind == "ticks":
        out["<TIME>"] = time.dt.strftime("%H:%M:%S.%f").str[:-3]
        for c in ("bid", "ask", "last", "volume", "flags"):
            out[f"<{c.upper()}>"] = frame[c].to_numpy()
    else:
        out["<TIME>"] = time.dt.strftime("%H:%M:%S")
        for c in ("open", "high", "low", "close"):
            out[f"<{c.upper()}>"] = frame[c].to_numpy()
        out["<TICKVOL>"] = frame["tick_volume"].to_numpy()
        out["<VOL>"] = frame["real_volume"].to_numpy()
        out["<SPREAD>"] = frame["spread"].to_numpy()
    out.to_csv(path, sep="\t", index=False)


@data_app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (CSV, MT5, Parquet).")],
    symbol: Annotated[str | None, typer.Option(help="Symbol, when file names do not say.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe (default: inferred).")] = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive times (default UTC).")] = None,
    calendar: CalendarOpt = None,
    max_rejected: MaxRejectedOpt = 0.0,
    quarantine: Annotated[
        Path | None, typer.Option(help="Write rejected rows (with reasons) to this Parquet file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Validate files; print rejected rows per reason; exit 1 when the data blocks."""
    cal = _calendar(calendar)
    rows: list[tuple[str, str, Any]] = []
    summary: dict[str, Any] = {}
    blocked = False
    rejected_frames = []
    files = _files(paths)
    with _progress() as progress:
        task = progress.add_task("validating", total=len(files))
        for path in files:
            kind, frame = _load(path, symbol, timeframe, tz)
            result = _validate(kind, frame, cal)
            blocks = result.blocks(max_rejected)
            blocked |= blocks
            summary[str(path)] = {
                "kind": kind,
                "rows": result.total,
                "good": len(result.good),
                "rejected": result.rejected,
                "counts": result.counts,
                "findings": result.findings,
                "blocks": blocks,
            }
            rows.append((path.name, "rows", result.total))
            for reason, count in sorted(result.counts.items()):
                rows.append((path.name, reason, count))
            for name, count in result.findings.items():
                rows.append((path.name, f"{name} (finding)", count))
            if result.rejected:
                rejected_frames.append(result.quarantine.assign(source=str(path)))
            progress.advance(task)
    if quarantine is not None and rejected_frames:
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(rejected_frames, ignore_index=True).to_parquet(quarantine, index=False)
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        console.print(_counts_table("Validation: rows per reason", rows))
    if blocked:
        console.print("[red]BLOCKED[/]: rejected rows exceed --max-rejected")
        raise typer.Exit(1)
    console.print("[green]OK[/]")


@data_app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (CSV, MT5, Parquet).")],
    symbol: Annotated[str | None, typer.Option(help="Symbol, when file names do not say.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe (default: inferred).")] = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive times (default UTC).")] = None,
    calendar: CalendarOpt = None,
    max_rejected: MaxRejectedOpt = 0.01,
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default var/lake).")] = None,
    docs: Annotated[Path | None, typer.Option(help="Data Docs folder.")] = None,
    db: Annotated[bool, typer.Option(help="Also load bars into market_data (COPY).")] = True,
    ge: Annotated[bool, typer.Option(help="Run the Great Expectations checkpoint.")] = True,
) -> None:
    """Load, validate (rules, then Great Expectations), write the lake and market_data.

    Rejected rows go to ``<lake>/quarantine``; good rows go on unless the file blocks.
    """
    from chaintrade import lake as lake_mod
    from chaintrade.settings import get_settings

    settings = get_settings()
    lake_dir = lake or settings.lake_dir
    docs_dir = docs or settings.data_docs_dir
    cal = _calendar(calendar)
    rows: list[tuple[str, str, Any]] = []
    blocked: list[str] = []
    files = _files(paths)
    url = None
    if db:
        from chaintrade.db import migrate
        from chaintrade.pipeline import require_db_url

        url = require_db_url(settings)
        migrate(url)
    with _progress() as progress:
        task = progress.add_task("ingesting", total=len(files))
        for path in files:
            kind, frame = _load(path, symbol, timeframe, tz)
            result = _validate(kind, frame, cal)
            rows.append((path.name, "rows", result.total))
            rows += [(path.name, r, c) for r, c in sorted(result.counts.items())]
            if result.rejected:
                qdir = lake_dir / "quarantine" / kind
                qdir.mkdir(parents=True, exist_ok=True)
                result.quarantine.assign(source=str(path)).to_parquet(
                    qdir / f"{path.stem}.parquet", index=False
                )
            if result.blocks(max_rejected):
                blocked.append(f"{path.name}: {result.rejected} rejected {result.counts}")
                progress.advance(task)
                continue
            if ge:
                from chaintrade.quality import validate_bars_with_ge, validate_ticks_with_ge

                check = validate_ticks_with_ge if kind == "ticks" else validate_bars_with_ge
                report = check(result.good, run_name=path.stem, docs_dir=docs_dir)
                rows.append((path.name, "data docs", str(report.docs_index)))
                if not report.success:
                    blocked.append(f"{path.name}: " + "; ".join(report.failed))
                    progress.advance(task)
                    continue
            if kind == "ticks":
                lake_mod.write_ticks(result.good, lake_dir)
            else:
                lake_mod.write_bars(result.good, lake_dir)
                if url is not None:
                    from chaintrade.market_store import load_bars as load_db

                    rows.append((path.name, "inserted into market_data", load_db(url, result.good)))
            rows.append((path.name, "ingested", len(result.good)))
            progress.advance(task)
    console.print(_counts_table("Ingest", rows))
    if blocked:
        console.print("[red]BLOCKED[/]:\n  " + "\n  ".join(blocked))
        raise typer.Exit(1)
    console.print("[green]OK[/]")


@data_app.command()
def resample(
    path: Annotated[Path, typer.Argument(help="Bars or ticks file (CSV, MT5, Parquet).")],
    to: Annotated[str, typer.Option(help="Target timeframe (M1, M5, M15, H1, ...).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    symbol: Annotated[
        str | None, typer.Option(help="Symbol, when the file name does not say.")
    ] = None,
) -> None:
    """Resample ticks → bars or bars → a larger timeframe (closed bars only)."""
    from chaintrade.resample import resample_bars, ticks_to_bars

    kind, frame = _load(path, symbol, None, None)
    bars = ticks_to_bars(frame, to) if kind == "ticks" else resample_bars(frame, to)
    out.parent.mkdir(parents=True, exist_ok=True)
    bars.to_parquet(out, index=False)
    console.print(f"wrote {len(bars):,} closed {to} bars to {out}")
