"""Each session's progress through the jobs (the `session_progress` table): which sessions need
(re)building into windows, and which could not be built or scored, with their error."""

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


def mark_featurized(store: Store, done: pl.DataFrame, now: datetime | None = None,
                    failed: dict[str, str] | None = None) -> None:
    """Record `done` (session_id, events, final) as built; `failed` (session -> error) as failed.

    A failed session counts as seen too: the same events would fail the same way, so it is tried
    again only when new events arrive (or `clear_session_failures`). A success clears its error.
    """
    if done.height == 0:
        return
    now = now or datetime.now(UTC).replace(tzinfo=None)
    errors = pl.DataFrame({"session_id": list(failed or {}), "error": list((failed or {}).values())},
                          schema={"session_id": pl.String, "error": pl.String})
    rows = done.select("session_id", "events", "final").join(errors, on="session_id", how="left")
    with store.transaction() as cursor:
        cursor.register("featurized", rows.to_arrow())
        cursor.execute("""
            INSERT INTO session_progress (session_id, events_seen, changed_at, finalized, error, failed_at,
                                          failed_stage)
            SELECT session_id, events, ?, final, error, CASE WHEN error IS NULL THEN NULL ELSE ? END,
                   CASE WHEN error IS NULL THEN NULL ELSE 'featurize' END
            FROM featurized
            ON CONFLICT (session_id) DO UPDATE SET
                changed_at = CASE WHEN session_progress.events_seen <> excluded.events_seen
                                  THEN excluded.changed_at ELSE session_progress.changed_at END,
                events_seen = excluded.events_seen,
                finalized = excluded.finalized,
                error = excluded.error, failed_at = excluded.failed_at, failed_stage = excluded.failed_stage""",
                       [now, now])
        cursor.unregister("featurized")


def record_scoring_failures(store: Store, failed: dict[str, str], now: datetime | None = None) -> None:
    """Mark sessions whose windows could not be scored (session -> error): left out of the scoring
    queue (`store.windows.unscored_windows`) until they get new events or are retried."""
    if not failed:
        return
    now = now or datetime.now(UTC).replace(tzinfo=None)
    with store.transaction() as cursor:
        cursor.register("failed_scoring", pl.DataFrame({"session_id": list(failed),
                                                        "error": list(failed.values())}).to_arrow())
        cursor.execute("""
            INSERT INTO session_progress (session_id, events_seen, changed_at, finalized, error, failed_at,
                                          failed_stage)
            SELECT f.session_id, (SELECT count(*) FROM events e WHERE e.session_id = f.session_id), ?, false,
                   f.error, ?, 'score'
            FROM failed_scoring f
            ON CONFLICT (session_id) DO UPDATE SET
                error = excluded.error, failed_at = excluded.failed_at, failed_stage = excluded.failed_stage""",
                       [now, now])
        cursor.unregister("failed_scoring")


def session_failures(store: Store) -> pl.DataFrame:
    """Sessions whose last build or scoring failed: session_id, user_id, stage, error, failed_at (newest first)."""
    return store.frame("""
        SELECT p.session_id, s.user_id, p.failed_stage AS stage, p.error, p.failed_at
        FROM session_progress p LEFT JOIN sessions s USING (session_id)
        WHERE p.error IS NOT NULL ORDER BY p.failed_at DESC, p.session_id""")


def clear_session_failures(store: Store, session_ids: list[str] | None = None) -> int:
    """Forget failures (all, or of these sessions) so the jobs try those sessions again; returns how many."""
    with store.transaction() as cursor:
        if session_ids is None:
            found = cursor.execute("SELECT session_id FROM session_progress WHERE error IS NOT NULL").fetchall()
        else:
            found = cursor.execute("SELECT session_id FROM session_progress WHERE error IS NOT NULL "
                                   "AND list_contains(?, session_id)", [session_ids]).fetchall()
        ids = [session_id for (session_id,) in found]
        if ids:
            # events_seen = -1: the featurize job sees the session as changed and builds it again
            cursor.execute("""UPDATE session_progress SET error = NULL, failed_at = NULL, failed_stage = NULL,
                              events_seen = -1, finalized = false WHERE list_contains(?, session_id)""", [ids])
    return len(ids)

