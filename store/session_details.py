"""What is stored about a user's sessions and about one session, for the Investigation page: the users
with something to investigate, a user's sessions, one session in figures, its decisions in the order
its evidence accumulated, its step-up events, its windows' scores and the models that gave them.
Parameterised SQL, fully fetched Polars frames, no writes; times are naive UTC, as stored.

Ground-truth labels (`session_labels`) are read here only to show an investigator what a simulated
session really was; no decision is ever made from them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from store.db import Store
from store.decisions import WORST_ACTION


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
            SELECT session_id, count(*) AS decisions, max(risk) AS max_risk, {WORST_ACTION} AS worst_action
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
            SELECT count(*) AS decisions, max(risk) AS max_risk, {WORST_ACTION} AS worst_action
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
