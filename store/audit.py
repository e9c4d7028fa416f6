"""The append-only audit log. There is deliberately no update or delete function here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from store.db import Store


def append_audit(cursor, *, actor: str, action: str, subject: str | None, details: dict[str, Any] | None) -> None:
    """Append one audit row inside the caller's transaction (so it commits or rolls back with it)."""
    cursor.execute(
        "INSERT INTO audit_log (actor, action, subject, details) VALUES (?, ?, ?, ?)",
        [actor, action, subject, json.dumps(details or {}, default=str, sort_keys=True)],
    )


def audit(store: Store, *, actor: str, action: str, subject: str | None = None,
          details: dict[str, Any] | None = None) -> None:
    """Append one audit row in its own transaction."""
    with store.transaction() as cursor:
        append_audit(cursor, actor=actor, action=action, subject=subject, details=details)


#: Columns of the Audit page and of its CSV export, in order.
AUDIT_COLUMNS = ("audit_id", "happened_at", "actor", "action", "subject", "details")


def audit_entries(
    store: Store,
    *,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 5_000,
) -> pl.DataFrame:
    """Audit rows matching every given filter, newest first; `details` comes back as JSON text.

    `actor` and `action` match exactly; `subject` matches when the subject contains it (any case);
    `since` is inclusive and `until` exclusive (UTC; aware datetimes are converted).
    """
    where, params = _audit_filters(actor=actor, action=action, subject=subject, since=since, until=until)
    return store.frame(
        "SELECT audit_id, happened_at, actor, action, subject, CAST(details AS VARCHAR) AS details"
        f" FROM audit_log {where} ORDER BY audit_id DESC LIMIT ?", [*params, int(limit)])


def audit_facets(store: Store) -> dict[str, list[str]]:
    """The distinct actors and actions in the log, sorted (the Audit page's filter choices)."""
    return {column: [value for (value,) in store.rows(f"SELECT DISTINCT {column} FROM audit_log ORDER BY 1")]
            for column in ("actor", "action")}


def audit_time_span(store: Store) -> tuple[datetime | None, datetime | None]:
    """When the first and the last audit row happened (naive UTC); (None, None) for an empty log."""
    first, last = store.rows("SELECT min(happened_at), max(happened_at) FROM audit_log")[0]
    return first, last


def audit_csv(store: Store, **filters: Any) -> bytes:
    """The filtered audit rows (the filters of `audit_entries`) as UTF-8 CSV, columns AUDIT_COLUMNS.

    Reading only: a caller that hands the file to someone appends an "export" row with `audit`.
    """
    return audit_entries(store, **filters).select(AUDIT_COLUMNS).write_csv().encode("utf-8")


def _audit_filters(*, actor: str | None, action: str | None, subject: str | None, since: datetime | None,
                   until: datetime | None) -> tuple[str, list[Any]]:
    """A WHERE clause with parameters (values are bound, never interpolated)."""
    conditions, params = [], []
    for condition, value in (
        ("actor = ?", actor), ("action = ?", action),
        ("strpos(lower(coalesce(subject, '')), lower(?)) > 0", subject or None),
        ("happened_at >= ?", _utc_naive(since) if since else None),
        ("happened_at < ?", _utc_naive(until) if until else None),
    ):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), params


def _utc_naive(moment: datetime) -> datetime:
    """A naive UTC datetime, as stored (naive input is taken to be UTC already)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
