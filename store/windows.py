"""Feature windows: stored feature vectors with the schema (names, order) they were made with."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import polars as pl

from store.audit import append_audit
from store.db import Store, insert_frame, inserted
from store.errors import Problem, ValidationError

WINDOW_KEY_COLUMNS = ("window_id", "user_id", "session_id")


def schema_id(names: list[str]) -> str:
    """Hash of the feature names in order: a model refuses vectors of another schema."""
    return hashlib.sha256("\x1f".join(names).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WindowReport:
    source: str
    rows_read: int
    windows_added: int
    already_stored: int
    users_added: int
    schema_id: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.source}: read {self.rows_read:,} rows; stored {self.windows_added:,} new feature "
                f"windows ({self.already_stored:,} already stored), {self.users_added:,} new users, "
                f"schema {self.schema_id}")


def ingest_feature_windows(
    store: Store,
    windows: pl.DataFrame,
    feature_names: list[str],
    *,
    kind: str,
    source: str,
    source_name: str,
    actor: str | None = "cli",
    dry_run: bool = False,
    users_stored: bool = False,
) -> WindowReport:
    """Store precomputed feature vectors (e.g. CMU layout) in one transaction, idempotently by window_id.

    `windows` has window_id, user_id, session_id, optionally start_ms, end_ms, n_events, and one
    Float64 column per feature name. `actor=None` skips the audit row (the scoring job's many small
    writes are recorded in job_runs instead). `users_stored=True` says every user already has a row
    (windows built from stored events), which saves the users upsert.
    """
    bad = windows.select(pl.any_horizontal(~pl.col(feature_names).is_finite()).fill_null(True).arg_true())
    if bad.height:
        row = int(bad.item(0, 0))
        raise ValidationError([Problem("feature values must be finite numbers", row=row + 1)], source_name)
    return store_window_rows(store, window_rows(windows, feature_names, kind=kind, source=source), feature_names,
                             kind=kind, source_name=source_name, actor=actor, dry_run=dry_run,
                             users_stored=users_stored)


def window_rows(windows: pl.DataFrame, feature_names: list[str], *, kind: str, source: str) -> pl.DataFrame:
    """Windows in the stored layout: key columns, kind, schema id, span, the features as one list."""
    optional = {"start_ms": pl.Float64, "end_ms": pl.Float64, "n_events": pl.Int64}
    return windows.select(
        *WINDOW_KEY_COLUMNS,
        pl.lit(kind).alias("kind"),
        pl.lit(schema_id(feature_names)).alias("schema_id"),
        *[(pl.col(c) if c in windows.columns else pl.lit(None)).cast(t).alias(c) for c, t in optional.items()],
        pl.concat_list(pl.col(feature_names).cast(pl.Float64)).alias("features"),
        pl.lit(source).alias("source"),
    )


def store_window_rows(store: Store, rows: pl.DataFrame, feature_names: list[str], *, kind: str, source_name: str,
                      actor: str | None = None, dry_run: bool = False, users_stored: bool = False) -> WindowReport:
    """Store `window_rows` output whose values are known to be finite (`ingest_feature_windows` checks
    them; `build_windows` fills every undefined value), idempotently by window id."""
    try:
        return _write_windows(store, rows, feature_names, rows.height, schema_id(feature_names), kind=kind,
                              source_name=source_name, actor=actor, dry_run=dry_run, users_stored=users_stored)
    except _DryRun as dry:
        return dry.report


#: Read-cache key of the stored feature schema ids (a live login's windows almost never bring a new one).
SCHEMA_IDS = "schema_ids"


def _stored_schema_ids(store: Store) -> frozenset[str]:
    def read() -> frozenset[str]:
        return frozenset(sid for (sid,) in store.rows("SELECT schema_id FROM feature_schemas"))

    return store.cached(SCHEMA_IDS, read)


def _write_windows(store: Store, frame: pl.DataFrame, feature_names: list[str], rows_read: int, sid: str, *,
                   kind: str, source_name: str, actor: str | None, dry_run: bool,
                   users_stored: bool) -> WindowReport:
    with store.transaction() as cursor:
        if sid not in _stored_schema_ids(store):
            cursor.execute("INSERT OR IGNORE INTO feature_schemas (schema_id, kind, names) VALUES (?, ?, ?)",
                           [sid, kind, feature_names])
            store.invalidate(SCHEMA_IDS)
        added = insert_frame(cursor, "feature_windows", frame, or_ignore=True)
        users_added = 0 if users_stored else inserted(cursor.execute(
            "INSERT OR IGNORE INTO users (user_id) SELECT DISTINCT unnest(?)", [frame["user_id"].unique().to_list()]))
        report = WindowReport(source_name, rows_read, added, rows_read - added, users_added, sid)
        if actor is not None:
            append_audit(cursor, actor=actor, action="import", subject=source_name, details=report.as_dict())
        if dry_run:
            raise _DryRun(report)
    return report


class _DryRun(Exception):
    def __init__(self, report: WindowReport):
        super().__init__("dry run")
        self.report = report


def feature_windows(store: Store, kind: str | None = None, *, users: list[str] | None = None,
                    sessions: list[str] | None = None) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """Stored windows (features as a list column) and the feature names of each schema id."""
    clauses, params = [], []
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    if users is not None:
        clauses.append("list_contains(?, user_id)")
        params.append(users)
    if sessions is not None:
        clauses.append("list_contains(?, session_id)")
        params.append(sessions)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    frame = store.frame(f"SELECT * FROM feature_windows {where} ORDER BY session_id, start_ms, window_id", params)
    return frame, schema_names(store)


def schema_names(store: Store) -> dict[str, list[str]]:
    """Feature names of every stored schema id."""
    return {sid: list(n) for sid, n in store.rows("SELECT schema_id, names FROM feature_schemas")}


def unscored_windows(store: Store, limit: int = 10_000, *, sessions: list[str] | None = None) -> pl.DataFrame:
    """Windows with no score yet, oldest first (the scoring job's queue), or only those of `sessions`."""
    if sessions is None:
        of_sessions, params = "", []
    elif len(sessions) == 1:  # a login (measured on 15k windows: 5 ms, where list_contains took 17 ms)
        of_sessions, params = "WHERE w.session_id = ?", sessions
    else:
        of_sessions, params = "WHERE list_contains(?, w.session_id)", [sessions]
    return store.frame(f"""
        SELECT w.* FROM feature_windows w ANTI JOIN scores s USING (window_id) {of_sessions}
        ORDER BY w.created_at, w.window_id LIMIT ?""", [*params, limit])


def window_counts(store: Store) -> pl.DataFrame:
    """Windows per user and kind (enrolment progress on the Models page)."""
    return store.frame("SELECT user_id, kind, count(*) AS windows FROM feature_windows GROUP BY ALL ORDER BY ALL")


def training_windows(store: Store, kind: str, enrolment_sessions: int) -> pl.DataFrame:
    """Windows a user's model may learn from: those of the user's first `enrolment_sessions`
    sessions (by start), of explicit enrolment sessions (ids starting with "enrol-"), and of later
    sessions whose every decision so far was SAFE. Ground-truth labels are never read here."""
    return store.frame("""
        WITH ranked AS (
            SELECT session_id, user_id,
                   row_number() OVER (PARTITION BY user_id ORDER BY started_at, session_id) AS nth
            FROM sessions
        ), judged AS (
            SELECT session_id, bool_and(verdict = 'SAFE') AS all_safe FROM decisions
            WHERE session_id IS NOT NULL GROUP BY session_id
        )
        SELECT w.* FROM feature_windows w
        LEFT JOIN ranked r USING (session_id)
        LEFT JOIN judged j USING (session_id)
        WHERE w.kind = ?
          AND (r.nth <= ? OR w.session_id LIKE 'enrol-%' OR coalesce(j.all_safe, false)
               OR r.session_id IS NULL)  -- imported feature vectors (CMU layout) have no session row
        ORDER BY w.user_id, w.session_id, w.start_ms, w.window_id""", [kind, enrolment_sessions])


#: Two timing vectors closer than this (Euclidean, ms) are the same pattern: a replay re-plays recorded
#: timings exactly, up to the rounding of re-based timestamps; two human repetitions never come this close.
REPLAY_TOLERANCE_MS = 0.05


def replayed_windows(store: Store, window_ids: list[str], compare_first: int) -> set[str]:
    """Windows whose first `compare_first` features match an earlier window's of the same user and
    kind within REPLAY_TOLERANCE_MS: a replayed pattern (for fixed text: the timings, not the
    context around them)."""
    rows = store.rows("""
        SELECT DISTINCT w.window_id FROM feature_windows w
        JOIN feature_windows earlier
          ON earlier.user_id = w.user_id AND earlier.kind = w.kind AND earlier.schema_id = w.schema_id
         AND list_distance(list_slice(earlier.features, 1, ?), list_slice(w.features, 1, ?)) < ?
         AND earlier.window_id <> w.window_id
         AND (earlier.created_at < w.created_at
              OR (earlier.created_at = w.created_at AND earlier.window_id < w.window_id))
        WHERE list_contains(?, w.window_id)""", [compare_first, compare_first, REPLAY_TOLERANCE_MS, window_ids])
    return {r[0] for r in rows}


def window_kinds(store: Store) -> list[str]:
    """Kinds that have stored windows, sorted."""
    return [k for (k,) in store.rows("SELECT DISTINCT kind FROM feature_windows ORDER BY kind")]


def enrolment_repetitions(store: Store, user_id: str) -> int:
    """Fixed-text windows from the user's explicit enrolment sessions ("enrol-...")."""
    return int(store.scalar("SELECT count(*) FROM feature_windows WHERE user_id = ? AND kind = 'fixed_text' "
                            "AND starts_with(session_id, 'enrol-')", [user_id]) or 0)
