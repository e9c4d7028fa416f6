"""End to end in Debian chromium: enrol by typing, log in, and get a verdict; a bot typist is flagged.

The typing rhythm (how long each key is held, the gap before the next) is the test's input, sent as
key events that carry their own timestamps; every wait for the app is a poll for something to appear.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import polars as pl
import pyotp
import pytest

from store import Store
from store.schema import KEY_CLASSES
from tests.browser import ARTIFACTS, app_process, app_stacks

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev requirement")

pytestmark = pytest.mark.browser

PHRASE_KEYS = [".", "t", "i", "e", "5", "R", "o", "a", "n", "l", "Enter"]
REPETITIONS = 6
#: (hold ms, gap ms before the next key) of the human-like typist: a rhythm by position, and each
#: repetition a little different (a person never types a phrase the same way twice).
HUMAN = [(95 + 7 * (i % 4), 140 + 23 * (i % 5)) for i in range(len(PHRASE_KEYS))]


def human(repetition: int) -> list[tuple[int, int]]:
    wobble = [((7 * repetition + 3 * i) % 11) - 5 for i in range(len(PHRASE_KEYS))]
    return [(hold + w, gap + 3 * w) for (hold, gap), w in zip(HUMAN, wobble, strict=True)]


KEYS = {".": ("Period", 190), "5": ("Digit5", 53), "Enter": ("Enter", 13), "Shift": ("ShiftLeft", 16)}


def key_event(kind: str, key: str, at: float, shift: bool = False) -> dict:
    """A CDP Input.dispatchKeyEvent for `key` stamped at `at` (seconds since the epoch)."""
    code, vk = KEYS[key] if key in KEYS else (f"Key{key.upper()}", ord(key.upper()))
    event = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk, "timestamp": at,
             "modifiers": 8 if shift else 0}
    if kind == "keyDown" and key != "Shift":
        event["text"] = "\r" if key == "Enter" else key
    return event


def type_phrase(page, rhythm: list[tuple[int, int]]) -> None:
    """Type .tie5Roanl + Enter with the given (hold, gap) in ms per key, Shift held around R.

    The key events carry their own timestamps (CDP), so the rhythm the page sees is exactly the
    one given, however busy the machine: the test checks what Telltale keeps, not the scheduler.
    """
    cdp = page.context.new_cdp_session(page)
    t = time.time() + 0.05
    for key, (hold, gap) in zip(PHRASE_KEYS, rhythm, strict=True):
        if key == "R":
            cdp.send("Input.dispatchKeyEvent", key_event("rawKeyDown", "Shift", t, shift=True))
            down = t + 0.03
            cdp.send("Input.dispatchKeyEvent", key_event("keyDown", "R", down, shift=True))
            cdp.send("Input.dispatchKeyEvent", key_event("keyUp", "R", down + hold / 1000, shift=True))
            end = down + hold / 1000 + 0.005
            cdp.send("Input.dispatchKeyEvent", key_event("keyUp", "Shift", end))
        else:
            cdp.send("Input.dispatchKeyEvent", key_event("keyDown", key, t))
            end = t + hold / 1000
            cdp.send("Input.dispatchKeyEvent", key_event("keyUp", key, end))
        t = end + gap / 1000
    cdp.detach()


def test_enrol_log_in_as_yourself_and_flag_a_bot(browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "capture.duckdb"
    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("TELLTALE_ENROLMENT_REPETITIONS", str(REPETITIONS))
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log,lof")
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")  # the page scores a finished login itself
    log = tmp_path / "app.log"
    with app_process(db, log) as (url, process):
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        try:
            drive_the_capture_page(page, url)
        except Exception as error:
            page.screenshot(path=str(ARTIFACTS / "capture-failure.png"), full_page=True)
            diagnosis = stalled_capture_diagnosis(page, process, log)
            (ARTIFACTS / "capture-failure.log").write_text(diagnosis)
            raise AssertionError(f"{error}\n{diagnosis}") from error
        finally:
            page.close()
    check_the_store(db)


def stalled_capture_diagnosis(page, process, log: Path) -> str:
    """What the browser sent and was acknowledged, the app's log and every app thread's stack."""
    browser_side = page.evaluate("JSON.stringify({capture: window.__telltaleCapture || null, "
                                 "acknowledged: window.__telltaleAcks || null})")
    app_log = "\n".join(log.read_text().splitlines()[-60:])
    stacks = app_stacks(process, log)
    return (f"--- the browser's capture (counts) and the server's acknowledgements:\n{browser_side}\n"
            f"--- the app's log (last 60 lines):\n{app_log}\n--- the app's threads:\n{stacks}")


def drive_the_capture_page(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("link", name="Capture", exact=True).click()
    name = page.get_by_label("Your user name")
    name.fill("alice")
    name.press("Enter")
    enrol = page.locator("input.tt-input")
    enrol.wait_for(timeout=30_000)
    enrol.click()
    for repetition in range(1, REPETITIONS + 1):
        type_phrase(page, human(repetition))
        page.locator(".tt-progress").filter(has_text=f"{repetition} / {REPETITIONS}").wait_for(timeout=60_000)
        # the server stored it (its progress bar moved) before the next repetition starts
        page.get_by_text(f"{repetition} / {REPETITIONS} repetitions this visit").wait_for(timeout=60_000)
    page.get_by_text("trained").first.wait_for(timeout=120_000)

    page.get_by_role("tab", name="Log in").click()
    page.locator("input.tt-username").click()
    page.keyboard.type("alice", delay=60)
    page.locator("input.tt-password").click()
    type_phrase(page, human(REPETITIONS + 1))
    page.get_by_text("Login #1 of this visit").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"risk \d")).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "capture-login.png"), full_page=True)

    page.locator("input.tt-password").click()
    type_phrase(page, [(10, 10)] * len(PHRASE_KEYS))  # a bot: every hold and gap 10 ms
    page.get_by_text("Login #2 of this visit").wait_for(timeout=60_000)
    page.get_by_text("DENY").first.wait_for(timeout=30_000)
    page.get_by_text("machine-like input").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "capture-bot-flagged.png"), full_page=True)

    # a person typing noticeably unlike alice's enrolment: asked for a code, and told how to get one
    page.locator("input.tt-password").click()
    type_phrase(page, unlike_alice(REPETITIONS + 2))
    page.get_by_text("Login #3 of this visit").wait_for(timeout=60_000)
    page.get_by_text("REQUIRE_OTP").first.wait_for(timeout=30_000)
    page.get_by_text("has no authenticator yet").wait_for(timeout=30_000)

    # alice adds an authenticator on Step-up (its secret is shown once) ...
    page.get_by_role("link", name="Enrol an authenticator on Step-up").click()
    page.get_by_role("button", name="Enrol authenticator").click()
    secret = page.locator("code").filter(has_text=re.compile(r"^[A-Z2-7]{32}$")).first.inner_text().strip()
    # ... and logs in again the same unusual way: the Capture page asks for the code right there
    page.get_by_role("link", name="Capture", exact=True).click()
    page.get_by_role("tab", name="Log in").click()
    page.locator("input.tt-username").click()
    page.keyboard.type("alice", delay=60)
    page.locator("input.tt-password").click()
    type_phrase(page, unlike_alice(REPETITIONS + 3))
    code_box = page.get_by_label("One-time code")
    code_box.wait_for(timeout=60_000)
    code_box.fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("Code accepted").wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "capture-step-up.png"), full_page=True)


#: How far ahead of the wall clock the last key of a phrase can be stamped: `type_phrase` sends a whole
#: phrase at once, each key carrying the time it is meant to happen (the slowest rhythm here), plus a second.
SYNTHETIC_LEAD_S = max(sum(h + g for h, g in rhythm) for rhythm in (
    [(int(h * 1.7), int(g * 1.7)) for h, g in HUMAN], HUMAN)) / 1000 + 1.0


def unlike_alice(repetition: int) -> list[tuple[int, int]]:
    """Alice's rhythm stretched by 70%: a person who types the phrase noticeably unlike her."""
    return [(int(hold * 1.7), int(gap * 1.7)) for hold, gap in human(repetition)]


