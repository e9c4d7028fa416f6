"""The append-only audit log. There is deliberately no update or delete function here."""

from __future__ import annotations

import json
from typing import Any

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
