"""Step-up authentication with time-based one-time codes (TOTP, RFC 6238), following NIST SP 800-63B.

- Enrolment makes a 160-bit secret (32 base32 characters) and returns it once, with its
  provisioning URI and a QR code, for display. It is never logged, audited, exported or put in
  an error message afterwards; re-enrolment replaces it (and is audited, without it).
- Codes: HMAC-SHA1, 6 digits, 30 s steps; the current step and one step either side are
  accepted (clock skew), and each step at most once per user (the last accepted step is stored:
  any step at or before it is refused as a replay).
- A challenge lives `TELLTALE_OTP_EXPIRY_SECONDS` (expiry exclusive: at `expires_at` it is over).
  After 2 consecutive failures the next attempt waits 2^(n-1) s after the last failure (a refused
  early attempt is not counted as a guess); the 5th consecutive failure locks the challenge
  (status `failed`) until an analyst unlocks it, and no new challenge is issued to that user while
  one is locked (otherwise a fresh challenge would reset the count).
- Every outcome appends an otp_events row and an audit row. Time always comes from a `now`
  argument (a datetime, naive meaning UTC, or unix seconds), so tests control the clock.
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pyotp
import segno

from app import settings
from store import otp
from store.db import Store
from store.otp import Challenge
from store.text import plural

log = logging.getLogger(__name__)

ISSUER = "Telltale"
STEP_SECONDS = 30
DIGITS = 6
#: Steps accepted either side of the current one (RFC 6238 §5.2 resynchronisation window).
VALID_WINDOW = 1
#: Consecutive failures after which the challenge is locked.
MAX_FAILURES = 5
#: From this many consecutive failures on, the next attempt waits 2^(failures-1) s after the last one.
THROTTLE_FROM_FAILURES = 2
#: Shown next to every simulated code, so a demo code is never mistaken for a real authenticator.
SIMULATION_LABEL = "Simulated authenticator (demo only): the server computes this code from the stored secret."

Moment = datetime | float | int


class Outcome(StrEnum):
    """What became of one submitted code."""

    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    REPLAYED = "replayed"
    LOCKED = "locked"
    THROTTLED = "throttled"
    EXPIRED = "expired"
    MALFORMED = "malformed"
    ALREADY_VERIFIED = "already_verified"
    UNKNOWN_CHALLENGE = "unknown_challenge"
    NOT_ENROLLED = "not_enrolled"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify`, with a message fit to show the person who typed the code."""

    outcome: Outcome
    message: str
    challenge_id: str
    failures: int = 0
    retry_after_s: int | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.VERIFIED


@dataclass(frozen=True)
class Enrolment:
    """What enrolment hands out once: the secret, its otpauth:// URI and the QR code (PNG bytes).

    None of these three is shown by `repr`, so logging the object does not leak them.
    """

    user_id: str
    replaced: bool
    secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)
    qr_png: bytes = field(repr=False)


@dataclass(frozen=True)
class SimulatedCode:
    """The code a phone would show now (a simulation), its time step and seconds left in the step."""

    code: str
    step: int
    seconds_remaining: float
    label: str = SIMULATION_LABEL


class StepUpError(Exception):
    """A step-up request refused before anything changed; the message says why and what to do."""


class NotEnrolledError(StepUpError, LookupError):
    pass


class UnknownChallengeError(StepUpError, LookupError):
    pass


class ChallengeStateError(StepUpError):
    """The challenge (or the user's challenges) are in a state that does not allow this request."""


# -- pure TOTP core (RFC 6238) --------------------------------------------------------------------
def time_step(at_epoch: float) -> int:
    """The RFC 6238 time counter T = floor(unix seconds / 30)."""
    return math.floor(at_epoch / STEP_SECONDS)


def code_for_step(secret: str, step: int, digits: int = DIGITS) -> str:
    """The HOTP value (HMAC-SHA1) of a base32 secret at time step `step`, zero-padded to `digits`."""
    return pyotp.TOTP(secret, digits=digits, interval=STEP_SECONDS).generate_otp(step)