def check_the_store(db: Path) -> None:
    with Store(db) as store:
        presses = store.frame("""
            SELECT d.session_id, d.pos::BIGINT AS pos, u.t_ms - d.t_ms AS dwell FROM events d JOIN events u
              ON u.session_id = d.session_id AND u.press_id = d.press_id AND u.type = 'key_up'
            WHERE d.type = 'key_down' AND starts_with(d.session_id, 'enrol-') AND d.pos IS NOT NULL""")
        # positions: . t i e 5 Shift R o a n l Enter; the typed holds by key index skip Shift (pos 5)
        started = store.frame("SELECT s.session_id, s.started_at FROM sessions s WHERE starts_with(s.session_id, "
                              "'enrol-') ORDER BY s.started_at, s.session_id")
        assert started.height == REPETITIONS
        expected = pl.concat([
            pl.DataFrame({"session_id": session_id, "pos": [p for p in range(12) if p != 5],
                          "typed": [float(h) for h, _ in human(repetition)]})
            for repetition, session_id in enumerate(started["session_id"], start=1)])
        compared = presses.join(expected, on=["session_id", "pos"]).with_columns(
            error=(pl.col("dwell") - pl.col("typed")).abs())
        assert compared.height == REPETITIONS * len(PHRASE_KEYS)
        assert compared["error"].max() < 10, compared.sort("error", descending=True).head().rows()

        key_classes = {r[0] for r in store.rows("SELECT DISTINCT key_class FROM events WHERE key_class IS NOT NULL")}
        assert key_classes <= set(KEY_CLASSES)
        for table in store.table_counts():
            text = " ".join(str(v) for row in store.rows(f"SELECT * FROM {table}") for v in row)
            for fragment in (".tie5Roanl", "tie5", "Roanl", "5Ro"):
                assert fragment not in text, f"typed text {fragment!r} found in table {table}"

        # in the order the app decided them (the audit row's time: the test's keys carry their own timestamps,
        # so the times of the behaviour judged need not follow the order of the logins)
        logins = store.frame("""
            SELECT d.session_id, d.action, d.verdict FROM decisions d JOIN feature_windows w USING (window_id)
            JOIN audit_log a ON a.subject = d.decision_id AND a.action = 'decision'
            WHERE w.kind = 'fixed_text' AND starts_with(d.session_id, 'login-') ORDER BY a.happened_at""")
        # alice herself typing a little differently, the 10 ms bot, twice a person typing unlike her
        assert logins["action"].to_list() == ["ALLOW", "DENY", "REQUIRE_OTP", "REQUIRE_OTP"], logins.rows()
        answered = store.rows("SELECT session_id FROM otp_challenges WHERE status = 'verified'")
        assert answered == [(logins["session_id"][-1],)]
        # a login is judged by its phrase once: no time-slice decision of the same keystrokes
        judged = store.rows("SELECT DISTINCT w.kind FROM decisions d JOIN feature_windows w USING (window_id) "
                            "WHERE starts_with(d.session_id, 'login-')")
        assert judged == [("fixed_text",)]
        # a session is dated by the browser's clock origin: its last key lies before the moment the app
        # decided on it (the audit row's time; a decision itself carries the time of the behaviour judged)
        late = store.rows("""
            WITH logins AS (
                SELECT s.session_id, any_value(s.started_at) AS started_at, max(e.t_ms) AS last_t_ms,
                       (SELECT min(a.happened_at) FROM decisions d JOIN audit_log a ON a.subject = d.decision_id
                        WHERE d.session_id = s.session_id AND a.action = 'decision') AS decided
                FROM sessions s JOIN events e USING (session_id)
                WHERE starts_with(s.session_id, 'login-') GROUP BY s.session_id)
            SELECT * FROM logins
            WHERE started_at + to_microseconds(CAST(last_t_ms * 1000 AS BIGINT))
                  > decided + to_microseconds(CAST(? * 1000000 AS BIGINT))""", [SYNTHETIC_LEAD_S])
        assert late == []
