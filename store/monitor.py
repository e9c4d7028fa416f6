"""Reads for the Live monitor, Investigation and Threshold lab pages: parameterised SQL, fully fetched
Polars frames, no writes.

Times are naive UTC, as stored. An event has no wall-clock column of its own: its time is its
session's `started_at` (the wall clock of t_ms = 0) plus its `t_ms`. Functions that work on event
times take `since` (inclusive) and `until` (exclusive) as naive UTC datetimes.

Ground-truth labels (`session_labels`) are read here only to measure and to show an investigator
what a simulated session really was; no decision is ever made from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from store.db import Store

#: Wall-clock milliseconds of an event `e` of a session `s` from `_STARTS` (epoch ms, UTC).
_EVENT_MS = "(s.start_ms + e.t_ms)"
#: Sessions started before the end of the interval, with their start in epoch ms (computed once per
#: session rather than once per event).
_STARTS = "SELECT session_id, epoch_ms(started_at) AS start_ms FROM sessions WHERE started_at < ?"
#: Severity of an action, for "the worst action of a session" (same order as app.engine.policy.Action).
_SEVERITY = "CASE action WHEN 'ALLOW' THEN 0 WHEN 'REQUIRE_OTP' THEN 1 WHEN 'FLAG_SESSION' THEN 2 " \
            "WHEN 'DENY' THEN 3 END"
_WORST_ACTION = "['ALLOW', 'REQUIRE_OTP', 'FLAG_SESSION', 'DENY'][max(" + _SEVERITY + ") + 1]"


# -------------------------------------------------------------------------------------------- live


def newest_activity(store: Store) -> datetime | None:
    """Wall-clock time of the newest stored event (None when there are none)."""
    return store.scalar("""
        SELECT max(s.started_at + to_microseconds(CAST(m.last_ms * 1000 AS BIGINT)))
        FROM (SELECT session_id, max(t_ms) AS last_ms FROM events GROUP BY session_id) m
        JOIN sessions s USING (session_id)""")


def newest_metric(store: Store) -> datetime | None:
    """Time of the newest CPU/memory sample (None when there are none)."""
    return store.scalar("SELECT max(sampled_at) FROM system_metrics")


def events_per_second(store: Store, since: datetime, until: datetime) -> pl.DataFrame:
    """Events per wall-clock second and source in [since, until): second (UTC), source, events.

    Seconds without events are absent.
    """
    return store.frame(f"""
        WITH starts AS ({_STARTS}), timed AS (
            SELECT {_EVENT_MS} AS at_ms, e.source FROM events e JOIN starts s USING (session_id)
        )
        SELECT make_timestamp(CAST(floor(at_ms / 1000) * 1000000 AS BIGINT)) AS second, source,
               count(*) AS events
        FROM timed
        WHERE at_ms >= epoch_ms(CAST(? AS TIMESTAMP)) AND at_ms < epoch_ms(CAST(? AS TIMESTAMP))
        GROUP BY ALL ORDER BY second, source""", [until, since, until])


def system_metrics_between(store: Store, since: datetime, until: datetime, limit: int = 7200) -> pl.DataFrame:
    """CPU and memory samples in [since, until), oldest first (at most the newest `limit`)."""
    return store.frame("""
        SELECT * FROM (
            SELECT sampled_at, cpu_percent, mem_percent, rss_mb, source FROM system_metrics
            WHERE sampled_at >= ? AND sampled_at < ? ORDER BY sampled_at DESC LIMIT ?
        ) ORDER BY sampled_at""", [since, until, int(limit)])


def active_sessions(store: Store, since: datetime, until: datetime, limit: int = 50) -> pl.DataFrame:
    """Sessions with events in [since, until), most recently active first, with their current risk.

    The caller says what "active" means: the Live monitor passes the last few seconds of the wall
    clock. Columns: session_id, user_id, last_event_at (UTC), events (in the interval), risk,
    action, verdict, decided_at, reasons (JSON text; all of the session's latest decision, null when
    it has none yet), max_risk and decisions (over all of the session's decisions).
    """
    return store.frame(f"""
        WITH starts AS ({_STARTS}), recent AS (
            SELECT e.session_id, any_value(e.user_id) AS user_id, count(*) AS events, max({_EVENT_MS}) AS last_ms
            FROM events e JOIN starts s USING (session_id)
            WHERE {_EVENT_MS} >= epoch_ms(CAST(? AS TIMESTAMP)) AND {_EVENT_MS} < epoch_ms(CAST(? AS TIMESTAMP))
            GROUP BY e.session_id
        ), judged AS (
            SELECT session_id, risk, action, verdict, decided_at, CAST(reasons AS VARCHAR) AS reasons,
                   max(risk) OVER (PARTITION BY session_id) AS max_risk,
                   count(*) OVER (PARTITION BY session_id) AS decisions
            FROM decisions WHERE session_id IN (SELECT session_id FROM recent)
            QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY decided_at DESC, decision_id) = 1
        )
        SELECT r.session_id, r.user_id, make_timestamp(CAST(r.last_ms * 1000 AS BIGINT)) AS last_event_at,
               r.events, j.risk, j.action, j.verdict, j.decided_at, j.reasons, j.max_risk,
               coalesce(j.decisions, 0) AS decisions
        FROM recent r LEFT JOIN judged j USING (session_id)
        ORDER BY r.last_ms DESC, r.session_id LIMIT ?""", [until, since, until, int(limit)])


def latest_decisions(store: Store, limit: int = 20) -> pl.DataFrame:
    """The newest `limit` decisions, newest first: decision_id, decided_at, user_id, session_id,
    window_id, kind (of the window, when known), action, verdict, risk, policy_id, policy_rev,
    reasons (JSON text)."""
    return store.frame("""
        SELECT d.decision_id, d.decided_at, d.user_id, d.session_id, d.window_id, w.kind, d.action, d.verdict,
               d.risk, d.policy_id, d.policy_rev, CAST(d.reasons AS VARCHAR) AS reasons
        FROM (SELECT * FROM decisions ORDER BY decided_at DESC, decision_id LIMIT ?) d
        LEFT JOIN feature_windows w USING (window_id)
        ORDER BY d.decided_at DESC, d.decision_id""", [int(limit)])


# ----------------------------------------------------------------------------------- investigation


def users(store: Store) -> pl.DataFrame:
    """Every user with something to investigate: user_id, sessions, windows, last_started_at."""
    return store.frame("""
        WITH ids AS (
            SELECT user_id FROM users
            UNION SELECT user_id FROM sessions
            UNION SELECT DISTINCT user_id FROM feature_windows
        ), per_session AS (
            SELECT user_id, count(*) AS sessions, max(started_at) AS last_started_at FROM sessions GROUP BY user_id
        ), per_window AS (
            SELECT user_id, count(*) AS windows FROM feature_windows GROUP BY user_id
        )
        SELECT i.user_id, coalesce(s.sessions, 0) AS sessions, coalesce(w.windows, 0) AS windows, s.last_started_at
        FROM ids i LEFT JOIN per_session s USING (user_id) LEFT JOIN per_window w USING (user_id)
        WHERE coalesce(s.sessions, 0) + coalesce(w.windows, 0) > 0
        ORDER BY i.user_id""")


def user_sessions(store: Store, user_id: str, limit: int = 2000) -> pl.DataFrame:
    """A user's sessions, newest first: session_id, started_at, source, label, events, windows,
    decisions, max_risk, worst_action.

    Sessions known only from imported feature windows (no session row, no events) are listed too,
    after the others.
    """
    return store.frame(f"""
        WITH ids AS (
            SELECT session_id, started_at, source FROM sessions WHERE user_id = ?
            UNION ALL
            SELECT session_id, NULL::TIMESTAMP, any_value(source) FROM feature_windows
            WHERE user_id = ? AND session_id NOT IN (SELECT session_id FROM sessions)
            GROUP BY session_id
        ), counted AS (
            SELECT session_id, count(*) AS events FROM events WHERE user_id = ? GROUP BY session_id
        ), windowed AS (
            SELECT session_id, count(*) AS windows FROM feature_windows
            WHERE session_id IN (SELECT session_id FROM ids) GROUP BY session_id
        ), judged AS (
            SELECT session_id, count(*) AS decisions, max(risk) AS max_risk, {_WORST_ACTION} AS worst_action
            FROM decisions WHERE session_id IN (SELECT session_id FROM ids) GROUP BY session_id
        )
        SELECT i.session_id, i.started_at, i.source, l.label, coalesce(c.events, 0) AS events,
               coalesce(w.windows, 0) AS windows, coalesce(j.decisions, 0) AS decisions, j.max_risk, j.worst_action
        FROM ids i LEFT JOIN counted c USING (session_id) LEFT JOIN windowed w USING (session_id)
        LEFT JOIN judged j USING (session_id) LEFT JOIN session_labels l USING (session_id)
        ORDER BY i.started_at DESC NULLS LAST, i.session_id DESC LIMIT ?""",
                       [user_id, user_id, user_id, int(limit)])


def session_summary(store: Store, session_id: str) -> dict[str, Any] | None:
    """One session in a few figures (None when nothing is stored under that id): session_id, user_id,
    started_at, source, label, actor_id, takeover_ms, events, key_presses, mouse_events, duration_s,
    windows, decisions, max_risk, worst_action."""
    frame = store.frame(f"""
        WITH owner AS (
            SELECT session_id, user_id, started_at, source FROM sessions WHERE session_id = ?
            UNION ALL
            SELECT session_id, any_value(user_id), NULL::TIMESTAMP, any_value(source) FROM feature_windows
            WHERE session_id = ? AND NOT EXISTS (SELECT 1 FROM sessions WHERE session_id = ?)
            GROUP BY session_id
        ), counted AS (
            SELECT count(*) AS events, count(*) FILTER (WHERE type = 'key_down') AS key_presses,
                   count(*) FILTER (WHERE type IN ('mouse_move', 'mouse_down', 'mouse_up', 'wheel')) AS mouse_events,
                   round((max(t_ms) - min(t_ms)) / 1000, 1) AS duration_s
            FROM events WHERE session_id = ?
        ), judged AS (
            SELECT count(*) AS decisions, max(risk) AS max_risk, {_WORST_ACTION} AS worst_action
            FROM decisions WHERE session_id = ?
        )
        SELECT o.session_id, o.user_id, o.started_at, o.source, l.label, l.actor_id, l.takeover_ms,
               c.events, c.key_presses, c.mouse_events, c.duration_s,
               (SELECT count(*) FROM feature_windows WHERE session_id = ?) AS windows,
               j.decisions, j.max_risk, j.worst_action
        FROM owner o CROSS JOIN counted c CROSS JOIN judged j LEFT JOIN session_labels l USING (session_id)""",
                       [session_id] * 6)
    return frame.row(0, named=True) if frame.height else None


def session_decisions(store: Store, session_id: str) -> pl.DataFrame:
    """A session's decisions in the order its evidence accumulated (by window end): decision_id,
    decided_at, window_id, kind, start_ms, end_ms, action, verdict, risk (the session's, after the
    window), window_risk (the window on its own), evidence and evidence_change (nats), flagged,
    policy_id, policy_rev, reasons, detectors, top_features (JSON text)."""
    return store.frame("""
        SELECT d.decision_id, d.decided_at, d.window_id, w.kind, w.start_ms, w.end_ms, d.action, d.verdict, d.risk,
               d.window_risk, d.evidence, d.evidence_change, d.flagged, d.policy_id, d.policy_rev,
               CAST(d.reasons AS VARCHAR) AS reasons, CAST(d.detectors AS VARCHAR) AS detectors,
               CAST(d.top_features AS VARCHAR) AS top_features
        FROM decisions d LEFT JOIN feature_windows w USING (window_id)
        WHERE d.session_id = ?
        ORDER BY w.end_ms NULLS LAST, d.window_id, d.decided_at, d.decision_id""", [session_id])


def session_stepups(store: Store, session_id: str) -> pl.DataFrame:
    """Step-up events of the session's challenges, oldest first: happened_at, challenge_id, outcome,
    detail, decision_id, status (the challenge's current status). Never a secret or a code."""
    return store.frame("""
        SELECT e.happened_at, e.challenge_id, e.outcome, e.detail, c.decision_id, c.status
        FROM otp_events e JOIN otp_challenges c USING (challenge_id)
        WHERE c.session_id = ?
        ORDER BY e.happened_at, e.rowid""", [session_id])


def session_window_scores(store: Store, session_id: str) -> pl.DataFrame:
    """Scores of a session's windows: window_id, model_id, detector, model_user (null: the global
    model), raw_score, risk (1 - the model's surprise: the share of the user's genuine windows that
    score lower), scored_at."""
    return store.frame("""
        SELECT s.window_id, s.model_id, m.detector, m.user_id AS model_user, s.raw_score, s.risk, s.scored_at
        FROM scores s JOIN feature_windows w USING (window_id) JOIN models m USING (model_id)
        WHERE w.session_id = ?
        ORDER BY s.window_id, m.detector""", [session_id])


def model_rows(store: Store, model_ids: list[str]) -> pl.DataFrame:
    """Models by id, without blobs: model_id, user_id, kind, detector, schema_id, trained_at,
    n_samples, active, metadata (JSON text)."""
    return store.frame("""
        SELECT model_id, user_id, kind, detector, schema_id, trained_at, n_samples, active,
               CAST(metadata AS VARCHAR) AS metadata
        FROM models WHERE list_contains(?, model_id) ORDER BY model_id""", [list(model_ids)])


def scoring_models(store: Store, user_id: str, kind: str, schema_id: str) -> pl.DataFrame:
    """The active models that score this user's windows of `kind` and `schema_id` now: the user's own
    when there are any, else the global ones (as `app.engine.pipeline.score_windows` chooses). Columns as
    `model_rows`."""
    return store.frame("""
        SELECT model_id, user_id, kind, detector, schema_id, trained_at, n_samples, active,
               CAST(metadata AS VARCHAR) AS metadata
        FROM models
        WHERE active AND kind = ? AND schema_id = ? AND (user_id = ? OR user_id IS NULL)
        QUALIFY dense_rank() OVER (ORDER BY user_id IS NULL) = 1
        ORDER BY detector, model_id""", [kind, schema_id, user_id])


# ----------------------------------------------------------------------------------- threshold lab


def lab_decisions(store: Store, enrolment_sessions: int, limit: int = 20_000) -> pl.DataFrame:
    """Every decision of the newest `limit` sessions (by start) that have decisions, with what the
    Threshold lab needs to re-decide them (`app.analysis.redecide`) and to measure them on labels.

    Whole sessions, so that each one's evidence can be accumulated again from its first window.
    Columns: decision_id, session_id, user_id, window_id, kind, end_ms (ms of the session clock at the
    window's end), window_risk, evidence and evidence_change (nats), action, verdict, risk, reasons
    (JSON text), label and takeover_ms (the session's ground truth; null for unlabelled sessions,
    whose decisions are re-decided but not measured), enrolment (a session among its user's first
    `enrolment_sessions` by start, or an "enrol-" session: its user's models learned from it) and
    model_risks (the stored risk, 1 - surprise, of each model the decision names, by model id; null
    when none is stored). Ordered by session, end_ms and window: the order evidence accumulates in.
    """
    return store.frame("""
        WITH ranked AS (
            SELECT session_id, started_at,
                   row_number() OVER (PARTITION BY user_id ORDER BY started_at, session_id) AS nth
            FROM sessions
        ), chosen AS (
            SELECT d.session_id, any_value(r.started_at) AS started_at
            FROM decisions d LEFT JOIN ranked r ON r.session_id = d.session_id
            WHERE d.session_id IS NOT NULL GROUP BY d.session_id
            ORDER BY started_at DESC NULLS LAST, d.session_id DESC LIMIT ?
        ), d AS (
            SELECT decision_id, session_id, user_id, window_id, window_risk, evidence, evidence_change, action,
                   verdict, risk, CAST(reasons AS VARCHAR) AS reasons,
                   json_extract_string(detectors, '$.*') AS model_ids
            FROM decisions WHERE session_id IN (SELECT session_id FROM chosen) AND risk IS NOT NULL
        ), per_model AS (
            SELECT d.decision_id, list(s.risk ORDER BY s.model_id) FILTER (WHERE s.risk IS NOT NULL) AS model_risks
            FROM d JOIN scores s ON s.window_id = d.window_id AND list_contains(d.model_ids, s.model_id)
            GROUP BY d.decision_id
        )
        SELECT d.decision_id, d.session_id, d.user_id, d.window_id, w.kind, w.end_ms, d.window_risk, d.evidence,
               d.evidence_change, d.action, d.verdict, d.risk, d.reasons, l.label, l.takeover_ms,
               (coalesce(r.nth <= ?, false) OR starts_with(d.session_id, 'enrol-')) AS enrolment, p.model_risks
        FROM d
        LEFT JOIN feature_windows w ON w.window_id = d.window_id
        LEFT JOIN session_labels l ON l.session_id = d.session_id
        LEFT JOIN ranked r ON r.session_id = d.session_id
        LEFT JOIN per_model p ON p.decision_id = d.decision_id
        ORDER BY d.session_id, w.end_ms NULLS LAST, d.window_id, d.decision_id""",
                       [int(limit), int(enrolment_sessions)])


def session_overview(store: Store, enrolment_sessions: int, limit: int = 50_000) -> pl.DataFrame:
    """One row per decided session (newest first): session_id, user_id, started_at, enrolment (among its
    user's first `enrolment_sessions` by start, or an "enrol-" session), label (ground truth, null for
    unlabelled sessions), worst_action (the most severe decision), highest_risk, decisions, first_decided
    and last_decided (the time of the behaviour the first and last decision judged)."""
    return store.frame(f"""
        WITH ranked AS (
            SELECT session_id, user_id, started_at,
                   row_number() OVER (PARTITION BY user_id ORDER BY started_at, session_id) AS nth
            FROM sessions
        ), judged AS (
            SELECT session_id, count(*) AS decisions, max(risk) AS highest_risk,
                   min(decided_at) AS first_decided, max(decided_at) AS last_decided, {_WORST_ACTION} AS worst_action
            FROM decisions WHERE session_id IS NOT NULL GROUP BY session_id
        )
        SELECT r.session_id, r.user_id, r.started_at,
               (r.nth <= ? OR starts_with(r.session_id, 'enrol-')) AS enrolment,
               l.label, j.worst_action, j.highest_risk, j.decisions, j.first_decided, j.last_decided
        FROM judged j JOIN ranked r USING (session_id) LEFT JOIN session_labels l USING (session_id)
        ORDER BY r.started_at DESC, r.session_id LIMIT ?""", [int(enrolment_sessions), int(limit)])
