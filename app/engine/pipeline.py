"""The live pipeline: new events -> windows -> scores -> decisions (called by jobs and pages).

Business logic lives here, not in pages: the scheduler's "score" job and the capture page both call
`process_pending`, which builds windows for sessions with new events, scores the windows that
have no score yet against the user's models, and turns each risk into a decision.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import polars as pl
from threadpoolctl import ThreadpoolController

from app import settings
from app.engine import stepup
from app.engine.evidence import (
    EvidenceSettings,
    accumulate,
    increments,
    machine_like,
    replayed,
    risk_of,
    window_evidence,
    window_surprise,
)
from app.engine.policies import latest_policy
from app.engine.policy import Action, DecisionContext, decide
from app.engine.training import load_active, train, window_matrix
from detectors.features import WindowSettings, build_windows, feature_names
from detectors.persistence import UserModel
from store import IngestReport, Store, ingest_events
from store.contents import events_for_sessions
from store.decisions import (
    DecisionRecord,
    decisions_for_prefix,
    newest_session_decision,
    record_decisions,
    session_states,
)
from store.session_progress import mark_featurized, record_scoring_failures, sessions_to_featurize
from store.stored_models import active_models, record_scores
from store.text import plural
from store.windows import (
    earlier_window_vectors,
    enrolment_repetitions,
    schema_names,
    store_window_rows,
    unscored_windows,
    window_rows,
)

logger = logging.getLogger(__name__)


def window_settings() -> WindowSettings:
    """Window sizes from the settings table (TELLTALE_* variables)."""
    return WindowSettings(
        fixed_text_keys=settings.get("fixed_text_keys"),
        free_text_keys=settings.get("free_text_keys"),
        mouse_actions=settings.get("mouse_actions"),
        time_seconds=settings.get("time_window_seconds"),
    )


@dataclass(frozen=True)
class FeaturizeReport:
    sessions: int
    windows_added: int
    failed: dict[str, str] = field(default_factory=dict)  # session -> why its windows could not be built


@dataclass(frozen=True)
class Featurized:
    """What `build_and_store_windows` did: windows added, and every window built, in the stored layout."""

    added: int
    windows: pl.DataFrame

    @property
    def all_new(self) -> bool:
        """No built window was stored before (then they are all unscored)."""
        return self.added == self.windows.height


def build_and_store_windows(store: Store, session_ids: list[str], *, final: bool,
                            window_settings_: WindowSettings | None = None,
                            new_session_events: pl.DataFrame | None = None) -> Featurized:
    """Build the windows of these sessions and store the new ones (idempotent by id), in one commit.

    `new_session_events`: every event of these sessions when they were created in the calling
    transaction (`IngestReport.new_session_events`: none of their windows can be stored yet);
    otherwise the events are read from the store.
    """
    ws = window_settings_ or window_settings()
    none_stored = new_session_events is not None
    events = new_session_events if none_stored else events_for_sessions(store, session_ids)
    added, built = 0, []
    with store.transaction():
        for kind, windows in build_windows(events, settings=ws, open_sessions=not final).items():
            if windows.height:
                names = feature_names(kind, ws)
                rows = window_rows(windows, names, kind=kind, source="pipeline")  # finite: build_windows fills
                added += store_window_rows(store, rows, names, kind=kind, source_name="featurize",
                                           users_stored=True, none_stored=none_stored).windows_added
                built.append(rows)
    return Featurized(added, pl.concat(built) if built else pl.DataFrame())


def featurize_sessions(store: Store, session_ids: list[str], *, final: bool,
                       window_settings_: WindowSettings | None = None) -> int:
    """Build and store the windows of these sessions; returns windows added (idempotent by id)."""
    if not session_ids:
        return 0
    return build_and_store_windows(store, session_ids, final=final, window_settings_=window_settings_).added


def featurize_pending(store: Store, *, idle_seconds: float | None = None) -> FeaturizeReport:
    """Windows for every session with new events; idle sessions are finalized.

    One session that cannot be built never stops the others: it is recorded with its error
    (`store.session_progress.session_failures`) and tried again when new events arrive.
    """
    idle = settings.get("session_idle_seconds") if idle_seconds is None else idle_seconds
    todo = sessions_to_featurize(store, idle)
    if todo.height == 0:
        return FeaturizeReport(0, 0)
    added, failed = 0, {}
    for final in (False, True):
        ids = todo.filter(pl.col("final") == final)["session_id"].to_list()
        done, failures = each_isolated(ids, lambda some, final=final: featurize_sessions(store, some, final=final))
        added += sum(done)
        failed.update(failures)
    mark_featurized(store, todo, failed=failed)
    return FeaturizeReport(todo.height, added, failed)


Result = TypeVar("Result")


def each_isolated(session_ids: list[str], work: Callable[[list[str]], Result]) -> tuple[list[Result], dict[str, str]]:
    """`work(session_ids)` at once; when that fails, each session on its own, so one that cannot be
    processed (its error logged and returned: session -> error) never stops the others."""
    if not session_ids:
        return [], {}
    try:
        return [work(session_ids)], {}
    except Exception:
        if len(session_ids) == 1:
            return _one_isolated(session_ids[0], work)
    results, failed = [], {}
    for session_id in session_ids:
        done, failure = _one_isolated(session_id, work)
        results += done
        failed.update(failure)
    return results, failed


def _one_isolated(session_id: str, work: Callable[[list[str]], Result]) -> tuple[list[Result], dict[str, str]]:
    try:
        return [work([session_id])], {}
    except Exception as error:
        logger.warning("session %s set aside (%s); the others go on", session_id, describe_error(error))
        logger.debug("session %s failed", session_id, exc_info=True)
        return [], {session_id: describe_error(error)}


def describe_error(error: BaseException) -> str:
    """One line for a page: the exception's type and the first line of its message, cut short."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line[:300]}"


