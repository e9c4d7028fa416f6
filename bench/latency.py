"""Decision latency: from a capture batch arriving to its decision stored, per login session.

Setup (not timed): a temporary store with `simulators.simulate(users, enrolment_sessions, seed,
enrolment_days=...)` ingested, windows built and models trained for the configured detectors
(`app.engine.pipeline.prepare_store`, TELLTALE_DETECTORS). Then `sessions` login-like batches are made from
the simulated genuine sessions of trained users: each session's events up to and including its submit
(username, password with the fixed phrase, submit), under a new session id `bench-{i}` so every batch
is a session the store has not seen.

Timed per batch with `time.perf_counter` (what the capture page does with a batch that submits a login):
`app.engine.pipeline.ingest_and_score(store, events, [session_id], ...)`, which in one transaction stores the
batch, builds the session's windows from it, scores them against the user's models, decides and
records the decision. The scheduler interval (up to a second before a batch is sent) is not included.

Baseline, same run and same batches: the `ingest_events` call alone (only storing the batch).

When the p99 misses the target (or `stages=True`), a further `stage_sessions` new sessions are run
with each stage timed separately (ingest, featurize, window lookup (only when some of the session's
windows were stored before: otherwise the built ones are scored as they are), then inside `score_windows`:
model loading, policy, replay check, detector scoring, decision recording, score recording and the
rest; then the commit) and their medians are reported as `stages_ms`.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import app.engine.pipeline as pipeline
from app.engine.pipeline import build_and_store_windows, ingest_and_score, prepare_store, score_windows
from detectors.persistence import UserModel
from simulators import simulate
from store import Store, ingest_events
from store.stored_models import active_models
from store.windows import unscored_windows

TARGET_P99_MS = 50


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms, dtype=float)
    return {"p50": round(float(np.percentile(values, 50)), 2), "p90": round(float(np.percentile(values, 90)), 2),
            "p99": round(float(np.percentile(values, 99)), 2), "max": round(float(values.max()), 2)}


def login_batches(events: pl.DataFrame, session_ids: list[str], count: int, *,
                  offset: int = 0) -> Iterator[pl.DataFrame]:
    """`count` login batches, cycling over `session_ids`, each renamed `bench-{i}`: a source session's
    events up to its submit, with the releases of keys pressed before it, timings drawn out slightly.

    The browser's login form submits on the release of Enter, so its batch holds the phrase's last
    key-up; the simulator records the submit at the press, before that release (without it the
    phrase has no clean repetition and the login only a time window).
    """
    by_session = events.partition_by("session_id", as_dict=True)
    logins = []
    for session_id in session_ids:
        session = by_session[(session_id,)].sort("seq")
        submits = session.filter(pl.col("type") == "submit")["seq"]
        if submits.len():
            before = pl.col("seq") <= submits.min()
            pressed = session.filter(before & (pl.col("type") == "key_down"))["press_id"].implode()
            logins.append(session.filter(before | ((pl.col("type") == "key_up") & pl.col("press_id").is_in(pressed))))
    if not logins:
        raise ValueError("no simulated session has a submit")
    for i in range(offset, offset + count):
        login = logins[i % len(logins)]
        # up to a millisecond more between consecutive events: each login a new pattern of its user's,
        # not an exact replay of an earlier batch (which the replay rule would deny)
        drift = np.cumsum(np.random.default_rng(i).uniform(0.0, 1.0, login.height))
        yield login.with_columns(session_id=pl.lit(f"bench-{i}"), t_ms=pl.col("t_ms") + drift)


def _prepare(store: Store, users: int, enrolment_sessions: int, seed: int,
             enrolment_days: int) -> tuple[pl.DataFrame, list[str]]:
    """Simulate, ingest, build windows, train; returns the events and the genuine sessions of trained users."""

    sim = simulate(users, enrolment_sessions, seed, enrolment_days=enrolment_days)
    ingest_events(store, sim.events, source_name="bench latency", sessions=sim.sessions, labels=sim.labels)
    _log(f"setup: {prepare_store(store)}")
    trained = set(active_models(store)["user_id"].drop_nulls().to_list())
    genuine = sim.labels.filter(pl.col("label") == "genuine").join(sim.sessions, on="session_id")
    return sim.events, genuine.filter(pl.col("user_id").is_in(sorted(trained)))["session_id"].to_list()


@contextmanager
def _timed_calls(totals: dict[str, float]) -> Iterator[None]:
    """Wrap the calls `score_windows` makes (as app.engine.pipeline names them) so their time adds up in
    `totals` (name -> seconds)."""

    targets = [(pipeline, "load_active", "load_models"), (pipeline, "latest_policy", "policy"),
               (pipeline, "replayed_windows", "replay_check"), (UserModel, "score", "detectors"),
               (pipeline, "record_decisions", "record_decisions"), (pipeline, "record_scores", "record_scores")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

    def wrap(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started
        return timed

    try:
        for (owner, name, label), (_, _, original) in zip(targets, originals, strict=True):
            setattr(owner, name, wrap(original, label))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _stage_medians(store: Store, batches: Iterator[pl.DataFrame]) -> dict[str, float]:
    """Median ms of each stage of `ingest_and_score`, run step by step on fresh sessions."""

    per_stage: dict[str, list[float]] = defaultdict(list)
    for events in batches:
        session_id = events["session_id"][0]
        inner: dict[str, float] = defaultdict(float)
        marks = [time.perf_counter()]
        with store.transaction():  # as ingest_and_score
            report = ingest_events(store, events, audit=False)
            marks.append(time.perf_counter())
            built = build_and_store_windows(store, [session_id], final=True,
                                            new_session_events=report.new_session_events)
            marks.append(time.perf_counter())
            windows = built.windows if built.all_new else unscored_windows(store, sessions=[session_id])
            marks.append(time.perf_counter())
            with _timed_calls(inner):  # as score_session: a login's new session has no decision to read
                score_windows(store, windows, new_sessions=frozenset([session_id]) if built.all_new else frozenset())
            marks.append(time.perf_counter())
        marks.append(time.perf_counter())
        for name, (start, end) in zip(("ingest", "featurize", "window_lookup", "score_windows", "commit"),
                                      itertools.pairwise(marks), strict=True):
            per_stage[name].append((end - start) * 1000)
        for name, seconds in inner.items():
            per_stage[f"score_windows.{name}"].append(seconds * 1000)
        per_stage["score_windows.other"].append(per_stage["score_windows"][-1] - sum(inner.values()) * 1000)
    return {name: round(statistics.median(values), 2) for name, values in per_stage.items()}


def bench_latency(sessions: int = 1_000, *, users: int = 10, enrolment_sessions: int = 12, seed: int = 3,
                  enrolment_days: int = 8, stages: bool | None = None, stage_sessions: int = 100) -> dict[str, Any]:
    """p50/p90/p99/max ms from a login batch arriving to its decision stored, beside storing it alone.

    `stages`: None = profile the stages only when the p99 misses the target; True/False = always/never.
    """

    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "latency.duckdb") as store:
        _log(f"setup: simulating {users} users x {enrolment_sessions} sessions, training ...")
        events_all, sources = _prepare(store, users, enrolment_sessions, seed, enrolment_days)
        batches = list(login_batches(events_all, sources, sessions))
        # warm-up on one extra session (first-call costs: imports, prepared statements)
        for warm in login_batches(events_all, sources, 1, offset=sessions + stage_sessions):
            ingest_and_score(store, warm, [warm["session_id"][0]], source_name="bench", actor="bench")

        _log(f"timing {sessions} login batches ...")
        ours_ms: list[float] = []
        for events in batches:
            session_id = events["session_id"][0]
            started = time.perf_counter()
            ingest_and_score(store, events, [session_id], source_name="bench", actor="bench")
            ours_ms.append((time.perf_counter() - started) * 1000)
        decided = dict(store.rows("""
            SELECT w.kind, count(*) FROM decisions d JOIN feature_windows w USING (window_id)
            WHERE d.session_id IN (SELECT unnest(?)) GROUP BY ALL ORDER BY ALL""",
                                  [[events["session_id"][0] for events in batches]]))

        _log("baseline: storing the same batches alone ...")
        baseline_ms: list[float] = []
        for i, events in enumerate(batches):
            renamed = events.with_columns(session_id=pl.lit(f"base-{i}"))
            started = time.perf_counter()
            ingest_events(store, renamed, audit=False)
            baseline_ms.append((time.perf_counter() - started) * 1000)

        ours = _percentiles(ours_ms)
        result: dict[str, Any] = {
            "sessions": len(batches), "windows": sum(decided.values()), "decided_windows_by_kind": decided,
            "ours_ms": ours,
            "baseline_ms": _percentiles(baseline_ms), "target_p99_ms": TARGET_P99_MS,
            "within_target": ours["p99"] < TARGET_P99_MS,
        }
        if stages or (stages is None and not result["within_target"]):
            _log(f"p99 {ours['p99']} ms: timing each stage on {stage_sessions} more sessions ...")
            result["stages_ms"] = _stage_medians(store, login_batches(events_all, sources, stage_sessions,
                                                                      offset=sessions))
        return result
