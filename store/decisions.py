"""Stored decisions: what the policy said about a window, under which revision, and why.

Each decision keeps the policy id and revision, the risk, the detector versions and the top
contributing features, so the History page can explain any past decision. Recording one appends an
audit row in the same transaction. Times are UTC (naive `TIMESTAMP`; aware datetimes are converted).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import polars as pl

from store.audit import append_audit
from store.db import SMALL_INSERT_ROWS, Store, insert_frame, insert_rows
from store.policies import UnknownPolicyError, is_stored

#: Buckets `decision_counts_over_time` accepts (DuckDB `date_trunc` parts).
BUCKETS = ("minute", "hour", "day", "week", "month")

#: Columns of the History page and of the CSV export, in order. The decisions table holds no
#: secrets; the export still names its columns so that a column added later is not exported unseen.
DECISION_COLUMNS = (
    "decision_id", "decided_at", "user_id", "session_id", "window_id", "action", "verdict", "risk",
    "window_risk", "evidence", "evidence_change", "flagged", "policy_id", "policy_rev", "reasons", "detectors",
    "top_features",
)

#: SQL aggregate over grouped decisions: the most severe action among them, by the actions' order
#: (ALLOW < REQUIRE_OTP < FLAG_SESSION < DENY, as `app.engine.policy.Action`).
WORST_ACTION = ("['ALLOW', 'REQUIRE_OTP', 'FLAG_SESSION', 'DENY'][max(CASE action WHEN 'ALLOW' THEN 0 "
                "WHEN 'REQUIRE_OTP' THEN 1 WHEN 'FLAG_SESSION' THEN 2 WHEN 'DENY' THEN 3 END) + 1]")

FeatureWeights = Mapping[str, float] | Sequence[tuple[str, float]]


class PolicyOutcome(Protocol):
    """What the policy said (`app.engine.policy.Decision` is one): the store keeps it as text and numbers."""

    action: Any  # str() gives the action's name, e.g. "REQUIRE_OTP"
    verdict: Any  # str() gives "SAFE" or "UNSAFE"
    reasons: Sequence[str]
    risk: float
    policy_id: str
    policy_revision: int


@dataclass(frozen=True)
class DecisionRecord:
    """One decision to store: what the policy said about a window, and the context to explain it.

    `detectors` maps each detector to its version (e.g. model id); `top_features` lists the
    features that contributed most, largest first (a mapping or (name, contribution) pairs).
    """

    decision: PolicyOutcome
    user_id: str | None
    session_id: str | None = None
    window_id: str | None = None
    detectors: Mapping[str, Any] | None = None
    top_features: FeatureWeights | None = None
    decided_at: datetime | None = None  # the time of the behaviour judged (default: now)
    window_risk: float | None = None  # the window on its own: 1 - its detectors' combined surprise
    evidence: float | None = None  # the session's evidence after this window (nats, app.engine.evidence)
    evidence_change: float | None = None  # how much this window moved it
    flagged: bool | None = None  # the window on its own is rarer than the target false-reject rate allows


def record_decisions(store: Store, records: Sequence[DecisionRecord], *, actor: str = "scorer") -> list[str]:
    """Store decisions and one audit row ("decision") each, all in one transaction and two bulk
    inserts (a session's windows are decided together); return the new decision ids in order.

    Every decision's policy revision must be stored: a draft policy (revision 0) is refused, and
    then nothing is stored.
    """
    if not records:
        return []
    now = datetime.now(UTC)
    ids = [uuid.uuid4().hex for _ in records]
    rows, audits = [], []
    for decision_id, record in zip(ids, records, strict=True):
        decision, when = record.decision, utc_naive(record.decided_at or now)
        rows.append({
            "decision_id": decision_id, "window_id": record.window_id, "session_id": record.session_id,
            "user_id": record.user_id, "policy_id": decision.policy_id, "policy_rev": decision.policy_revision,
            "risk": decision.risk, "action": str(decision.action), "verdict": str(decision.verdict),
            "reasons": json.dumps(list(decision.reasons)),
            "detectors": json.dumps(dict(record.detectors or {}), default=str, sort_keys=True),
            "top_features": json.dumps(_feature_list(record.top_features)), "decided_at": when,
            "window_risk": record.window_risk, "evidence": record.evidence,
            "evidence_change": record.evidence_change, "flagged": record.flagged})
        audits.append({"actor": actor, "action": "decision", "subject": decision_id, "details": json.dumps({
            "user_id": record.user_id, "session_id": record.session_id, "window_id": record.window_id,
            "action": str(decision.action), "verdict": str(decision.verdict), "risk": decision.risk,
            "policy_id": decision.policy_id, "policy_revision": decision.policy_revision,
            "reasons": list(decision.reasons), "decided_at": when.isoformat()}, default=str, sort_keys=True)})
    revisions = sorted({(r.decision.policy_id, r.decision.policy_revision) for r in records})
    with store.transaction() as cursor:
        for policy_id, revision in revisions:
            if not is_stored(store, policy_id, revision):
                raise UnknownPolicyError(
                    f"the decision was made under policy {policy_id!r} revision {revision}, which is not stored: "
                    "save the policy (app.engine.policies.save_policy) and decide with the saved one")
        if len(rows) <= SMALL_INSERT_ROWS:  # a login's few decisions: no frame to build
            insert_rows(cursor, "decisions", list(_DECISION_SCHEMA), [[r[c] for c in _DECISION_SCHEMA] for r in rows])
            insert_rows(cursor, "audit_log", list(_AUDIT_SCHEMA), [[a[c] for c in _AUDIT_SCHEMA] for a in audits])
        else:
            insert_frame(cursor, "decisions", pl.DataFrame(rows, schema=_DECISION_SCHEMA))
            insert_frame(cursor, "audit_log", pl.DataFrame(audits, schema=_AUDIT_SCHEMA))
    return ids


_DECISION_SCHEMA = {
    "decision_id": pl.String, "window_id": pl.String, "session_id": pl.String, "user_id": pl.String,
    "policy_id": pl.String, "policy_rev": pl.Int64, "risk": pl.Float64, "action": pl.String, "verdict": pl.String,
    "reasons": pl.String, "detectors": pl.String, "top_features": pl.String, "decided_at": pl.Datetime("us"),
    "window_risk": pl.Float64, "evidence": pl.Float64, "evidence_change": pl.Float64, "flagged": pl.Boolean,
}
_AUDIT_SCHEMA = {"actor": pl.String, "action": pl.String, "subject": pl.String, "details": pl.String}


@dataclass(frozen=True)
class SessionState:
    """Where a session stands before new windows are decided: its start (UTC), the evidence its
    latest decision left (0 when the user answered a one-time code after it), and whether one of its
    challenges is still open."""

    started_at: datetime | None
    evidence: float
    challenge_open: bool


def session_states(store: Store, session_ids: Sequence[str], *,
                   new: Collection[str] = ()) -> dict[str, SessionState]:
    """`SessionState` of each session (one query; unknown sessions start from nothing). Sessions in `new`
    were stored in the caller's open transaction: nothing was decided or challenged in them yet, so
    only their start is read (a login's batch: the decisions table is not searched)."""
    if session_ids and set(session_ids) <= set(new):
        starts = dict(store.rows("SELECT session_id, started_at FROM sessions WHERE list_contains(?, session_id)",
                                 [list(session_ids)]))
        return {session_id: SessionState(starts.get(session_id), 0.0, False) for session_id in session_ids}
    # one session (a login, a scheduler run on one live session): equality lets DuckDB skip row groups
    of, value = ("= ?", session_ids[0]) if len(session_ids) == 1 else ("IN (SELECT unnest(?))", list(session_ids))
    found = store.rows(f"""
        WITH latest AS (
            SELECT session_id, arg_max(evidence, (decided_at, decision_id)) AS evidence,
                   max(decided_at) AS decided_at
            FROM decisions WHERE session_id {of} GROUP BY session_id
        ), challenges AS (
            SELECT session_id, max(resolved_at) FILTER (WHERE status = 'verified') AS verified_at,
                   bool_or(status = 'issued') AS open
            FROM otp_challenges WHERE session_id {of} GROUP BY session_id
        )
        SELECT s.session_id, s.started_at,
               CASE WHEN c.verified_at IS NOT NULL AND c.verified_at >= l.decided_at THEN 0
                    ELSE coalesce(l.evidence, 0) END,
               coalesce(c.open, false)
        FROM sessions s LEFT JOIN latest l USING (session_id) LEFT JOIN challenges c USING (session_id)
        WHERE s.session_id {of}""", [value] * 3)
    states = {session_id: SessionState(started, float(level), bool(is_open))
              for session_id, started, level, is_open in found}
    return {session_id: states.get(session_id, SessionState(None, 0.0, False)) for session_id in session_ids}


def decisions(
    store: Store,
    *,
    user_id: str | None = None,
    verdict: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    policy_id: str | None = None,
    policy_revision: int | None = None,
    limit: int = 10_000,
) -> pl.DataFrame:
    """Decisions matching every given filter, newest first (`since` inclusive, `until` exclusive).

    JSON columns (reasons, detectors, top_features) come back as JSON text.
    """
    where, params = _filters(user_id=user_id, verdict=verdict, action=action, since=since, until=until,
                             policy_id=policy_id, policy_revision=policy_revision)
    columns = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if c in ("reasons", "detectors", "top_features") else c
                        for c in DECISION_COLUMNS)
    return store.frame(f"SELECT {columns} FROM decisions {where} ORDER BY decided_at DESC, decision_id LIMIT ?",
                       [*params, int(limit)])


def decisions_for_prefix(store: Store, session_prefix: str, limit: int = 20) -> pl.DataFrame:
    """The newest decisions of sessions whose id starts with `session_prefix` (one capture pad)."""
    return store.frame("""
        SELECT d.decided_at, w.kind, d.action, d.verdict, round(d.risk, 3) AS risk, d.session_id
        FROM decisions d LEFT JOIN feature_windows w USING (window_id)
        WHERE starts_with(d.session_id, ?) ORDER BY d.decided_at DESC LIMIT ?""", [session_prefix, limit])


def newest_session_decision(store: Store, session_ids: list[str]) -> dict | None:
    """The decision of the last of `session_ids` (in the caller's order, oldest first) that has one, its
    fixed-text window first (a login's verdict); None when none has been decided yet. The page passes the
    sessions it finished, in the order it finished them."""
    if not session_ids:
        return None
    rows = store.frame("""
        SELECT d.session_id, w.kind, d.window_id, d.risk, d.action, d.verdict, d.reasons, d.top_features,
               d.decided_at, list_position(?, d.session_id) AS finished
        FROM decisions d LEFT JOIN feature_windows w USING (window_id)
        WHERE list_contains(?, d.session_id)
        ORDER BY finished DESC, (w.kind = 'fixed_text') DESC, d.decided_at DESC
        LIMIT 1""", [session_ids, session_ids])
    return rows.row(0, named=True) if rows.height else None


def decision_counts_over_time(store: Store, bucket: str = "hour", **filters: Any) -> pl.DataFrame:
    """Decisions per time bucket, action and verdict: bucket_start, action, verdict, decisions.

    `bucket` is one of BUCKETS; `filters` are those of `decisions` (user_id, verdict, ...).
    """
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r} (allowed: {', '.join(BUCKETS)})")
    where, params = _filters(**filters)
    return store.frame(
        f"SELECT date_trunc('{bucket}', decided_at) AS bucket_start, action, verdict, count(*) AS decisions "
        f"FROM decisions {where} GROUP BY ALL ORDER BY bucket_start, action, verdict", params)