# -- scoring ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowVerdict:
    """What the page shows for one scored window: the decision on the session after it."""

    window_id: str
    session_id: str
    user_id: str
    kind: str
    risk: float  # the session's risk after this window (1 - e^-evidence)
    action: str
    verdict: str
    reasons: tuple[str, ...]
    top_features: list[dict[str, object]]
    decision_id: str
    challenge_id: str | None = None
    window_risk: float = 0.0  # this window on its own: 1 - its detectors' combined surprise (app.engine.evidence)
    evidence: float = 0.0  # the session's evidence after this window (nats)
    evidence_change: float = 0.0  # how much this window moved it


def _top_features(model: UserModel, x: np.ndarray, count: int = 3) -> list[dict[str, object]]:
    """The features the model learns from that are furthest from the user's enrolled baseline, in
    standard deviations."""
    baseline = model.metadata.get("baseline") or {}
    mean, std = np.asarray(baseline.get("mean", [])), np.asarray(baseline.get("std", []))
    if mean.size != x.size:
        return []
    z = (x - mean) / np.where(std > 1e-9, std, np.nan)
    unused = np.setdiff1d(np.arange(z.size), model.used_features)
    z[unused] = np.nan  # a feature the model does not learn from cannot have driven its score
    order = np.argsort(-np.nan_to_num(np.abs(z), nan=-1.0))[:count]
    return [{"feature": model.feature_names[i], "value": round(float(x[i]), 3),
             "baseline": round(float(mean[i]), 3), "z": round(float(z[i]), 2)}
            for i in order if np.isfinite(z[i])]


@lru_cache(maxsize=1)
def _native_threads():
    """The process's OpenMP/BLAS pools (found once: looking them up costs milliseconds).

    Scoring a few windows runs on one thread: on busy cores (the app, its scheduler, a browser) a pool
    of several threads makes scikit-learn's neighbour search for a handful of windows about a hundred
    times slower than one thread.
    """

    return ThreadpoolController()


#: Window kinds checked for a replayed pattern: those whose vectors are many timings of one person's
#: input. A time slice can be nearly empty (a focus change, no keys, no pointer), and two such slices
#: are equal without anyone replaying anything.
REPLAY_CHECKED_KINDS = ("fixed_text", "free_text", "mouse")


def _compare_first(kind: str, width: int) -> int:
    """How many leading features identify a replayed pattern (fixed text: the timings only)."""
    if kind == "fixed_text":
        return max(3 * settings.get("fixed_text_keys") - 2, 1) if width > 4 else width
    return width


def replayed_windows(store: Store, windows: pl.DataFrame, X: np.ndarray) -> set[str]:
    """Ids of `windows` (stored, of one user, kind and schema; `X` their features) that replay an
    earlier window of the same user, kind and schema (`app.engine.evidence.replayed`)."""
    earlier, before = earlier_window_vectors(store, windows)
    found = replayed(X, earlier, before, _compare_first(windows["kind"][0], X.shape[1]))
    return {window_id for window_id, hit in zip(windows["window_id"], found, strict=True) if hit}


