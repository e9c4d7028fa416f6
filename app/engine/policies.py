"""Policies as the engine uses them: stored revisions (`store.policies`) read back as `Policy`
objects, the default policy installed on first use, saves validated before they are stored."""

from __future__ import annotations

import polars as pl

from app.engine.policy import DEFAULT_POLICY, Policy
from store import policies as stored
from store.caches import LATEST_POLICY
from store.db import Store
from store.policies import UnknownPolicyError, is_stored

__all__ = ["UnknownPolicyError", "is_stored", "latest_policy", "policy_at_revision", "policy_revisions",
           "save_policy"]


def save_policy(store: Store, policy: Policy, actor: str) -> Policy:
    """Store `policy` as the next revision of its id (1 for a new id) and audit it ("policy_change").

    The revision the caller set is ignored; the saved policy, with its assigned revision, is returned.
    """
    revision = stored.save_policy_body(store, policy.policy_id, policy.as_dict(), actor)
    return policy.with_revision(revision)


def latest_policy(store: Store, policy_id: str = DEFAULT_POLICY.policy_id) -> Policy:
    """The newest revision of `policy_id` (the default policy is installed when first asked for); read
    once until a save."""
    return store.caches.cached(f"{LATEST_POLICY}:{policy_id}", lambda: _read_latest(store, policy_id))


def _read_latest(store: Store, policy_id: str) -> Policy:
    body = stored.latest_policy_body(store, policy_id)
    if body is None and policy_id == DEFAULT_POLICY.policy_id:
        _install_default(store)
        body = stored.latest_policy_body(store, policy_id)
    if body is None:
        raise UnknownPolicyError(f"no policy {policy_id!r} is stored (stored: "
                                 f"{', '.join(stored.stored_policy_ids(store)) or 'none'}); "
                                 "save it first or pick a stored one")
    return Policy.from_json(body)


def policy_at_revision(store: Store, policy_id: str, revision: int) -> Policy:
    """One stored revision, e.g. the one a past decision was made under."""
    body = stored.policy_body_at(store, policy_id, revision)
    if body is None and policy_id == DEFAULT_POLICY.policy_id:
        _install_default(store)
        body = stored.policy_body_at(store, policy_id, revision)
    if body is None:
        raise UnknownPolicyError(f"policy {policy_id!r} has no revision {revision} "
                                 f"(stored revisions: {stored.revisions_of(store, policy_id) or 'none'})")
    return Policy.from_json(body)


def policy_revisions(store: Store) -> pl.DataFrame:
    """Every stored revision, newest first per policy (the default installed first when missing)."""
    _install_default(store)
    return stored.policy_revisions(store)


def _install_default(store: Store) -> None:
    if not stored.revisions_of(store, DEFAULT_POLICY.policy_id):
        stored.save_policy_body(store, DEFAULT_POLICY.policy_id, DEFAULT_POLICY.as_dict(), actor="system",
                                only_if_none=True)
