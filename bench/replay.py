"""The decision evaluation's cost: replaying a labelled population through the app, session by session.

Setup (not timed): `simulators.simulate(users, sessions, seed, attack_share, enrolment_days)`.

Timed, ours: `app.engine.replay.replay` into a new store, which is what `python -m app evaluate` does: each
session stored and windowed, its windows decided run by run as the score job would, one-time codes
answered, the retrain job run between sessions.

Baseline, same run and same events: the same population handled in bulk into another new store
(`ingest_events` of every event at once, then `app.engine.pipeline.prepare_store`: windows, one training, one
scoring pass), the floor of any evaluation that stores, windows, trains and scores everything once.
The difference is the price of deciding each session only from the sessions before it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.engine.pipeline import prepare_store
from app.engine.replay import ReplayOptions, outcome, replay
from app.settings import get
from simulators import simulate
from store import Store, ingest_events


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_replay(users: int = 24, sessions: int = 16, *, seed: int = 1, attack_share: float = 0.3,
                 enrolment_days: int = 6) -> dict[str, Any]:
    """Seconds and sessions per second of the replay beside the bulk baseline, with the replay's figures."""

    sim = simulate(users, sessions, seed, attack_share=attack_share, enrolment_days=enrolment_days)
    count = sim.sessions.height
    _log(f"setup: {count} sessions, {sim.events.height:,} events ({users} users x {sessions} genuine "
         f"sessions, attack share {attack_share})")
    with tempfile.TemporaryDirectory(prefix="telltale-bench-") as folder:
        _log("ours: replaying session by session ...")
        with Store(Path(folder) / "replay.duckdb") as store:
            started = time.perf_counter()
            replay(store, sim.events, sim.sessions, sim.labels, options=ReplayOptions())
            ours_s = time.perf_counter() - started
            figures = outcome(store, sim.labels, enrolment_sessions=get("enrolment_sessions"))
        _log("baseline: the same events stored, windowed, trained and scored in bulk ...")
        with Store(Path(folder) / "bulk.duckdb") as store:
            started = time.perf_counter()
            ingest_events(store, sim.events, source_name="bench", sessions=sim.sessions, audit=False)
            prepare_store(store)
            baseline_s = time.perf_counter() - started
    return {
        "sessions": count, "events": sim.events.height,
        "ours_s": round(ours_s, 1), "ours_sessions_per_s": round(count / ours_s, 2),
        "baseline_s": round(baseline_s, 1), "baseline_sessions_per_s": round(count / baseline_s, 2),
        "ours_over_baseline": round(ours_s / baseline_s, 2),
        "genuine_challenged": figures["sessions"]["genuine"]["challenged"],
        "attacks_detected": {label: entry["detected"] for label, entry in figures["sessions"].items()
                             if label != "genuine"},
    }
