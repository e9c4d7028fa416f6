"""The whole path: a scored window that needs a code -> a challenge -> the simulated authenticator's
code verifies it -> History and Audit hold every step. Real DuckDB, real models, real pyotp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.engine import pipeline, stepup
from app.engine.policies import save_policy
from app.engine.policy import DEFAULT_POLICY, Action, Band, Policy
from app.engine.samples import simulate_into
from app.engine.training import train
from store import Store
from store.audit import audit_entries
from store.decisions import decisions


@pytest.fixture
def scored_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    store = Store(tmp_path / "flow.duckdb")
    simulate_into(store, users=3, sessions=6, seed=11, enrolment_days=4, load_seconds=5)
    pipeline.featurize_pending(store)
    train(store)
    yield store
    store.close()


def test_a_window_that_needs_a_code_is_stepped_up_and_verified(scored_store: Store) -> None:
    store = scored_store
    # a policy under which every risk asks for a code, so the flow does not hang on chance
    save_policy(store, Policy("default", bands=(Band(0.0, 1.0, Action.REQUIRE_OTP),),
                              min_enrolment_windows=DEFAULT_POLICY.min_enrolment_windows), actor="test")
    secret = stepup.enrol(store, "u001", actor="test").secret

    verdicts = pipeline.score_pending(store)
    challenged = [v for v in verdicts if v.user_id == "u001" and v.challenge_id is not None]
    assert challenged, "a REQUIRE_OTP decision for an enrolled user must issue a challenge"
    first = challenged[0]
    assert first.action == "REQUIRE_OTP"
    assert all(v.challenge_id is None for v in verdicts if v.user_id != "u001")  # not enrolled: no challenge

    issued = stepup.challenge(store, first.challenge_id)
    # a challenge is dated by the behaviour that asked for it (a simulated session of January): the user
    # answers ten seconds later on that clock
    assert issued.issued_at < datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    now = issued.issued_at.replace(tzinfo=UTC) + timedelta(seconds=10)
    code = stepup.current_code(store, "u001", now).code
    result = stepup.verify(store, first.challenge_id, code, now, actor="u001")
    assert result.accepted
    assert stepup.challenge(store, first.challenge_id).status == "verified"

    history = decisions(store, user_id="u001")
    assert first.decision_id in history["decision_id"].to_list()
    actions = audit_entries(store)["action"].to_list()
    for step in ("policy_change", "decision", "otp_issued", "otp_verified"):
        assert step in actions, f"no audit row for {step}"
    every_value = " ".join(str(v) for table in ("audit_log", "decisions", "otp_events", "otp_challenges")
                           for row in store.rows(f"SELECT * FROM {table}") for v in row)
    assert secret not in every_value
    assert history.height >= len([v for v in verdicts if v.user_id == "u001"])
