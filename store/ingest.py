"""Ingest: validate canonical events and write them in one transaction, idempotently.

Row-level checks (types, NaN/inf, allowed values, required fields) run as Polars expressions on
each batch; checks across rows (duplicate keys, t_ms going backwards, a session claimed by two
users) run as SQL over a staging table together with what is already stored. Only when every
check passes are the new rows inserted, from Arrow, never row by row. Any problem rolls the whole
import back: the store stays exactly as it was.
"""

from __future__ import annotations

import codecs
import csv
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import polars as pl

from store.audit import append_audit
from store.caches import KNOWN_USERS, SESSION_USERS, WRITTEN_SESSIONS
from store.db import Store, insert_frame, inserted
from store.errors import Problem, ValidationError
from store.metrics import insert_system_metrics
from store.schema import (
    CATEGORICAL_VALUES,
    EVENT_BOUNDS,
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    KEY_EVENT_TYPES,
    QUOTE_LENGTH,
    REQUIRED_COLUMNS,
    number,
    shorten,
)
from store.sidecars import Sidecars, read_sidecars
from store.text import plural

#: Rows held in memory at once while streaming a CSV (about 200 MB at most).
DEFAULT_CHUNK_ROWS = 1_000_000
#: Problems listed in one error message; the rest are counted.
MAX_PROBLEMS = 10
ROW = "_row"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestReport:
    """What an import did. `already_stored`: rows skipped because (session_id, seq) was present;
    `labels_added`, `samples_added`: ground-truth labels and CPU/memory samples that were new;
    `sidecars`: the files read beside an events CSV (see store.sidecars)."""

    source: str
    rows_read: int
    events_added: int
    already_stored: int
    sessions_added: int
    users_added: int
    labels_added: int = 0
    samples_added: int = 0
    sidecars: tuple[str, ...] = ()
    #: Every event of the sessions this import created, validated and typed as stored, when the input
    #: was one batch of new sessions only (a live login's batch); lets its windows be built without
    #: reading the rows back. None otherwise.
    new_session_events: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "new_session_events"}

    def summary(self) -> str:
        text = (
            f"{self.source}: read {plural(self.rows_read, 'row')}; stored {plural(self.events_added, 'new event')} "
            f"({self.already_stored:,} already stored), {plural(self.sessions_added, 'new session')}, "
            f"{plural(self.users_added, 'new user')}"
        )
        if self.sidecars:
            text += (f"; sidecars imported: {', '.join(self.sidecars)} ({self.labels_added:,} new labels, "
                     f"{self.samples_added:,} new CPU samples)")
        return text


# -- public entry points --------------------------------------------------------------------------
def ingest_events(
    store: Store,
    events: pl.DataFrame,
    *,
    source_name: str = "frame",
    sessions: pl.DataFrame | None = None,
    labels: pl.DataFrame | None = None,
    actor: str = "system",
    dry_run: bool = False,
    audit: bool = True,
) -> IngestReport:
    """Validate and store an in-memory frame of canonical events (simulators, importers, capture).

    `sessions` (session_id, user_id, started_at) gives wall-clock starts; `labels` (session_id,
    label, actor_id, takeover_ms) is ground truth kept for evaluation only. `audit=False` is for
    the many small batches of a live stream, which is audited once when it starts and stops.
    """
    frame = events.with_row_index(ROW, offset=1)
    return _ingest_batches(
        store, [frame], source_name=source_name, sessions=sessions, labels=labels, actor=actor,
        dry_run=dry_run, default_source=None, audit=audit,
    )


