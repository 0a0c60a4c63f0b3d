"""Store-and-forward of closed bars: bars serving did not receive (down, slow, circuit open)
are kept in order in a JSON-lines file and forwarded, oldest first, before the next bar once
serving answers again, so serving's online feature history has no holes. Chain events have
their own spool in :class:`chaintrade.chain_store.ChainWriter`. Ticks the validator rejects
are appended, with their reason, to a quarantine file (:class:`TickQuarantine`)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaintrade.schemas import BarIn


class BarSpool:
    """Pending bars, oldest first; at most ``max_bars`` (the oldest are dropped and counted)."""

    def __init__(self, path: Path | None, max_bars: int = 1_000) -> None:
        self.path = path
        self.max_bars = max_bars
        self.dropped = 0
        self._bars: list[BarIn] = []
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    self._bars.append(BarIn.model_validate_json(line))
                except ValueError:
                    continue  # a torn last line after a crash

    def __len__(self) -> int:
        return len(self._bars)

    def pending(self) -> list[BarIn]:
        return list(self._bars)

    def add(self, bar: BarIn) -> None:
        key = (bar.symbol, bar.timeframe, bar.time)
        if any((b.symbol, b.timeframe, b.time) == key for b in self._bars):
            return
        self._bars.append(bar)
        if len(self._bars) > self.max_bars:
            self.dropped += len(self._bars) - self.max_bars
            self._bars = self._bars[-self.max_bars :]
        self._save()

    def pop_first(self) -> None:
        """Forget the oldest bar (it was forwarded or refused for good)."""
        if self._bars:
            self._bars.pop(0)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w") as fh:
            for bar in self._bars:
                fh.write(json.dumps(bar.model_dump(mode="json")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class TickQuarantine:
    """Rejected ticks, append-only: one JSON line per tick (its fields and ``reason``).

    ``counts`` holds the ticks quarantined per reason by this process; without a ``path``
    (tests, dry runs) the records are kept in ``records`` instead of a file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.records: list[dict[str, Any]] = []

    def add(self, rejected: Sequence[tuple[dict[str, Any], str]]) -> None:
        """Keep each ``(tick, reason)``; one write (and fsync) per batch."""
        if not rejected:
            return
        rows = [{**tick, "reason": reason} for tick, reason in rejected]
        self.counts.update(reason for _, reason in rejected)
        if self.path is None:
            self.records.extend(rows)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write("".join(json.dumps(row) + "\n" for row in rows))
            fh.flush()
            os.fsync(fh.fileno())
