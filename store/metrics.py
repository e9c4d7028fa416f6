"""System metrics (CPU, memory) and job runs: small append-only tables written from frames."""

from __future__ import annotations

import polars as pl

from store.db import Store, insert_frame, inserted

METRIC_COLUMNS = ("sampled_at", "cpu_percent", "mem_percent", "rss_mb", "source")


def insert_system_metrics(store: Store, samples: pl.DataFrame, source: str, *, only_new: bool = False) -> int:
    """Append samples (sampled_at, cpu_percent, mem_percent[, rss_mb]); returns rows written.

    `only_new` skips samples whose (sampled_at, source) is stored already, so importing the same
    trace twice adds nothing (the table has no key of its own: a live sampler never repeats a time).
    """
    frame = samples.with_columns(
        rss_mb=pl.col("rss_mb") if "rss_mb" in samples.columns else pl.lit(None, pl.Float64),
        source=pl.lit(source),
    ).select(METRIC_COLUMNS)
    with store.transaction() as cursor:
        if not only_new:
            return insert_frame(cursor, "system_metrics", frame)
        columns = ", ".join(METRIC_COLUMNS)
        cursor.register("new_samples", frame.to_arrow())
        try:
            return inserted(cursor.execute(f"""
                INSERT INTO system_metrics ({columns}) SELECT {columns} FROM new_samples n
                WHERE NOT EXISTS (SELECT 1 FROM system_metrics m
                                  WHERE m.sampled_at = n.sampled_at AND m.source = n.source)"""))
        finally:
            cursor.unregister("new_samples")


def record_job_run(store: Store, job_id: str, started_at, duration_ms: float, rows: int | None,
                   error: str | None) -> None:
    """One row per scheduled run: which job, when, how long (ms), rows touched, error text."""
    store.execute("INSERT INTO job_runs VALUES (?, ?, ?, ?, ?)", [job_id, started_at, duration_ms, rows, error])


def record_drift(store: Store, checks: pl.DataFrame) -> int:
    """Append drift checks (user_id, kind, checked_at, recent, statistic, feature, drifted)."""
    if checks.height == 0:
        return 0
    with store.transaction() as cursor:
        cursor.register("drift_batch", checks.to_arrow())
        cursor.execute("INSERT INTO drift_checks SELECT user_id, kind, checked_at, recent, statistic, feature, "
                       "drifted FROM drift_batch")
        cursor.unregister("drift_batch")
    return checks.height


def latest_drift(store: Store) -> pl.DataFrame:
    """The newest drift check of every user and kind."""
    return store.frame("""
        SELECT * FROM drift_checks QUALIFY row_number() OVER (PARTITION BY user_id, kind ORDER BY checked_at DESC) = 1
        ORDER BY drifted DESC, statistic DESC""")