def evidence_settings() -> EvidenceSettings:
    """How sessions accumulate evidence, from the settings table (TELLTALE_* variables)."""
    return EvidenceSettings(shift=settings.get("evidence_shift"), weights=settings.get("kind_weights"),
                            sensitivity=settings.get("sensitivity"))


def score_windows(store: Store, windows: pl.DataFrame, *, new_sessions: frozenset[str] = frozenset()
                  ) -> list[WindowVerdict]:
    """Score windows against their user's active models (or the global ones) and decide each session on
    the evidence it has shown so far (`app.engine.evidence`), window by window in the order of their last event.

    A session's evidence continues from its latest decision, or from 0 once the user answered a one-time
    code after it. Each decision is dated by the behaviour it judges (the session's start plus the
    window's end) and records the window's own risk, how much it moved the session, and the session's
    evidence after it. Windows of a kind and schema that no model covers yet are left unscored for a
    later run. Decisions, audit rows, step-up challenges and raw scores are written in one transaction.
    `new_sessions`: sessions stored in the caller's open transaction, which have no decision yet.
    """

    if windows.height == 0:
        return []
    active = load_active(store, users=windows["user_id"].unique().to_list())
    if not active.by_id:
        return []
    # (user or None for the global models, kind, schema) -> [(detector, model id)], in the store's order
    covering: dict[tuple[str | None, str, str], list[tuple[str, str]]] = {}
    for model_id, user, kind, detector, sid in active.rows.select(
            "model_id", "user_id", "kind", "detector", "schema_id").iter_rows():
        covering.setdefault((user, kind, sid), []).append((detector, model_id))
    names = schema_names(store)
    scored: list[dict[str, Any]] = []  # one per window a model covers
    score_rows: list[dict[str, object]] = []
    for (user_id, kind, schema_id), group in windows.group_by("user_id", "kind", "schema_id", maintain_order=True):
        own = covering.get((user_id, kind, schema_id), [])
        chosen = own or covering.get((None, kind, schema_id), [])
        if not chosen:
            continue
        X = window_matrix(group)
        replays = replayed_windows(store, group, X) if kind in REPLAY_CHECKED_KINDS else set()
        machine = machine_like(kind, names[schema_id], X)
        surprises = []
        for _, model_id in chosen:
            model = active.by_id[model_id]
            with _native_threads().limit(limits=1):
                raw = model.score(X, schema_id)
            surprise = model.calibration.surprise(raw)
            surprises.append(surprise)
            score_rows += [{"window_id": w, "model_id": model_id, "raw_score": float(r), "risk": float(1 - p)}
                           for w, r, p in zip(group["window_id"], raw, surprise, strict=True)]
        z = window_evidence(surprises)
        alone = window_surprise(surprises)  # the window on its own, its detectors together
        first = active.by_id[chosen[0][1]]
        enrolled = int(first.metadata.get("n_samples", 0)) if own else 0
        for i, (window_id, session_id, end_ms) in enumerate(group.select("window_id", "session_id",
                                                                          "end_ms").iter_rows()):
            scored.append({"window_id": window_id, "session_id": session_id, "user_id": user_id, "kind": kind,
                           "end_ms": end_ms or 0.0, "z": float(z[i]), "surprise": float(alone[i]),
                           "detectors": dict(chosen),
                           "top": _top_features(first, X[i]), "target_frr": first.target_frr,
                           "context": DecisionContext(enrolment_windows=enrolled, replayed=window_id in replays,
                                                      machine_like=machine[i])})
    if not scored:
        return []
    policy = latest_policy(store)
    tuning = evidence_settings()
    states = session_states(store, sorted({row["session_id"] for row in scored}), new=new_sessions)
    scored.sort(key=lambda row: (row["session_id"], row["end_ms"], row["window_id"]))
    pending: list[tuple[DecisionRecord, dict[str, Any]]] = []
    for session_id, group_rows in itertools.groupby(scored, key=lambda row: row["session_id"]):
        rows = list(group_rows)
        state = states[session_id]
        steps = increments(np.array([row["z"] for row in rows]), [row["kind"] for row in rows], tuning)
        levels = accumulate(state.evidence, steps)
        before = np.r_[max(state.evidence, 0.0), levels[:-1]]
        for row, level, previous in zip(rows, levels, before, strict=True):
            decision = decide(float(risk_of(level)), policy, row["context"])
            window_risk = 1.0 - row["surprise"]
            row.update(evidence=float(level), change=float(level - previous), window_risk=window_risk)
            at = None if state.started_at is None else state.started_at + timedelta(milliseconds=row["end_ms"])
            pending.append((DecisionRecord(
                decision, row["user_id"], session_id, row["window_id"], row["detectors"],
                [(f["feature"], f["z"]) for f in row["top"]], decided_at=at, window_risk=window_risk,
                evidence=row["evidence"], evidence_change=row["change"],
                flagged=row["surprise"] < row["target_frr"]), row))
    verdicts: list[WindowVerdict] = []
    with store.transaction():
        decision_ids = record_decisions(store, [record for record, _ in pending])
        challenged = {session_id for session_id, state in states.items() if state.challenge_open}
        for decision_id, (record, row) in zip(decision_ids, pending, strict=True):
            decision = record.decision
            challenge_id = None
            if (decision.action.name == "REQUIRE_OTP" and record.session_id not in challenged
                    and stepup.is_enrolled(store, record.user_id)):
                try:
                    challenge_id = stepup.issue_challenge(
                        store, record.user_id, now=record.decided_at or datetime.now(UTC),
                        session_id=record.session_id, decision_id=decision_id).challenge_id
                    challenged.add(record.session_id)  # one open challenge per session at a time
                except stepup.StepUpError:
                    challenge_id = None  # e.g. the user's earlier challenge is locked: the decision stands
            verdicts.append(WindowVerdict(
                window_id=record.window_id, session_id=record.session_id, user_id=record.user_id,
                kind=row["kind"], risk=decision.risk, action=decision.action.name, verdict=decision.verdict.name,
                reasons=tuple(decision.reasons), top_features=row["top"], decision_id=decision_id,
                challenge_id=challenge_id, window_risk=row["window_risk"], evidence=row["evidence"],
                evidence_change=row["change"]))
        record_scores(store, pl.DataFrame(score_rows, schema={"window_id": pl.String, "model_id": pl.String,
                                                               "raw_score": pl.Float64, "risk": pl.Float64}))
    return verdicts


