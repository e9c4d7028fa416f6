"""AppTest of the Step-up, History and Audit pages: empty store, filters, the once-only secret,
answering challenges through the page, exports that leave an audit row."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.engine.policies import latest_policy
from app.engine.policy import decide
from app.engine.stepup import current_code, enrol, issue_challenge, verify
from store import Store
from store.decisions import DecisionRecord, record_decisions

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "web" / "main.py")
#: (page, words of the message an empty store shows)
EMPTY = [("../../pages/stepup.py", "There are no users yet"), ("../../pages/history.py", "No decisions yet"),
         ("../../pages/audit.py", "The audit log is empty")]
#: Risks of the seeded decisions, alternately bob's and alice's: 2 SAFE, 3 UNSAFE (one of them DENY).
RISKS = [0.1, 0.3, 0.8, 0.93, 0.99]  # under the default bands: ALLOW, ALLOW, REQUIRE_OTP, FLAG_SESSION, DENY
DAY = datetime(2026, 3, 2, 9, 0)


def _app(db: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("TELLTALE_DB", str(db))
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")  # no background writes while the page is checked
    from app.web.resources import get_store

    get_store.clear()  # a fresh Store for this test's database
    app = AppTest.from_file(ENTRY, default_timeout=60).run()
    return app.switch_page(page).run()


def _store():
    """The app's own Store (the one the page under test writes to)."""
    from app.web.resources import get_store

    return get_store()


def _seed(db: Path) -> None:
    """Five decisions of alice and bob over two days; carol enrolled with one open challenge."""
    with Store(db) as store:
        policy = latest_policy(store)
        for i, risk in enumerate(RISKS):
            record_decisions(store, [DecisionRecord(decide(risk, policy), user_id=("bob", "alice")[i % 2],
                                                    session_id=f"s{i}", decided_at=DAY + timedelta(hours=12 * i),
                                                    top_features={"dwell_mean": risk})])
        enrol(store, "carol", actor="test")
        issue_challenge(store, "carol", now=time.time(), actor="test")


def _texts(app: AppTest, kind: str) -> str:
    return "\n".join(str(element.value) for element in getattr(app, kind))


def _everything(node) -> str:
    """Every element and block of the page as protobuf text (what the browser would receive)."""
    proto = getattr(node, "proto", None)
    parts = [str(proto)] if proto is not None else []
    parts += [_everything(child) for child in getattr(node, "children", {}).values()]
    return "\n".join(parts)


def _click(app: AppTest, label: str) -> AppTest:
    [button] = [b for b in app.button if b.label == label]
    return button.click().run()


def _table(app: AppTest, key: str):
    [table] = [frame for frame in app.dataframe if frame.key == key]
    return table.value


@pytest.mark.parametrize(("page", "message"), EMPTY)
def test_page_renders_on_an_empty_store(page: str, message: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "empty.duckdb", monkeypatch, page)
    assert not app.exception, app.exception
    assert message in _texts(app, "info")


def test_history_filters_change_the_rows_and_the_export_is_audited(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "h.duckdb")
    app = _app(tmp_path / "h.duckdb", monkeypatch, "../../pages/history.py")
    assert not app.exception, app.exception
    assert len(_table(app, "history_table")) == len(RISKS)

    app.selectbox[0].select("UNSAFE").run()  # verdict
    assert set(_table(app, "history_table")["verdict"]) == {"UNSAFE"}
    assert len(_table(app, "history_table")) == 3
    app.selectbox[1].select("DENY").run()  # action
    assert list(_table(app, "history_table")["risk"]) == [0.99]
    app.selectbox[1].select("any").run()
    app.multiselect[0].select("alice").run()  # alice has decisions 1 and 3: 0.3 (SAFE) and 0.93 (UNSAFE)
    assert list(_table(app, "history_table")["risk"]) == [0.93]
    app.selectbox[0].select("any").run()
    app.multiselect[0].select("bob").run()  # two users: one query each, merged newest first
    assert list(_table(app, "history_table")["risk"]) == RISKS[::-1]
    app.date_input[0].set_value((DAY.date(), DAY.date())).run()  # decisions 0 and 1 fall on the first day
    assert list(_table(app, "history_table")["risk"]) == [0.3, 0.1]
    assert not app.exception, app.exception

    app.download_button[0].click().run()
    exports = _store().rows("SELECT actor, details FROM audit_log WHERE action = 'export'")
    assert [actor for actor, _ in exports] == ["history-page"]
    assert '"rows": 2' in exports[0][1] and '"alice"' in exports[0][1]


