"""Files and datasets into the store, by format: what `python -m app ingest --format` and the Data
page's dataset import share. Every importer stores all of a file or none of it (see `store.ingest`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import settings
from store.datasets import import_dataset
from store.ingest import ingest_events_csv


def _import_events(store, path: Path, *, progress, dry_run: bool):
    return ingest_events_csv(store, path, progress=progress, dry_run=dry_run,
                             chunk_rows=settings.get("ingest_chunk_rows"), sidecars=True)


def _import_dataset(kind: str) -> Callable[..., Any]:
    def run(store, path: Path, *, progress, dry_run: bool):
        return import_dataset(store, kind, path, progress=progress, dry_run=dry_run)

    return run


#: format name -> importer(store, path, *, progress, dry_run) returning the import's report.
IMPORT_FORMATS: dict[str, Callable[..., Any]] = {
    "events": _import_events,
    "cmu": _import_dataset("cmu"),
    "balabit": _import_dataset("balabit"),
    "aalto": _import_dataset("aalto"),
}
