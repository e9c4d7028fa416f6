"""Trained models (blobs with metadata) and the raw scores they give windows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl

from store.audit import append_audit
from store.caches import ACTIVE_MODELS
from store.db import Store, insert_frame


def save_model(store: Store, *, model_id: str, user_id: str | None, kind: str, detector: str, schema_id: str,
               trained_at: datetime, n_samples: int, seed: int | None, metadata: dict[str, Any], blob: bytes,
               actor: str) -> None:
    """Store a model and make it the active one for (user, kind, detector, schema); audited."""
    with store.transaction() as cursor:
        cursor.execute("""
            UPDATE models SET active = false
            WHERE user_id IS NOT DISTINCT FROM ? AND kind = ? AND detector = ? AND schema_id = ? AND active""",
                       [user_id, kind, detector, schema_id])
        cursor.execute("""
            INSERT INTO models (model_id, user_id, kind, detector, schema_id, trained_at, n_samples, seed,
                                metadata, blob, active)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true)""",
                       [model_id, user_id, kind, detector, schema_id, trained_at, n_samples, seed,
                        json.dumps(metadata, default=str, sort_keys=True), blob])
        store.caches.invalidate(ACTIVE_MODELS)
        append_audit(cursor, actor=actor, action="training", subject=user_id or "(global)",
                     details={"model_id": model_id, "kind": kind, "detector": detector, "schema_id": schema_id,
                              "n_samples": n_samples})


def active_models(store: Store, kind: str | None = None) -> pl.DataFrame:
    """Active models without their blobs: model_id, user_id, kind, detector, schema_id, trained_at, ..."""
    rows = store.caches.cached(ACTIVE_MODELS, lambda: store.frame("""
        SELECT model_id, user_id, kind, detector, schema_id, trained_at, n_samples, seed, metadata
        FROM models WHERE active ORDER BY kind, user_id NULLS LAST, detector"""))
    return rows.filter(pl.col("kind") == kind) if kind else rows


def model_blobs(store: Store, model_ids: list[str]) -> dict[str, bytes]:
    return {mid: bytes(blob) for mid, blob in
            store.rows("SELECT model_id, blob FROM models WHERE list_contains(?, model_id)", [model_ids])}


def record_scores(store: Store, scores: pl.DataFrame) -> int:
    """Append raw scores (window_id, model_id, raw_score, risk); returns rows written."""
    if scores.height == 0:
        return 0
    with store.transaction() as cursor:
        insert_frame(cursor, "scores", scores.select("window_id", "model_id", "raw_score", "risk"))
    return scores.height


def has_global_model(store: Store, kind: str, schema_id: str) -> bool:
    """Whether an active global model covers this window kind and feature schema."""
    rows = active_models(store, kind)
    return bool(rows.filter(pl.col("user_id").is_null() & (pl.col("schema_id") == schema_id)).height)
