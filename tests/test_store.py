"""The store itself: migrations, reopening, refusing newer files, cursors, transactions, the db path."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import store.db as db_module
from app.engine.policies import latest_policy, save_policy
from app.engine.policy import DEFAULT_POLICY, Action, Band, Policy, decide
from app.engine.stepup import enrol
from store import SchemaMismatchError, Store, StoreError, contents
from store.decisions import DecisionRecord, record_decisions
from store.migrations import _EVIDENCE_DEFAULT_POLICY, LATEST_VERSION, MIGRATIONS, TABLES


def user_tables(s: Store) -> set[str]:
    return {name for (name,) in s.rows("SELECT table_name FROM duckdb_tables() WHERE NOT temporary")}


def test_migrations_create_every_table_and_record_the_version(store: Store) -> None:
    assert user_tables(store) >= {*TABLES, "schema_version"}
    assert store.rows("SELECT version, name FROM schema_version ORDER BY version") == [
        (version, name) for version, name, _ in MIGRATIONS]
    assert MIGRATIONS[0][:2] == (1, "initial schema")
    assert store.schema_version() == LATEST_VERSION
    assert store.table_counts() == dict.fromkeys(TABLES, 0)


def test_reopening_keeps_data_and_does_not_rerun_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.duckdb"
    with Store(path) as first:
        first.execute("INSERT INTO users (user_id) VALUES ('u1')")
        applied = first.rows("SELECT * FROM schema_version ORDER BY version")
    # Any migration that ran again would now fail loudly.
    poisoned = [(version, name, "SELECT error('migration ran again')") for version, name, _ in MIGRATIONS]
    monkeypatch.setattr(db_module, "MIGRATIONS", poisoned)

    with Store(path) as again:
        assert again.rows("SELECT * FROM schema_version ORDER BY version") == applied
        assert again.rows("SELECT user_id FROM users") == [("u1",)]


def test_reopening_an_older_file_applies_only_the_new_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "t.duckdb"
    Store(path).close()
    newer = [*MIGRATIONS, (LATEST_VERSION + 1, "add a table", "CREATE TABLE added_later (x INTEGER)")]
    monkeypatch.setattr(db_module, "MIGRATIONS", newer)
    monkeypatch.setattr(db_module, "LATEST_VERSION", LATEST_VERSION + 1)

    with Store(path) as upgraded:
        assert upgraded.schema_version() == LATEST_VERSION + 1
        assert "added_later" in user_tables(upgraded)
        assert upgraded.scalar("SELECT count(*) FROM schema_version") == len(newer)


def test_a_file_from_a_newer_telltale_is_refused_and_left_unlocked(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    with Store(path) as old:
        old.execute("INSERT INTO schema_version (version, name) VALUES (?, 'from the future')", [LATEST_VERSION + 7])

    with pytest.raises(SchemaMismatchError) as refused:
        Store(path)

    message = str(refused.value)
    assert str(path) in message
    assert f"schema version {LATEST_VERSION + 7}" in message
    assert "Update Telltale" in message
    # The refused file is not kept open: another process can open it while the error is still alive.
    opener = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    opened = subprocess.run([sys.executable, "-c", opener, str(path)], capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0, opened.stderr


def test_each_thread_gets_its_own_cursor_and_can_read(loaded_store: Store) -> None:
    both_running = threading.Barrier(2, timeout=30)
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            cursor = loaded_store.cursor()
            both_running.wait()  # both threads hold their cursor at the same time
            assert loaded_store.cursor() is cursor  # one cursor per thread, reused
            results[name] = (id(cursor), loaded_store.scalar("SELECT count(*) FROM events"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert results["a"][1] == results["b"][1] == 5
    assert len({results["a"][0], results["b"][0], id(loaded_store.cursor())}) == 3


def test_transaction_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as cursor:
        cursor.execute("INSERT INTO users (user_id) VALUES ('u1')")
        with store.transaction() as inner:  # nested: joins the outer transaction
            inner.execute("INSERT INTO users (user_id) VALUES ('u2')")
        raise RuntimeError("something failed after both inserts")

    assert store.table_counts()["users"] == 0
    store.execute("INSERT INTO users (user_id) VALUES ('u3')")
    assert store.rows("SELECT user_id FROM users") == [("u3",)]


def test_frame_returns_the_whole_result_as_polars(loaded_store: Store) -> None:
    frame = loaded_store.frame("SELECT session_id, count(*) AS n FROM events GROUP BY ALL ORDER BY 1")

    assert frame.rows() == [("s1", 3), ("s2", 2)]
    assert frame.columns == ["session_id", "n"]


def test_close_twice_is_fine_and_a_closed_store_says_so(tmp_path: Path) -> None:
    s = Store(tmp_path / "t.duckdb")
    s.close()
    s.close()

    with pytest.raises(StoreError, match="is closed"):
        s.cursor()
    with Store(tmp_path / "t.duckdb") as reopened:  # closing released the file
        assert reopened.schema_version() == LATEST_VERSION


def test_store_creates_the_folder_of_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "t.duckdb"

    with Store(path) as s:
        assert s.path == str(path)
    assert path.is_file()


# -- the read cache (active models, latest policy, schema ids) --------------------------------------
def test_a_cached_read_runs_once_until_invalidated(store: Store) -> None:
    calls = []

    def load() -> int:
        calls.append(1)
        return len(calls)

    assert [store.caches.cached("k", load), store.caches.cached("k", load)] == [1, 1]
    store.caches.invalidate("k")
    assert store.caches.cached("k", load) == 2


def test_an_invalidation_inside_a_transaction_holds_until_it_ends(store: Store) -> None:
    store.caches.cached("k", lambda: "before")
    with pytest.raises(RuntimeError), store.transaction():
        store.caches.invalidate("k")
        assert store.caches.cached("k", lambda: "inside") == "inside"  # read, not kept: it may roll back
        assert store.caches.cached("k", lambda: "again") == "again"
        # another thread reads the committed state meanwhile and keeps it ...
        reader = threading.Thread(target=lambda: store.caches.cached("k", lambda: "other thread"))
        reader.start()
        reader.join()
        raise RuntimeError("roll back")
    # ... which the end of the transaction forgets again
    assert store.caches.cached("k", lambda: "after") == "after"


def test_a_read_racing_an_invalidation_is_not_kept(store: Store) -> None:
    def load_while_a_writer_invalidates() -> str:
        store.caches.invalidate("k")  # as another thread's commit would, between our read and our keeping it
        return "stale"

    assert store.caches.cached("k", load_while_a_writer_invalidates) == "stale"
    assert store.caches.cached("k", lambda: "fresh") == "fresh"


def test_saved_models_and_policies_are_seen_at_once_by_every_store_on_the_file(tmp_path: Path) -> None:
    from datetime import datetime

    from store.stored_models import active_models, save_model

    path = tmp_path / "shared.duckdb"
    with Store(path) as writer, Store(path) as reader:
        assert active_models(reader).height == 0
        first = latest_policy(reader).revision
        save_model(writer, model_id="m1", user_id="alice", kind="fixed_text", detector="lof", schema_id="s",
                   trained_at=datetime(2026, 1, 1), n_samples=5, seed=0, metadata={}, blob=b"x", actor="test")
        save_policy(writer, DEFAULT_POLICY, actor="test")

        assert active_models(reader)["model_id"].to_list() == ["m1"]
        assert latest_policy(reader).revision == first + 1


def test_a_replaced_file_is_read_afresh(tmp_path: Path) -> None:
    from datetime import datetime

    from store.stored_models import active_models, save_model

    path = tmp_path / "replaced.duckdb"
    with Store(path) as store:
        save_model(store, model_id="old", user_id="alice", kind="fixed_text", detector="lof", schema_id="s",
                   trained_at=datetime(2026, 1, 1), n_samples=5, seed=0, metadata={}, blob=b"x", actor="test")
        assert active_models(store).height == 1
    path.unlink()
    with Store(path) as store:
        assert active_models(store).height == 0


@pytest.mark.parametrize("rows", [1, db_module.SMALL_INSERT_ROWS, db_module.SMALL_INSERT_ROWS + 1, 50])
def test_insert_frame_stores_the_same_values_as_parameters_or_from_arrow(store: Store, rows: int) -> None:
    """Both ways of `insert_frame` (VALUES parameters for a few rows, Arrow beyond) keep every type:
    text, nulls, lists of floats, timestamps; OR IGNORE counts only new rows."""
    store.execute("INSERT INTO users (user_id) VALUES ('u')")
    store.execute("INSERT INTO sessions (session_id, user_id, started_at, source) VALUES ('s', 'u', now(), 'x')")
    windows = pl.DataFrame({
        "window_id": [f"w{i}" for i in range(rows)], "user_id": "u", "session_id": "s", "kind": "fixed_text",
        "schema_id": "sid", "start_ms": [float(i) for i in range(rows)], "end_ms": [None] * rows,
        "n_events": list(range(rows)), "features": [[i + 0.5, float("nan")] for i in range(rows)],
        "source": "test"}, schema_overrides={"end_ms": pl.Float64})
    store.execute("INSERT INTO feature_schemas (schema_id, kind, names) VALUES ('sid', 'fixed_text', ['a', 'b'])")
    with store.transaction() as cursor:
        assert db_module.insert_frame(cursor, "feature_windows", windows) == rows
        assert db_module.insert_frame(cursor, "feature_windows", windows.head(1), or_ignore=True) == 0
    stored = store.frame(f"SELECT {', '.join(windows.columns)} FROM feature_windows ORDER BY n_events")
    assert stored.select(pl.exclude("features")).equals(windows.select(pl.exclude("features")))
    assert stored["features"].to_list()[-1][0] == rows - 0.5
    assert all(v[1] != v[1] for v in stored["features"].to_list())  # NaN kept

    metrics = pl.DataFrame({"sampled_at": [datetime(2026, 1, 1, 12, 0, i % 60) for i in range(rows)],
                            "cpu_percent": 1.0, "mem_percent": 2.0, "rss_mb": None, "source": "test"},
                           schema_overrides={"rss_mb": pl.Float64})
    with store.transaction() as cursor:
        assert db_module.insert_frame(cursor, "system_metrics", metrics) == rows
    assert store.frame("SELECT * FROM system_metrics ORDER BY sampled_at").equals(metrics.sort("sampled_at"))


def test_cursors_of_ended_threads_are_closed(store: Store) -> None:
    """Streamlit runs each script run (each fragment refresh) on a new thread: a cursor kept per ended
    thread grew the app without bound, so a new cursor closes those of threads that have ended."""
    store.execute("INSERT INTO users (user_id) VALUES ('u1')")
    seen: list = []

    def read() -> None:
        assert store.rows("SELECT user_id FROM users") == [("u1",)]
        seen.append(store.cursor())

    for _ in range(50):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()

    assert store.open_cursors() <= 2  # the last thread's (ended, closed at the next new cursor), maybe ours
    with pytest.raises(Exception, match=r"(?i)closed"):
        seen[0].execute("SELECT 1")
    assert store.rows("SELECT count(*) FROM users") == [(1,)]  # this thread's cursor still works


def test_kept_values_follow_commits_and_a_failing_update_forgets_them(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """`keep_updated` changes a kept value only once its transaction commits; an update that raises
    does not undo the commit (already done) but drops every kept value, which are reloaded later."""
    assert store.caches.cached("numbers", lambda: [1]) == [1]
    with pytest.raises(RuntimeError), store.transaction():
        store.caches.keep_updated("numbers", lambda kept: kept.append(2))
        raise RuntimeError("rolled back")
    assert store.caches.cached("numbers", lambda: ["reloaded"]) == [1]  # a rollback changes nothing kept

    with store.transaction():
        store.caches.keep_updated("numbers", lambda kept: kept.append(3))
        assert store.caches.cached_value("numbers") == [1]  # not before the commit
    assert store.caches.cached_value("numbers") == [1, 3]

    with store.transaction() as cursor:
        cursor.execute("INSERT INTO users (user_id) VALUES ('kept')")
        store.caches.keep_updated("numbers", lambda kept: kept.missing_method())
    assert store.rows("SELECT user_id FROM users WHERE user_id = 'kept'") == [("kept",)]  # committed
    assert store.caches.cached_value("numbers") is None and "after-commit update" in caplog.text


def test_release_memory_empties_duckdbs_eviction_queues_and_keeps_the_limit(loaded_store: Store) -> None:
    # Hash aggregates and joins leave dead entries in DuckDB's eviction queues (DuckDB 2.0.x); each holds
    # a freed block's handle until purged. If DuckDB ever stops leaving them, this workaround can go.
    entries = "SELECT coalesce(sum(approximate_size), 0) FROM duckdb_eviction_queues()"
    limit = loaded_store.scalar("SELECT current_setting('memory_limit')")
    grouped = """SELECT e.session_id, count(*) AS n, max(e.t_ms) FROM events e JOIN sessions s USING (session_id)
                 GROUP BY e.session_id ORDER BY n DESC"""
    expected = loaded_store.rows(grouped)
    for _ in range(200):
        loaded_store.rows(grouped)
    queued = loaded_store.scalar(entries)
    assert queued > 500

    dead = loaded_store.release_memory()

    assert dead > 500
    assert loaded_store.scalar(entries) < queued / 10
    assert loaded_store.scalar("SELECT current_setting('memory_limit')") == limit
    assert loaded_store.rows(grouped) == expected  # evicted table blocks are read again from the file


def a_version_4_store(path: Path, monkeypatch: pytest.MonkeyPatch, *, policy: Policy | None = None) -> Path:
    """A store file as Telltale wrote it at schema version 4, with `policy` saved in it."""
    with monkeypatch.context() as patch:
        patch.setattr(db_module, "MIGRATIONS", MIGRATIONS[:4])
        patch.setattr(db_module, "LATEST_VERSION", 4)
        with Store(path) as old:
            if policy is not None:
                save_policy(old, policy, actor="analyst")
    return path


def test_migration_5_gives_a_store_with_the_default_policy_the_evidence_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    older = replace(DEFAULT_POLICY, bands=(Band(0.0, 0.5, Action.ALLOW), Band(0.5, 1.0, Action.DENY)))
    path = a_version_4_store(tmp_path / "t.duckdb", monkeypatch, policy=older)

    with Store(path) as upgraded:
        newest = latest_policy(upgraded)
        assert newest == DEFAULT_POLICY.with_revision(2)
        audited = upgraded.rows("SELECT actor, details->>'revision' FROM audit_log "
                                "WHERE action = 'policy_change' ORDER BY audit_id")
        assert audited == [("analyst", "1"), ("system", "2")]
    # The frozen literal is today's default: changing DEFAULT_POLICY needs a migration of its own.
    assert json.loads(_EVIDENCE_DEFAULT_POLICY) == {
        k: v for k, v in DEFAULT_POLICY.as_dict().items() if k != "revision"}


def test_migration_5_leaves_a_store_without_the_default_policy_to_install_it_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = a_version_4_store(tmp_path / "t.duckdb", monkeypatch)

    with Store(path) as upgraded:
        assert upgraded.scalar("SELECT count(*) FROM policies") == 0
        assert latest_policy(upgraded) == DEFAULT_POLICY


def test_user_ids_name_every_user_with_events_an_authenticator_or_decisions_once(loaded_store: Store) -> None:
    with_events = sorted(u for (u,) in loaded_store.rows("SELECT user_id FROM users"))
    enrol(loaded_store, "zed", actor="test")
    record_decisions(loaded_store, [DecisionRecord(decide(0.1, latest_policy(loaded_store)), user_id="amy",
                                                   session_id="s-amy", decided_at=datetime(2026, 3, 2))])
    record_decisions(loaded_store, [DecisionRecord(decide(0.1, latest_policy(loaded_store)), user_id=with_events[0],
                                                   session_id="s-again", decided_at=datetime(2026, 3, 2))])
    assert with_events
    assert contents.user_ids(loaded_store) == sorted([*with_events, "zed", "amy"])