def score_pending(store: Store, limit: int = 5_000, *, failed: dict[str, str] | None = None) -> list[WindowVerdict]:
    """Score every window that has no score yet (the scheduler's queue).

    A session whose windows cannot be scored is recorded with its error and left out of the queue
    (`store.session_progress.record_scoring_failures`); the other sessions are scored. `failed`, when given,
    collects those sessions (session -> error).
    """

    windows = unscored_windows(store, limit)
    parts = {session_id: part for (session_id,), part in windows.partition_by("session_id", as_dict=True).items()} \
        if windows.height else {}
    scored, failures = each_isolated(
        list(parts), lambda some: score_windows(store, windows if len(some) == len(parts)
                                                else pl.concat([parts[s] for s in some])))
    record_scoring_failures(store, failures)
    if failed is not None:
        failed.update(failures)
    return [verdict for verdicts in scored for verdict in verdicts]


@dataclass(frozen=True)
class PendingReport:
    """What one run of the "score" job did: decisions made, and sessions set aside with their error."""

    decisions: int
    failed: dict[str, str]


def process_pending(store: Store) -> PendingReport:
    """The "score" job: build windows from new events, then score what has no score."""
    built = featurize_pending(store)
    failed = dict(built.failed)
    decided = score_pending(store, failed=failed)
    return PendingReport(len(decided), failed)


def score_session(store: Store, session_id: str, *,
                  new_session_events: pl.DataFrame | None = None) -> WindowVerdict | None:
    """Build a finished session's windows now and score them (the capture page's immediate verdict);
    returns the most severe verdict of the session's windows, fixed-text first.

    `new_session_events`: see `build_and_store_windows` (`ingest_and_score` passes them).
    Windows, scores and decisions are written in one transaction (one commit per login).
    """

    with store.transaction():
        built = build_and_store_windows(store, [session_id], final=True, new_session_events=new_session_events)
        # every window new: they are the session's unscored ones, no need to read them back
        windows = built.windows if built.all_new else unscored_windows(store, sessions=[session_id])
        fresh = score_windows(store, windows, new_sessions=frozenset([session_id]) if built.all_new else frozenset())
    if not fresh:
        return None
    return max(fresh, key=lambda v: (v.kind == "fixed_text", Action(v.action).severity, v.risk))


