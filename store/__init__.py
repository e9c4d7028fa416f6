"""The event store: the only package that talks to DuckDB (see ARCHITECTURE.md, "All SQL behind one door")."""

from store.db import MEMORY, Store
from store.errors import DatabaseLockedError, Problem, SchemaMismatchError, StoreError, ValidationError
from store.ingest import IngestReport, ingest_events, ingest_events_csv

__all__ = [
    "MEMORY",
    "DatabaseLockedError",
    "IngestReport",
    "Problem",
    "SchemaMismatchError",
    "Store",
    "StoreError",
    "ValidationError",
    "ingest_events",
    "ingest_events_csv",
]
