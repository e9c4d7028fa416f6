"""Stored step-up state: enrolments (secrets), challenges, their events, and the replay guard.

Only `app.engine.stepup` should call the functions that read a secret. Everything else here is free of
secrets: the frames for pages, the otp_events rows and the audit rows never carry one. Every write
also appends its audit row in the same transaction. Times are naive UTC datetimes (as stored).
Callers that need several steps to be atomic wrap them in `with store.transaction():` (nested
transactions join the outer one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from store.audit import append_audit
from store.db import Store

#: Challenge statuses: `failed` means locked after too many consecutive failures.
STATUSES = ("issued", "verified", "failed", "expired")


@dataclass(frozen=True)
class EnrolmentState:
    """A user's TOTP secret and the last accepted time step. Never log, show or store it elsewhere."""

    user_id: str
    secret: str = field(repr=False)
    enrolled_at: datetime
    last_accepted_step: int | None


@dataclass(frozen=True)
class Challenge:
    """One step-up request and where it is in its lifecycle (issued → verified | failed | expired)."""

    challenge_id: str
    user_id: str
    session_id: str | None
    decision_id: str | None
    status: str
    issued_at: datetime
    expires_at: datetime
    failures: int
    locked: bool
    last_failure_at: datetime | None
    resolved_at: datetime | None


CHALLENGE_COLUMNS = tuple(Challenge.__dataclass_fields__)


# -- enrolments -----------------------------------------------------------------------------------
def save_enrolment(store: Store, user_id: str, secret: str, *, enrolled_at: datetime, actor: str) -> bool:
    """Store `secret` as the user's only secret (replacing any earlier one, whose replay guard goes
    with it) and audit it without the secret. Returns True when an earlier secret was replaced."""
    with store.transaction() as cursor:
        replaced = bool(cursor.execute("SELECT count(*) FROM otp_enrolments WHERE user_id = ?",
                                       [user_id]).fetchall()[0][0])
        if replaced:
            cursor.execute("UPDATE otp_enrolments SET secret = ?, created_at = ?, last_accepted_step = NULL"
                           " WHERE user_id = ?", [secret, enrolled_at, user_id])
        else:
            cursor.execute("INSERT INTO otp_enrolments (user_id, secret, created_at) VALUES (?, ?, ?)",
                           [user_id, secret, enrolled_at])
        append_audit(cursor, actor=actor, action="otp_reenrolled" if replaced else "otp_enrolled", subject=user_id,
                     details={"user_id": user_id, "replaced": replaced, "at": enrolled_at.isoformat()})
    return replaced


def enrolment_state(store: Store, user_id: str) -> EnrolmentState | None:
    """The user's secret and replay guard, or None when the user has no authenticator enrolled."""
    found = store.rows("SELECT user_id, secret, created_at, last_accepted_step FROM otp_enrolments"
                       " WHERE user_id = ?", [user_id])
    return EnrolmentState(*found[0]) if found else None


def is_enrolled(store: Store, user_id: str) -> bool:
    return bool(store.scalar("SELECT count(*) FROM otp_enrolments WHERE user_id = ?", [user_id]))


def set_last_accepted_step(store: Store, user_id: str, step: int) -> None:
    """Remember the newest accepted time step, so that no code of that step or earlier is accepted again."""
    store.execute("UPDATE otp_enrolments SET last_accepted_step = ? WHERE user_id = ?", [step, user_id])


def enrolments(store: Store) -> pl.DataFrame:
    """Enrolled users for pages: user_id, enrolled_at, last_accepted_step (never the secret)."""
    return store.frame("SELECT user_id, created_at AS enrolled_at, last_accepted_step FROM otp_enrolments"
                       " ORDER BY user_id")


# -- challenges -----------------------------------------------------------------------------------
def insert_challenge(store: Store, challenge: Challenge, *, actor: str) -> None:
    """Store a newly issued challenge with its "issued" event and audit row."""
    with store.transaction() as cursor:
        cursor.execute(
            f"INSERT INTO otp_challenges ({', '.join(CHALLENGE_COLUMNS)})"
            f" VALUES ({', '.join('?' for _ in CHALLENGE_COLUMNS)})",
            [getattr(challenge, c) for c in CHALLENGE_COLUMNS],
        )
        record_event(store, challenge, "issued", "challenge issued", happened_at=challenge.issued_at, actor=actor,
                     details={"session_id": challenge.session_id, "decision_id": challenge.decision_id,
                              "expires_at": challenge.expires_at.isoformat()})


