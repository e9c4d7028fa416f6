"""Import a public dataset into the store: parse (store.importers) then validate and write (store.ingest).

Event layouts (balabit, aalto) go through the same checks and single transaction as any events CSV;
the CMU layout is already a set of feature vectors and goes straight into feature windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from store.db import Store
from store.importers.aalto import read_aalto
from store.importers.balabit import read_balabit
from store.importers.cmu import read_cmu
from store.ingest import IngestReport, ingest_events
from store.text import plural
from store.windows import WindowReport, ingest_feature_windows

Progress = Callable[[int, int], None]
#: Window kind of fixed-text repetitions (CMU layout and the fixed-phrase pipeline meet here).
FIXED_TEXT = "fixed_text"
#: Parsers of the layouts that hold events (the CMU layout holds feature vectors: `read_cmu`).
EVENT_READERS = {"balabit": read_balabit, "aalto": read_aalto}


@dataclass(frozen=True)
class DatasetReport:
    """An import's outcome plus what the parser dropped, by reason."""

    stored: IngestReport | WindowReport
    source_rows: int
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {**self.stored.as_dict(), "source_rows": self.source_rows, "dropped": self.dropped}

    def summary(self) -> str:
        dropped = ", ".join(f"{plural(n, 'row')} ({reason})" for reason, n in self.dropped.items() if n)
        return self.stored.summary() + (f"; dropped by the parser: {dropped}" if dropped else "")


def import_dataset(store: Store, kind: str, path: Path, *, progress: Progress | None = None,
                   dry_run: bool = False, actor: str = "cli") -> DatasetReport:
    """Parse `path` as `kind` (cmu, balabit, aalto) and store it; all of it or none of it."""
    path = Path(path)
    if kind == "cmu":
        parsed = read_cmu(path)
        windows = parsed.windows.with_columns(
            window_id=pl.format("{}:{}", pl.col("session_id"), pl.col("rep")))
        stored = ingest_feature_windows(store, windows, parsed.feature_names, kind=FIXED_TEXT, source="dataset",
                                        source_name=str(path), actor=actor, dry_run=dry_run)
        if progress:
            progress(parsed.source_rows, parsed.source_rows)
        return DatasetReport(stored, parsed.source_rows)
    if kind not in EVENT_READERS:
        raise ValueError(f"unknown dataset kind {kind!r}")
    result = EVENT_READERS[kind](path, progress=progress)
    stored = ingest_events(store, result.events, source_name=str(path), sessions=result.sessions,
                           labels=result.labels, actor=actor, dry_run=dry_run)
    return DatasetReport(stored, result.source_rows, dict(result.dropped))
