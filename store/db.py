"""The one door to the DuckDB file: connection, cursors, transactions, migrations.

DuckDB allows one writing process per file, and while one process holds it another cannot open it
at all. So a process opens one `Store`, hands each thread its own cursor, and serialises writes
through `transaction()` (as datasette does). Every query result is fully fetched before returning:
DuckDB 2.0 keeps a connection busy while a result is open. The values kept in memory between queries,
and when each is dropped, are described in `store/caches.py`; a `Store` reaches them as `caches`.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from store.caches import StoreCaches
from store.errors import DatabaseLockedError, SchemaMismatchError, StoreError
from store.migrations import LATEST_VERSION, MIGRATIONS, TABLES

#: The path of a database in memory, private to its connection (tests, throwaway runs).
MEMORY = ":memory:"


def inserted(result: duckdb.DuckDBPyConnection) -> int:
    """Rows an executed INSERT wrote: DuckDB answers an INSERT with that count (OR IGNORE: new rows only)."""
    return int(result.fetchall()[0][0])


#: Up to this many rows an insert sends its values as statement parameters instead of registering
#: an Arrow view: registering a view has a fixed cost that a few rows' parameters stay below, while
#: binding parameters costs per value, so tens of rows are quicker from Arrow.
SMALL_INSERT_ROWS = 8


def insert_frame(cursor: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, *,
                 or_ignore: bool = False) -> int:
    """Insert `frame`'s rows into `table` (columns by name); returns rows written.

    A live login writes a handful of rows to several tables, where DuckDB's fixed cost per statement
    is most of the time: those go as one parameterised VALUES statement. Anything larger goes in
    bulk from Arrow.
    """
    if frame.height == 0:
        return 0
    if frame.height <= SMALL_INSERT_ROWS:
        return insert_rows(cursor, table, frame.columns, frame.rows(), or_ignore=or_ignore)
    columns = ", ".join(frame.columns)
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    view = f"insert_{table}"
    cursor.register(view, frame.to_arrow())
    try:
        return inserted(cursor.execute(f"{verb} INTO {table} ({columns}) SELECT {columns} FROM {view}"))
    finally:
        cursor.unregister(view)


def insert_rows(cursor: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[Any]], *, or_ignore: bool = False) -> int:
    """Insert a few rows given as tuples, as one parameterised VALUES statement; returns rows written."""
    if not rows:
        return 0
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    row = f"({', '.join('?' * len(columns))})"
    values = [value for record in rows for value in record]
    return inserted(cursor.execute(f"{verb} INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * len(rows))}",
                                   values))


class Store:
    """Owns one DuckDB connection for this process; hands out a cursor per thread. `caches`: the values
    of this database kept in memory between queries (`store.caches.StoreCaches`)."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False):
        """Open the database at `path` (a file, created with its folder when missing; MEMORY: one in
        memory) and, unless `read_only`, bring its schema up to date. Which file is the app's to say:
        `app.settings` "db" (TELLTALE_DB, default var/telltale.duckdb), or a command's --db."""
        self.path = str(path)
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = _connect(self.path, read_only=read_only)
        self._local = threading.local()
        self._cursors: dict[threading.Thread, duckdb.DuckDBPyConnection] = {}
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        # an in-memory database is private to its connection; a file is shared by every Store on it
        self.caches = StoreCaches(f"{MEMORY}{id(self)}" if self.path == MEMORY else str(Path(self.path).resolve()))
        self.caches.forget_all()  # the file may have been replaced since another Store read it
        if not read_only:
            try:
                self._migrate()
            except BaseException:
                self.close()  # a refused file must not stay locked while the error is being shown
                raise
        atexit.register(self.close)

    # -- connection handling -------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB cursors are not to be shared between threads).

        Cursors of threads that have ended are closed here: Streamlit runs every script run, and so
        every fragment refresh, on a new thread, and each cursor holds a DuckDB client context, so
        keeping the cursors of ended threads would grow the process with every run.
        """
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._connection.cursor()
            self._local.cursor = cursor
            with self._cursors_lock:
                for ended in [thread for thread in self._cursors if not thread.is_alive()]:
                    self._cursors.pop(ended).close()
                self._cursors[threading.current_thread()] = cursor
        return cursor

    def open_cursors(self) -> int:
        """Cursors held for threads (at most one per thread that used the store and is still alive,
        plus any that ended since the last new cursor)."""
        with self._cursors_lock:
            return len(self._cursors)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All of it or none of it; writes from different threads are serialised. A transaction opened
        inside another joins it. `self.caches` learns when the outermost one begins, commits and ends."""
        with self._write_lock:
            cursor = self.cursor()
            if getattr(self._local, "depth", 0):
                self._local.depth += 1
                try:
                    yield cursor
                finally:
                    self._local.depth -= 1
                return
            cursor.execute("BEGIN TRANSACTION")
            self._local.depth = 1
            self.caches.begin()
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            else:
                cursor.execute("COMMIT")
                self.caches.committed()
            finally:
                self._local.depth = 0
                self.caches.end()

    def close(self) -> None:
        """Close every cursor and the connection; safe to call twice (also runs at exit)."""
        if self._closed:
            return
        self._closed = True
        self.caches.forget_all()
        with self._cursors_lock:
            for cursor in self._cursors.values():
                cursor.close()
            self._cursors.clear()
        self._connection.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -------------------------------------------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a read query and return the whole result as a Polars frame."""
        table = self.cursor().sql(sql, params=params or None).to_arrow_table()
        return pl.from_arrow(table)  # type: ignore[return-value]

    def committed_frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """A read that sees only committed data, even inside a transaction (on a cursor of its own):
        for values kept across transactions, which must not hold what a rollback may undo."""
        cursor = self._connection.cursor()
        try:
            return pl.from_arrow(cursor.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]
        finally:
            cursor.close()

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
        return self.cursor().execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        found = self.cursor().execute(sql, params or []).fetchall()
        return found[0][0] if found else None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """A single write statement in its own transaction."""
        with self.transaction() as cursor:
            cursor.execute(sql, params or [])

    def release_memory(self) -> int:
        """Empty DuckDB's buffer-eviction queues; returns the dead entries there were.

        Every hash join, aggregate or sort registers its temporary blocks in DuckDB's eviction queue, and
        a block freed after its query leaves a dead entry that keeps the block's handle allocated until
        DuckDB purges the queue, which a store far below its memory limit rarely does (DuckDB 2.0): a
        long-running app that keeps querying, as the Live monitor does, grows by memory that
        `duckdb_memory()` does not show. Asking for a memory limit of one byte makes DuckDB walk every
        queue, dropping the dead entries and evicting cached table blocks (re-read from the file when
        next needed); the request fails, so the limit itself never changes (and is put back should it
        ever succeed).
        """
        cursor = self.cursor()
        dead = int(cursor.execute(_DEAD_EVICTION_ENTRIES).fetchone()[0])
        limit = cursor.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        try:
            cursor.execute("SET memory_limit = '1B'")
        except duckdb.OutOfMemoryException:
            pass  # the expected outcome: nothing is left to evict, the limit is unchanged
        else:
            cursor.execute(f"SET memory_limit = '{limit}'")
        return dead

    def table_counts(self) -> dict[str, int]:
        """Rows per table, in a fixed order."""
        union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
        return {name: int(n) for name, n in self.rows(union)}

    # -- schema --------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return int(self.scalar("SELECT coalesce(max(version), 0) FROM schema_version"))

    def _migrate(self) -> None:
        cursor = self.cursor()
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
        )
        current = self.schema_version()
        if current > LATEST_VERSION:
            raise SchemaMismatchError(
                f"{self.path} has schema version {current}, newer than this Telltale knows "
                f"({LATEST_VERSION}). Update Telltale, or point --db / TELLTALE_DB at another file."
            )
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as tx:
                tx.execute(sql)
                tx.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", [version, name])


_DEAD_EVICTION_ENTRIES = "SELECT coalesce(sum(dead_nodes), 0) FROM duckdb_eviction_queues()"


def _connect(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as error:
        text = str(error)
        if "lock" not in text.lower():
            raise StoreError(f"cannot open the database {path}: {text}") from None
        pid = re.search(r"PID (\d+)", text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise DatabaseLockedError(
            f"the database {path} is in use by {holder} (DuckDB allows one process per file). "
            "Stop that process (for the app: Ctrl+C where `make run` runs), "
            "do this from the app's Data page instead, or use --db / TELLTALE_DB for another file."
        ) from None
    except duckdb.Error as error:
        raise StoreError(f"cannot open the database {path}: {error}") from None
