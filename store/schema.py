"""The canonical event schema: one row per input event, whatever its source.

Every importer, simulator and the browser capture produce frames in this shape; `store.ingest`
validates them against it. No column carries characters or key codes that reveal typed text.
"""

from __future__ import annotations

import polars as pl

EVENT_TYPES: tuple[str, ...] = (
    "key_down", "key_up", "mouse_move", "mouse_down", "mouse_up", "wheel",
    "focus", "blur", "field_enter", "field_leave", "submit",
)
KEY_CLASSES: tuple[str, ...] = (
    "letter", "digit", "space", "backspace", "delete", "enter", "tab", "shift",
    "ctrl", "alt", "meta", "arrow", "punct", "other",
)
BUTTONS: tuple[str, ...] = ("left", "right", "middle", "other")
SOURCES: tuple[str, ...] = ("browser", "csv", "dataset", "simulator")

#: Column name -> Polars dtype, in canonical order. `t_ms` is milliseconds (fractional allowed),
#: non-decreasing in `seq` order within a session; `x`, `y` are CSS pixels.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "user_id": pl.String(),
    "seq": pl.Int64(),
    "t_ms": pl.Float64(),
    "type": pl.String(),
    "key_class": pl.String(),
    "press_id": pl.Int64(),
    "pos": pl.Int32(),
    "field": pl.String(),
    "x": pl.Float64(),
    "y": pl.Float64(),
    "button": pl.String(),
    "source": pl.String(),
}
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA)
REQUIRED_COLUMNS: tuple[str, ...] = ("session_id", "user_id", "seq", "t_ms", "type")
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c for c in EVENT_COLUMNS if c not in REQUIRED_COLUMNS)

#: Allowed values of the categorical columns (null is allowed for optional ones).
CATEGORICAL_VALUES: dict[str, tuple[str, ...]] = {
    "type": EVENT_TYPES,
    "key_class": KEY_CLASSES,
    "button": BUTTONS,
    "source": SOURCES,
}

KEY_EVENT_TYPES = ("key_down", "key_up")
MOUSE_EVENT_TYPES = ("mouse_move", "mouse_down", "mouse_up", "wheel")


def empty_events() -> pl.DataFrame:
    """A zero-row frame with the canonical columns and dtypes."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform(frame: pl.DataFrame, source: str | None = None) -> pl.DataFrame:
    """Add missing optional columns as nulls, cast to canonical dtypes and order the columns.

    Producers (simulators, importers) call this so every frame reaching the store is identical in
    shape. It does not validate values: `store.ingest` does.
    """
    missing = [pl.lit(None, dtype=EVENT_SCHEMA[c]).alias(c) for c in EVENT_COLUMNS if c not in frame.columns]
    out = frame.with_columns(missing) if missing else frame
    if source is not None:
        out = out.with_columns(source=pl.lit(source))
    return out.select(pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items())