def decisions_csv(store: Store, *, actor: str | None = None, **filters: Any) -> bytes:
    """The filtered decisions as UTF-8 CSV (the columns of DECISION_COLUMNS; no OTP data at all).

    Pass `actor` when the file is really handed to someone: the export is then audited ("export").
    """
    frame = decisions(store, **filters)
    data = frame.write_csv().encode("utf-8")
    if actor is not None:
        with store.transaction() as cursor:
            append_audit(cursor, actor=actor, action="export", subject="decisions.csv",
                         details={"rows": frame.height, "filters": {k: v for k, v in filters.items() if v is not None}})
    return data


def utc_naive(moment: datetime) -> datetime:
    """A naive UTC datetime, as stored in TIMESTAMP columns (naive input is taken to be UTC already)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _feature_list(top_features: FeatureWeights | None) -> list[dict[str, Any]]:
    pairs = list(top_features.items()) if isinstance(top_features, Mapping) else list(top_features or [])
    listed = []
    for name, value in pairs:
        number = float(value)
        listed.append({"feature": str(name), "contribution": number if math.isfinite(number) else None})
    return listed


def _filters(
    *,
    user_id: str | None = None,
    verdict: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    policy_id: str | None = None,
    policy_revision: int | None = None,
) -> tuple[str, list[Any]]:
    """A WHERE clause with parameters for the given filters (values are bound, never interpolated)."""
    conditions, params = [], []
    for column, operator, value in (
        ("user_id", "=", user_id), ("verdict", "=", verdict), ("action", "=", action),
        ("decided_at", ">=", utc_naive(since) if since else None),
        ("decided_at", "<", utc_naive(until) if until else None),
        ("policy_id", "=", policy_id), ("policy_rev", "=", policy_revision),
    ):
        if value is not None:
            conditions.append(f"{column} {operator} ?")
            params.append(str(value) if column in ("verdict", "action") else value)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), params
