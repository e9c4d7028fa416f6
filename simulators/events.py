"""Columnar accumulation of simulated events, then one conversion to the canonical frame.

Generators append whole numpy arrays (one per segment: a mouse path, a typed phrase) to a
`SessionBuilder`; categorical columns are small integer codes until `to_event_frame` turns them
into strings once for all sessions. Nothing here knows about characters: only key classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from store.schema import BUTTONS, EVENT_TYPES, KEY_CLASSES, conform, empty_events

#: Fields of the simulated page: a login form (username, password) and a free-typing pad.
FIELDS: tuple[str, ...] = ("username", "password", "pad")

TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}
KEY = {name: code for code, name in enumerate(KEY_CLASSES)}
FIELD = {name: code for code, name in enumerate(FIELDS)}
BUTTON = {name: code for code, name in enumerate(BUTTONS)}
NO_CODE = -1  # null in a categorical or id column

_COLUMN_DTYPES = {
    "t_ms": np.float64,
    "type": np.int8,
    "key_class": np.int8,
    "press_id": np.int64,
    "pos": np.int32,
    "field": np.int8,
    "x": np.float64,
    "y": np.float64,
    "button": np.int8,
    "foreign": np.bool_,
}
_COLUMNS = tuple(_COLUMN_DTYPES)


@dataclass
class SessionEvents:
    """One finished session: columns sorted by time, `t_ms` rounded to microseconds."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["t_ms"])

    def select(self, mask: np.ndarray) -> SessionEvents:
        return SessionEvents({name: values[mask] for name, values in self.columns.items()})


class SessionBuilder:
    """Collects the events of one session while generators advance a shared clock and cursor.

    `clock_ms` is when the actor is free to start the next action; `cursor` is the pointer
    position in CSS pixels. `foreign` marks events produced by a hijacker.

    Storage is cheap per call: each `add` records one row of scalars (repeated over its events at
    the end) plus the few columns given as arrays, which are patched in by `finish`.
    """

    def __init__(self, start_ms: float, cursor: tuple[float, float]):
        self.clock_ms = start_ms
        self.cursor = cursor
        self.foreign = False
        self._next_press_id = 1
        self._n_events = 0
        self._times: list[np.ndarray] = []
        self._scalar_rows: list[list[float]] = []
        self._array_patches: list[tuple[int, int, np.ndarray]] = []  # (column, first row, values)

    def add(
        self,
        t_ms: np.ndarray | float,
        event_type: np.ndarray | int,
        *,
        key_class: np.ndarray | int = NO_CODE,
        press_id: np.ndarray | int = NO_CODE,
        pos: np.ndarray | int = NO_CODE,
        field: np.ndarray | int = NO_CODE,
        x: np.ndarray | float = np.nan,
        y: np.ndarray | float = np.nan,
        button: np.ndarray | int = NO_CODE,
    ) -> None:
        """Append events; a scalar stands for a constant column over the length of `t_ms`."""
        times = np.atleast_1d(np.asarray(t_ms, dtype=np.float64))
        row = [event_type, key_class, press_id, pos, field, x, y, button, self.foreign]
        for column, value in enumerate(row):
            if type(value) is np.ndarray:
                self._array_patches.append((column, self._n_events, value))
                row[column] = 0
        self._scalar_rows.append(row)
        self._times.append(times)
        self._n_events += len(times)

    def add_keys(
        self, down_ms: np.ndarray, up_ms: np.ndarray, key_classes: np.ndarray, field: int, *, with_pos: bool
    ) -> None:
        """Append a key_down and a key_up per press, paired by fresh press ids."""
        n = len(down_ms)
        press_ids = np.arange(self._next_press_id, self._next_press_id + n, dtype=np.int64)
        self._next_press_id += n
        self.add(
            np.concatenate([down_ms, up_ms]),
            np.repeat(np.array([TYPE["key_down"], TYPE["key_up"]], dtype=np.int8), n),
            key_class=np.concatenate([key_classes, key_classes]),
            press_id=np.concatenate([press_ids, press_ids]),
            pos=np.tile(np.arange(n, dtype=np.int32), 2) if with_pos else NO_CODE,
            field=field,
        )

    def add_recorded(self, events: SessionEvents, shift_ms: float) -> None:
        """Append recorded events shifted in time, presses renumbered from this session's counter."""
        columns = events.columns
        press_id = columns["press_id"]
        is_key = press_id != NO_CODE
        if is_key.any():
            press_id = np.where(is_key, press_id - press_id[is_key].min() + self._next_press_id, NO_CODE)
            self._next_press_id = int(press_id.max()) + 1
        self.add(
            np.round(columns["t_ms"] + shift_ms, 3),
            columns["type"],
            key_class=columns["key_class"],
            press_id=press_id,
            pos=columns["pos"],
            field=columns["field"],
            x=columns["x"],
            y=columns["y"],
            button=columns["button"],
        )

    def finish(self) -> SessionEvents:
        """Sort by time (stable, so same-instant events keep their causal order) and round."""
        lengths = np.array([len(t) for t in self._times], dtype=np.int64)
        table = np.repeat(np.array(self._scalar_rows, dtype=np.float64), lengths, axis=0)
        for column, first_row, values in self._array_patches:
            table[first_row : first_row + len(values), column] = values
        times = np.concatenate(self._times)
        order = np.argsort(times, kind="stable")
        table = table[order]
        columns = {"t_ms": np.round(times[order], 3)}
        for column, (name, dtype) in enumerate(list(_COLUMN_DTYPES.items())[1:]):
            columns[name] = table[:, column].astype(dtype)
        columns["x"] = np.round(columns["x"], 2)
        columns["y"] = np.round(columns["y"], 2)
        return SessionEvents(columns)


def _decode(codes: np.ndarray, names: tuple[str, ...]) -> pl.Series:
    """Integer codes -> strings, with NO_CODE -> null."""
    index = pl.Series(codes)
    index = pl.select(pl.when(index != NO_CODE).then(index)).to_series()
    return pl.Series(names).gather(index)


def _nullable(values: np.ndarray, dtype: pl.DataType) -> pl.Series:
    series = pl.Series(values)
    return pl.select(pl.when(series != NO_CODE).then(series)).to_series().cast(dtype)


def to_event_frame(sessions: list[SessionEvents], session_ids: list[str], user_ids: list[str]) -> pl.DataFrame:
    """Concatenate finished sessions into one canonical events frame (sorted by session, seq)."""
    if not sessions:
        return empty_events().with_columns(source=pl.lit("simulator"))
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    owner = np.repeat(np.arange(len(sessions)), lengths)
    first_row = np.cumsum(lengths) - lengths
    column = {name: np.concatenate([s.columns[name] for s in sessions]) for name in _COLUMNS}
    frame = pl.DataFrame(
        {
            "session_id": pl.Series(session_ids, dtype=pl.String).gather(owner),
            "user_id": pl.Series(user_ids, dtype=pl.String).gather(owner),
            "seq": np.arange(len(owner), dtype=np.int64) - np.repeat(first_row, lengths),
            "t_ms": column["t_ms"],
            "type": _decode(column["type"], EVENT_TYPES),
            "key_class": _decode(column["key_class"], KEY_CLASSES),
            "press_id": _nullable(column["press_id"], pl.Int64),
            "pos": _nullable(column["pos"], pl.Int32),
            "field": _decode(column["field"], FIELDS),
            "x": pl.Series(column["x"], nan_to_null=True),
            "y": pl.Series(column["y"], nan_to_null=True),
            "button": _decode(column["button"], BUTTONS),
        }
    )
    return conform(frame, source="simulator")
