"""Replaying stored or simulated events as if they were happening now (the caller does the waiting)."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl


def live_batches(
    events: pl.DataFrame, speed: float = 1.0, batch_ms: float = 1000.0
) -> Iterator[tuple[float, pl.DataFrame]]:
    """Yield (send_at_s, batch): every session starts at wall-clock offset 0 and runs concurrently.

    An event at `t_ms` (relative to its session's first event) happens at wall time
    (t_ms / speed) ms; events are grouped into consecutive `batch_ms` windows of wall time, and each
    non-empty window is yielded with the offset (seconds) at which it closes, so a batch is never sent
    before its events happened. Rows keep their columns; within a batch they are sorted by
    session_id, seq. Pure: it never sleeps.
    """
    if not speed > 0 or not batch_ms > 0:
        raise ValueError(f"speed and batch_ms must be > 0, got speed={speed}, batch_ms={batch_ms}")
    return _batches(events, speed, batch_ms)


def _batches(events: pl.DataFrame, speed: float, batch_ms: float) -> Iterator[tuple[float, pl.DataFrame]]:
    if events.height == 0:
        return
    wall_ms = (pl.col("t_ms") - pl.col("t_ms").min().over("session_id")) / speed
    windowed = events.with_columns(_window=(wall_ms / batch_ms).floor().cast(pl.Int64)).sort(
        "_window", "session_id", "seq"
    )
    for batch in windowed.partition_by("_window", maintain_order=True):
        window = int(batch["_window"][0])
        yield (window + 1) * batch_ms / 1000.0, batch.drop("_window")
