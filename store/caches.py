"""Every value the store keeps in memory between queries: what it is, when it is filled, when dropped.

One process owns a DuckDB file (DuckDB lets no other process open it while it is open here), and
every write to it goes through this package, so a value read once stays true until this process
writes the table it came from. Each `Store` reaches these values through `store.caches`; three
mechanisms keep them:

1. The read cache (`StoreCaches.cached`): one value per key and database file, shared by every
   `Store` of this process on that file. Filled by the first read of the key. Dropped by
   `invalidate(key)`, which the function writing the key's table calls: at once, and again when the
   writing transaction ends (committed or rolled back, its outcome is then what every reader sees).
   Every value of a file is dropped when a `Store` opens or closes it (the file may have been
   replaced in between). Each key has a generation, counted up by every invalidation: a read keeps
   what it loaded only when the generation did not change while it loaded, so a read racing an
   invalidation returns its result but does not keep it. Inside a transaction a read sees the
   transaction's snapshot, so it is kept only when nothing invalidated the key since the transaction
   began and the transaction itself has not invalidated it.

2. Values kept updated after commit (`keep_updated`): a kept value that writes extend rather than
   replace (the users of the sessions, the vectors of the windows) is updated in place once the
   writing transaction commits, never when it rolls back; when no value is kept at that moment the
   key is invalidated instead, so a load racing the commit is not kept. These values are loaded from
   committed rows only (`Store.committed_frame`), so a rolled-back write never lingers in them. An
   update that raises does not undo the commit; it drops every kept value of the file instead, and
   each is loaded again when next read.

3. Per-transaction written lists (`written_in_transaction`): what the current transaction wrote and
   the committed-only values of (2) cannot show yet. Empty outside a transaction; dropped when the
   transaction ends, committed or not.

The keys below say what each value is, which function fills it and what drops it. Outside the store
the engine keeps unpickled models by database and model id (`app.engine.training._ModelCache`, the
512 most recently used): a stored model never changes under its id, so a kept one is never stale.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# -- read cache keys (1) ------------------------------------------------------------------------------
#: Active models without their blobs (`store.stored_models.active_models`, read by every scoring run);
#: invalidated by `store.stored_models.save_model`.
ACTIVE_MODELS = "active_models"
#: Prefix of the newest parsed policy of an id (key: "latest_policy:<policy id>",
#: `app.engine.policies.latest_policy`, read by every decision); invalidated by
#: `store.policies.save_policy_body`.
LATEST_POLICY = "latest_policy"
#: Every stored (policy id, revision) (`store.policies.is_stored`, checked before decisions are
#: stored); invalidated by `store.policies.save_policy_body`.
STORED_REVISIONS = "policy_revisions"
#: Feature names of every stored schema id (`store.windows.schema_names`, read by every scoring run);
#: invalidated when windows of a schema not stored yet are written (`store.windows`).
SCHEMAS = "feature_schemas"
#: Every stored user id (`store.ingest.known_users`: a live batch's user is almost always known);
#: invalidated when users are added (`store.ingest`, `store.windows`).
KNOWN_USERS = "known_users"

# -- kept updated after commit (2) --------------------------------------------------------------------
#: Session id -> user id of every committed session (`store.ingest.stored_session_user`, read by
#: every live batch). A live batch's new session is added once it commits; a bulk insert, whose
#: sessions are not listed, invalidates it.
SESSION_USERS = "session_users"
#: Prefix of the vectors of a user's committed windows of one kind and schema, in commit order
#: (`store.windows.earlier_window_vectors`, read by the replay check of every scored window);
#: extended as windows commit.
STORED_VECTORS = "stored_vectors"

# -- per-transaction written lists (3) ----------------------------------------------------------------
#: (session id, user id) of each session the transaction wrote, or None for a bulk insert of sessions
#: not listed one by one (`store.ingest`).
WRITTEN_SESSIONS = "written_sessions"
#: Frames of the windows the transaction wrote (`store.windows`).
WRITTEN_WINDOWS = "written_windows"


class _ReadCache:
    """The kept values and invalidation counts of every database file of this process, by (file, key)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[tuple[str, str], Any] = {}
        self.generations: dict[tuple[str, str], int] = {}


_READ_CACHE = _ReadCache()