def code_at(secret: str, at: Moment, digits: int = DIGITS) -> str:
    """The code an authenticator shows at `at` (unix seconds or a datetime)."""
    return code_for_step(secret, time_step(_moment(at)[0]), digits)


def match_step(secret: str, code: str, at: Moment, *, digits: int = DIGITS,
               valid_window: int = VALID_WINDOW) -> int | None:
    """The time step within ±`valid_window` of `at` whose code equals `code`, or None.

    Every candidate is compared in constant time and none is skipped, so timing does not tell
    which step matched. If two steps match (a 1-in-10^digits coincidence) the later one wins,
    which is the stricter choice for the replay guard.
    """
    current = time_step(_moment(at)[0])
    matched = None
    for step in range(current - valid_window, current + valid_window + 1):
        if hmac.compare_digest(code_for_step(secret, step, digits).encode(), code.encode()):
            matched = step
    return matched


def code_problem(code: object, digits: int = DIGITS) -> str | None:
    """Why `code` cannot be a code (never echoing it), or None when it is `digits` ASCII digits."""
    if not isinstance(code, str):
        return f"the code must be {digits} digits, typed as text"
    typed = code.strip()
    if len(typed) != digits:
        return f"the code must be exactly {digits} digits (got {plural(len(typed), 'character')})"
    if not re.fullmatch(r"[0-9]+", typed):
        return f"the code must be {digits} digits 0-9, nothing else"
    return None


def provisioning_uri(secret: str, user_id: str) -> str:
    """The otpauth:// URI an authenticator app imports (issuer "Telltale", SHA1, 6 digits, 30 s)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=user_id, issuer_name=ISSUER)


def qr_png(uri: str, scale: int = 5) -> bytes:
    """A QR code of `uri` as PNG bytes (`scale` pixels per module), for st.image."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


