"""The app's inbox: how another process hands events to the process that owns the database.

DuckDB lets one process hold the file, so `python -m app simulate --live` (or any producer) writes
each batch as a Parquet file into `<db>.inbox/`; the app's "inbox" job ingests the files in name
order, deletes each one once stored, and moves a refused one to `rejected/` beside a `.txt` with
the reason. Writes are atomic (write to a temporary name, then rename), so a half-written batch is
never read.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from store import Store, StoreError, ingest_events

_counter = itertools.count()


def inbox_folder(db_path: str) -> Path:
    """The inbox of a database file: `<db>.inbox/` beside it."""
    return Path(f"{db_path}.inbox")


def post_batch(folder: Path, events: pl.DataFrame, sessions: pl.DataFrame | None = None) -> Path:
    """Drop one batch of canonical events (and optional session starts) into the inbox."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"
    final = folder / f"{name}.parquet"
    temporary = folder / f".{name}.tmp"
    events.write_parquet(temporary)
    if sessions is not None and sessions.height:
        sessions.write_parquet(folder / f"{name}.sessions.parquet")
    temporary.rename(final)
    return final


@dataclass(frozen=True)
class DrainReport:
    files: int
    events_added: int
    rejected: int


def drain_inbox(store: Store, folder: Path, *, max_files: int = 100) -> DrainReport:
    """Ingest waiting batches in order; a refused batch is set aside with its reason, never retried."""
    if not folder.exists():
        return DrainReport(0, 0, 0)
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.endswith(".sessions.parquet"))[:max_files]
    added = rejected = 0
    for path in files:
        sessions_path = path.with_name(path.name.removesuffix(".parquet") + ".sessions.parquet")
        sessions = pl.read_parquet(sessions_path) if sessions_path.exists() else None
        try:
            report = ingest_events(store, pl.read_parquet(path), source_name=f"inbox/{path.name}",
                                   sessions=sessions, actor="inbox", audit=False)
            added += report.events_added
        except StoreError as error:
            rejected += 1
            target = folder / "rejected"
            target.mkdir(exist_ok=True)
            (target / f"{path.stem}.txt").write_text(str(error))
            path.rename(target / path.name)
        else:
            path.unlink()
        sessions_path.unlink(missing_ok=True)
    return DrainReport(len(files), added, rejected)
