"""Decision evaluation through the app's own path: replay a labelled population, score the outcome.

`python -m app evaluate EVENTS.csv --format events` reads a canonical events CSV with its
`.sessions.csv` (wall-clock starts) and `.labels.csv` (ground truth) beside it, as `simulate --out`
writes them, and replays it into a temporary store in session start order with the code the live
app runs: each session's events arrive in batches, the scheduler's "score" job builds windows and
decides them after each batch, its "retrain" job runs between sessions, every user has an
authenticator (REQUIRE_OTP issues a challenge, which the real user answers and an attacker does not).
Labels are read only to score what the app decided, never by the app.

Figures count the sessions after each account's enrolment (its first `TELLTALE_ENROLMENT_SESSIONS`
sessions): genuine sessions challenged (any action but ALLOW) and denied (DENY or FLAG_SESSION),
attacks detected (challenged) and denied per type, the hijack detection delay (seconds from the
takeover to the first action but ALLOW, by the time of the behaviour judged), and per window kind the
share of genuine windows flagged on their own beside the target false-reject rate.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from app import settings
from app.engine import jobs, pipeline, stepup
from app.engine.history import LABEL_ORDER
from store import Store, ingest_events
from store.errors import Problem, ValidationError
from store.ingest import ROW, check_csv_file, store_labels, validate_batch
from store.session_progress import mark_featurized
from store.sidecars import read_sidecars

Progress = Callable[[int, int], None]
ATTACK_LABELS = LABEL_ORDER[1:]
#: Seconds after a challenge is issued at which the real user types the code from their authenticator.
ANSWER_AFTER_SECONDS = 8.0


@dataclass(frozen=True)
class ReplayOptions:
    """How the replay paces the app: the score job runs every `tick_seconds` of session time and
    decides the windows completed since its last run; `nightly` runs the full retrain whenever the
    replayed clock passes TELLTALE_NIGHTLY_HOUR.

    A session's events are stored and windowed at once: the windows are those the score job builds
    batch by batch (tests/test_replay.py), and each is decided at the run after its last event, so the
    answer to a step-up challenge reaches the windows decided after it, as it would live.
    """

    tick_seconds: float = 10.0
    nightly: bool = False


def evaluate_events(events_csv: Path, *, options: ReplayOptions | None = None, progress: Progress | None = None,
                    keep: Path | None = None) -> dict[str, Any]:
    """Replay `events_csv` through the app and return the figures (see the module docstring).

    `keep`: write the replayed store there instead of a temporary file, with the labels added once
    everything is decided: the Threshold lab and Overview on that store show these figures and how
    other band edges or sensitivities would change them (`TELLTALE_DB=KEEP make run`).
    """
    options = options or ReplayOptions()
    started = time.perf_counter()
    events, sessions, labels = read_population(events_csv)
    with tempfile.TemporaryDirectory(prefix="telltale-replay-") as folder:
        path = keep or Path(folder) / "replay.duckdb"
        with Store(path) as store:
            replay(store, events, sessions, labels, options=options, progress=progress)
            figures = outcome(store, labels, enrolment_sessions=settings.get("enrolment_sessions"))
            if keep is not None:
                store_labels(store, labels)
    figures["protocol"] = {
        "events_csv": str(events_csv), "events": events.height, "sessions": sessions.height,
        "users": sessions["user_id"].n_unique(), "enrolment_sessions": settings.get("enrolment_sessions"),
        "detectors": settings.get("detectors"), "target_frr": settings.get("target_frr"),
        "tick_seconds": options.tick_seconds, "nightly_retrain": options.nightly,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return {"protocol": figures.pop("protocol"), **figures}


def read_population(events_csv: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The events (checked as an import checks them), session starts and labels of a population."""
    check_csv_file(events_csv)
    found = read_sidecars(events_csv)
    missing = [kind for kind in ("sessions", "labels") if found.table(kind) is None]
    if missing:
        raise ValidationError([Problem(f"no {' or '.join(f'{events_csv.stem}.{kind}.csv' for kind in missing)} "
                                       "beside it: a decision evaluation needs each session's start and its "
                                       "ground truth (`python -m app simulate --out` writes both)")],
                              str(events_csv))
    raw = pl.read_csv(events_csv, infer_schema=False, null_values=[""]).with_row_index(ROW, offset=1)
    events = validate_batch(raw, str(events_csv), "csv").drop(ROW)
    sessions = found.table("sessions").sort("started_at", "session_id")
    labels = found.table("labels")
    unknown = sessions.join(events.select("session_id").unique(), on="session_id", how="anti")
    if unknown.height:
        raise ValidationError([Problem(f"session {unknown['session_id'][0]!r} of the sessions file has no events")],
                              str(events_csv))
    return events, sessions, labels


