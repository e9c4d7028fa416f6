"""Feature benchmark: events/s through the whole window pipeline vs a bare Polars group-by mean.

Ours is `detectors.features.build_windows(events)` with every window kind and default settings
(sort check, key presses, mouse actions, the four window builders, the dictionary fill). The
baseline is one `group_by("session_id").agg(mean of t_ms)` over the same frame: a floor for touching
every event once in Polars on this machine, measured in the same run. Only these two calls are
timed, never the simulation or the import. Each is run `REPEATS` times and the fastest run counts
(the cores are shared; the fastest run is the least disturbed one).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from bench.ingest import _result
from detectors.features import WINDOW_KINDS, build_windows, collect_all, session_parts, window_features
from simulators import simulate

REPEATS = 3
USERS = 50
SEED = 7


def _fastest(run: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def _baseline(events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by("session_id").agg(pl.col("t_ms").mean())


def _per_kind(events: pl.DataFrame) -> dict[str, float]:
    """Seconds of each stage alone (session parts, then each kind's plan on those parts), to show
    what dominates; the stages overlap less than in `build_windows`, which collects the kinds together."""

    parts_s, parts = _fastest(lambda: session_parts(events))
    stages = {"session_parts": parts_s}
    for kind in WINDOW_KINDS:
        stages[kind] = _fastest(lambda kind=kind: collect_all([window_features(parts, kind)], events.height))[0]
    return {stage: round(seconds, 3) for stage, seconds in stages.items()}


def measure(events: pl.DataFrame) -> dict[str, Any]:
    """Time the full pipeline and the baseline on `events`; window counts and per-stage seconds."""

    build_windows(events.head(10_000))  # warm up (first-call costs of Polars)
    ours_s, windows = _fastest(lambda: build_windows(events))
    base_s, _ = _fastest(lambda: _baseline(events))
    return _result(events.height, ours_s, events.height, base_s,
                   sessions=events["session_id"].n_unique(),
                   windows={kind: frame.height for kind, frame in windows.items()},
                   stages_s=_per_kind(events))


def simulated_events(rows: int) -> pl.DataFrame:
    """`rows` simulated events of USERS users: enough genuine sessions per user (plus the default
    20% attacks), then the first `rows` rows. The cut falls inside the last session (sessions are
    ~600 events), which the pipeline handles like any unfinished session."""

    per_session = simulate(USERS, 1, seed=SEED).events.height / (USERS * 1.2)
    sessions = max(1, math.ceil(rows / (USERS * 1.2 * per_session) * 1.05))
    events = simulate(USERS, sessions, seed=SEED).events
    while events.height < rows:
        sessions += max(1, sessions // 10)
        events = simulate(USERS, sessions, seed=SEED).events
    return events.head(rows)


def bench_features(rows: int, balabit: Path) -> dict[str, Any]:
    print(f"simulating {rows:,} events ({USERS} users, seed {SEED}) ...", file=sys.stderr)
    result = measure(simulated_events(rows))
    result["source"] = f"simulate({USERS} users, seed {SEED}).head({rows})"
    if balabit.is_dir():
        from store.importers.balabit import read_balabit

        print(f"importing {balabit} ...", file=sys.stderr)
        result["balabit"] = {**measure(read_balabit(balabit).events), "source": str(balabit)}
    else:
        print(f"skipping Balabit: {balabit} not found (give --path to a Balabit folder)", file=sys.stderr)
        result["balabit"] = {"skipped": f"{balabit} not found"}
    return result
