"""Stored policies: every save is a new revision (never an edit), and every save is audited.

A policy is stored as its JSON body (what `app.engine.policy.Policy.as_dict` gives); this module
knows revisions, not what a policy means, so the store imports nothing of the engine. A decision
records the policy id and revision it was made under, so old revisions stay readable forever.
`app.engine.policies` turns bodies into policies and installs the default one on first use.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from store.audit import append_audit
from store.caches import LATEST_POLICY, STORED_REVISIONS
from store.db import Store
from store.errors import StoreError


class UnknownPolicyError(StoreError, LookupError):
    """No stored policy (or revision) under that id."""


def save_policy_body(store: Store, policy_id: str, body: dict[str, Any], actor: str, *,
                     only_if_none: bool = False) -> int | None:
    """Store `body` as the next revision of `policy_id` (1 for a new id), with "revision" set in it, and
    audit it ("policy_change"); returns the revision. `only_if_none`: store it only when no revision of
    the id exists yet (checked inside the write lock), else return None."""
    with store.transaction() as cursor:
        previous = cursor.execute(
            "SELECT coalesce(max(revision), 0) FROM policies WHERE policy_id = ?", [policy_id]).fetchall()[0][0]
        if only_if_none and previous:
            return None
        revision = int(previous) + 1
        saved = {**body, "policy_id": policy_id, "revision": revision}
        cursor.execute("INSERT INTO policies (policy_id, revision, body) VALUES (?, ?, ?)",
                       [policy_id, revision, json.dumps(saved, sort_keys=True)])
        store.caches.invalidate(f"{LATEST_POLICY}:{policy_id}")
        store.caches.invalidate(STORED_REVISIONS)
        append_audit(cursor, actor=actor, action="policy_change", subject=policy_id,
                     details={"policy_id": policy_id, "revision": revision,
                              "previous_revision": int(previous) or None, "policy": saved})
    return revision


def is_stored(store: Store, policy_id: str, revision: int) -> bool:
    """Whether that revision is stored (read once until `save_policy_body` writes another)."""
    def read() -> frozenset[tuple[str, int]]:
        return frozenset((p, int(r)) for p, r in store.rows("SELECT policy_id, revision FROM policies"))

    return (policy_id, revision) in store.caches.cached(STORED_REVISIONS, read)


def latest_policy_body(store: Store, policy_id: str) -> str | None:
    """The JSON body of the newest revision of `policy_id`, None when none is stored (not cached:
    `app.engine.policies.latest_policy` caches the parsed policy under `LATEST_POLICY`)."""
    return store.scalar("SELECT body FROM policies WHERE policy_id = ? ORDER BY revision DESC LIMIT 1", [policy_id])


def policy_body_at(store: Store, policy_id: str, revision: int) -> str | None:
    """The JSON body of one stored revision, None when it is not stored."""
    return store.scalar("SELECT body FROM policies WHERE policy_id = ? AND revision = ?", [policy_id, revision])


def revisions_of(store: Store, policy_id: str) -> list[int]:
    return [r for (r,) in store.rows("SELECT revision FROM policies WHERE policy_id = ? ORDER BY revision",
                                     [policy_id])]


def stored_policy_ids(store: Store) -> list[str]:
    return [i for (i,) in store.rows("SELECT DISTINCT policy_id FROM policies ORDER BY policy_id")]


def policy_revisions(store: Store) -> pl.DataFrame:
    """Every stored revision, newest first per policy: policy_id, revision, created_at, body (JSON text)."""
    return store.frame("SELECT policy_id, revision, created_at, CAST(body AS VARCHAR) AS body "
                       "FROM policies ORDER BY policy_id, revision DESC")
