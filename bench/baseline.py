"""The ingest benchmark's yardstick: DuckDB's own CSV reader into a bare table of a throwaway file,
with no validation. It measures DuckDB, not the store; the app's data goes through `store/` only.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import duckdb


def duckdb_read_csv_seconds(paths: list[Path], *, header: bool = True) -> tuple[int, float]:
    """(rows, seconds) to load the CSV files with `read_csv` into a table of a fresh DuckDB file."""
    files = [str(p) for p in paths]
    with tempfile.TemporaryDirectory() as folder:
        connection = duckdb.connect(str(Path(folder) / "baseline.duckdb"))
        try:
            started = time.perf_counter()
            connection.execute("CREATE TABLE raw AS SELECT * FROM read_csv(?, header = ?, union_by_name = true)",
                               [files, header])
            seconds = time.perf_counter() - started
            rows = connection.execute("SELECT count(*) FROM raw").fetchall()[0][0]
        finally:
            connection.close()
    return rows, seconds
