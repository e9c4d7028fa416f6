"""Helpers of the Operate and History pages (Step-up, History, Audit) and of the Live monitor's lists of
decisions: the logic those pages need, kept out of the page files so it can be tested without Streamlit.

Reading helpers call the store's typed read functions only; the rest are pure functions of frames.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl

from app.engine.policy import Action, Verdict, decisive_reason
from app.engine.stepup import Outcome
from store import contents
from store.db import Store
from store.decisions import decision_counts_over_time, decisions, decisions_csv

#: How each step-up outcome is shown: the Streamlit alert kind and a short title.
OUTCOME_STYLE: dict[Outcome, tuple[str, str]] = {
    Outcome.VERIFIED: ("success", "Verified"),
    Outcome.WRONG_CODE: ("error", "Wrong code"),
    Outcome.REPLAYED: ("error", "Code already used (replay)"),
    Outcome.THROTTLED: ("warning", "Throttled"),
    Outcome.LOCKED: ("error", "Locked"),
    Outcome.EXPIRED: ("warning", "Expired"),
    Outcome.MALFORMED: ("warning", "Not a code"),
    Outcome.ALREADY_VERIFIED: ("info", "Already verified"),
    Outcome.UNKNOWN_CHALLENGE: ("error", "Unknown challenge"),
    Outcome.NOT_ENROLLED: ("error", "Not enrolled"),
}


# -- users ----------------------------------------------------------------------------------------
def known_users(store: Store) -> list[str]:
    """Every user the pages can pick: those with sessions, an authenticator, or decisions; sorted."""
    return contents.user_ids(store)


def distinct_values(*columns: Iterable[Any]) -> list[str]:
    """The distinct non-null, non-empty values of several columns, as sorted text."""
    return sorted({str(value) for column in columns for value in column if value is not None and str(value)})


# -- step-up --------------------------------------------------------------------------------------
def challenge_states(challenges: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The challenges table for the page: a plain `state` and the seconds left before expiry.

    `now` is a naive UTC datetime (as stored). An issued challenge past its expiry shows as
    "expired" even before the scheduler marks it so.
    """
    if challenges.is_empty():
        return challenges.with_columns(pl.lit(None, pl.String).alias("state"),
                                       pl.lit(None, pl.Int64).alias("seconds_left"))
    left = (pl.col("expires_at") - pl.lit(now)).dt.total_seconds().clip(lower_bound=0).cast(pl.Int64)
    state = (pl.when(pl.col("locked")).then(pl.lit("locked"))
             .when(pl.col("status") != "issued").then(pl.col("status"))
             .when(pl.col("expires_at") <= pl.lit(now)).then(pl.lit("expired"))
             .otherwise(pl.lit("open")))
    return challenges.with_columns(state.alias("state"),
                                   pl.when(state == "open").then(left).otherwise(None).alias("seconds_left"))


def answerable(states: pl.DataFrame) -> list[str]:
    """Ids of challenges a code can still be submitted for: issued and not locked (newest first).

    An overdue one is included on purpose: submitting to it shows the "expired" outcome and marks it.
    """
    if states.is_empty():
        return []
    return states.filter((pl.col("status") == "issued") & ~pl.col("locked"))["challenge_id"].to_list()


def locked_ids(states: pl.DataFrame) -> list[str]:
    """Ids of locked challenges (an analyst may unlock them)."""
    return [] if states.is_empty() else states.filter(pl.col("locked"))["challenge_id"].to_list()


def submission_key(challenge_id: str, code: str) -> str:
    """A fingerprint of one (challenge, code) submission, to spot a double submit without keeping the code."""
    return hashlib.sha256(f"{challenge_id}\x00{code.strip()}".encode()).hexdigest()


def typed_code_problem(code: str) -> str | None:
    """Why a typed code is not submitted at all (only an empty box; every other input goes to verify,
    which refuses malformed codes without counting them and audits the attempt)."""
    return "Type the 6-digit code first." if not code.strip() else None


#: Outcomes after which submitting the same code to the same challenge again is a double submit.
REPEATABLE = {Outcome.VERIFIED, Outcome.WRONG_CODE, Outcome.REPLAYED, Outcome.LOCKED, Outcome.ALREADY_VERIFIED}


@dataclass(frozen=True)
class Submitted:
    """The last submission of this browser session: its fingerprint and what became of it."""

    key: str
    outcome: Outcome
    message: str
    challenge_id: str


def is_double_submit(last: Submitted | None, challenge_id: str, code: str) -> bool:
    """True when the same code was just submitted to the same challenge and already decided.

    Sending it again would only count another failure (or repeat a success), so the page refuses it.
    """
    return last is not None and last.outcome in REPEATABLE and last.key == submission_key(challenge_id, code)


