"""The canonical event schema: one row per input event, whatever its source.

Every importer, simulator and the browser capture produce frames in this shape; `store.ingest`
validates them against it. No column carries characters or key codes that reveal typed text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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

#: Allowed values of the categorical columns (null is allowed for optional ones).
CATEGORICAL_VALUES: dict[str, tuple[str, ...]] = {
    "type": EVENT_TYPES,
    "key_class": KEY_CLASSES,
    "button": BUTTONS,
    "source": SOURCES,
}

KEY_EVENT_TYPES = ("key_down", "key_up")

#: Longest session an event may belong to: t_ms is at most a day (the longest public recording, a
#: Balabit remote-desktop session, spans 7.2 hours).
MAX_SESSION_MS = 86_400_000.0
#: Most events one session may hold (seq is below this; the largest Balabit session has 83,091).
MAX_SESSION_EVENTS = 10_000_000
#: Pointer coordinates are CSS pixels within this distance of the page origin (a wall of 8K screens
#: is 23,040 px wide; a drag may leave the page, so negative values are allowed).
MAX_COORDINATE_PX = 100_000.0
#: Longest fixed-text field, in keystrokes (pos is an ordinal within one field).
MAX_FIELD_KEYSTROKES = 10_000
#: Characters of a session or user id.
MAX_ID_LENGTH = 128
#: Characters of a refused value quoted back in a message: a 1 MB value must not give a 1 MB notice.
QUOTE_LENGTH = 40
#: A field name: a letter, then letters, digits, '_', '.' or '-'; at most 32 characters.
FIELD_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$"
#: An id: no control characters (a newline or NUL in an id breaks logs, exports and links).
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


@dataclass(frozen=True)
class Bounds:
    """What values a column may hold beyond its dtype and `CATEGORICAL_VALUES`: a closed numeric
    range, or a text length and pattern. `why` ends the refusal message."""

    low: float | None = None
    high: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    why: str = ""

    def describe(self) -> str:
        """The allowed range and what the values are, for refusal messages."""
        if self.low is None:
            return self.why
        return f"allowed: {number(self.low)} to {number(self.high)}; {self.why}"


#: One table for every producer: `store.ingest` checks CSV files and frames against it as Polars
#: expressions, `app.capture` checks each browser event with `value_problem`.
EVENT_BOUNDS: dict[str, Bounds] = {
    "session_id": Bounds(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, why="no control characters"),
    "user_id": Bounds(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, why="no control characters"),
    "seq": Bounds(0, MAX_SESSION_EVENTS - 1, why="the order of the event within its session"),
    "t_ms": Bounds(0, MAX_SESSION_MS, why="milliseconds since the session started, which lasts at most a day"),
    "press_id": Bounds(0, 2**31 - 1, why="an opaque counter of key presses"),
    "pos": Bounds(0, MAX_FIELD_KEYSTROKES, why="the ordinal of a keystroke within its field"),
    "field": Bounds(max_length=32, pattern=FIELD_PATTERN,
                    why="a field name: a letter, then letters, digits, '_', '.' or '-'"),
    "x": Bounds(-MAX_COORDINATE_PX, MAX_COORDINATE_PX, why="CSS pixels"),
    "y": Bounds(-MAX_COORDINATE_PX, MAX_COORDINATE_PX, why="CSS pixels"),
}


def number(value: float) -> str:
    """A bound as people write it: 86,400,000 rather than 8.64e+07."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def shorten(text: str) -> str:
    """Text as a refusal message shows it: cut to `QUOTE_LENGTH` characters, saying how long it was."""
    return text if len(text) <= QUOTE_LENGTH else text[:QUOTE_LENGTH] + f"… ({len(text):,} characters)"


def quote(value: object) -> str:
    """A value as a refusal message shows it: its repr, shortened."""
    return shorten(repr(value))


def value_problem(column: str, value: object) -> str | None:
    """Why `value` (already of the column's Python type: str, int or float) is out of bounds, or None."""
    bounds = EVENT_BOUNDS.get(column)
    allowed = CATEGORICAL_VALUES.get(column)
    if allowed is not None and value not in allowed:
        return f"unknown value {quote(value)} (allowed: {', '.join(allowed)})"
    if bounds is None:
        return None
    if isinstance(value, str):
        if bounds.max_length is not None and len(value) > bounds.max_length:
            return f"{quote(value)} is longer than {bounds.max_length} characters"
        if bounds.pattern is not None and not re.fullmatch(bounds.pattern, value):
            return f"{quote(value)} is not allowed here ({bounds.why})"
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{quote(value)} is not a finite number"
        if bounds.low is not None and value < bounds.low:
            below = "negative" if bounds.low == 0 else f"below {number(bounds.low)}"
            return f"{quote(value)} is {below} ({bounds.describe()})"
        if bounds.high is not None and value > bounds.high:
            return f"{quote(value)} is above {number(bounds.high)} ({bounds.describe()})"
    return None


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
