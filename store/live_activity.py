"""What is happening now, for the Live monitor: the newest event and CPU sample, events per wall-clock
second, CPU and memory samples, the sessions active in an interval with their current risk, and the
newest decisions. Parameterised SQL, fully fetched Polars frames, no writes.

Times are naive UTC, as stored. An event has no wall-clock column of its own: its time is its
session's `started_at` (the wall clock of t_ms = 0) plus its `t_ms`. Functions that work on event
times take `since` (inclusive) and `until` (exclusive) as naive UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from store.db import Store

#: Wall-clock milliseconds of an event `e` of a session `s` from `_STARTS` (epoch ms, UTC).
_EVENT_MS = "(s.start_ms + e.t_ms)"
#: Sessions started before the end of the interval, with their start in epoch ms (computed once per
#: session rather than once per event).
_STARTS = "SELECT session_id, epoch_ms(started_at) AS start_ms FROM sessions WHERE started_at < ?"


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
