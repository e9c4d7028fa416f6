"""End to end in a real browser: the app shell loads, and the Data page imports an uploaded CSV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine.inbox import inbox_folder
from store import Store
from tests.browser import ARTIFACTS, ROOT, running_app

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev requirement")

pytestmark = pytest.mark.browser

GOOD_CSV = (
    "session_id,user_id,seq,t_ms,type,key_class,press_id,pos,field\n"
    "b1,alice,0,0,field_enter,,,,password\n"
    "b1,alice,1,12.5,key_down,letter,1,0,password\n"
    "b1,alice,2,96,key_up,letter,1,0,password\n"
)
BAD_CSV = "session_id,user_id,seq,t_ms,type\nb2,bob,0,abc,key_down\n"


def test_data_page_uploads_checks_and_imports_a_csv(browser, tmp_path: Path) -> None:
    db = tmp_path / "browser.duckdb"
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD_CSV)
    bad.write_text(BAD_CSV)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(db, tmp_path / "app.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("The store is empty").first.wait_for(timeout=60_000)
        page.get_by_role("link", name="Data").click()
        page.get_by_text("What is stored").wait_for(timeout=30_000)

        page.locator("input[type=file]").set_input_files(str(bad))
        page.get_by_text("was refused; nothing of it was stored").wait_for(timeout=30_000)

        page.locator("input[type=file]").set_input_files(str(good))
        page.get_by_text("3 rows pass every check").wait_for(timeout=30_000)
        page.get_by_role("button", name="Import good.csv").click()
        page.get_by_text("stored 3 new events").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "data-page-import.png"), full_page=True)
        page.close()
    with Store(db) as store:
        stored = store.rows("SELECT session_id, seq, t_ms, type FROM events ORDER BY seq")
        assert stored == [("b1", 0, 0.0, "field_enter"), ("b1", 1, 12.5, "key_down"), ("b1", 2, 96.0, "key_up")]
        assert store.table_counts()["sessions"] == 1


def test_cli_live_stream_reaches_the_running_app_through_its_inbox(browser, tmp_path: Path) -> None:
    db = tmp_path / "app.duckdb"
    Store(db).close()  # an empty store: the app starts without sample data
    with running_app(db, tmp_path / "app.log") as url:
        page = browser.new_page()
        page.goto(url)  # Streamlit runs the script (and opens the store) when a page connects
        page.get_by_text("The store is empty").first.wait_for(timeout=60_000)
        done = subprocess.run(
            [sys.executable, "-m", "app", "simulate", "--live", "--speed", "200", "--users", "2",
             "--sessions", "1", "--attack-share", "0", "--seed", "5", "--db", str(db), "--json"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "streaming through its inbox" in done.stderr
        streamed = json.loads(done.stdout)["events"]
        page.close()
    # Stopping the app runs its inbox job a last time, so nothing posted is left behind.
    assert not list(inbox_folder(str(db)).glob("*.parquet"))
    with Store(db) as store:
        assert store.table_counts()["events"] == streamed > 0
        assert store.table_counts()["system_metrics"] > 0  # the sampler job ran too
        assert store.table_counts()["job_runs"] > 0
