"""Ingest benchmarks: our validated import against DuckDB's bare `read_csv` of the same files."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.baseline import duckdb_read_csv_seconds
from simulators import simulate
from store import Store, ingest_events_csv
from store.datasets import import_dataset


def _result(rows: int, ours_s: float, base_rows: int, base_s: float, **extra: Any) -> dict[str, Any]:
    ours, baseline = rows / ours_s, base_rows / base_s
    return {"rows": rows, "ours_s": round(ours_s, 3), "baseline_s": round(base_s, 3),
            "ours_per_s": round(ours), "baseline_per_s": round(baseline), "ratio": round(ours / baseline, 3), **extra}


def bench_ingest(rows: int) -> dict[str, Any]:
    """Import `rows` simulated canonical events from CSV with full validation vs DuckDB read_csv."""

    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "events.csv"
        users = 50
        per_user = 1
        print(f"simulating about {rows:,} events ...", file=sys.stderr)
        events = simulate(users, per_user, seed=7).events
        while events.height < rows:
            per_user *= 2
            events = simulate(users, per_user, seed=7).events
        events = events.head(rows)
        events.write_csv(csv_path)
        base_rows, base_s = duckdb_read_csv_seconds([csv_path])
        with Store(Path(folder) / "ours.duckdb") as store:
            started = time.perf_counter()
            report = ingest_events_csv(store, csv_path)
            ours_s = time.perf_counter() - started
        assert report.events_added == events.height, report
        return _result(events.height, ours_s, base_rows, base_s, file_mb=round(csv_path.stat().st_size / 1e6, 1))


def bench_import_balabit(folder: Path) -> dict[str, Any]:
    """Import the Balabit training part vs DuckDB read_csv of the same session files."""

    if not folder.exists():
        raise SystemExit(f"{folder} not found: give --path to a Balabit folder (training_files/...)")
    files = sorted(p for p in folder.glob("*_files/*/session_*") if p.is_file())
    base_rows, base_s = duckdb_read_csv_seconds(files)
    with tempfile.TemporaryDirectory() as scratch, Store(Path(scratch) / "ours.duckdb") as store:
        started = time.perf_counter()
        report = import_dataset(store, "balabit", folder)
        ours_s = time.perf_counter() - started
    return _result(report.source_rows, ours_s, base_rows, base_s, events_stored=report.stored.events_added,
                   dropped=report.dropped)
