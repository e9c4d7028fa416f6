"""Step-up with TOTP: RFC 6238 vectors, enrolment, skew, replay, throttle, lockout, expiry, bad input,
and the secret never showing up anywhere after enrolment. The clock is always a `now` argument."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from app.engine import stepup
from app.engine.stepup import (
    ChallengeStateError,
    NotEnrolledError,
    Outcome,
    StepUpError,
    UnknownChallengeError,
    code_at,
    code_for_step,
    current_code,
    enrol,
    issue_challenge,
    match_step,
    time_step,
    unlock,
    verify,
)
from store import Store
from store.decisions import decisions_csv
from store.otp import challenges, enrolments, otp_events

#: RFC 6238 appendix B: the SHA1 key is the ASCII string "12345678901234567890" (base32 below).
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
               (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]
#: 2023-11-14 22:13:20 UTC, at the start of a 30 s step (1_700_000_010 = 30 * 56_666_667).
T = 1_700_000_010


def wrong(code: str) -> str:
    """A code of the same length that is certainly not `code`."""
    return "".join(str((int(c) + 1) % 10) for c in code)


def events_of(store: Store, challenge_id: str) -> list[str]:
    return otp_events(store, challenge_id=challenge_id)["outcome"].reverse().to_list()


@pytest.fixture
def enrolled(store: Store) -> tuple[Store, str]:
    """alice enrolled; returns the store and her secret (read back only to compute codes in tests)."""
    return store, enrol(store, "alice", actor="alice", now=T - 600).secret


def challenge_at(store: Store, now: float, user: str = "alice") -> str:
    return issue_challenge(store, user, now=now, session_id="s1").challenge_id


# -- RFC 6238 ----------------------------------------------------------------------------------------
def test_rfc_secret_is_the_ascii_key() -> None:
    assert base64.b32decode(RFC_SECRET) == b"12345678901234567890"


@pytest.mark.parametrize(("unix_time", "expected"), RFC_VECTORS, ids=[str(t) for t, _ in RFC_VECTORS])
def test_rfc6238_sha1_vectors(unix_time: int, expected: str) -> None:
    assert code_at(RFC_SECRET, unix_time, digits=8) == expected
    assert match_step(RFC_SECRET, expected, unix_time, digits=8) == unix_time // 30


def test_rfc6238_vectors_through_enrol_issue_and_verify(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stepup.pyotp, "random_base32", lambda: RFC_SECRET)
    enrol(store, "rfc", actor="test", now=0)

    for unix_time, expected in RFC_VECTORS:  # increasing times, so the replay guard never objects
        result = verify(store, challenge_at(store, unix_time, "rfc"), expected, unix_time, digits=8)
        assert result.outcome is Outcome.VERIFIED, (unix_time, result.message)


def test_datetimes_and_unix_seconds_give_the_same_code() -> None:
    moment = datetime.fromtimestamp(1111111109, UTC)

    assert code_at(RFC_SECRET, moment, 8) == code_at(RFC_SECRET, moment.replace(tzinfo=None), 8) == "07081804"


# -- enrolment -------------------------------------------------------------------------------------
def test_enrolment_gives_a_160_bit_secret_uri_and_qr_once(store: Store) -> None:
    made = enrol(store, "alice", actor="analyst", now=T)

    assert len(made.secret) == 32 and len(base64.b32decode(made.secret)) == 20  # 160 bits
    uri = urlparse(made.provisioning_uri)
    query = parse_qs(uri.query)
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Telltale:alice")
    assert query["secret"] == [made.secret] and query["issuer"] == ["Telltale"]
    assert made.qr_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert made.secret not in repr(made) and made.secret not in str(made)
    assert not made.replaced
    assert enrolments(store).columns == ["user_id", "enrolled_at", "last_accepted_step"]


def test_re_enrolment_replaces_the_secret_and_is_audited(enrolled: tuple[Store, str]) -> None:
    store, old_secret = enrolled
    challenge_id = challenge_at(store, T)

    again = enrol(store, "alice", actor="analyst", now=T)

    assert again.replaced and again.secret != old_secret
    assert verify(store, challenge_id, code_at(old_secret, T), T).outcome is Outcome.WRONG_CODE
    assert verify(store, challenge_id, code_at(again.secret, T), T).outcome is Outcome.VERIFIED
    assert store.rows("SELECT actor, action, subject FROM audit_log WHERE action LIKE 'otp_%enrolled'"
                      " ORDER BY audit_id") == [("alice", "otp_enrolled", "alice"),
                                                ("analyst", "otp_reenrolled", "alice")]


def test_two_enrolments_get_different_secrets(store: Store) -> None:
    assert enrol(store, "a", actor="t", now=T).secret != enrol(store, "b", actor="t", now=T).secret


# -- the simulated authenticator --------------------------------------------------------------------
def test_simulated_code_is_the_current_code_with_seconds_left(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled

    shown = current_code(store, "alice", T + 10)

    assert (shown.code, shown.step, shown.seconds_remaining) == (code_at(secret, T), time_step(T), 20)
    assert shown.label.startswith("Simulated authenticator")
    assert current_code(store, "alice", T + 29.5).seconds_remaining == 0.5
    assert current_code(store, "alice", T + 30).step == time_step(T) + 1


def test_simulated_code_verifies(enrolled: tuple[Store, str]) -> None:
    store, _ = enrolled

    assert verify(store, challenge_at(store, T), current_code(store, "alice", T).code, T).accepted


# -- clock skew ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_codes_one_step_either_side_are_accepted_two_are_not(enrolled: tuple[Store, str], offset: int,
                                                             accepted: bool) -> None:
    store, secret = enrolled
    code = code_for_step(secret, time_step(T) + offset)

    result = verify(store, challenge_at(store, T), code, T)

    assert result.outcome is (Outcome.VERIFIED if accepted else Outcome.WRONG_CODE)


@pytest.mark.parametrize(("now", "step_offset", "accepted"), [
    (T + 29.999, -1, True),   # the last instant of step s: s-1 and s+1 are in the window...
    (T + 29.999, 1, True),
    (T + 29.999, 2, False),   # ...s+2 is not
    (T + 30, -1, False),      # step s+1 has begun: s-1 is now two steps old...
    (T + 30, 0, True),
    (T + 30, 2, True),        # ...and s+2 is one step ahead
])
def test_the_skew_window_moves_with_the_step_boundary(enrolled: tuple[Store, str], now: float, step_offset: int,
                                                      accepted: bool) -> None:
    store, secret = enrolled
    code = code_for_step(secret, time_step(T) + step_offset)

    assert verify(store, challenge_at(store, T), code, now).accepted is accepted


# -- replay ----------------------------------------------------------------------------------------
def test_a_code_is_accepted_once(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    code = code_at(secret, T)
    assert verify(store, challenge_at(store, T), code, T).accepted

    second = challenge_at(store, T + 1)
    replay = verify(store, second, code, T + 1)

    assert replay.outcome is Outcome.REPLAYED
    assert replay.failures == 1  # a replay counts as a failed attempt
    assert "already used" in replay.message
    assert verify(store, second, code_for_step(secret, time_step(T) - 1), T + 2).outcome is Outcome.REPLAYED
    assert verify(store, second, code_for_step(secret, time_step(T) + 1), T + 31).accepted  # the next step is fresh
    assert events_of(store, second) == ["issued", "replayed", "replayed", "verified"]


# -- throttle and lockout -----------------------------------------------------------------------------
def test_growing_delay_after_the_second_failure_is_not_counted(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    challenge_id = challenge_at(store, T)
    bad = wrong(code_at(secret, T))

    assert verify(store, challenge_id, bad, T).outcome is Outcome.WRONG_CODE
    assert verify(store, challenge_id, bad, T + 0.5).outcome is Outcome.WRONG_CODE  # 1 failure: no delay yet
    early = verify(store, challenge_id, bad, T + 1.5)  # 2 failures: wait 2 s after T + 0.5

    assert (early.outcome, early.retry_after_s, early.failures) == (Outcome.THROTTLED, 1, 2)
    assert early.message.startswith("too many wrong codes: try again in 1 s")
    assert verify(store, challenge_id, bad, T + 2.5).outcome is Outcome.WRONG_CODE  # exactly 2 s later: allowed
    assert verify(store, challenge_id, bad, T + 5).retry_after_s == 2  # 3 failures: 4 s after T + 2.5
    assert verify(store, challenge_id, bad, T + 6.49).retry_after_s == 1
    assert stepup.challenge(store, challenge_id).failures == 3
    assert events_of(store, challenge_id) == ["issued", "failed", "failed", "throttled", "failed", "throttled",
                                              "throttled"]


def fail_until_locked(store: Store, challenge_id: str, bad: str, start: float) -> float:
    """Submit wrong codes, each as early as the throttle allows, until the lock; return the last time."""
    now = start
    for _ in range(stepup.MAX_FAILURES):
        result = verify(store, challenge_id, bad, now)
        if result.outcome is Outcome.LOCKED:
            return now
        assert result.outcome is Outcome.WRONG_CODE, result.message
        if result.failures >= stepup.THROTTLE_FROM_FAILURES:
            now += 2 ** (result.failures - 1)
    raise AssertionError("never locked")


def test_five_failures_lock_until_an_analyst_unlocks(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    challenge_id = challenge_at(store, T)
    locked_at = fail_until_locked(store, challenge_id, wrong(code_at(secret, T)), T)

    locked = stepup.challenge(store, challenge_id)
    assert (locked.status, locked.locked, locked.failures) == ("failed", True, 5)
    right_code = code_at(secret, locked_at + 1)
    refused = verify(store, challenge_id, right_code, locked_at + 1)
    assert refused.outcome is Outcome.LOCKED and "an analyst must unlock it" in refused.message
    with pytest.raises(ChallengeStateError, match="has a locked challenge"):
        challenge_at(store, locked_at + 2)  # a fresh challenge must not reset the count

    reopened = unlock(store, challenge_id, actor="analyst", now=locked_at + 3)

    assert (reopened.status, reopened.locked, reopened.failures) == ("issued", False, 0)
    assert verify(store, challenge_id, right_code, locked_at + 4).accepted
    assert events_of(store, challenge_id)[-4:] == ["locked", "refused", "unlocked", "verified"]
    assert store.rows("SELECT actor, subject FROM audit_log WHERE action = 'otp_unlocked'") == [
        ("analyst", challenge_id)]


def test_unlocking_an_unlocked_or_unknown_challenge_is_refused(enrolled: tuple[Store, str]) -> None:
    store, _ = enrolled
    challenge_id = challenge_at(store, T)
    before = store.table_counts()

    with pytest.raises(ChallengeStateError, match=r"is not locked .*nothing changed"):
        unlock(store, challenge_id, actor="analyst", now=T)
    with pytest.raises(UnknownChallengeError, match="no challenge 'nope'"):
        unlock(store, "nope", actor="analyst", now=T)

    assert store.table_counts() == before


def test_a_correct_code_resets_the_failure_count(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    challenge_id = challenge_at(store, T)
    verify(store, challenge_id, wrong(code_at(secret, T)), T)

    result = verify(store, challenge_id, code_at(secret, T), T + 1)

    assert (result.outcome, result.failures) == (Outcome.VERIFIED, 0)


# -- expiry ----------------------------------------------------------------------------------------
def test_a_challenge_expires_after_the_setting(enrolled: tuple[Store, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store, secret = enrolled
    monkeypatch.setenv("TELLTALE_OTP_EXPIRY_SECONDS", "60")
    issued = issue_challenge(store, "alice", now=T)
    assert issued.expires_at - issued.issued_at == timedelta(seconds=60)

    late = verify(store, issued.challenge_id, code_at(secret, T + 60), T + 60)  # expiry is exclusive

    assert late.outcome is Outcome.EXPIRED and "expired" in late.message
    assert stepup.challenge(store, issued.challenge_id).status == "expired"
    assert verify(store, issued.challenge_id, code_at(secret, T + 61), T + 61).outcome is Outcome.EXPIRED
    assert events_of(store, issued.challenge_id) == ["issued", "expired", "refused"]


def test_the_last_instant_before_expiry_still_verifies(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    issued = issue_challenge(store, "alice", now=T, expiry_seconds=300)

    assert verify(store, issued.challenge_id, code_at(secret, T + 299.999), T + 299.999).accepted


def test_overdue_challenges_are_swept(enrolled: tuple[Store, str]) -> None:
    store, _ = enrolled
    due = issue_challenge(store, "alice", now=T, expiry_seconds=10).challenge_id
    open_one = issue_challenge(store, "alice", now=T, expiry_seconds=100).challenge_id

    assert stepup.expire_overdue(store, T + 10) == 1
    assert stepup.expire_overdue(store, T + 10) == 0

    statuses = dict(challenges(store).select("challenge_id", "status").rows())
    assert statuses == {due: "expired", open_one: "issued"}
    # a sweep long after still dates the expiry when it happened (a replayed history stays in its days)
    late = issue_challenge(store, "alice", now=T + 20, expiry_seconds=10)
    assert stepup.expire_overdue(store, T + 5_000) == 2
    resolved = dict(challenges(store).select("challenge_id", "resolved_at").rows())
    assert resolved[late.challenge_id] == late.expires_at


@pytest.mark.parametrize("seconds", [0, -5])
def test_a_nonpositive_expiry_is_refused(enrolled: tuple[Store, str], seconds: int) -> None:
    store, _ = enrolled
    with pytest.raises(StepUpError, match="expiry must be a whole number of seconds > 0"):
        issue_challenge(store, "alice", now=T, expiry_seconds=seconds)


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "message"), [
    ("12345", "exactly 6 digits (got 5 characters)"),
    ("1234567", "exactly 6 digits (got 7 characters)"),
    ("", "exactly 6 digits (got 0 characters)"),
    ("12a456", "6 digits 0-9, nothing else"),
    ("١٢٣٤٥٦", "6 digits 0-9, nothing else"),  # Arabic-Indic digits: str.isdigit would let them in
    (123456, "typed as text"),
    (None, "typed as text"),
])
def test_malformed_codes_are_refused_and_not_counted(enrolled: tuple[Store, str], code: object,
                                                     message: str) -> None:
    store, _ = enrolled
    challenge_id = challenge_at(store, T)
    before = stepup.challenge(store, challenge_id)

    result = verify(store, challenge_id, code, T)  # type: ignore[arg-type]

    assert result.outcome is Outcome.MALFORMED
    assert message in result.message and "not counted" in result.message
    assert stepup.challenge(store, challenge_id) == before
    assert events_of(store, challenge_id) == ["issued", "refused"]


def test_surrounding_spaces_are_forgiven(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled

    assert verify(store, challenge_at(store, T), f" {code_at(secret, T)}\n", T).accepted


def test_an_unknown_challenge_is_refused_and_audited(enrolled: tuple[Store, str]) -> None:
    store, _ = enrolled
    before = store.table_counts()

    result = verify(store, "no-such-challenge", "123456", T, actor="mallory")

    assert result.outcome is Outcome.UNKNOWN_CHALLENGE
    after = store.table_counts()
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}
    assert store.rows("SELECT actor, action, subject FROM audit_log ORDER BY audit_id DESC LIMIT 1") == [
        ("mallory", "otp_unknown_challenge", "no-such-challenge")]


def test_a_double_submit_changes_nothing(enrolled: tuple[Store, str]) -> None:
    store, secret = enrolled
    challenge_id = challenge_at(store, T)
    assert verify(store, challenge_id, code_at(secret, T), T).accepted
    verified = stepup.challenge(store, challenge_id)

    again = verify(store, challenge_id, code_at(secret, T), T + 1)

    assert again.outcome is Outcome.ALREADY_VERIFIED and "nothing changed" in again.message
    assert stepup.challenge(store, challenge_id) == verified
    assert events_of(store, challenge_id) == ["issued", "verified", "refused"]


def test_unknown_users_cannot_get_codes_or_challenges(store: Store) -> None:
    before = store.table_counts()

    with pytest.raises(NotEnrolledError, match="user 'ghost' has no authenticator enrolled"):
        issue_challenge(store, "ghost", now=T)
    with pytest.raises(NotEnrolledError, match="user 'ghost' has no authenticator enrolled"):
        current_code(store, "ghost", T)
    with pytest.raises(StepUpError, match="a user id is needed"):
        enrol(store, "  ", actor="analyst", now=T)

    assert store.table_counts() == before


@pytest.mark.parametrize("now", [-1, float("nan"), "2026-01-01", True])
def test_a_bad_clock_value_is_refused(enrolled: tuple[Store, str], now: object) -> None:
    store, _ = enrolled
    with pytest.raises(StepUpError, match="a time must be a datetime or unix seconds"):
        issue_challenge(store, "alice", now=now)  # type: ignore[arg-type]


# -- the secret never leaks -----------------------------------------------------------------------------
def every_stored_text(store: Store) -> list[str]:
    """Every value of every table as text, except the one column meant to hold the secret."""
    texts = []
    for (table,) in store.rows("SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"):
        columns = [c for (c,) in store.rows(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table])]
        kept = [c for c in columns if (table, c) != ("otp_enrolments", "secret")]
        for row in store.rows(f"SELECT {', '.join(f'CAST({c} AS VARCHAR)' for c in kept)} FROM {table}"):
            texts.extend(v for v in row if v is not None)
    return texts


def test_the_secret_appears_nowhere_after_a_full_flow(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    from app.engine.policies import latest_policy
    from app.engine.policy import decide
    from store.decisions import DecisionRecord, record_decisions

    first = enrol(store, "alice", actor="alice", now=T - 60)
    record = DecisionRecord(decide(0.7, latest_policy(store)), user_id="alice", session_id="s1",
                            decided_at=datetime.fromtimestamp(T, UTC))
    decision_id = record_decisions(store, [record])[0]
    challenge_id = issue_challenge(store, "alice", now=T, session_id="s1", decision_id=decision_id).challenge_id
    fail_until_locked(store, challenge_id, wrong(code_at(first.secret, T)), T)
    verify(store, challenge_id, "12x", T + 100)
    unlock(store, challenge_id, actor="analyst", now=T + 100)
    verify(store, challenge_id, current_code(store, "alice", T + 101).code, T + 101)
    verify(store, challenge_id, current_code(store, "alice", T + 101).code, T + 102)
    second = enrol(store, "alice", actor="analyst", now=T + 200)
    verify(store, "missing", "000000", T + 200)
    errors = []
    for attempt in (lambda: unlock(store, challenge_id, "analyst", T + 201),
                    lambda: current_code(store, "nobody", T + 201)):
        with pytest.raises(StepUpError) as refused:
            attempt()
        errors.append(str(refused.value))
    results = [verify(store, issue_challenge(store, "alice", now=T + 300).challenge_id,
                      code_at(second.secret, T + 300), T + 300)]

    stored = "\n".join(every_stored_text(store))
    logged = caplog.text
    exported = decisions_csv(store).decode()
    shown = "\n".join([*errors, *(repr(r) for r in results), repr(first), repr(second)])
    assert "otp_reenrolled" in stored and "verified" in stored and logged  # the flow really ran and logged
    for secret in (first.secret, second.secret):
        for where, text in (("tables", stored), ("log", logged), ("csv export", exported), ("messages", shown)):
            assert secret.lower() not in text.lower(), f"the secret leaked into the {where}"
