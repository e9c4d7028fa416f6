"""What the store holds: rows per table, whether it holds anything yet, one row per session, its users, and
the events of given sessions."""

from __future__ import annotations

import polars as pl

from store.db import Store


def table_counts(store: Store) -> dict[str, int]:
    """Rows per table, in a fixed order."""
    return store.table_counts()


def is_empty(store: Store) -> bool:
    """True when no events and no feature windows are stored yet."""
    return not store.scalar("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM feature_windows)")


def sessions_with_counts(store: Store, limit: int = 1000) -> pl.DataFrame:
    """One row per session: user, source, start, event counts by family, duration in seconds."""
    return store.frame("""
        SELECT s.session_id, s.user_id, s.source, s.started_at,
               count(e.seq) AS events,
               count(e.seq) FILTER (WHERE e.type IN ('key_down', 'key_up')) AS key_events,
               count(e.seq) FILTER (WHERE e.type IN ('mouse_move', 'mouse_down', 'mouse_up', 'wheel')) AS mouse_events,
               round((max(e.t_ms) - min(e.t_ms)) / 1000, 1) AS duration_s,
               l.label
        FROM sessions s
        LEFT JOIN events e USING (session_id)
        LEFT JOIN session_labels l USING (session_id)
        GROUP BY ALL
        ORDER BY s.started_at DESC, s.session_id
        LIMIT ?""", [limit])


def user_ids(store: Store) -> list[str]:
    """Every user anything is stored for (events, an authenticator or decisions), sorted."""
    return [user for (user,) in store.rows("""
        SELECT user_id FROM users
        UNION SELECT user_id FROM otp_enrolments
        UNION SELECT user_id FROM decisions WHERE user_id IS NOT NULL AND user_id <> ''
        ORDER BY 1""")]


def events_for_sessions(store: Store, session_ids: list[str]) -> pl.DataFrame:
    """Every event of the given sessions, ordered by session and seq."""
    if len(session_ids) == 1:  # a login: equality lets DuckDB skip row groups by their min/max
        return store.frame("SELECT * FROM events WHERE session_id = ? ORDER BY seq", session_ids)
    return store.frame("SELECT * FROM events WHERE list_contains(?, session_id) ORDER BY session_id, seq",
                       [session_ids])
