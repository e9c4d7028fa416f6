"""Stored policies: every save is a new revision (never an edit), and every save is audited.

A decision records the policy id and revision it was made under, so old revisions stay readable
forever. The default policy (`app.policy.DEFAULT_POLICY`) is installed on first use. `app.policy`
is pure (no I/O, no store import), which is why the store may build `Policy` objects from it.
"""

from __future__ import annotations

import polars as pl

from app.policy import DEFAULT_POLICY, Policy
from store.audit import append_audit
from store.db import Store
from store.errors import StoreError


class UnknownPolicyError(StoreError, LookupError):
    """No stored policy (or revision) under that id."""


def save_policy(store: Store, policy: Policy, actor: str) -> Policy:
    """Store `policy` as the next revision of its id (1 for a new id) and audit it ("policy_change").

    The revision the caller set is ignored; the saved policy, with its assigned revision, is returned.
    """
    with store.transaction() as cursor:
        previous = cursor.execute(
            "SELECT coalesce(max(revision), 0) FROM policies WHERE policy_id = ?", [policy.policy_id]
        ).fetchall()[0][0]
        saved = policy.with_revision(int(previous) + 1)
        cursor.execute("INSERT INTO policies (policy_id, revision, body) VALUES (?, ?, ?)",
                       [saved.policy_id, saved.revision, saved.to_json()])
        store.invalidate(f"{LATEST_POLICY}:{saved.policy_id}")
        store.invalidate(STORED_REVISIONS)
        append_audit(cursor, actor=actor, action="policy_change", subject=saved.policy_id,
                     details={"policy_id": saved.policy_id, "revision": saved.revision,
                              "previous_revision": int(previous) or None, "policy": saved.as_dict()})
    return saved


def ensure_default_policy(store: Store) -> Policy:
    """Install the default policy as its revision 1 unless a revision of it is stored; return the latest."""
    return latest_policy(store, DEFAULT_POLICY.policy_id)


#: Read-cache keys: the newest revision of a policy (prefix), every stored (policy, revision); read
#: by every decision, written only by `save_policy`.
LATEST_POLICY = "latest_policy"
STORED_REVISIONS = "policy_revisions"


def is_stored(store: Store, policy_id: str, revision: int) -> bool:
    """Whether that revision is stored (read once until `save_policy` writes another)."""
    def read() -> frozenset[tuple[str, int]]:
        return frozenset((p, int(r)) for p, r in store.rows("SELECT policy_id, revision FROM policies"))

    return (policy_id, revision) in store.cached(STORED_REVISIONS, read)


def latest_policy(store: Store, policy_id: str = DEFAULT_POLICY.policy_id) -> Policy:
    """The newest revision of `policy_id` (the default policy is installed when first asked for)."""
    return store.cached(f"{LATEST_POLICY}:{policy_id}", lambda: _read_latest_policy(store, policy_id))


def _read_latest_policy(store: Store, policy_id: str) -> Policy:
    query = "SELECT body FROM policies WHERE policy_id = ? ORDER BY revision DESC LIMIT 1"
    body = store.scalar(query, [policy_id])
    if body is None and policy_id == DEFAULT_POLICY.policy_id:
        _install_default_policy(store)
        body = store.scalar(query, [policy_id])
    if body is None:
        raise UnknownPolicyError(f"no policy {policy_id!r} is stored (stored: {_known_ids(store)}); "
                                 "save it first or pick a stored one")
    return Policy.from_json(body)


def policy_at_revision(store: Store, policy_id: str, revision: int) -> Policy:
    """One stored revision, e.g. the one a past decision was made under."""
    query = "SELECT body FROM policies WHERE policy_id = ? AND revision = ?"
    body = store.scalar(query, [policy_id, revision])
    if body is None and policy_id == DEFAULT_POLICY.policy_id:
        _install_default_policy(store)
        body = store.scalar(query, [policy_id, revision])
    if body is None:
        revisions = [r for (r,) in store.rows(
            "SELECT revision FROM policies WHERE policy_id = ? ORDER BY revision", [policy_id])]
        raise UnknownPolicyError(f"policy {policy_id!r} has no revision {revision} "
                                 f"(stored revisions: {revisions or 'none'})")
    return Policy.from_json(body)


def policy_revisions(store: Store) -> pl.DataFrame:
    """Every stored revision, newest first per policy: policy_id, revision, created_at, body (JSON text)."""
    _install_default_policy(store)
    return store.frame("SELECT policy_id, revision, created_at, CAST(body AS VARCHAR) AS body "
                       "FROM policies ORDER BY policy_id, revision DESC")


def _install_default_policy(store: Store) -> None:
    """Save the default policy as its revision 1 unless it is stored (re-checked inside the write lock)."""
    def missing() -> bool:
        return not store.scalar("SELECT count(*) FROM policies WHERE policy_id = ?", [DEFAULT_POLICY.policy_id])

    if missing():
        with store.transaction():
            if missing():
                save_policy(store, DEFAULT_POLICY, actor="system")


def _known_ids(store: Store) -> str:
    ids = [i for (i,) in store.rows("SELECT DISTINCT policy_id FROM policies ORDER BY policy_id")]
    return ", ".join(ids) or "none"
