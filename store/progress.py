"""Which sessions need (re)building into windows: the featurize job's bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from store.db import Store


def sessions_to_featurize(store: Store, idle_seconds: float, now: datetime | None = None,
                          limit: int = 500) -> pl.DataFrame:
    """Sessions with new events (`final` false) or idle long enough to finalize (`final` true).

    Columns: session_id, events (current count), final.
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    return store.frame("""
        WITH counts AS (SELECT session_id, count(*) AS events FROM events GROUP BY session_id)
        SELECT c.session_id, c.events,
               (p.session_id IS NOT NULL AND c.events = p.events_seen) AS final
        FROM counts c LEFT JOIN session_progress p USING (session_id)
        WHERE p.session_id IS NULL OR c.events <> p.events_seen
           OR (NOT p.finalized AND p.changed_at < ?)
        ORDER BY final, c.session_id
        LIMIT ?""", [now - timedelta(seconds=idle_seconds), limit])


def mark_featurized(store: Store, done: pl.DataFrame, now: datetime | None = None) -> None:
    """Record `done` (session_id, events, final) as built."""
    if done.height == 0:
        return
    now = now or datetime.now(UTC).replace(tzinfo=None)
    with store.transaction() as cursor:
        cursor.register("featurized", done.select("session_id", "events", "final").to_arrow())
        cursor.execute("""
            INSERT INTO session_progress (session_id, events_seen, changed_at, finalized)
            SELECT session_id, events, ?, final FROM featurized
            ON CONFLICT (session_id) DO UPDATE SET
                changed_at = CASE WHEN session_progress.events_seen <> excluded.events_seen
                                  THEN excluded.changed_at ELSE session_progress.changed_at END,
                events_seen = excluded.events_seen,
                finalized = excluded.finalized""", [now])
        cursor.unregister("featurized")


def events_for_sessions(store: Store, session_ids: list[str]) -> pl.DataFrame:
    """Every event of the given sessions, ordered by session and seq."""
    if len(session_ids) == 1:  # a login: equality lets DuckDB skip row groups by their min/max
        return store.frame("SELECT * FROM events WHERE session_id = ? ORDER BY seq", session_ids)
    return store.frame("SELECT * FROM events WHERE list_contains(?, session_id) ORDER BY session_id, seq",
                       [session_ids])