def ingest_events_csv(
    store: Store,
    path: str | Path,
    *,
    actor: str = "cli",
    progress: Progress | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dry_run: bool = False,
    sidecars: bool = False,
    source_name: str | None = None,
) -> IngestReport:
    """Stream a canonical events CSV into the store (see README, "The events CSV format").

    The file is read `chunk_rows` rows at a time so memory stays bounded whatever its size.
    `dry_run` runs every check, including those against stored data, and then rolls back.
    `sidecars=True` also imports the session starts, labels and CPU trace written beside it by
    `simulate --out` (store.sidecars), whichever exist, in the same transaction. `source_name` is what
    errors, the report and the audit row call the file (default: its path); a page that stores an
    upload under a name of its own passes the name the user uploaded.
    """
    path = Path(path)
    source_name = str(path) if source_name is None else source_name
    header = check_csv_file(path, source_name)
    found = read_sidecars(path) if sidecars else None
    estimated_rows = _estimate_rows(path)
    batches = _csv_batches(path, header, chunk_rows, progress, estimated_rows, source_name)
    return _ingest_batches(
        store, batches, source_name=source_name, sessions=found.table("sessions") if found else None,
        labels=found.table("labels") if found else None, actor=actor, dry_run=dry_run, default_source="csv",
        sidecars=found,
    )


# -- file-level checks ----------------------------------------------------------------------------
def check_csv_file(path: Path, source_name: str | None = None) -> list[str]:
    """Refuse files that are not UTF-8 comma-separated text with the canonical header.

    Returns the column names in file order. Reads the file once in 4 MB blocks to check the
    encoding, so a binary or mis-encoded file is refused before anything is parsed. Errors name
    the file `source_name` (default: its path).
    """
    where = str(path) if source_name is None else source_name
    if not path.exists():
        raise ValidationError([Problem(f"no such file: {path}")], where)
    if path.is_dir():
        raise ValidationError([Problem("is a folder; give a CSV file (or use --format balabit/aalto)")], where)
    if path.stat().st_size == 0:
        raise ValidationError([Problem("empty file: expected a header line and at least one row")], where)
    with path.open("rb") as handle:
        head = handle.read(65536)
    if b"\x00" in head:
        raise ValidationError(
            [Problem("binary file (it contains NUL bytes); expected UTF-8 CSV text")], where)
    _check_utf8(path, where)
    first_line = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    if not first_line.strip():
        raise ValidationError([Problem("empty file: the first line should be the header")], where)
    try:
        header = next(csv.reader([first_line]))
    except csv.Error as unreadable:
        raise ValidationError([Problem(f"the header line is not readable as CSV: {unreadable}")], where) from None
    if len(header) == 1:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in first_line:
                raise ValidationError([Problem(
                    f"wrong delimiter: the header is separated by {name}; "
                    "Telltale's events CSV is comma-separated")], where)
    header = [name.strip() for name in header]
    problems = []
    seen: set[str] = set()
    for name in header:
        if name in seen and len(problems) < 3:
            problems.append(Problem("column appears twice in the header", column=shorten(name)))
        seen.add(name)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        problems.append(Problem(
            f"missing required column(s): {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"))
    unknown = [c for c in header if c not in EVENT_SCHEMA]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        named = ", ".join(shorten(c) for c in unknown[:5]) + more
        problems.append(Problem(f"unknown column(s): {named} (allowed: {', '.join(EVENT_COLUMNS)})"))
    if problems:
        raise ValidationError(problems, where)
    return header