class StoreCaches:
    """One `Store`'s way into the kept values (see the module docstring); `Store.transaction` tells it
    when a transaction begins, commits and ends. `scope` names the database: a file's resolved path,
    or a name of its own for an in-memory database (private to its connection)."""

    def __init__(self, scope: str):
        self.scope = scope
        self._local = threading.local()  # the calling thread's transaction, if one is open

    # -- (1) the read cache ------------------------------------------------------------------------
    def cached(self, key: str, load: Callable[[], Any]) -> Any:
        """`load()`'s result, kept until `invalidate(key)`; for small, often read, rarely written tables."""
        slot = (self.scope, key)
        with _READ_CACHE.lock:
            if slot in _READ_CACHE.values:
                return _READ_CACHE.values[slot]
            generation = _READ_CACHE.generations.get(slot, 0)
        if self._in_transaction():
            # the read sees the transaction's snapshot: keep it only when nothing was invalidated
            # since the snapshot began and this transaction has not invalidated the key
            if key in self._local.invalidated:
                return load()
            generation = self._local.begun_at.get(slot, 0)
        value = load()
        with _READ_CACHE.lock:
            if _READ_CACHE.generations.get(slot, 0) == generation:
                _READ_CACHE.values[slot] = value
        return value

    def cached_value(self, key: str) -> Any | None:
        """`key`'s kept value, or None when nothing is kept (never loads)."""
        with _READ_CACHE.lock:
            return _READ_CACHE.values.get((self.scope, key))

    def invalidate(self, key: str) -> None:
        """Forget `key`'s kept value; inside a transaction also once it has committed or rolled back."""
        self._invalidate_now(key)
        if self._in_transaction():
            self._local.invalidated.add(key)

    def forget_all(self) -> None:
        """Forget every value kept for this database."""
        with _READ_CACHE.lock:
            for slot in [slot for slot in _READ_CACHE.values if slot[0] == self.scope]:
                _READ_CACHE.values.pop(slot)
                _READ_CACHE.generations[slot] = _READ_CACHE.generations.get(slot, 0) + 1

    def _invalidate_now(self, key: str) -> None:
        slot = (self.scope, key)
        with _READ_CACHE.lock:
            _READ_CACHE.values.pop(slot, None)
            _READ_CACHE.generations[slot] = _READ_CACHE.generations.get(slot, 0) + 1

    # -- (2) values kept updated after commit ------------------------------------------------------
    def keep_updated(self, key: str, update: Callable[[Any], None]) -> None:
        """Once the current transaction commits, `update(value)` `key`'s kept value in place, or, when
        nothing is kept, invalidate the key (so a load racing this commit is not kept, see `cached`)."""
        def committed() -> None:
            kept = self.cached_value(key)
            if kept is None:
                self.invalidate(key)
            else:
                update(kept)

        self.after_commit(committed)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the current transaction has committed (never if it rolls back); at once
        outside a transaction. Callbacks run in order, before another writer may commit."""
        if self._in_transaction():
            self._local.after_commit.append(callback)
        else:
            callback()

    # -- (3) per-transaction written lists ---------------------------------------------------------
    def written_in_transaction(self, key: str) -> list[Any]:
        """A list kept for the current transaction under `key` (a new empty one outside a transaction):
        what it wrote that committed-only reads (`Store.committed_frame`) cannot see yet."""
        if not self._in_transaction():
            return []
        return self._local.written.setdefault(key, [])

    # -- called by Store.transaction (the outermost one of the calling thread) ---------------------
    def begin(self) -> None:
        self._local.open = True
        self._local.invalidated = set()
        self._local.after_commit = []
        self._local.written = {}
        with _READ_CACHE.lock:  # what the transaction's snapshot already includes
            self._local.begun_at = dict(_READ_CACHE.generations)

    def committed(self) -> None:
        """Run the after-commit callbacks; one that raises drops every kept value (the commit stands)."""
        for callback in self._local.after_commit:
            try:
                callback()
            except Exception:
                logger.exception("an after-commit update of kept values failed; forgetting them")
                self.forget_all()

    def end(self) -> None:
        self._local.open = False
        for key in self._local.invalidated:  # once the outcome is visible to every reader
            self._invalidate_now(key)
        self._local.invalidated = set()
        self._local.after_commit = []
        self._local.written = {}

    def _in_transaction(self) -> bool:
        return getattr(self._local, "open", False)