# -- decisions ------------------------------------------------------------------------------------
def with_decisive_reason(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` plus `reason`: of each row's `reasons` (JSON text), the one that set its `action`
    (`app.engine.policy.decisive_reason`); null on a row without a decision.

    For the few rows a page lists (a loop over rows, not an expression: which reason decides depends
    on the row's action).
    """
    reasons = [decisive_reason(json.loads(text) if text else [], action) if action else None
               for text, action in frame.select("reasons", "action").iter_rows()]
    return frame.with_columns(pl.Series("reason", reasons, dtype=pl.String))


# -- history --------------------------------------------------------------------------------------
def day_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """A picked day range as (since inclusive, until exclusive) naive UTC datetimes: whole days."""
    since = datetime.combine(start, time.min) if start else None
    until = datetime.combine(end, time.min) + timedelta(days=1) if end else None
    return since, until


def date_range(frame: pl.DataFrame, column: str) -> tuple[date, date]:
    """The first and last day in `column` (today twice when the frame is empty)."""
    values = frame[column].drop_nulls() if column in frame.columns else pl.Series([])
    if values.is_empty():
        today = datetime.now(UTC).date()
        return today, today
    return values.min().date(), values.max().date()


def policy_revisions_in(frame: pl.DataFrame) -> list[tuple[str, int]]:
    """The (policy id, revision) pairs the decisions were made under, newest revision first."""
    if frame.is_empty():
        return []
    pairs = frame.select("policy_id", "policy_rev").unique().sort(["policy_id", "policy_rev"],
                                                                  descending=[False, True])
    return [(str(p), int(r)) for p, r in pairs.iter_rows()]


def checked_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """`filters` of `store.decisions.decisions`, refused with the allowed values when a verdict or an
    action is not one of the policy's."""
    verdict, action = filters.get("verdict"), filters.get("action")
    if verdict is not None and verdict not in set(Verdict):
        raise ValueError(f"unknown verdict {verdict!r} (allowed: {', '.join(Verdict)})")
    if action is not None and action not in set(Action):
        raise ValueError(f"unknown action {action!r} (allowed: {', '.join(Action)})")
    return filters


def decisions_for(store: Store, users: Sequence[str], **filters: Any) -> pl.DataFrame:
    """Decisions of any of `users` (all users when empty) matching `filters`, newest first."""
    checked_filters(filters)
    if len(users) <= 1:
        return decisions(store, user_id=users[0] if users else None, **filters)
    frames = [decisions(store, user_id=user, **filters) for user in users]
    return pl.concat(frames).sort(["decided_at", "decision_id"], descending=[True, False])


def counts_for(store: Store, users: Sequence[str], bucket: str, **filters: Any) -> pl.DataFrame:
    """Decisions per bucket, action and verdict for any of `users` (all when empty)."""
    checked_filters(filters)
    if len(users) <= 1:
        return decision_counts_over_time(store, bucket, user_id=users[0] if users else None, **filters)
    frames = [decision_counts_over_time(store, bucket, user_id=user, **filters) for user in users]
    return (pl.concat(frames).group_by("bucket_start", "action", "verdict").agg(pl.col("decisions").sum())
            .sort("bucket_start", "action", "verdict"))


def decisions_export(store: Store, users: Sequence[str], **filters: Any) -> bytes:
    """The CSV the History page offers (not audited here: the page audits it when it is downloaded)."""
    checked_filters(filters)
    if len(users) <= 1:
        return decisions_csv(store, user_id=users[0] if users else None, **filters)
    return decisions_for(store, users, **filters).write_csv().encode("utf-8")


def described_filters(users: Sequence[str], **filters: Any) -> dict[str, Any]:
    """The filters that are set, as JSON-friendly values (for the audit row of an export)."""
    shown = {key: value.isoformat() if isinstance(value, datetime) else value
             for key, value in filters.items() if value not in (None, "")}
    if users:
        shown["users"] = list(users)
    return shown


def selected_row(frame: pl.DataFrame, rows: Sequence[int]) -> dict[str, Any] | None:
    """The row a single-row table selection points at, or None (no selection, or a stale index)."""
    if not rows or not 0 <= rows[0] < frame.height:
        return None
    return frame.row(rows[0], named=True)


def reasons_text(column: str = "reasons") -> pl.Expr:
    """A decision's reasons (stored as a JSON list) as one line of text, joined by "; "."""
    return pl.col(column).str.json_decode(pl.List(pl.String)).list.join("; ").alias(column)


# -- audit ----------------------------------------------------------------------------------------
def details_lines(text: str | None) -> list[str]:
    """Audit details (JSON text) as "key: value" lines for people: nested keys joined by dots, a list
    of values joined by "; ", a list of objects numbered ("windows 1.kind: mouse"), null as "—" and
    true/false as yes/no. Text that is not JSON is one line, unchanged."""
    if text is None:
        return []
    try:
        details = json.loads(text)
    except (TypeError, ValueError):
        return [text]
    return list(_detail_lines(details, ""))


def details_summary(text: str | None) -> str | None:
    """`details_lines` on one line (a table cell), joined by " · "; None stays None."""
    return None if text is None else " · ".join(details_lines(text))


def _detail_lines(value: Any, key: str) -> Iterable[str]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _detail_lines(inner, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        for number, item in enumerate(value, start=1):
            yield from _detail_lines(item, f"{key} {number}")
    elif isinstance(value, list):
        yield f"{key}: {'; '.join(_detail_value(item) for item in value)}"
    else:
        yield f"{key}: {_detail_value(value)}" if key else _detail_value(value)


def _detail_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
