"""Page benchmarks on a store of about a million events.

1. First render of every page in `pages/`: a fresh AppTest per page (Streamlit caches and the
   process's Store cleared), the switched page's `.run()` timed; a live fragment runs once inside
   that run and its later timed refreshes are not part of it. Baseline in the same run: an AppTest
   of a script that only calls `st.write` (the floor of any render), with Overview beside it.
2. Memory of the real app process (`streamlit run`, scheduler on) while headless chromium keeps the
   Live monitor open (its fragment refreshing every second) and `simulate --live` streams events
   through the app's inbox: RSS every 10 s for `minutes` after a minute of warm-up. Baseline in the
   same run: the same process idle over its first minute, before any browser connects (the
   Streamlit server alone: the script, store and scheduler start with the first session).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.engine.pipeline import prepare_store
from app.engine.samples import simulate_into
from app.web.resources import get_live_control, get_store
from store import Store

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "app" / "web" / "main.py"
PAGES = ROOT / "pages"
#: The fast detector keeps building the store (and the app's retraining) short.
DETECTORS = "manhattan_log"
TARGET_S = 1.0
SAMPLE_EVERY_S = 10.0
WARMUP_S = 60.0
IDLE_S = 60.0
#: The live stream during the soak (users, sessions each), restarted whenever it ends. `data-page`: what
#: the Data page starts by default (8 people typing at once, about 100 events/s); `heavy`: 3 users x 20
#: sessions at once, about 1,000 events/s (about 3M events an hour: the store grows about 4x).
STREAMS = {"data-page": (8, 1), "heavy": (3, 20)}


def build_store(path: Path, *, users: int = 50, sessions: int = 29, seed: int = 7) -> dict[str, Any]:
    """Simulate (`simulate(50, 29, seed=7)` is about 1.0M events), then windows, models, scores, decisions."""
    os.environ["TELLTALE_DETECTORS"] = DETECTORS

    started = time.perf_counter()
    with Store(path) as store:
        report = simulate_into(store, users=users, sessions=sessions, seed=seed)
        prepared = prepare_store(store)
        counts = store.table_counts()
    return {"events": report.events.events_added, "prepared": prepared,
            "build_s": round(time.perf_counter() - started, 1),
            "counts": {k: counts[k] for k in ("events", "sessions", "windows", "models", "scores", "decisions")
                       if k in counts}}


def _fresh_apptest(db: Path, script: Path):
    os.environ.update(TELLTALE_DB=str(db), TELLTALE_SCHEDULER="off", TELLTALE_DETECTORS=DETECTORS)
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    get_store.clear()
    get_live_control.clear()
    return AppTest.from_file(str(script), default_timeout=300)


def _errors(app) -> list[str]:
    return [str(getattr(e, "message", e))[:200] for e in app.exception]


def page_render_times(db: Path, pages: list[str] | None = None) -> dict[str, Any]:
    """Seconds of each page's first render (and of an immediate rerun) in a fresh AppTest."""
    names = pages or sorted(p.stem for p in PAGES.glob("*.py"))
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty.py"
        empty.write_text("import streamlit as st\n\nst.write('hello')\n")
        app = _fresh_apptest(db, empty)
        started = time.perf_counter()
        app.run()
        empty_s = time.perf_counter() - started
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        app = _fresh_apptest(db, ENTRY)
        app.run()  # the shell (navigation, store opened) and its default page
        import streamlit as st

        st.cache_data.clear()  # the switched page starts with cold caches
        app.switch_page(f"../../pages/{name}.py")
        started = time.perf_counter()
        app.run()
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        app.run()
        rerun_s = time.perf_counter() - started
        results[name] = {"first_s": round(first_s, 3), "rerun_s": round(rerun_s, 3), "errors": _errors(app)}

    get_store.clear()
    slowest = max(results, key=lambda n: results[n]["first_s"])
    return {"pages": results, "target_s": TARGET_S,
            "over_target": sorted(n for n, r in results.items() if r["first_s"] >= TARGET_S),
            "slowest": slowest, "baseline": "AppTest of a script that only calls st.write",
            "baseline_s": round(empty_s, 3), "overview_s": results.get("overview", {}).get("first_s")}


