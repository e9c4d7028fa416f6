"""Decided sessions beside their ground truth, for the Overview and the Threshold lab: one row per
decided session (its worst action and highest risk), and every decision of the newest decided sessions
with what re-deciding them needs. Parameterised SQL, fully fetched Polars frames, no writes.

Ground-truth labels (`session_labels`) are read here only to measure decisions; no decision is ever
made from them.
"""

from __future__ import annotations

import polars as pl

from store.db import Store
from store.decisions import WORST_ACTION


def lab_decisions(store: Store, enrolment_sessions: int, limit: int = 20_000) -> pl.DataFrame:
    """Every decision of the newest `limit` sessions (by start) that have decisions, with what the
    Threshold lab needs to re-decide them (`app.engine.history.redecide`) and to measure them on labels.

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


def session_outcomes(store: Store, enrolment_sessions: int, limit: int = 50_000) -> pl.DataFrame:
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
                   min(decided_at) AS first_decided, max(decided_at) AS last_decided, {WORST_ACTION} AS worst_action
            FROM decisions WHERE session_id IS NOT NULL GROUP BY session_id
        )
        SELECT r.session_id, r.user_id, r.started_at,
               (r.nth <= ? OR starts_with(r.session_id, 'enrol-')) AS enrolment,
               l.label, j.worst_action, j.highest_risk, j.decisions, j.first_decided, j.last_decided
        FROM judged j JOIN ranked r USING (session_id) LEFT JOIN session_labels l USING (session_id)
        ORDER BY r.started_at DESC, r.session_id LIMIT ?""", [int(enrolment_sessions), int(limit)])