# -- enrolment ------------------------------------------------------------------------------------
def enrol(store: Store, user_id: str, *, actor: str, now: Moment | None = None) -> Enrolment:
    """Give `user_id` a new 160-bit secret (replacing any earlier one) and return it, this once."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise StepUpError("a user id is needed to enrol an authenticator")
    _, at = _moment(now if now is not None else datetime.now(UTC))
    secret = pyotp.random_base32()  # 32 base32 characters = 160 bits, as SP 800-63B recommends for HMAC keys
    replaced = otp.save_enrolment(store, user_id, secret, enrolled_at=at, actor=actor)
    log.info("otp: %s an authenticator for user %s", "re-enrolled" if replaced else "enrolled", user_id)
    uri = provisioning_uri(secret, user_id)
    return Enrolment(user_id=user_id, replaced=replaced, secret=secret, provisioning_uri=uri, qr_png=qr_png(uri))


def is_enrolled(store: Store, user_id: str) -> bool:
    """Whether the user has an authenticator (pages offer enrolment otherwise)."""
    return otp.is_enrolled(store, user_id)


def current_code(store: Store, user_id: str, now: Moment) -> SimulatedCode:
    """SIMULATION: the code the user's authenticator would show at `now`, so a demo needs no phone.

    It reads the secret server-side (a real deployment never would) and returns only the code.
    """
    state = otp.enrolment_state(store, user_id)
    if state is None:
        raise NotEnrolledError(f"user {user_id!r} has no authenticator enrolled: enrol them first")
    at_epoch, _ = _moment(now)
    step = time_step(at_epoch)
    return SimulatedCode(code_for_step(state.secret, step), step, (step + 1) * STEP_SECONDS - at_epoch)


# -- challenges -----------------------------------------------------------------------------------
def issue_challenge(
    store: Store,
    user_id: str,
    *,
    now: Moment,
    session_id: str | None = None,
    decision_id: str | None = None,
    actor: str = "policy",
    expiry_seconds: int | None = None,
) -> Challenge:
    """Open a challenge for an enrolled user; it expires after `expiry_seconds` (default: the setting).

    Refused (`ChallengeStateError`) while another challenge of the user is locked.
    """
    seconds = settings.get("otp_expiry_seconds") if expiry_seconds is None else expiry_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise StepUpError(f"a challenge's expiry must be a whole number of seconds > 0, got {seconds!r} "
                          "(see TELLTALE_OTP_EXPIRY_SECONDS)")
    _, at = _moment(now)
    with store.transaction():
        if not otp.is_enrolled(store, user_id):
            raise NotEnrolledError(f"user {user_id!r} has no authenticator enrolled: enrol them before asking "
                                   "for a one-time code")
        locked = otp.locked_challenges(store, user_id)
        if locked:
            raise ChallengeStateError(f"user {user_id!r} has a locked challenge ({locked[0]}) after repeated wrong "
                                      "codes: an analyst must unlock it before a new one is issued")
        issued = Challenge(
            challenge_id=uuid.uuid4().hex, user_id=user_id, session_id=session_id, decision_id=decision_id,
            status="issued", issued_at=at, expires_at=at + timedelta(seconds=seconds), failures=0, locked=False,
            last_failure_at=None, resolved_at=None,
        )
        otp.insert_challenge(store, issued, actor=actor)
    log.info("otp: challenge %s issued for user %s", issued.challenge_id, user_id)
    return issued


def session_challenge(store: Store, session_id: str) -> Challenge | None:
    """The newest challenge of a session (the Capture page asks for its code where the login was made)."""
    return otp.session_challenge(store, session_id)


def challenge(store: Store, challenge_id: str) -> Challenge:
    """One challenge as stored now; `UnknownChallengeError` when it was never issued."""
    found = otp.challenge(store, challenge_id)
    if found is None:
        raise UnknownChallengeError(f"no challenge {challenge_id!r}: it was never issued")
    return found


def verify(store: Store, challenge_id: str, code: str, now: Moment, *, actor: str | None = None,
           digits: int = DIGITS) -> VerifyResult:
    """Check a submitted code against a challenge; every outcome is stored and audited.

    The checks run in this order, and the first that applies decides: unknown challenge, already
    verified (a double submit), locked, expired, malformed code, throttled, then the code itself
    (accepted, replayed or wrong). Only a replayed or wrong code counts as a failure. `actor`
    defaults to the challenge's user.
    """
    at_epoch, at = _moment(now)
    with store.transaction():
        found = otp.challenge(store, challenge_id)
        if found is None:
            otp.audit_unknown_challenge(store, challenge_id, happened_at=at, actor=actor or "unknown")
            log.info("otp: code submitted for unknown challenge")
            return VerifyResult(Outcome.UNKNOWN_CHALLENGE, "no such challenge: ask for a new code", str(challenge_id))
        who = actor or found.user_id

        def finish(outcome: Outcome, event: str, message: str, *, retry_after_s: int | None = None,
                   failures: int | None = None, **changes: object) -> VerifyResult:
            """Store the challenge's changes and the outcome's event and audit row; build the result."""
            if failures is None:
                failures = found.failures
            else:
                changes["failures"] = failures
            if changes:
                otp.update_challenge(store, found.challenge_id, **changes)
            otp.record_event(store, found, event, message, happened_at=at, actor=who,
                             details={"result": str(outcome), "failures": failures, "retry_after_s": retry_after_s})
            log.info("otp: challenge %s: %s (%s)", found.challenge_id, outcome, message)
            return VerifyResult(outcome, message, found.challenge_id, failures, retry_after_s)

        if found.status == "verified":
            return finish(Outcome.ALREADY_VERIFIED, "refused", "this challenge is already verified; nothing changed")
        if found.locked:
            return finish(Outcome.LOCKED, "refused", f"locked after {found.failures} wrong codes: "
                                                     "an analyst must unlock it")
        if found.status == "expired":
            return finish(Outcome.EXPIRED, "refused", "this challenge has expired: ask for a new code")
        if at >= found.expires_at:
            return finish(Outcome.EXPIRED, "expired", "this challenge has expired: ask for a new code",
                          status="expired", resolved_at=at)
        problem = code_problem(code, digits)
        if problem:
            return finish(Outcome.MALFORMED, "refused", f"{problem}; not counted as an attempt")
        wait = throttle_wait(found, at_epoch)
        if wait > 0:
            seconds = math.ceil(wait)
            return finish(Outcome.THROTTLED, "throttled", f"too many wrong codes: try again in {seconds} s "
                          "(this attempt was not counted)", retry_after_s=seconds)
        state = otp.enrolment_state(store, found.user_id)
        if state is None:  # enrolments are never deleted; kept so a hand-edited store fails clearly
            return finish(Outcome.NOT_ENROLLED, "refused", "no authenticator is enrolled for this user")
        step = match_step(state.secret, code.strip(), at_epoch, digits=digits)
        if step is not None and (state.last_accepted_step is None or step > state.last_accepted_step):
            otp.set_last_accepted_step(store, found.user_id, step)
            return finish(Outcome.VERIFIED, "verified", "code accepted", status="verified", failures=0,
                          resolved_at=at)
        failures = found.failures + 1
        why = "this code was already used; wait for the next one" if step is not None else "wrong code"
        if failures >= MAX_FAILURES:
            return finish(Outcome.LOCKED, "locked", f"{why}; locked after {failures} wrong codes in a row: "
                          "an analyst must unlock it", failures=failures, last_failure_at=at, locked=True,
                          status="failed", resolved_at=at)
        outcome, event = (Outcome.REPLAYED, "replayed") if step is not None else (Outcome.WRONG_CODE, "failed")
        return finish(outcome, event, f"{why} ({plural(MAX_FAILURES - failures, 'attempt')} left before the lock)",
                      failures=failures, last_failure_at=at)


def throttle_wait(found: Challenge, at_epoch: float) -> float:
    """Seconds the next attempt must still wait: 2^(n-1) s after the last of n ≥ 2 consecutive failures."""
    if found.failures < THROTTLE_FROM_FAILURES or found.last_failure_at is None:
        return 0.0
    last = found.last_failure_at.replace(tzinfo=UTC).timestamp()
    return max(0.0, last + 2 ** (found.failures - 1) - at_epoch)


def unlock(store: Store, challenge_id: str, actor: str, now: Moment | None = None) -> Challenge:
    """An analyst lifts the lock: the failure count restarts and the challenge is open again until it
    expires (an expired one then needs a new challenge). Refused when the challenge is not locked."""
    _, at = _moment(now if now is not None else datetime.now(UTC))
    with store.transaction():
        found = challenge(store, challenge_id)
        if not found.locked:
            raise ChallengeStateError(f"challenge {challenge_id} is not locked (status {found.status}); "
                                      "nothing changed")
        otp.update_challenge(store, challenge_id, locked=False, failures=0, last_failure_at=None, status="issued",
                             resolved_at=None)
        otp.record_event(store, found, "unlocked", f"unlocked by {actor}", happened_at=at, actor=actor,
                         details={"failures_before": found.failures})
    log.info("otp: challenge %s unlocked by %s", challenge_id, actor)
    return challenge(store, challenge_id)


def expire_overdue(store: Store, now: Moment, *, actor: str = "scheduler") -> int:
    """Mark every open challenge past its expiry at `now` as expired (one event and audit row each, dated
    when it expired, not when the sweep ran); return how many."""
    _, at = _moment(now)
    with store.transaction():
        overdue = otp.overdue_challenges(store, at)
        for found in overdue:
            otp.update_challenge(store, found.challenge_id, status="expired", resolved_at=found.expires_at)
            otp.record_event(store, found, "expired", "expired before a code was accepted",
                             happened_at=found.expires_at, actor=actor)
    return len(overdue)


def _moment(now: Moment) -> tuple[float, datetime]:
    """Unix seconds and the naive UTC datetime of `now` (a datetime, naive meaning UTC, or unix seconds)."""
    if isinstance(now, datetime):
        aware = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)
        return aware.timestamp(), aware.replace(tzinfo=None)
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now) or now < 0:
        raise StepUpError(f"a time must be a datetime or unix seconds ≥ 0, got {now!r}")
    return float(now), datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
