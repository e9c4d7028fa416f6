"""Shared fixtures for the store, ingest, CLI and settings tests.

Every test gets its own DuckDB file under `tmp_path`; nothing touches `var/` or `TELLTALE_DB`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store import Store

ROOT = Path(__file__).resolve().parents[1]

#: A small canonical events CSV: a typed letter (dwell 80.5 ms) and some mouse activity.
#: Session s2 starts at seq 2 and has a gap (2, 5), so later imports can put rows before and between.
GOOD_CSV = """\
session_id,user_id,seq,t_ms,type,key_class,press_id,pos,field,x,y,button,source
s1,alice,0,0,focus,,,,login,,,,browser
s1,alice,1,100,key_down,letter,1,0,login,,,,browser
s1,alice,2,180.5,key_up,letter,1,0,login,,,,browser
s2,bob,2,0,mouse_move,,,,,10.5,20,,browser
s2,bob,5,16,mouse_down,,,,,10.5,20,left,browser
"""


def write_csv(directory: Path, content: str | bytes, name: str = "events.csv") -> Path:
    """Write `content` (text as UTF-8, bytes as they are) to `directory/name` and return the path."""
    path = directory / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def run_cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m app ARGS` from the repository root, as a user would, and capture its output.

    TELLTALE_* variables of the calling shell are dropped so a test never reaches the real store.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        cwd=ROOT, env=clean, input=stdin, capture_output=True, text=True, timeout=120,
    )


def events_checksum(store: Store) -> list[tuple]:
    """Row count and an order-independent hash of every stored event's key and time."""
    return store.rows("SELECT count(*), sum(hash(session_id, seq, t_ms)) FROM events")


def snapshot(store: Store) -> tuple:
    """Everything a refused import must leave untouched: counts of every table, the events, the
    sessions and users (the audit log is covered by its count: it is append-only)."""
    return (
        store.table_counts(),
        events_checksum(store),
        store.rows("SELECT * FROM events ORDER BY session_id, seq"),
        store.rows("SELECT session_id, user_id, started_at, source FROM sessions ORDER BY session_id"),
        store.rows("SELECT user_id FROM users ORDER BY user_id"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store in its own file; closed after the test."""
    opened = Store(tmp_path / "t.duckdb")
    yield opened
    opened.close()


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    """GOOD_CSV written to good.csv: 5 events of sessions s1 (alice) and s2 (bob)."""
    return write_csv(tmp_path, GOOD_CSV, "good.csv")


@pytest.fixture
def loaded_store(store: Store, good_csv: Path) -> Store:
    """A store that already holds GOOD_CSV (one successful import, so one audit row)."""
    from store.ingest import ingest_events_csv

    ingest_events_csv(store, good_csv)
    return store


@pytest.fixture(name="snapshot")
def snapshot_fixture() -> Callable[[Store], tuple]:
    """`snapshot(store)`: compare before/after to prove a refused import changed nothing."""
    return snapshot


@pytest.fixture(name="write_csv")
def write_csv_fixture(tmp_path: Path) -> Callable[..., Path]:
    """`write_csv(content, name="events.csv")` into this test's tmp_path."""
    return lambda content, name="events.csv": write_csv(tmp_path, content, name)


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    """A valid store file held open by another process until the test ends.

    Readiness is read from the holder's pipe (it prints 'ready' once connected), never slept for.
    """
    path = tmp_path / "held.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready", \
            "the holder process could not open the database"
        yield path
    finally:
        if holder.stdin is not None:
            holder.stdin.close()  # the holder's stdin.read() returns and it exits, releasing the file
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.fixture(scope="module")
def browser():
    """Debian chromium driven by Playwright (never `playwright install`: it cannot download here)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def trained_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """Three simulated users with windows, personal and global models (one fast detector) and decisions."""
    from app.engine import pipeline
    from app.engine.samples import simulate_into

    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    store = Store(tmp_path / "trained.duckdb")
    simulate_into(store, users=3, sessions=6, seed=11, enrolment_days=4, load_seconds=5)
    pipeline.prepare_store(store)
    yield store
    store.close()


def store_a_genuine_login(store: Store, name: str) -> str:
    """A genuine simulated session of a trained user, stored under a new session id; returns the id."""
    import polars as pl

    from simulators import simulate
    from store import ingest_events

    sim = simulate(3, 6, seed=99, enrolment_days=4)
    source = sim.events["session_id"][0]
    events = sim.events.filter(pl.col("session_id") == source).with_columns(session_id=pl.lit(name))
    ingest_events(store, events, audit=False)
    return name

