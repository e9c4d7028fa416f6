"""The audit log is append-only, and every policy change, decision and step-up event leaves a row."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.engine.policies import save_policy
from app.engine.policy import Action, Band, Policy, decide
from app.engine.stepup import Outcome, code_at, enrol, issue_challenge, verify
from store import Store
from store.decisions import DecisionRecord, record_decisions

ROOT = Path(__file__).resolve().parents[1]
#: Folders that are not Telltale's code.
NOT_OURS = {".venv", ".git", "var", "node_modules", "test-artifacts", "__pycache__"}
#: A statement that would change or remove audit rows, whatever the case or spacing.
TAMPERING = re.compile(
    r"\b(?:UPDATE\s+audit_log|DELETE\s+FROM\s+audit_log|TRUNCATE\s+(?:TABLE\s+)?audit_log"
    r"|DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?audit_log|ALTER\s+TABLE\s+audit_log)\b",
    re.IGNORECASE,
)
T = 1_700_000_010  # the start of a 30 s step


def our_python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not NOT_OURS & set(p.relative_to(ROOT).parts)]


#: Written with a placeholder so that this file itself passes the scan below.
PLANTED = ["UPDATE {t} SET actor = 'x'", "delete from  {t} where 1", "DELETE\n FROM {t}", "truncate {t}",
           "DROP TABLE IF EXISTS {t}", "alter table {t} drop column details"]


@pytest.mark.parametrize("statement", [s.format(t="audit_log") for s in PLANTED])
def test_the_tampering_pattern_catches_what_it_should(statement: str) -> None:
    assert TAMPERING.search(statement)


def test_no_code_updates_or_deletes_audit_rows() -> None:
    files = our_python_files()
    assert any(p.relative_to(ROOT).as_posix() == "store/audit.py" for p in files)  # the walk reaches the store

    offenders = [f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p in files
                 for m in TAMPERING.finditer(p.read_text(encoding="utf-8"))]

    assert not offenders, f"the audit log is append-only, but: {offenders}"


def audit_rows_after(store: Store, audit_id: int) -> list[dict]:
    frame = store.frame("SELECT * FROM audit_log WHERE audit_id > ? ORDER BY audit_id", [audit_id])
    return [{**row, "details": json.loads(row["details"])} for row in frame.iter_rows(named=True)]


def last_audit_id(store: Store) -> int:
    return store.scalar("SELECT coalesce(max(audit_id), 0) FROM audit_log")


def test_every_step_of_a_step_up_flow_leaves_its_audit_row(store: Store) -> None:
    def step(action: object) -> dict:
        """Run one step; it must add exactly one audit row, with an actor, a time and details."""
        mark = last_audit_id(store)
        result = action() if callable(action) else None
        added = audit_rows_after(store, mark)
        assert len(added) == 1, [row["action"] for row in added]
        row = added[0]
        assert row["actor"] and isinstance(row["happened_at"], datetime) and row["details"]
        return {**row, "result": result}

    policy = Policy("login", (Band(0, 0.5, Action.ALLOW), Band(0.5, 0.9, Action.REQUIRE_OTP),
                              Band(0.9, 1, Action.DENY)), description="flow test")

    saved = step(lambda: save_policy(store, policy, actor="analyst"))
    assert (saved["actor"], saved["action"], saved["subject"]) == ("analyst", "policy_change", "login")
    assert saved["details"]["revision"] == 1 and saved["details"]["policy"]["description"] == "flow test"

    made = decide(0.7, saved["result"])
    assert made.action is Action.REQUIRE_OTP
    record = DecisionRecord(made, user_id="alice", session_id="s1", window_id="w1", detectors={"iforest": "m1"},
                            top_features={"dwell_mean": 0.5}, decided_at=datetime.fromtimestamp(T, UTC))
    decided = step(lambda: record_decisions(store, [record])[0])
    decision_id = decided["result"]
    assert (decided["actor"], decided["action"], decided["subject"]) == ("scorer", "decision", decision_id)
    assert decided["details"] | {"reasons": None} == {
        "user_id": "alice", "session_id": "s1", "window_id": "w1", "action": "REQUIRE_OTP", "verdict": "UNSAFE",
        "risk": 0.7, "policy_id": "login", "policy_revision": 1, "reasons": None,
        "decided_at": "2023-11-14T22:13:30"}

    enrolled = step(lambda: enrol(store, "alice", actor="alice", now=T))
    assert (enrolled["actor"], enrolled["action"], enrolled["subject"]) == ("alice", "otp_enrolled", "alice")
    secret = enrolled["result"].secret

    issued = step(lambda: issue_challenge(store, "alice", now=T, session_id="s1", decision_id=decision_id))
    challenge_id = issued["result"].challenge_id
    assert (issued["actor"], issued["action"], issued["subject"]) == ("policy", "otp_issued", challenge_id)
    assert issued["details"]["decision_id"] == decision_id and issued["details"]["session_id"] == "s1"

    wrong_code = str((int(code_at(secret, T)) + 1) % 1_000_000).zfill(6)
    failed = step(lambda: verify(store, challenge_id, wrong_code, T + 1))
    assert failed["result"].outcome is Outcome.WRONG_CODE
    assert (failed["actor"], failed["action"], failed["subject"]) == ("alice", "otp_failed", challenge_id)
    assert failed["details"]["failures"] == 1 and failed["details"]["user_id"] == "alice"

    verified = step(lambda: verify(store, challenge_id, code_at(secret, T + 2), T + 2))
    assert verified["result"].outcome is Outcome.VERIFIED
    assert (verified["actor"], verified["action"], verified["subject"]) == ("alice", "otp_verified", challenge_id)
    assert verified["details"]["result"] == "verified" and verified["details"]["at"] == "2023-11-14T22:13:32"

    assert [r["action"] for r in audit_rows_after(store, 0)] == [
        "policy_change", "decision", "otp_enrolled", "otp_issued", "otp_failed", "otp_verified"]


def test_a_refused_write_leaves_no_audit_row(store: Store) -> None:
    draft = Policy("draft", (Band(0, 1, Action.ALLOW),))

    with pytest.raises(LookupError):
        record_decisions(store, [DecisionRecord(decide(0.1, draft), user_id="alice")])

    assert last_audit_id(store) == 0
