"""The browser capture component and the pure handler of the batches it sends.

The component (capture.js, Streamlit components v2, no build step) sends a batch about once a
second as a trigger value; `accept_batch` validates it completely (schema, types, size cap,
event-rate cap, monotonic timestamps, session ownership) and returns canonical events, or raises
`BatchRejected` so that nothing of an invalid batch is stored. It is a pure function of the payload
and a small per-page state, so it is unit-tested without Streamlit or a browser; the state moves on
(`CaptureState.record`) only once the batch is stored, so the browser is never told that events
are safe which a failed or interrupted write did not keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from store.schema import BUTTONS, EVENT_TYPES, KEY_CLASSES, conform

JS = (Path(__file__).parent / "capture.js").read_text()
CSS = (Path(__file__).parent / "capture.css").read_text()
ACK_JS = (Path(__file__).parent / "ack.js").read_text()

MODES = ("enrol", "login", "pad")
#: A batch holds at most this many events (a second of fast mouse movement is ~120).
MAX_EVENTS_PER_BATCH = 5_000
#: Events per second of a session's batch span above this are not human input.
MAX_EVENTS_PER_SECOND = 1_000
MAX_ID_LENGTH = 128
EVENT_FIELDS = {"seq", "t_ms", "type", "key_class", "press_id", "pos", "field", "x", "y", "button"}
BATCH_FIELDS = {"mount_id", "batch_seq", "mode", "user_id", "sessions"}


class BatchRejected(ValueError):
    """The batch was refused as a whole; nothing of it is stored."""


@dataclass
class CaptureState:
    """What the server remembers per page: batches seen, and where each session got to."""

    session_prefix: str
    user_id: str
    seen: set[tuple[str, int]] = field(default_factory=set)
    last: dict[str, tuple[int, float]] = field(default_factory=dict)  # session -> (seq, t_ms)

    def record(self, accepted: AcceptedBatch) -> None:
        """The batch is stored: acknowledge its events and skip them (or the whole batch) when re-sent."""
        if accepted.batch is not None:
            self.seen.add(accepted.batch)
        self.last.update(accepted.progress)


@dataclass(frozen=True)
class AcceptedBatch:
    events: pl.DataFrame      # only events not stored before (a re-sent event is skipped)
    duplicate: bool = False
    completed: tuple[str, ...] = ()  # sessions that ended (a submit) in this batch
    batch: tuple[str, int] | None = None  # (mount id, batch seq)
    progress: dict[str, tuple[int, float]] = field(default_factory=dict)  # session -> its last (seq, t_ms)


def accept_batch(payload: Any, state: CaptureState) -> AcceptedBatch:
    """Validate one batch; return its canonical events (source "browser") or raise BatchRejected.

    Delivery is at least once: the browser re-sends events until they are acknowledged (see
    `acknowledgements`), so events at or below a session's stored seq are skipped, and a batch
    already seen (same mount id and batch sequence) is a duplicate with no events. `state` is not
    changed: `state.record(accepted)` once the events are stored.
    """
    if not isinstance(payload, dict):
        raise BatchRejected(f"a batch must be an object, got {type(payload).__name__}")
    unknown = set(payload) - BATCH_FIELDS
    if unknown:
        raise BatchRejected(f"unknown batch field(s): {', '.join(sorted(unknown))}")
    mount_id = _text(payload.get("mount_id"), "mount_id")
    batch_seq = _whole(payload.get("batch_seq"), "batch_seq", minimum=1)
    if payload.get("mode") not in MODES:
        raise BatchRejected(f"mode must be one of {', '.join(MODES)}, got {payload.get('mode')!r}")
    if payload.get("user_id") != state.user_id:
        raise BatchRejected("the batch is for another user than this page's")
    if (mount_id, batch_seq) in state.seen:
        return AcceptedBatch(events=conform(pl.DataFrame(), source="browser"), duplicate=True)
    sessions = payload.get("sessions")
    if not isinstance(sessions, dict):
        raise BatchRejected("sessions must be an object of session id -> list of events")
    total = sum(len(v) for v in sessions.values() if isinstance(v, list))
    if total > MAX_EVENTS_PER_BATCH:
        raise BatchRejected(f"{total} events in one batch; at most {MAX_EVENTS_PER_BATCH} are accepted")

    rows: list[dict[str, Any]] = []
    progress: dict[str, tuple[int, float]] = {}
    for session_id, events in sessions.items():
        if not session_id.startswith(state.session_prefix + "-") or len(session_id) > MAX_ID_LENGTH:
            raise BatchRejected(f"session {session_id[:40]!r} does not belong to this page")
        if not isinstance(events, list):
            raise BatchRejected(f"session {session_id}: events must be a list")
        previous = state.last.get(session_id, (-1, 0.0))
        stored_up_to = previous[0]
        fresh: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            row = _event(event, f"session {session_id}, event {index}")
            if row["seq"] <= stored_up_to:
                continue  # re-sent because its acknowledgement had not reached the browser yet
            if row["seq"] != previous[0] + 1:
                raise BatchRejected(f"session {session_id}, event {index}: seq {row['seq']} does not follow "
                                    f"{previous[0]}")
            if row["t_ms"] < previous[1]:
                raise BatchRejected(f"session {session_id}, event {index}: t_ms {row['t_ms']:g} goes back "
                                    f"before {previous[1]:g}")
            previous = (row["seq"], row["t_ms"])
            fresh.append({**row, "session_id": session_id, "user_id": state.user_id})
        if fresh:
            span_s = (fresh[-1]["t_ms"] - fresh[0]["t_ms"]) / 1000
            if len(fresh) > MAX_EVENTS_PER_SECOND * max(span_s, 1.0):
                raise BatchRejected(f"session {session_id}: {len(fresh)} events in {span_s:.2f} s is faster "
                                    f"than {MAX_EVENTS_PER_SECOND} events/s")
        rows += fresh
        progress[session_id] = previous
    completed = tuple(sorted({row["session_id"] for row in rows if row["type"] == "submit"}))

    events_frame = conform(pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(),
                           source="browser")
    return AcceptedBatch(events=events_frame, completed=completed, batch=(mount_id, batch_seq), progress=progress)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise BatchRejected(f"{name} must be a non-empty text of at most {MAX_ID_LENGTH} characters")
    return value


def _whole(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BatchRejected(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str, name: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BatchRejected(f"{where}: {name} must be a finite number, got {value!r}")
    return float(value)


def _event(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise BatchRejected(f"{where}: an event must be an object")
    unknown = set(event) - EVENT_FIELDS
    if unknown:
        raise BatchRejected(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (only timings, key classes "
                            "and positions are accepted)")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise BatchRejected(f"{where}: unknown event type {kind!r}")
    key_class = event.get("key_class")
    if key_class is not None and key_class not in KEY_CLASSES:
        raise BatchRejected(f"{where}: unknown key class {key_class!r}")
    button = event.get("button")
    if button is not None and button not in BUTTONS:
        raise BatchRejected(f"{where}: unknown button {button!r}")
    field_name = event.get("field")
    if field_name is not None and (not isinstance(field_name, str) or len(field_name) > 32):
        raise BatchRejected(f"{where}: field must be a short name")
    t_ms = _number(event.get("t_ms"), where, "t_ms", optional=False)
    if t_ms < 0:
        raise BatchRejected(f"{where}: t_ms must not be negative")
    row = {
        "seq": _whole(event.get("seq"), f"{where}: seq"),
        "t_ms": t_ms,
        "type": kind,
        "key_class": key_class,
        "press_id": None if event.get("press_id") is None else _whole(event.get("press_id"), f"{where}: press_id"),
        "pos": None if event.get("pos") is None else _whole(event.get("pos"), f"{where}: pos"),
        "field": field_name,
        "x": _number(event.get("x"), where, "x", optional=True),
        "y": _number(event.get("y"), where, "y", optional=True),
        "button": button,
    }
    if kind in ("key_down", "key_up") and (row["press_id"] is None or key_class is None):
        raise BatchRejected(f"{where}: a key event needs press_id and key_class")
    if kind in ("mouse_move", "mouse_down", "mouse_up") and (row["x"] is None or row["y"] is None):
        raise BatchRejected(f"{where}: a pointer event needs x and y")
    return row


def acknowledgements(state: CaptureState) -> dict[str, int]:
    """Session -> last stored seq: sent back to the browser, which then drops those events."""
    return {session_id: seq for session_id, (seq, _) in state.last.items()}