def _check_utf8(path: Path, where: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                line = lines_before + block.count(b"\n", 0, error.start) + 1
                raise ValidationError([Problem(
                    f"not UTF-8: byte 0x{block[error.start]:02x} on line {line} cannot be decoded; "
                    "save the file as UTF-8")], where) from None
            lines_before += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValidationError([Problem("not UTF-8: the file ends inside a multi-byte character")],
                                  where) from None


def _estimate_rows(path: Path) -> int:
    with path.open("rb") as handle:
        sample = handle.read(1 << 20)
    lines = max(sample.count(b"\n"), 1)
    return max(int(path.stat().st_size / (len(sample) / lines)) - 1, 1)


def _csv_batches(
    path: Path, header: list[str], chunk_rows: int, progress: Progress | None, estimated: int, source_name: str,
) -> Iterator[pl.DataFrame]:
    # null_values: a quoted empty field ("", as quote-all writers emit) is missing, like an unquoted one.
    scan = pl.scan_csv(path, infer_schema=False, row_index_name=ROW, row_index_offset=1, raise_if_empty=False,
                       null_values=[""])
    done = 0
    batches = scan.collect_batches(chunk_size=chunk_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except pl.exceptions.PolarsError as error:
            raise _unreadable_csv(path, len(header), error, source_name) from None
        batch = batch.rename(lambda name: name.lstrip("\ufeff").strip())
        done += batch.height
        yield batch
        if progress is not None:
            progress(done, max(estimated, done))


def _unreadable_csv(path: Path, columns: int, error: Exception, source_name: str) -> ValidationError:
    """Why Polars could not parse the file, naming the first row with more fields than the header
    (found by reading the file again with the csv module: only on this error path)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        row = 0  # records after the header: the row numbers Polars and every other message use
        try:
            for row, fields in enumerate(reader):
                if row and len(fields) > columns:
                    return ValidationError([Problem(
                        f"{len(fields)} fields, but the header names {columns} columns (a value holding a comma "
                        "must be quoted)", row=row)], source_name)
        except csv.Error as unreadable:
            return ValidationError([Problem(f"not readable as CSV: {unreadable}", row=row + 1)], source_name)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValidationError([Problem(f"not readable as CSV: {first_line[:200]}")], source_name)


# -- the shared pipeline --------------------------------------------------------------------------
def _ingest_batches(
    store: Store,
    batches: Iterable[pl.DataFrame],
    *,
    source_name: str,
    sessions: pl.DataFrame | None,
    labels: pl.DataFrame | None,
    actor: str,
    dry_run: bool,
    default_source: str | None,
    audit: bool = True,
    sidecars: Sidecars | None = None,
) -> IngestReport:
    staging = f"ingest_{uuid.uuid4().hex}"
    pending = iter(batches)
    first = next(pending, None)
    second = next(pending, None)
    if first is None or (first.height == 0 and second is None):
        raise ValidationError([Problem("header only: the file has no data rows")], source_name)
    in_memory: pl.DataFrame | None = None
    if second is None:
        # One batch (every in-memory frame, and any CSV up to chunk_rows): check and insert straight
        # from the validated Arrow data, no staging copy; the checks within the batch run in Polars.
        in_memory = validate_batch(first, source_name, default_source)
        store.cursor().register(staging, in_memory.to_arrow())
    else:
        # The staging table is created before the transaction on purpose: in DuckDB 2.0, large Arrow
        # appends to a table created inside the same transaction are invisible to later scans
        # (tests/test_ingest.py::test_large_import_is_complete guards this).
        store.cursor().execute(f"CREATE TEMP TABLE {staging} AS SELECT 0::BIGINT AS {ROW}, * FROM events LIMIT 0")
    rows_read = first.height
    try:
        with store.transaction() as cursor:
            if second is not None:
                for batch in _chain(first, second, pending):
                    if batch is not first:
                        rows_read += batch.height
                    cursor.register("ingest_batch", validate_batch(batch, source_name, default_source).to_arrow())
                    cursor.execute(f"INSERT INTO {staging} SELECT * FROM ingest_batch")
                    cursor.unregister("ingest_batch")
            stored_sessions = _check_across_rows(store, cursor, staging, source_name, in_memory)
            if sidecars is not None:
                sidecars.check_against_events(cursor, staging)
            report = _write(store, cursor, staging, source_name, rows_read, sessions, labels, stored_sessions,
                            in_memory)
            if sidecars is not None:
                samples = sidecars.table("system_metrics")
                added = 0 if samples is None else insert_system_metrics(
                    store, samples.rename({"at": "sampled_at"}), source="simulator", only_new=True)
                report = replace(report, sidecars=sidecars.names, samples_added=added)
            if in_memory is not None and not stored_sessions:
                report = replace(report, new_session_events=in_memory.drop(ROW))
            if audit:
                append_audit(cursor, actor=actor, action="import", subject=source_name, details=report.as_dict())
            if dry_run:
                raise _RollBackDryRun(report)
    except _RollBackDryRun as dry:
        return dry.report
    finally:
        if second is None:
            store.cursor().unregister(staging)
        else:
            store.cursor().execute(f"DROP TABLE IF EXISTS {staging}")
    return report


def _chain(first: pl.DataFrame, second: pl.DataFrame, rest: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    yield first
    yield second
    yield from rest


class _RollBackDryRun(Exception):
    """Raised inside the transaction so a dry run rolls back everything it checked and wrote."""

    def __init__(self, report: IngestReport):
        super().__init__("dry run")
        self.report = report


def validate_batch(batch: pl.DataFrame, source_name: str, default_source: str | None) -> pl.DataFrame:
    """Check every row of a batch; return it typed and in canonical order, or raise.

    Works on all-string batches (CSV) and already-typed frames (simulators) alike. Values are cast
    once; the checks then read the typed columns (and the raw text where a cast failed).
    """
    present = [c for c in EVENT_COLUMNS if c in batch.columns]
    needs_cast = [c for c in present if batch.schema[c] != EVENT_SCHEMA[c]]
    typed = batch.select(
        pl.col(ROW).cast(pl.Int64),
        *[_cast(batch, c) for c in present],
        *[pl.col(c).cast(pl.String).alias(_raw(c)) for c in needs_cast],
    )
    missing = [pl.lit(None, dtype=EVENT_SCHEMA[c]).alias(c) for c in EVENT_COLUMNS if c not in present]
    if missing:
        typed = typed.with_columns(missing)
    if default_source is not None:
        typed = typed.with_columns(pl.col("source").fill_null(default_source))
    checks, any_bad = _row_checks(tuple(needs_cast), source_required=default_source is None)
    if typed.select(any_bad).item():
        raise _describe(typed, checks, source_name)
    return typed.select(ROW, *EVENT_COLUMNS)


def _raw(column: str) -> str:
    return f"{column}__raw"


def _cast(batch: pl.DataFrame, column: str) -> pl.Expr:
    target = EVENT_SCHEMA[column]
    if batch.schema[column] == target:
        return pl.col(column)
    if batch.schema[column] == pl.String():
        return pl.col(column).str.strip_chars().cast(target, strict=False)
    return pl.col(column).cast(target, strict=False)


@lru_cache(maxsize=32)
def _row_checks(cast_columns: tuple[str, ...], *,
                source_required: bool) -> tuple[list[tuple[str, pl.Expr, pl.Expr]], pl.Expr]:
    """(column, is-bad expression, reason expression) for every rule a single row must meet, and
    "any row breaks any rule". The bounds are `store.schema.EVENT_BOUNDS`, the table the browser
    capture checks too. Built once per shape of input: a live batch of a few dozen events would
    otherwise spend more time constructing these expressions than evaluating them."""
    def shown(column: str) -> pl.Expr:
        return _quoted(pl.col(_raw(column)) if column in cast_columns else pl.col(column).cast(pl.String))

    checks: list[tuple[str, pl.Expr, pl.Expr]] = []
    for column in cast_columns:
        checks.append((column, pl.col(_raw(column)).is_not_null() & pl.col(column).is_null(),
                       pl.format("{} is not {}", shown(column), pl.lit(_type_name(column)))))
    for column in (*REQUIRED_COLUMNS, *(("source",) if source_required else ())):
        raw_missing = pl.col(_raw(column)).is_null() if column in cast_columns else pl.col(column).is_null()
        checks.append((column, raw_missing, pl.lit("missing value (the column is required)")))
    for column in ("t_ms", "x", "y"):
        checks.append((column, ~pl.col(column).is_finite(), pl.format("{} is not a finite number", shown(column))))
    for column, allowed in CATEGORICAL_VALUES.items():
        checks.append((column, ~pl.col(column).is_in(allowed),
                       pl.format("unknown value {} (allowed: {})", shown(column), pl.lit(", ".join(allowed)))))
    for column, bounds in EVENT_BOUNDS.items():
        value = pl.col(column)
        if bounds.low is not None:
            usable = value.is_finite() if EVENT_SCHEMA[column].is_float() else pl.lit(True)
            for bad, verb in ((value < bounds.low, "negative" if bounds.low == 0 else f"below {number(bounds.low)}"),
                              (value > bounds.high, f"above {number(bounds.high)}")):
                checks.append((column, usable & bad, pl.format("{} is {} ({})", shown(column), pl.lit(verb),
                                                               pl.lit(bounds.describe()))))
        if bounds.max_length is not None:
            checks.append((column, value.str.len_chars() > bounds.max_length,
                           pl.format("{} is longer than {} characters", shown(column), pl.lit(bounds.max_length))))
        if bounds.pattern is not None:
            checks.append((column, ~value.str.contains(bounds.pattern),
                           pl.format("{} is not allowed here ({})", shown(column), pl.lit(bounds.why))))
    is_key = pl.col("type").is_in(KEY_EVENT_TYPES)
    is_pointer = pl.col("type").is_in(("mouse_move", "mouse_down", "mouse_up"))
    for column, applies in (("press_id", is_key), ("key_class", is_key), ("x", is_pointer), ("y", is_pointer)):
        checks.append((column, applies & pl.col(column).is_null(),
                       pl.format("a {} event needs a value here", pl.col("type"))))
    return checks, pl.any_horizontal([bad for _, bad, _ in checks]).fill_null(False).any()


def _quoted(text: pl.Expr) -> pl.Expr:
    """A value in a refusal message: quoted, and cut to QUOTE_LENGTH characters (see `schema.quote`)."""
    return (pl.when(text.str.len_chars() > QUOTE_LENGTH)
            .then(pl.format("'{}…' ({} characters)", text.str.slice(0, QUOTE_LENGTH), text.str.len_chars()))
            .otherwise(pl.format("'{}'", text)))


def _type_name(column: str) -> str:
    dtype, bounds = EVENT_SCHEMA[column], EVENT_BOUNDS.get(column)
    if dtype.is_integer():
        return "a whole number" + ("" if bounds is None else f" from {number(bounds.low)} to {number(bounds.high)}")
    if dtype.is_float():
        return "a number"
    return "text"


def _describe(typed: pl.DataFrame, checks: list[tuple[str, pl.Expr, pl.Expr]], source_name: str) -> ValidationError:
    """Turn failed checks into problems, ordered by row, with the total count of failures."""
    found: list[tuple[int, int, str, str]] = []
    total = 0
    for i, (column, bad, reason) in enumerate(checks):
        hits = typed.filter(bad.fill_null(False))
        total += hits.height
        found += [(row, i, column, text) for row, text in
                  hits.head(MAX_PROBLEMS).select(ROW, reason).iter_rows()]
    found.sort()
    problems = [Problem(text, row=row, column=column) for row, _, column, text in found[:MAX_PROBLEMS]]
    return ValidationError(problems, source_name, total=total)


def _problems_within(cursor, staging: str, in_memory: pl.DataFrame | None) -> list[tuple]:
    """Rows breaking a rule within the input: (row, session_id, user_id, seq, t_ms, prev_row, prev_seq,
    prev_t, prev_user, total), at most MAX_PROBLEMS, by row; the same query in Polars for one batch
    in memory (a live batch: quicker than DuckDB planning a window query over a registered frame)."""
    if in_memory is not None:
        previous = [pl.col(c).shift(1).over("session_id").alias(f"prev_{c}") for c in (ROW, "seq", "t_ms", "user_id")]
        flagged = (in_memory.lazy().select(ROW, "session_id", "user_id", "seq", "t_ms")
                   .sort("session_id", "seq", ROW).with_columns(previous)
                   .filter((pl.col("seq") == pl.col("prev_seq")) | (pl.col("t_ms") < pl.col("prev_t_ms"))
                           | (pl.col("user_id") != pl.col("prev_user_id")))
                   .with_columns(total=pl.len()).sort(ROW).head(MAX_PROBLEMS)
                   .collect(engine="in-memory"))
        return flagged.select(ROW, "session_id", "user_id", "seq", "t_ms", f"prev_{ROW}", "prev_seq", "prev_t_ms",
                              "prev_user_id", "total").rows()
    return cursor.execute(f"""
        WITH ordered AS (
            SELECT {ROW}, session_id, user_id, seq, t_ms,
                   lag({ROW}) OVER w AS prev_row, lag(seq) OVER w AS prev_seq,
                   lag(t_ms) OVER w AS prev_t, lag(user_id) OVER w AS prev_user
            FROM {staging} WINDOW w AS (PARTITION BY session_id ORDER BY seq, {ROW})
        )
        SELECT {ROW}, session_id, user_id, seq, t_ms, prev_row, prev_seq, prev_t, prev_user,
               count(*) OVER () AS total
        FROM ordered
        WHERE seq = prev_seq OR t_ms < prev_t OR user_id <> prev_user
        ORDER BY {ROW} LIMIT {MAX_PROBLEMS}""").fetchall()


def _stored_sessions(store: Store, cursor, staging: str, in_memory: pl.DataFrame | None) -> list[tuple[str, str]]:
    """(session_id, user_id) of the input's sessions that are already stored."""
    if in_memory is None:
        return cursor.execute(f"""
            SELECT s.session_id, s.user_id FROM sessions s
            WHERE s.session_id IN (SELECT DISTINCT session_id FROM {staging})""").fetchall()
    ids = in_memory["session_id"].unique().to_list()
    if len(ids) == 1:  # a live batch: looked up in memory
        user_id = stored_session_user(store, ids[0])
        return [] if user_id is None else [(ids[0], user_id)]
    return cursor.execute("SELECT session_id, user_id FROM sessions WHERE list_contains(?, session_id)",
                          [ids]).fetchall()


_SOME_SESSIONS = None  # in WRITTEN_SESSIONS: a bulk insert wrote sessions this process did not list


def stored_session_user(store: Store, session_id: str) -> str | None:
    """The user of a stored session, None when it is not stored (this transaction's writes included).

    Every live batch asks, so the committed sessions' users are kept in memory (`SESSION_USERS`, see
    `store.caches`) and sessions written by the calling transaction are looked up in its written list.
    """
    written = store.caches.written_in_transaction(WRITTEN_SESSIONS)
    if _SOME_SESSIONS in written:
        found = store.rows("SELECT user_id FROM sessions WHERE session_id = ?", [session_id])
        return found[0][0] if found else None
    for stored_id, user_id in written:
        if stored_id == session_id:
            return user_id

    def load() -> dict[str, str]:  # committed sessions only: a rollback must not leave its sessions here
        return dict(store.committed_frame("SELECT session_id, user_id FROM sessions").rows())

    return store.caches.cached(SESSION_USERS, load).get(session_id)


def _track_sessions(store: Store, added: tuple[str, str] | None) -> None:
    """Sessions just written: one (session_id, user_id) of a live batch, or None for a bulk insert."""
    store.caches.written_in_transaction(WRITTEN_SESSIONS).append(added)
    if added is None:  # which sessions a bulk insert added is not known here: reload when next needed
        store.caches.after_commit(lambda: store.caches.invalidate(SESSION_USERS))
    else:
        store.caches.keep_updated(SESSION_USERS, lambda kept: kept.update([added]))


def _check_across_rows(store: Store, cursor, staging: str, source_name: str,
                       in_memory: pl.DataFrame | None = None) -> int:
    """Rules that span rows: unique (session_id, seq), t_ms never going backwards in seq order,
    one user per session; both within the input and against what is already stored.

    `in_memory` is the validated input when it is one batch (then registered as `staging`).
    Returns how many of the input's sessions are already stored (0: every row is new).
    """
    problems = _problems_within(cursor, staging, in_memory)
    if problems:
        raise ValidationError([_across_problem(*row[:9]) for row in problems], source_name, total=problems[0][9])

    stored = _stored_sessions(store, cursor, staging, in_memory)
    if not stored:
        return 0
    cursor.register("ingest_stored_sessions", pl.DataFrame(stored, schema=["session_id", "user_id"], orient="row"))
    try:
        problems = cursor.execute(f"""
            WITH affected AS (
                -- the session as it will be after this import: a re-imported (session_id, seq) keeps
                -- its stored values, so the checks read those
                SELECT s.{ROW}, s.session_id, s.user_id, s.seq, coalesce(e.t_ms, s.t_ms) AS t_ms,
                       e.seq IS NOT NULL AS kept
                FROM {staging} s LEFT JOIN events e ON e.session_id = s.session_id AND e.seq = s.seq
                WHERE s.session_id IN (SELECT session_id FROM ingest_stored_sessions)
                UNION ALL
                SELECT NULL, e.session_id, st.user_id, e.seq, e.t_ms, true
                FROM events e JOIN ingest_stored_sessions st USING (session_id)
                WHERE NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.session_id = e.session_id AND s.seq = e.seq)
            ), ordered AS (
                SELECT a.*, st.user_id AS stored_user,
                       lag(CASE WHEN kept THEN NULL ELSE {ROW} END) OVER w AS prev_row,
                       lag(seq) OVER w AS prev_seq, lag(t_ms) OVER w AS prev_t, lag(kept) OVER w AS prev_kept
                FROM affected a JOIN ingest_stored_sessions st USING (session_id)
                WINDOW w AS (PARTITION BY session_id ORDER BY seq)
            ), flagged AS (
                -- a new row is to blame for a step back in t_ms, whether it comes before or after a stored one
                SELECT CASE WHEN user_id <> stored_user OR NOT kept THEN {ROW} ELSE prev_row END AS blame, *
                FROM ordered
                WHERE ({ROW} IS NOT NULL AND user_id <> stored_user) OR (t_ms < prev_t AND NOT (kept AND prev_kept))
            )
            SELECT blame, kept, session_id, user_id, stored_user, seq, t_ms, prev_row, prev_seq, prev_t,
                   count(*) OVER () FROM flagged
            ORDER BY blame LIMIT {MAX_PROBLEMS}""").fetchall()
    finally:
        cursor.unregister("ingest_stored_sessions")
    if problems:
        raise ValidationError([_stored_problem(*row[:10]) for row in problems], source_name, total=problems[0][10])
    return len(stored)


def _stored_problem(row, kept, session_id, user_id, stored_user, seq, t_ms, prev_row, prev_seq, prev_t) -> Problem:
    """A problem of the input against the stored part of its sessions (see `_check_across_rows`)."""
    if user_id != stored_user:
        return _across_problem(row, session_id, user_id, seq, t_ms, None, None, None, stored_user)
    if not kept:
        return _across_problem(row, session_id, user_id, seq, t_ms, prev_row, prev_seq, prev_t, user_id)
    return Problem(f"t_ms {prev_t:g} at seq {prev_seq} of session '{session_id}' is later than {t_ms:g} at seq "
                   f"{seq} (already stored); t_ms must not go backwards within a session", row=row, column="t_ms")


def _across_problem(row, session_id, user_id, seq, t_ms, prev_row, prev_seq, prev_t, prev_user) -> Problem:
    earlier = f"row {prev_row}" if prev_row is not None else "already stored"
    if user_id != prev_user:
        return Problem(f"session '{session_id}' belongs to user '{prev_user}' ({earlier}), not '{user_id}'; "
                       "a session has exactly one user", row=row, column="user_id")
    if seq == prev_seq:
        return Problem(f"duplicate (session_id, seq) = ('{session_id}', {seq}); first seen on {earlier}",
                       row=row, column="seq")
    return Problem(f"t_ms {t_ms:g} at seq {seq} of session '{session_id}' is earlier than {prev_t:g} at seq "
                   f"{prev_seq} ({earlier}); t_ms must not go backwards within a session", row=row, column="t_ms")


def known_users(store: Store) -> frozenset[str]:
    """Every stored user id, kept in memory until a user is added (`KNOWN_USERS`, see `store.caches`)."""
    return store.caches.cached(KNOWN_USERS, lambda: frozenset(u for (u,) in store.rows("SELECT user_id FROM users")))


def _insert_users(store: Store, cursor, staging: str, in_memory: pl.DataFrame | None) -> int:
    """Add the input's users that have no row yet; returns how many were added."""
    if in_memory is None or in_memory["user_id"].n_unique() > 1:
        added = inserted(cursor.execute(
            f"INSERT OR IGNORE INTO users (user_id) SELECT DISTINCT user_id FROM {staging}"))
    else:
        user_id = in_memory["user_id"][0]  # a live batch: a lookup in memory instead of an upsert
        if user_id in known_users(store):
            return 0
        added = inserted(cursor.execute("INSERT OR IGNORE INTO users (user_id) VALUES (?)", [user_id]))
    if added:
        store.caches.invalidate(KNOWN_USERS)
    return added


def _write(store: Store, cursor, staging: str, source_name: str, rows_read: int, sessions: pl.DataFrame | None,
           labels: pl.DataFrame | None, stored_sessions: int, in_memory: pl.DataFrame | None = None) -> IngestReport:
    """Insert the checked rows; counts come from the INSERT statements themselves.

    Only rows of already stored sessions can be stored already, so the (session_id, seq) anti-join
    against `events` runs only when `stored_sessions` > 0 (a new live session skips that scan).
    """
    columns = ", ".join(EVENT_COLUMNS)
    only_new = ("WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.session_id AND e.seq = s.seq)"
                if stored_sessions else "")
    events_added = inserted(cursor.execute(
        f"INSERT INTO events ({columns}) SELECT {columns} FROM {staging} s {only_new}"))
    users_added = _insert_users(store, cursor, staging, in_memory)
    now = datetime.now(UTC).replace(tzinfo=None)
    starts = sessions if sessions is not None else pl.DataFrame(
        schema={"session_id": pl.String, "started_at": pl.Datetime("us")})
    if in_memory is not None and not stored_sessions and in_memory["session_id"].n_unique() == 1 \
            and starts.height <= 1:
        # a live batch starting its session: its one row, straight from the first event
        session_id, user_id, source = in_memory.select("session_id", "user_id", "source").row(0)
        given = starts.filter(pl.col("session_id") == session_id)["started_at"]
        sessions_added = inserted(cursor.execute(
            "INSERT INTO sessions (session_id, user_id, started_at, source) VALUES (?, ?, ?, ?)",
            [session_id, user_id, given[0] if given.len() and given[0] is not None else now, source]))
        _track_sessions(store, (session_id, user_id))
    elif in_memory is not None:  # the session rows made in Polars; a plain INSERT when none is stored yet
        rows = (in_memory.group_by("session_id").agg(pl.col("user_id", "source").first())
                .join(starts.select("session_id", "started_at"), on="session_id", how="left")
                .select("session_id", "user_id", pl.col("started_at").fill_null(now), "source"))
        sessions_added = insert_frame(cursor, "sessions", rows, or_ignore=bool(stored_sessions))
        if sessions_added:
            _track_sessions(store, _SOME_SESSIONS)
    else:
        cursor.register("ingest_session_starts", starts.select("session_id", "started_at").to_arrow())
        sessions_added = inserted(cursor.execute(f"""
            INSERT OR IGNORE INTO sessions (session_id, user_id, started_at, source)
            SELECT s.session_id, any_value(s.user_id), coalesce(any_value(st.started_at), ?), any_value(s.source)
            FROM {staging} s LEFT JOIN ingest_session_starts st USING (session_id)
            GROUP BY s.session_id""", [now]))
        cursor.unregister("ingest_session_starts")
        if sessions_added:
            _track_sessions(store, _SOME_SESSIONS)
    labels_added = _insert_labels(cursor, labels) if labels is not None else 0
    return IngestReport(source=source_name, rows_read=rows_read, events_added=events_added,
                        already_stored=rows_read - events_added, sessions_added=sessions_added,
                        users_added=users_added, labels_added=labels_added)


def store_labels(store: Store, labels: pl.DataFrame) -> int:
    """Add ground truth (session_id, label[, actor_id, takeover_ms]) of stored sessions; returns labels
    added (a session's label is written once). Read by the evaluation and the Threshold lab only."""
    with store.transaction() as cursor:
        return _insert_labels(cursor, labels)


def _insert_labels(cursor, labels: pl.DataFrame) -> int:
    if labels.height == 0:
        return 0
    cursor.register("ingest_labels", labels.select(
        "session_id", "label", pl.col("actor_id") if "actor_id" in labels.columns else pl.lit(None, pl.String),
        pl.col("takeover_ms") if "takeover_ms" in labels.columns else pl.lit(None, pl.Float64),
    ).to_arrow())
    try:
        return inserted(cursor.execute("INSERT OR IGNORE INTO session_labels SELECT * FROM ingest_labels"))
    finally:
        cursor.unregister("ingest_labels")
