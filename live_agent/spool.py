"""Store-and-forward of closed bars: bars serving did not receive (down, slow, circuit open)
are kept in order in a JSON-lines file and forwarded, oldest first, before the next bar once
serving answers again, so serving's online feature history has no holes. Chain events have
their own spool in :class:`chaintrade.chain_store.ChainWriter`."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
