"""Benchmarks: each prints our figure beside a baseline measured in the same run, on the same data.

Timings live here, never in tests. Run with `python -m app bench WHAT [--json]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def run_benchmark(what: str, *, rows: int = 1_000_000, path: Path | None = None,
                  minutes: float = 60.0, stream: str = "data-page") -> dict[str, Any]:
    if what == "ingest":
        from bench.ingest import bench_ingest

        return bench_ingest(rows)
    if what == "import":
        from bench.ingest import bench_import_balabit

        return bench_import_balabit(path or SHARED / "balabit-mouse")
    if what == "features":
        from bench.features import bench_features

        return bench_features(rows, path or SHARED / "balabit-mouse")
    if what == "detectors":
        from bench.detectors import bench_detectors

        return bench_detectors()
    if what == "pages":
        from bench.pages import bench_pages

        return bench_pages(minutes, path=path, stream=stream)
    if what == "evaluate":
        from bench.evaluate import bench_evaluate_balabit

        return bench_evaluate_balabit(path or SHARED / "balabit-mouse")
    if what == "replay":
        from bench.replay import bench_replay

        return bench_replay()
    if what == "latency":
        from bench.latency import bench_latency

        return bench_latency()
    raise ValueError(f"unknown benchmark {what!r}")