def replay(store: Store, events: pl.DataFrame, sessions: pl.DataFrame, labels: pl.DataFrame, *,
           options: ReplayOptions, progress: Progress | None = None) -> None:
    """Feed the sessions to the app one by one in start order, paced as the scheduler paces it."""
    label_of = dict(labels.select("session_id", "label").rows())
    takeover_of = dict(labels.select("session_id", pl.col("takeover_ms").fill_null(math.inf)).rows()) \
        if "takeover_ms" in labels.columns else {}
    by_session = events.partition_by("session_id", as_dict=True, maintain_order=True)
    tick_ms = options.tick_seconds * 1000
    nightly_hour = settings.get("nightly_hour")
    last_nightly = None
    enrolled: set[str] = set()
    for done, (session_id, user_id, started_at) in enumerate(
            sessions.select("session_id", "user_id", "started_at").iter_rows(), start=1):
        if user_id not in enrolled:  # every user has an authenticator from their first session on
            stepup.enrol(store, user_id, actor="replay")
            enrolled.add(user_id)
        jobs.retrain_due(store)  # the retrain job, at least a minute after the previous session
        if options.nightly:
            night = (started_at - timedelta(hours=nightly_hour)).date()
            if last_nightly is not None and night > last_nightly:
                jobs.retrain_all(store)
            last_nightly = night
        start = pl.DataFrame({"session_id": [session_id], "started_at": [started_at]})
        report = ingest_events(store, by_session[(session_id,)], source_name="replay", sessions=start, audit=False)
        built = pipeline.build_and_store_windows(store, [session_id], final=True,
                                                 new_session_events=report.new_session_events)
        mark_featurized(store, pl.DataFrame({"session_id": [session_id], "events": [by_session[(session_id,)].height],
                                             "final": [True]}))
        # the score job's runs: every window decided at the first run after its last event
        due = built.windows.with_columns(run=(pl.col("end_ms") // tick_ms).cast(pl.Int64)).sort("end_ms", "window_id")
        for (_,), windows in due.partition_by("run", as_dict=True, maintain_order=True).items():
            pipeline.score_windows(store, windows.drop("run"))
            _answer_challenges(store, session_id, label_of[session_id], takeover_of.get(session_id, math.inf),
                               started_at)
        if progress is not None:
            progress(done, sessions.height)


def _answer_challenges(store: Store, session_id: str, label: str, takeover_ms: float, started_at) -> None:
    """The person at the keyboard answers the session's open challenges: the account's owner types
    the code their authenticator shows; an impostor, bot, replay or hijacker (after the takeover)
    has no authenticator and lets the challenge expire."""
    for challenge_id, user_id, issued_at in store.rows(
            "SELECT challenge_id, user_id, issued_at FROM otp_challenges WHERE session_id = ? AND status = 'issued'",
            [session_id]):
        at_ms = (issued_at - started_at).total_seconds() * 1000
        owner_at_keyboard = label == "genuine" or (label == "hijack" and at_ms < takeover_ms)
        if owner_at_keyboard:
            now = issued_at + timedelta(seconds=ANSWER_AFTER_SECONDS)
            stepup.verify(store, challenge_id, stepup.current_code(store, user_id, now).code, now, actor="replay")


# -- scoring the outcome -----------------------------------------------------------------------------
def outcome(store: Store, labels: pl.DataFrame, *, enrolment_sessions: int) -> dict[str, Any]:
    """Session and window figures of a replayed store against the ground truth."""
    ranked = store.frame("""
        SELECT session_id, user_id, started_at,
               row_number() OVER (PARTITION BY user_id ORDER BY started_at, session_id) AS nth
        FROM sessions""")
    after = ranked.filter(pl.col("nth") > enrolment_sessions).join(labels, on="session_id", how="left")
    decided = store.frame("""
        SELECT d.session_id, d.action, d.decided_at, w.kind, w.end_ms, d.reasons
        FROM decisions d JOIN feature_windows w USING (window_id)""")
    challenged = decided.filter(pl.col("action") != "ALLOW")
    per_session = after.join(
        challenged.group_by("session_id").agg(
            challenged=pl.lit(True),
            denied=pl.col("action").is_in(["DENY", "FLAG_SESSION"]).any(),
            first_ms=pl.col("end_ms").min()),
        on="session_id", how="left").with_columns(pl.col("challenged", "denied").fill_null(False))
    sessions: dict[str, Any] = {}
    for label in ("genuine", *ATTACK_LABELS):
        mine = per_session.filter(pl.col("label") == label)
        entry: dict[str, Any] = {"n": mine.height}
        share = (lambda column, mine=mine: round(float(mine[column].mean()), 4) if mine.height else None)
        entry["challenged" if label == "genuine" else "detected"] = share("challenged")
        entry["denied"] = share("denied")
        sessions[label] = entry
    sessions["hijack"].update(_hijack_delays(store, per_session.filter(pl.col("label") == "hijack")))
    return {"sessions": sessions, "windows": _window_figures(store, after)}


def _hijack_delays(store: Store, hijacks: pl.DataFrame) -> dict[str, float | None]:
    """Seconds from the takeover to the first non-ALLOW decision judging behaviour after it; a
    hijack never caught counts as infinitely late (so the median is None when most are missed)."""
    if hijacks.height == 0:
        return {"delay_s_median": None, "delay_s_p90": None}
    caught = store.frame("""
        SELECT d.session_id, w.end_ms FROM decisions d JOIN feature_windows w USING (window_id)
        WHERE d.action <> 'ALLOW' AND list_contains(?, d.session_id)""", [hijacks["session_id"].to_list()])
    after_takeover = (caught.join(hijacks.select("session_id", "takeover_ms"), on="session_id")
                      .filter(pl.col("end_ms") >= pl.col("takeover_ms"))
                      .group_by("session_id").agg(caught_ms=pl.col("end_ms").min()))
    delays = hijacks.join(after_takeover, on="session_id", how="left").select(
        ((pl.col("caught_ms") - pl.col("takeover_ms")) / 1000).fill_null(math.inf))["caught_ms"].to_numpy()
    median, p90 = (float(np.quantile(delays, q, method="inverted_cdf")) for q in (0.5, 0.9))
    return {"delay_s_median": round(median, 1) if math.isfinite(median) else None,
            "delay_s_p90": round(p90, 1) if math.isfinite(p90) else None}


def _window_figures(store: Store, after: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per window kind: genuine windows (after enrolment) flagged on their own, the target, attack
    windows flagged; and per detector the share of genuine windows its own calibration flagged (how
    well each calibration holds on later sessions). A window is flagged on its own when its detectors'
    combined surprise is below the target (`app.engine.evidence.window_surprise`)."""
    flags = store.frame("""
        SELECT d.session_id, w.kind, d.flagged
        FROM decisions d JOIN feature_windows w USING (window_id)""")
    joined = flags.join(after.select("session_id", "label"), on="session_id")
    target = settings.get("target_frr")
    per_detector = store.frame("""
        SELECT w.session_id, w.kind, m.detector, s.risk > 1 - ? AS flagged
        FROM decisions d JOIN feature_windows w USING (window_id)
        JOIN scores s ON s.window_id = d.window_id
                     AND list_contains(json_extract_string(d.detectors, '$.*'), s.model_id)
        JOIN models m ON m.model_id = s.model_id""", [target]).join(
        after.filter(pl.col("label") == "genuine").select("session_id"), on="session_id")
    by_detector = {kind: dict(sorted(part.group_by("detector").agg(pl.col("flagged").mean().round(4)).rows()))
                   for (kind,), part in per_detector.group_by("kind")}
    figures = {}
    for (kind,), part in joined.group_by("kind", maintain_order=True):
        genuine = part.filter(pl.col("label") == "genuine")["flagged"]
        attack = part.filter(pl.col("label").is_in(["impostor", "bot", "hijack"]))["flagged"]
        figures[kind] = {"genuine_flagged": round(float(genuine.mean()), 4) if genuine.len() else None,
                         "target_frr": target,
                         "attack_flagged": round(float(attack.mean()), 4) if attack.len() else None,
                         "genuine_flagged_by_detector": by_detector.get(kind, {})}
    return dict(sorted(figures.items()))


def summary_text(result: dict[str, Any]) -> str:
    """The figures as a person reads them (the --json output carries the same numbers)."""
    protocol, sessions = result["protocol"], result["sessions"]

    def share(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    lines = [f"{protocol['events_csv']}: {protocol['sessions']:,} sessions of {protocol['users']} users replayed "
             f"through the app in {protocol['seconds']:g} s (first {protocol['enrolment_sessions']} sessions of each "
             f"account are enrolment; detectors {protocol['detectors']})", "",
             "sessions after enrolment    n  challenged/detected  denied"]
    for label, entry in sessions.items():
        caught = entry.get("challenged", entry.get("detected"))
        lines.append(f"  {label:<10} {entry['n']:>10}  {share(caught):>19}  {share(entry['denied']):>6}")
    hijack = sessions.get("hijack", {})
    if hijack.get("n"):
        median, p90 = hijack.get("delay_s_median"), hijack.get("delay_s_p90")
        lines.append(f"  hijacks caught after the takeover: median {'—' if median is None else f'{median:g} s'}, "
                     f"90th percentile {'—' if p90 is None else f'{p90:g} s'}")
    lines += ["", "windows on their own       genuine flagged  target  attack flagged  "
                  "genuine flagged by each detector"]
    for kind, entry in result["windows"].items():
        each = ", ".join(f"{name} {share(rate)}" for name, rate in entry.get("genuine_flagged_by_detector", {}).items())
        lines.append(f"  {kind:<12} {share(entry['genuine_flagged']):>20}  {share(entry['target_frr']):>6}  "
                     f"{share(entry['attack_flagged']):>14}  {each}")
    return "\n".join(lines)