def _slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 2:
        return None
    import numpy as np

    t = np.array([s[0] for s in samples]) / 3600
    mb = np.array([s[1] for s in samples])
    return round(float(np.polyfit(t, mb, 1)[0]), 2)


def _rss_summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Start, end, max and fitted slope of RSS (MB); the mean of each 10 minutes and the slope of the
    second half tell a plateau (early growth, then flat) from a steady climb."""
    mbs = [mb for _, mb in samples]
    blocks: dict[int, list[float]] = {}
    for t, mb in samples:
        blocks.setdefault(int(t // 600), []).append(mb)
    half = samples[len(samples) // 2:]
    return {"samples": len(samples), "start_mb": round(mbs[0], 1), "end_mb": round(mbs[-1], 1),
            "max_mb": round(max(mbs), 1), "slope_mb_per_hour": _slope_mb_per_hour(samples),
            "second_half_slope_mb_per_hour": _slope_mb_per_hour(half),
            "mean_mb_by_10_min": [round(sum(v) / len(v), 1) for _, v in sorted(blocks.items())]}


def _sample(process, seconds: float, every: float, on_tick=None) -> list[tuple[float, float]]:
    """RSS (MB) of `process` every `every` s for `seconds`, times relative to the first sample."""
    samples: list[tuple[float, float]] = []
    begun = time.monotonic()
    next_at = begun
    while True:
        now = time.monotonic()
        if now >= next_at:
            samples.append((now - begun, process.memory_info().rss / 1e6))
            if on_tick:
                on_tick()
            next_at += every
        if now - begun >= seconds:
            return samples
        time.sleep(min(max(next_at - time.monotonic(), 0.0), seconds - (now - begun)) + 0.01)


def _wait_for_text(page, text: str, artifacts: Path, timeout_s: float = 180.0) -> None:
    """Wait until `text` shows; on a timeout keep a screenshot and say what the page showed instead."""
    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_s * 1000)
    except Exception as error:
        shot = artifacts / f"soak-timeout-{text.replace(' ', '-').lower()}.png"
        page.screenshot(path=str(shot))
        shown = page.locator("body").inner_text()[:400].replace("\n", " | ")
        raise RuntimeError(f"{text!r} did not show within {timeout_s:.0f} s (screenshot {shot}); "
                           f"the page showed: {shown}") from error


def _event_count(db: Path) -> int:
    with Store(db, read_only=True) as store:
        return int(store.scalar("SELECT count(*) FROM events"))


def soak_live_monitor(db: Path, minutes: float, *, stream: str | None = "data-page",
                      artifacts: Path | None = None) -> dict[str, Any]:
    """RSS of the real app over `minutes` with the Live monitor open in headless chromium.

    `db` must not be open in this process: DuckDB allows one process per file, and the app would
    only show its "cannot open its store" notice. Screenshots of a failed start go to `artifacts`.
    """
    artifacts = artifacts or Path(tempfile.gettempdir())
    artifacts.mkdir(parents=True, exist_ok=True)
    import psutil
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, app_process

    events_before = _event_count(db)
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "app.log"
        env = {"TELLTALE_DETECTORS": DETECTORS, "TELLTALE_SCHEDULER": "on"}
        with app_process(db, log, env=env) as (url, popen):
            process = psutil.Process(popen.pid)
            print(f"app pid {popen.pid} at {url}; idle baseline {IDLE_S:.0f} s ...", file=sys.stderr)
            idle = _sample(process, IDLE_S, SAMPLE_EVERY_S)
            feeder = None
            refreshes = {"seen": 0, "changed": 0, "last": None, "streams": 1 if stream else 0}
            try:
                with sync_playwright() as play:
                    browser = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(url)  # open the app as a person would, then go to the Live monitor
                    _wait_for_text(page, "Live monitor", artifacts)
                    page.get_by_role("link", name="Live monitor").click()
                    _wait_for_text(page, "Show the last", artifacts)
                    page.locator("[data-testid='stSelectbox']").filter(has_text="Refresh every").click()
                    page.get_by_role("option", name="1 s").click()  # the panel refreshes every second
                    page.get_by_text("refreshing every 1 s").first.wait_for(timeout=60_000)
                    def feed(seed: int) -> subprocess.Popen:  # only once the app holds the store: via its inbox
                        users, sessions = STREAMS[stream]
                        return subprocess.Popen(
                            [sys.executable, "-m", "app", "simulate", "--live", "--users", str(users), "--sessions",
                             str(sessions), "--seed", str(seed), "--db", str(db)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

                    if stream:
                        feeder = feed(11)

                    def tick() -> None:  # does the panel still change? (its text, between samples)
                        nonlocal feeder
                        if feeder is not None and feeder.poll() is not None:  # a finished stream: start another
                            refreshes["streams"] += 1
                            feeder = feed(11 + refreshes["streams"])
                        text = page.locator("section.main, [data-testid='stMain']").first.inner_text(timeout=30_000)
                        refreshes["seen"] += 1
                        refreshes["changed"] += int(refreshes["last"] is not None and text != refreshes["last"])
                        refreshes["last"] = text

                    print(f"Live monitor open; warm-up {WARMUP_S:.0f} s, then {minutes:g} min ...", file=sys.stderr)
                    _sample(process, WARMUP_S, SAMPLE_EVERY_S, tick)
                    samples = _sample(process, minutes * 60, SAMPLE_EVERY_S, tick)
                    exceptions = page.locator("[data-testid='stException']").count()
                    browser.close()
            finally:
                if feeder is not None:
                    feeder.terminate()
                    try:
                        feeder.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        feeder.kill()
            cpu_s = sum(process.cpu_times()[:2])
        running_log = log.read_text().split("Stopping...")[0]  # scheduler noise while shutting down is not counted
        app_errors = [line for line in running_log.splitlines() if "Traceback" in line or "Error" in line]
    return {"minutes": minutes, "sample_every_s": SAMPLE_EVERY_S, "warmup_s": WARMUP_S,
            "live": _rss_summary(samples),
            "baseline": "same app process idle before any browser connects (Streamlit server alone), first minute",
            "idle": _rss_summary(idle),
            "panel_text_changed_between_samples": f"{refreshes['changed']} of {max(refreshes['seen'] - 1, 0)}",
            "page_exceptions": exceptions, "app_log_error_lines": app_errors[:5], "app_cpu_s": round(cpu_s, 1),
            "live_streams": (f"{stream}: `simulate --live --users {STREAMS[stream][0]} --sessions "
                             f"{STREAMS[stream][1]}` through the inbox, restarted when done: {refreshes['streams']} "
                             "run(s)") if stream else None,
            "store_events": {"before": events_before, "after": _event_count(db)}}


def bench_pages(minutes: float = 60.0, *, path: Path | None = None, soak: bool = True,
                users: int = 50, sessions: int = 29, stream: str = "data-page") -> dict[str, Any]:
    """Build (or copy `path`, an already prepared store) then time the pages and soak the Live monitor."""
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "pages.duckdb"
        if path is not None:
            shutil.copy(path, db)
            from store import Store

            with Store(db) as store:
                built: dict[str, Any] = {"copied_from": str(path), "counts": store.table_counts()}
        else:
            print(f"building the store ({users} users x {sessions} sessions) ...", file=sys.stderr)
            built = build_store(db, users=users, sessions=sessions)
        print(f"store: {built}", file=sys.stderr)
        soak_db = Path(scratch) / "soak.duckdb"  # the renders keep `db` open in this process
        shutil.copy(db, soak_db)
        result: dict[str, Any] = {"store": built, "render": page_render_times(db)}
        if soak:
            try:
                result["memory"] = soak_live_monitor(soak_db, minutes, stream=stream, artifacts=ROOT / "test-artifacts")
            except Exception as error:  # keep the render figures when the soak fails
                result["memory"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    return result