@dataclass(frozen=True)
class ScoredBatch:
    """What `ingest_and_score` did: the import, and the verdict of each finished session (None: no
    model covers it yet, or the verdict could not be made and is left to the scheduler)."""

    report: IngestReport
    verdicts: dict[str, WindowVerdict | None]


def ingest_and_score(store: Store, events: pl.DataFrame, finished: list[str], *, source_name: str,
                     actor: str, sessions: pl.DataFrame | None = None) -> ScoredBatch:
    """Store a capture batch and score the sessions it finished, in one transaction (one commit).

    A batch that starts and finishes its session (a login sent at once) is featurized from memory,
    not read back. A refused batch stores nothing (ValidationError, as `ingest_events`). When scoring
    fails for any other reason, the batch is stored on its own and the failure logged: events are
    never lost to a scoring problem, and the scheduler scores the session's windows later.
    """
    try:
        with store.transaction():
            report = ingest_events(store, events, source_name=source_name, actor=actor, sessions=sessions,
                                   audit=False)
            held = report.new_session_events  # every event of the sessions this batch created
            created = set() if held is None else set(held["session_id"].unique().to_list())
            try:
                verdicts = {session_id: score_session(store, session_id, new_session_events=held.filter(
                                pl.col("session_id") == session_id) if session_id in created else None)
                            for session_id in finished}
            except Exception as error:
                raise _ScoringFailed from error  # rolls the batch back with what scoring wrote
        return ScoredBatch(report, verdicts)
    except _ScoringFailed as failed:
        logger.error("scoring a finished session failed; storing its batch alone", exc_info=failed.__cause__)
    report = ingest_events(store, events, source_name=source_name, actor=actor, sessions=sessions, audit=False)
    return ScoredBatch(report, dict.fromkeys(finished))


class _ScoringFailed(Exception):
    """Scoring inside `ingest_and_score` raised (the cause is chained)."""


# -- for the capture page ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EnrolmentStatus:
    clean_repetitions: int  # fixed-text windows from the user's enrolment sessions
    detectors: list[str]    # detectors of the user's active personal models


def enrolment_status(store: Store, user_id: str) -> EnrolmentStatus:
    models = active_models(store).filter(pl.col("user_id") == user_id)
    return EnrolmentStatus(enrolment_repetitions(store, user_id), sorted(set(models["detector"].to_list())))


def train_user(store: Store, user_id: str, progress=None):
    """Train one user's models for every kind they have windows of (the capture page's button)."""

    return train(store, users=[user_id], progress=progress, actor="capture-page")


def recent_decisions(store: Store, *, session_prefix: str, limit: int = 20) -> pl.DataFrame:
    """The newest decisions of one capture pad's sessions."""

    return decisions_for_prefix(store, session_prefix, limit)


def prepare_store(store: Store, progress=None) -> str:
    """Windows for every stored session (all treated as finished), models, scores: what a store of
    complete recordings (sample data, an import) needs before the pages have something to show."""

    todo = sessions_to_featurize(store, idle_seconds=0, limit=1_000_000)
    built, failed = each_isolated(todo["session_id"].to_list(),
                                  lambda some: featurize_sessions(store, some, final=True))
    windows = sum(built)
    mark_featurized(store, todo.with_columns(final=pl.lit(True)), failed=failed)
    report = train(store, progress=progress, actor="init")
    decided = len(score_pending(store, limit=1_000_000, failed=failed))
    set_aside = f"; {plural(len(failed), 'session')} set aside with an error (Models page)" if failed else ""
    return (f"{plural(windows, 'window')}, {plural(report.models, 'model')} trained in {report.seconds:.0f} s, "
            f"{plural(decided, 'decision')}{set_aside}")


def latest_login_decision(store: Store, finished: list[str]) -> WindowVerdict | None:
    """The verdict of the newest decided session of one capture form (`finished`: its sessions in the
    order the page finished them), its fixed-text window first."""

    row = newest_session_decision(store, finished)
    if row is None:
        return None
    features = json.loads(row["top_features"] or "[]")
    return WindowVerdict(
        window_id=row["window_id"], session_id=row["session_id"], user_id="", kind=row["kind"] or "",
        risk=float(row["risk"]), action=row["action"], verdict=row["verdict"],
        reasons=tuple(json.loads(row["reasons"] or "[]")),
        top_features=[{"feature": f["feature"], "z": f.get("contribution")} for f in features],
        decision_id="")