def test_history_row_selection_opens_the_investigation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "i.duckdb")
    app = _app(tmp_path / "i.duckdb", monkeypatch, "../../pages/history.py")
    [investigate] = [b for b in app.button if b.label == "Investigate"]
    assert investigate.disabled  # nothing selected yet
    newest = _table(app, "history_table").iloc[0]
    app.session_state["history_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    app.run()
    _click(app, "Investigate")
    assert not app.exception, app.exception
    assert "investigation" in app.title[0].value.lower()  # the page switched
    assert app.session_state["investigate_session"] == newest["session_id"] == "s4"
    assert app.session_state["investigate_user"] == newest["user_id"] == "bob"


def test_history_shows_the_reasons_as_text_not_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "r.duckdb")
    app = _app(tmp_path / "r.duckdb", monkeypatch, "../../pages/history.py")
    reasons = _table(app, "history_table")["reasons"]
    assert reasons.str.startswith("risk ").all() and not reasons.str.contains('"', regex=False).any()
    assert reasons.iloc[0].startswith("risk 0.99 is in band DENY [0.97, 1]")


def test_reasons_text_joins_the_stored_list() -> None:
    import polars as pl

    from app.web import review

    frame = pl.DataFrame({"reasons": ['["risk 0.04 is in band ALLOW [0, 0.6)", "replayed pattern → at least DENY"]',
                                      "[]", None]})
    assert frame.select(review.reasons_text("reasons"))["reasons"].to_list() == [
        "risk 0.04 is in band ALLOW [0, 0.6); replayed pattern → at least DENY", "", None]


def test_audit_details_read_as_key_value_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.web import review

    assert review.details_lines('{"rows": 2, "filters": {"verdict": "UNSAFE", "users": ["alice", "bob"]}, '
                                 '"dry_run": false, "error": null}') == [
        "rows: 2", "filters.verdict: UNSAFE", "filters.users: alice; bob", "dry_run: no", "error: —"]
    assert review.details_lines('{"windows": [{"kind": "mouse", "n": 3}]}') == ["windows 1.kind: mouse",
                                                                                  "windows 1.n: 3"]
    assert review.details_lines("not json {") == ["not json {"]
    assert review.details_lines(None) == [] and review.details_lines("{}") == []

    _seed(tmp_path / "d.duckdb")
    app = _app(tmp_path / "d.duckdb", monkeypatch, "../../pages/audit.py")
    details = _table(app, "audit_table")["details"].dropna()
    assert len(details) and not details.str.contains(r"^[\[{]", regex=True).any()
    decision = next(text for text in details if text.startswith("action: DENY"))
    assert "reasons: risk 0.99 is in band DENY" in decision
    app.session_state["audit_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    app.run()
    assert not app.exception, app.exception
    shown = _texts(app, "text")
    assert shown and "{" not in shown and ": " in shown


def test_audit_shows_rows_filters_by_action_and_audits_its_export(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "a.duckdb")
    app = _app(tmp_path / "a.duckdb", monkeypatch, "../../pages/audit.py")
    assert not app.exception, app.exception
    total = _store().scalar("SELECT count(*) FROM audit_log")
    assert len(_table(app, "audit_table")) == total > len(RISKS)

    app.selectbox[1].select("decision").run()  # action
    shown = _table(app, "audit_table")
    assert len(shown) == len(RISKS) and set(shown["action"]) == {"decision"}
    app.text_input[0].input("no such subject").run()
    assert "No audit row matches" in _texts(app, "info")
    app.text_input[0].input("").run()

    app.download_button[0].click().run()
    assert not app.exception, app.exception
    assert _store().rows("SELECT actor, subject FROM audit_log WHERE action = 'export'") == \
        [("audit-page", "audit_log.csv")]


def test_enrolment_secret_is_shown_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "e.duckdb")
    app = _app(tmp_path / "e.duckdb", monkeypatch, "../../pages/stepup.py")
    app.selectbox(key="stepup_user").select("alice").run()
    _click(app, "Enrol authenticator")
    assert not app.exception, app.exception
    from store.otp import enrolment_state

    secret = enrolment_state(_store(), "alice").secret
    assert secret in _everything(app._tree)  # shown now: the secret, its URI, the QR code
    assert len(app.image) == 1 and "shown only now" in _texts(app, "warning").lower()
    app.run()  # any other interaction on the page keeps it until Done
    assert secret in _everything(app._tree)

    _click(app, "Done")
    assert secret not in _everything(app._tree)
    assert "stepup_enrolment" not in app.session_state
    app.run()
    assert secret not in _everything(app._tree)
    logged = _store().scalar("SELECT string_agg(concat_ws(' ', actor, action, subject, details), ' ') FROM audit_log")
    assert secret not in logged and "otp_enrolled" in logged