def challenge(store: Store, challenge_id: str) -> Challenge | None:
    found = store.rows(f"SELECT {', '.join(CHALLENGE_COLUMNS)} FROM otp_challenges WHERE challenge_id = ?",
                       [challenge_id])
    return Challenge(*found[0]) if found else None


def update_challenge(store: Store, challenge_id: str, **changes: Any) -> None:
    """Set some of status, failures, locked, last_failure_at, resolved_at of one challenge."""
    allowed = {"status", "failures", "locked", "last_failure_at", "resolved_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)} of a challenge (allowed: {sorted(allowed)})")
    if "status" in changes and changes["status"] not in STATUSES:
        raise ValueError(f"unknown challenge status {changes['status']!r} (allowed: {', '.join(STATUSES)})")
    assignments = ", ".join(f"{column} = ?" for column in changes)
    store.execute(f"UPDATE otp_challenges SET {assignments} WHERE challenge_id = ?",
                  [*changes.values(), challenge_id])


def locked_challenges(store: Store, user_id: str) -> list[str]:
    """Ids of the user's locked challenges (an analyst must unlock them before a new one is issued)."""
    return [c for (c,) in store.rows("SELECT challenge_id FROM otp_challenges WHERE user_id = ? AND locked"
                                     " ORDER BY issued_at", [user_id])]


def overdue_challenges(store: Store, now: datetime) -> list[Challenge]:
    """Issued, unlocked challenges whose expiry has passed (expiry is exclusive: at `expires_at` it is over)."""
    found = store.rows(f"SELECT {', '.join(CHALLENGE_COLUMNS)} FROM otp_challenges"
                       " WHERE status = 'issued' AND NOT locked AND expires_at <= ? ORDER BY expires_at", [now])
    return [Challenge(*row) for row in found]


def session_challenge(store: Store, session_id: str) -> Challenge | None:
    """The newest challenge a session's behaviour asked for, whatever its status; None when none was."""
    found = store.rows(f"SELECT {', '.join(CHALLENGE_COLUMNS)} FROM otp_challenges WHERE session_id = ?"
                       " ORDER BY issued_at DESC, challenge_id LIMIT 1", [session_id])
    return Challenge(*found[0]) if found else None


def challenges(store: Store, *, user_id: str | None = None, status: str | None = None,
               limit: int = 1000) -> pl.DataFrame:
    """Challenges for pages, newest first, optionally of one user and/or one status."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown challenge status {status!r} (allowed: {', '.join(STATUSES)})")
    return store.frame(
        f"SELECT {', '.join(CHALLENGE_COLUMNS)} FROM otp_challenges"
        " WHERE (? IS NULL OR user_id = ?) AND (? IS NULL OR status = ?)"
        " ORDER BY issued_at DESC, challenge_id LIMIT ?",
        [user_id, user_id, status, status, int(limit)])


# -- events ---------------------------------------------------------------------------------------
def record_event(store: Store, challenge: Challenge, outcome: str, detail: str, *, happened_at: datetime,
                 actor: str, details: dict[str, Any] | None = None) -> None:
    """Append one otp_events row and its audit row ("otp_<outcome>"). Never pass a secret or a code."""
    with store.transaction() as cursor:
        cursor.execute("INSERT INTO otp_events (challenge_id, user_id, outcome, detail, happened_at)"
                       " VALUES (?, ?, ?, ?, ?)",
                       [challenge.challenge_id, challenge.user_id, outcome, detail, happened_at])
        append_audit(cursor, actor=actor, action=f"otp_{outcome}", subject=challenge.challenge_id, details={
            "user_id": challenge.user_id, "session_id": challenge.session_id, "detail": detail,
            "at": happened_at.isoformat(), **(details or {})})


def audit_unknown_challenge(store: Store, challenge_id: str, *, happened_at: datetime, actor: str) -> None:
    """A code submitted for a challenge that does not exist: audit only (otp_events needs a user)."""
    with store.transaction() as cursor:
        append_audit(cursor, actor=actor, action="otp_unknown_challenge", subject=str(challenge_id)[:100],
                     details={"at": happened_at.isoformat()})


def otp_events(store: Store, *, challenge_id: str | None = None, user_id: str | None = None,
               limit: int = 1000) -> pl.DataFrame:
    """Step-up events for pages, newest first: challenge_id, user_id, outcome, detail, happened_at."""
    return store.frame(
        "SELECT challenge_id, user_id, outcome, detail, happened_at FROM otp_events"
        " WHERE (? IS NULL OR challenge_id = ?) AND (? IS NULL OR user_id = ?)"
        " ORDER BY happened_at DESC, rowid DESC LIMIT ?",
        [challenge_id, challenge_id, user_id, user_id, int(limit)])
