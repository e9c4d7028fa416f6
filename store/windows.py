"""Feature windows: stored feature vectors with the schema (names, order) they were made with."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from store.audit import append_audit
from store.caches import KNOWN_USERS, SCHEMAS, STORED_VECTORS, WRITTEN_WINDOWS
from store.db import Store, insert_frame, inserted
from store.errors import Problem, ValidationError
from store.text import plural

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
        return (f"{self.source}: read {plural(self.rows_read, 'row')}; stored "
                f"{plural(self.windows_added, 'new feature window')} ({self.already_stored:,} already stored), "
                f"{plural(self.users_added, 'new user')}, "
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
                      actor: str | None = None, dry_run: bool = False, users_stored: bool = False,
                      none_stored: bool = False) -> WindowReport:
    """Store `window_rows` output whose values are known to be finite (`ingest_feature_windows` checks
    them; `build_windows` fills every undefined value), idempotently by window id.

    `none_stored=True` says no window of these sessions can be stored yet (their events arrived in
    the calling transaction): a plain insert then, which skips INSERT OR IGNORE's lookup of every id
    (an id stored after all is refused by the primary key, and nothing is written).
    """
    try:
        return _write_windows(store, rows, feature_names, rows.height, schema_id(feature_names), kind=kind,
                              source_name=source_name, actor=actor, dry_run=dry_run, users_stored=users_stored,
                              or_ignore=not none_stored)
    except _DryRun as dry:
        return dry.report


def _stored_schemas(store: Store) -> dict[str, tuple[str, ...]]:
    def read() -> dict[str, tuple[str, ...]]:
        return {sid: tuple(names) for sid, names in store.rows("SELECT schema_id, names FROM feature_schemas")}

    return store.caches.cached(SCHEMAS, read)


def _write_windows(store: Store, frame: pl.DataFrame, feature_names: list[str], rows_read: int, sid: str, *,
                   kind: str, source_name: str, actor: str | None, dry_run: bool,
                   users_stored: bool, or_ignore: bool = True) -> WindowReport:
    with store.transaction() as cursor:
        if sid not in _stored_schemas(store):
            cursor.execute("INSERT OR IGNORE INTO feature_schemas (schema_id, kind, names) VALUES (?, ?, ?)",
                           [sid, kind, feature_names])
            store.caches.invalidate(SCHEMAS)
        added = insert_frame(cursor, "feature_windows", frame, or_ignore=or_ignore)
        if added:
            _track_written_windows(store, frame)
        users_added = 0 if users_stored else inserted(cursor.execute(
            "INSERT OR IGNORE INTO users (user_id) SELECT DISTINCT unnest(?)", [frame["user_id"].unique().to_list()]))
        if users_added:
            store.caches.invalidate(KNOWN_USERS)
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
    """Feature names of every stored schema id (a new dict of new lists: callers may change them)."""
    return {sid: list(names) for sid, names in _stored_schemas(store).items()}


def unscored_windows(store: Store, limit: int = 10_000, *, sessions: list[str] | None = None) -> pl.DataFrame:
    """Windows with no score yet, oldest first (the scoring job's queue: without the sessions whose
    build or scoring failed, see `store.session_progress.session_failures`), or only those of `sessions`."""
    if sessions is None:
        of_sessions, params = ("WHERE w.session_id NOT IN (SELECT session_id FROM session_progress "
                               "WHERE error IS NOT NULL)"), []
    elif len(sessions) == 1:  # a login: equality lets DuckDB skip row groups by their min/max
        of_sessions, params = "WHERE w.session_id = ?", sessions
    else:
        of_sessions, params = "WHERE list_contains(?, w.session_id)", [sessions]
    return store.frame(f"""
        SELECT w.* FROM feature_windows w ANTI JOIN scores s USING (window_id) {of_sessions}
        ORDER BY w.created_at, w.window_id LIMIT ?""", [*params, limit])


def window_counts(store: Store) -> pl.DataFrame:
    """Windows per user and kind (enrolment progress on the Models page)."""
    return store.frame("SELECT user_id, kind, count(*) AS windows FROM feature_windows GROUP BY ALL ORDER BY ALL")


#: The sessions a user's models may learn from (parameter: enrolment sessions): the user's first N
#: sessions by start (enrolment), explicit enrolment sessions ("enrol-..."), imported feature vectors
#: that have no session row, and later sessions that passed: finished, never flagged or denied, and
#: any one-time code they were asked for answered. Ground-truth labels are never read here.
_TRAINED_ON = """
    WITH ranked AS (
        SELECT session_id, row_number() OVER (PARTITION BY user_id ORDER BY started_at, session_id) AS nth
        FROM sessions
    ), judged AS (
        SELECT session_id, bool_or(action IN ('FLAG_SESSION', 'DENY')) AS flagged,
               bool_or(action = 'REQUIRE_OTP') AS asked
        FROM decisions WHERE session_id IS NOT NULL GROUP BY session_id
    ), answered AS (
        SELECT DISTINCT session_id FROM otp_challenges WHERE status = 'verified' AND session_id IS NOT NULL
    ), trained_on AS (
        SELECT w.* FROM feature_windows w
        LEFT JOIN ranked r USING (session_id)
        LEFT JOIN judged j USING (session_id)
        LEFT JOIN answered a USING (session_id)
        LEFT JOIN session_progress p USING (session_id)
        WHERE r.nth <= ? OR starts_with(w.session_id, 'enrol-') OR r.session_id IS NULL
           OR (j.session_id IS NOT NULL AND NOT j.flagged AND (NOT j.asked OR a.session_id IS NOT NULL)
               AND coalesce(p.finalized, false))
    )"""


def training_windows(store: Store, kind: str | None, enrolment_sessions: int) -> pl.DataFrame:
    """Windows of `kind` (None: every kind) a user's model may learn from (see `_TRAINED_ON`): the
    enrolment, then the sessions that passed, so slow drift in a person's behaviour is followed and an
    attack never is."""
    return store.frame(f"""{_TRAINED_ON}
        SELECT * FROM trained_on WHERE ? IS NULL OR kind = ?
        ORDER BY kind, user_id, session_id, start_ms, window_id""", [enrolment_sessions, kind, kind])


def training_window_counts(store: Store, enrolment_sessions: int) -> pl.DataFrame:
    """Per user and kind: training windows in all (`windows`) and added since the user's newest active
    model of that kind (`fresh`; all of them when there is none): what the retrain job checks."""
    return store.frame(f"""{_TRAINED_ON}, newest AS (
            SELECT user_id, kind, max(trained_at) AS trained_at FROM models
            WHERE active AND user_id IS NOT NULL GROUP BY ALL)
        SELECT t.user_id, t.kind, count(*) AS windows,
               count(*) FILTER (WHERE n.trained_at IS NULL OR t.created_at > n.trained_at) AS fresh,
               any_value(n.trained_at) IS NOT NULL AS has_model
        FROM trained_on t LEFT JOIN newest n USING (user_id, kind)
        GROUP BY ALL ORDER BY ALL""", [enrolment_sessions])


class _StoredVectors:
    """The feature vectors of a user's committed windows of one kind and schema, in commit order
    (created_at, then window id): loaded once, extended as windows commit (see `store.caches`).

    Every scored window is compared with its user's earlier windows, so they are kept in memory rather
    than joined from the windows table on every login (a join that grows with the user's windows).
    """

    def __init__(self, ids: list[str], vectors: np.ndarray):
        self._lock = threading.Lock()
        self.position = {window_id: i for i, window_id in enumerate(ids)}
        self.vectors = vectors

    def extend(self, ids: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            new = [i for i, window_id in enumerate(ids) if window_id not in self.position]
            position = dict(self.position)
            for i in new:
                position[ids[i]] = len(position)
            added = vectors[new]
            self.position = position
            self.vectors = np.vstack([self.vectors, added]) if self.vectors.size else added

    def snapshot(self) -> tuple[dict[str, int], np.ndarray]:
        with self._lock:
            return self.position, self.vectors


def _vectors_key(user_id: str, kind: str, schema: str) -> str:
    return "\x1f".join((STORED_VECTORS, user_id, kind, schema))


def _as_matrix(features: pl.Series) -> np.ndarray:
    if features.len() == 0:
        return np.empty((0, 0))
    return features.list.to_array(features.list.len().max()).to_numpy()


def _stored_vectors(store: Store, user_id: str, kind: str, schema: str) -> _StoredVectors:
    def load() -> _StoredVectors:  # committed windows only: a rollback must not leave its windows here
        frame = store.committed_frame("""
            SELECT window_id, features FROM feature_windows WHERE user_id = ? AND kind = ? AND schema_id = ?
            ORDER BY created_at, window_id""", [user_id, kind, schema])
        return _StoredVectors(frame["window_id"].to_list(), _as_matrix(frame["features"]))

    return store.caches.cached(_vectors_key(user_id, kind, schema), load)


def _track_written_windows(store: Store, written: pl.DataFrame) -> None:
    """Windows just written: among this transaction's earlier windows now, every later transaction's
    once committed (kept vectors are extended; a load racing this commit is not kept, see `store.caches`)."""
    store.caches.written_in_transaction(WRITTEN_WINDOWS).append(written)

    for (user_id, kind, schema), part in written.sort("window_id").partition_by(
            "user_id", "kind", "schema_id", as_dict=True).items():
        ids, vectors = part["window_id"].to_list(), _as_matrix(part["features"])
        store.caches.keep_updated(_vectors_key(user_id, kind, schema),
                                  lambda kept, ids=ids, vectors=vectors: kept.extend(ids, vectors))


def earlier_window_vectors(store: Store, windows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What each of `windows` (stored, of one user, kind and schema: window_id, user_id, kind, schema_id)
    came after: the feature vectors of that user's windows of that kind and schema in the order they
    were stored (committed ones by commit, then those written in the calling transaction by id), and,
    per window, how many of those rows came before it (all of them for a window stored in neither way).

    A replay check compares window i with the first `before[i]` rows of `vectors`
    (`app.engine.evidence.replayed`). Returns (vectors, before); vectors is (0, 0) when there are none.
    """
    if windows.height == 0:
        return np.empty((0, 0)), np.zeros(0, dtype=int)
    user_id, kind, schema = windows.select("user_id", "kind", "schema_id").row(0)
    position, committed = _stored_vectors(store, user_id, kind, schema).snapshot()
    same = (pl.col("user_id") == user_id) & (pl.col("kind") == kind) & (pl.col("schema_id") == schema)
    written = [frame.filter(same) for frame in store.caches.written_in_transaction(WRITTEN_WINDOWS)]
    pending = pl.concat(written).unique("window_id").sort("window_id") if written else None
    if pending is not None:
        pending = pending.filter(pl.Series([w not in position for w in pending["window_id"]], dtype=pl.Boolean))
    pending_ids: dict[str, int] = {}
    vectors = committed
    if pending is not None and pending.height:
        pending_ids = {window_id: i for i, window_id in enumerate(pending["window_id"])}
        written_vectors = _as_matrix(pending["features"])
        vectors = np.vstack([committed, written_vectors]) if committed.size else written_vectors
    before = [position[w] if w in position else
              len(position) + pending_ids[w] if w in pending_ids else len(vectors)
              for w in windows["window_id"]]
    return vectors, np.array(before, dtype=int)


def window_kinds(store: Store) -> list[str]:
    """Kinds that have stored windows, sorted."""
    return [k for (k,) in store.rows("SELECT DISTINCT kind FROM feature_windows ORDER BY kind")]


def enrolment_repetitions(store: Store, user_id: str) -> int:
    """Fixed-text windows from the user's explicit enrolment sessions ("enrol-...")."""
    return int(store.scalar("SELECT count(*) FROM feature_windows WHERE user_id = ? AND kind = 'fixed_text' "
                            "AND starts_with(session_id, 'enrol-')", [user_id]) or 0)