def test_enrolment_secret_is_gone_after_leaving_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "n.duckdb")
    app = _app(tmp_path / "n.duckdb", monkeypatch, "../../pages/stepup.py")
    app.selectbox(key="stepup_user").select("bob").run()
    _click(app, "Enrol authenticator")
    from store.otp import enrolment_state

    secret = enrolment_state(_store(), "bob").secret
    assert secret in _everything(app._tree)
    app.switch_page("../../pages/overview.py").run()
    app.switch_page("../../pages/stepup.py").run()
    assert secret not in _everything(app._tree)
    assert "stepup_enrolment" not in app.session_state


def test_answering_challenges_through_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "c.duckdb")
    app = _app(tmp_path / "c.duckdb", monkeypatch, "../../pages/stepup.py")
    app.selectbox(key="stepup_user").select("carol").run()
    assert "Simulated authenticator (a demo stand-in for a phone app)" in _texts(app, "markdown")
    [first] = _store().rows("SELECT challenge_id FROM otp_challenges")

    _click(app, "Use this code")
    assert not app.exception, app.exception
    assert _store().scalar("SELECT status FROM otp_challenges WHERE challenge_id = ?", [first[0]]) == "verified"
    assert "Verified" in _texts(app, "success")

    _click(app, "Issue a test challenge")
    second = _store().scalar("SELECT challenge_id FROM otp_challenges WHERE status = 'issued'")
    assert app.selectbox(key="stepup_challenge").value == second

    def failures() -> tuple:
        return _store().rows("SELECT status, failures FROM otp_challenges WHERE challenge_id = ?", [second])[0]

    app.text_input(key="stepup_typed_code").input("12ab56")
    _click(app, "Submit code")
    assert "Not a code" in _texts(app, "warning") and failures() == ("issued", 0)

    code = current_code(_store(), "carol", time.time()).code
    wrong = "".join(str((int(digit) + 5) % 10) for digit in code)
    for _ in range(2):  # the second is a double submit: refused by the page, not counted
        app.text_input(key="stepup_typed_code").input(wrong)
        _click(app, "Submit code")
    assert "Wrong code" in _texts(app, "error") and "wrong code" in _texts(app, "error")
    assert "not sent again" in _texts(app, "info")
    assert failures() == ("issued", 1)
    assert not app.exception, app.exception


def test_a_locked_challenge_can_be_unlocked_through_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "l.duckdb"
    _seed(db)
    with Store(db) as store:  # five wrong codes, each after its throttle wait, on a controlled clock
        start = time.time()
        locked = issue_challenge(store, "carol", now=start - 1, actor="test").challenge_id
        for offset in (0, 1, 4, 9, 18):  # waits 2, 4 and 8 s after failures 2-4, plus slack
            code = current_code(store, "carol", start + offset).code
            result = verify(store, locked, "".join(str((int(d) + 5) % 10) for d in code), start + offset)
        assert result.outcome == "locked", result.message
    app = _app(db, monkeypatch, "../../pages/stepup.py")
    app.selectbox(key="stepup_user").select("carol").run()
    assert f"Challenge {locked} is locked" in _texts(app, "error")
    _click(app, "Unlock")
    assert not app.exception, app.exception
    assert _store().rows("SELECT locked, failures, status FROM otp_challenges WHERE challenge_id = ?",
                         [locked]) == [(False, 0, "issued")]
    assert "unlocked" in _texts(app, "success")
    assert _store().scalar("SELECT actor FROM audit_log WHERE action = 'otp_unlocked'") == "stepup-page"


def _wrong(code: str) -> str:
    return "".join(str((int(digit) + 5) % 10) for digit in code)


def test_the_locked_message_goes_once_the_challenge_is_unlocked(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "u.duckdb"
    _seed(db)
    with Store(db) as store:  # four wrong codes a minute ago, each after its throttle wait
        start = time.time() - 60
        challenge = issue_challenge(store, "carol", now=start - 1, actor="test").challenge_id
        for offset in (0, 1, 4, 9):
            result = verify(store, challenge, _wrong(current_code(store, "carol", start + offset).code), start + offset)
        assert result.outcome == "wrong_code" and "(1 attempt left before the lock)" in result.message
    app = _app(db, monkeypatch, "../../pages/stepup.py")
    app.selectbox(key="stepup_user").select("carol").run()
    app.selectbox(key="stepup_challenge").select(challenge).run()
    app.text_input(key="stepup_typed_code").input(_wrong(current_code(_store(), "carol", time.time()).code))
    _click(app, "Submit code")  # the fifth wrong code in a row locks it
    assert f"**Locked** (challenge {challenge})" in _texts(app, "error")

    _click(app, "Unlock")
    assert not app.exception, app.exception
    assert "unlocked" in _texts(app, "success")
    assert "locked" not in _texts(app, "error").lower()


def test_challenge_states_and_double_submits() -> None:
    import polars as pl

    from app.engine.stepup import Outcome
    from app.web import review

    now = datetime(2026, 3, 2, 12, 0)
    frame = pl.DataFrame({
        "challenge_id": ["open", "overdue", "locked", "done"],
        "status": ["issued", "issued", "failed", "verified"],
        "locked": [False, False, True, False],
        "expires_at": [now + timedelta(seconds=90), now, now + timedelta(seconds=90), now + timedelta(seconds=90)],
    })
    states = review.challenge_states(frame, now)
    assert states["state"].to_list() == ["open", "expired", "locked", "verified"]
    assert states["seconds_left"].to_list() == [90, None, None, None]
    assert review.answerable(states) == ["open", "overdue"]  # submitting to an overdue one says "expired"
    assert review.locked_ids(states) == ["locked"]
    assert review.challenge_states(frame.clear(), now).columns[-2:] == ["state", "seconds_left"]

    last = review.Submitted(review.submission_key("c1", "123456"), Outcome.WRONG_CODE, "wrong code", "c1")
    assert review.is_double_submit(last, "c1", " 123456 ")
    assert not review.is_double_submit(last, "c2", "123456")  # another challenge: a replay check, not ours
    assert not review.is_double_submit(last, "c1", "123457")
    throttled = review.Submitted(last.key, Outcome.THROTTLED, "try again in 2 s", "c1")
    assert not review.is_double_submit(throttled, "c1", "123456")  # it was never checked: may be sent again
    assert review.day_bounds(DAY.date(), DAY.date()) == (DAY.replace(hour=0), DAY.replace(hour=0) + timedelta(days=1))


def test_step_up_lists_users_with_decisions_or_an_authenticator_once_each(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "u.duckdb")  # alice and bob only have decisions, carol only an authenticator
    app = _app(tmp_path / "u.duckdb", monkeypatch, "../../pages/stepup.py")
    assert app.selectbox(key="stepup_user").options == ["alice", "bob", "carol"]
