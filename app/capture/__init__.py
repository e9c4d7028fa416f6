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

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from store.schema import MAX_ID_LENGTH, MAX_SESSION_MS, conform, quote, value_problem

JS = (Path(__file__).parent / "capture.js").read_text()
CSS = (Path(__file__).parent / "capture.css").read_text()
ACK_JS = (Path(__file__).parent / "ack.js").read_text()

MODES = ("enrol", "login", "pad")
#: A batch holds at most this many events (a second of fast mouse movement is ~120).
MAX_EVENTS_PER_BATCH = 5_000
#: A batch holds at most this many sessions (the page's current one and a few finished ones whose
#: acknowledgement is still on its way; capture.js sends no more).
MAX_SESSIONS_PER_BATCH = 8
#: Events per second of a session's batch span above this are not human input.
MAX_EVENTS_PER_SECOND = 1_000
#: The fields the capture component records (its login form and its activity pad).
BROWSER_FIELDS = ("username", "password", "pad")
#: How far a session's last event may lie after the moment the browser says it sent the batch
#: (its clocks are read a few microseconds apart; t_ms is rounded to a microsecond).
CLOCK_TOLERANCE_MS = 50.0
#: Client clocks (epoch milliseconds) outside 2001-09-09 .. 2100-01-01 are not clocks.
EPOCH_MS_RANGE = (1e12, 4.1e12)
EVENT_FIELDS = {"seq", "t_ms", "type", "key_class", "press_id", "pos", "field", "x", "y", "button"}
BATCH_FIELDS = {"mount_id", "batch_seq", "mode", "user_id", "sessions", "sent_at_ms", "origins"}


class BatchRejected(ValueError):
    """The batch was refused as a whole; nothing of it is stored.

    `refused`: session -> (seq, t_ms) of the last event the browser sent of it, when that much could
    be read: acknowledging those makes the browser drop the refused events instead of sending them
    again every second (re-sent, they would be refused again)."""

    def __init__(self, message: str, refused: dict[str, tuple[int, float]] | None = None):
        super().__init__(message)
        self.refused = refused or {}


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

    def record_refusal(self, refused: BatchRejected) -> None:
        """The batch was refused for good: acknowledge what it held, so the browser moves on."""
        for session_id, (seq, t_ms) in refused.refused.items():
            if seq > self.last.get(session_id, (-1, 0.0))[0]:
                self.last[session_id] = (seq, max(t_ms, self.last.get(session_id, (-1, 0.0))[1]))


@dataclass(frozen=True)
class AcceptedBatch:
    events: pl.DataFrame      # only events not stored before (a re-sent event is skipped)
    duplicate: bool = False
    completed: tuple[str, ...] = ()  # sessions that ended (a submit) in this batch
    batch: tuple[str, int] | None = None  # (mount id, batch seq)
    progress: dict[str, tuple[int, float]] = field(default_factory=dict)  # session -> its last (seq, t_ms)
    #: session -> wall clock (UTC, naive) of its t_ms = 0, by the server's clock
    started_at: dict[str, datetime] = field(default_factory=dict)

    def sessions_frame(self) -> pl.DataFrame:
        """session_id, started_at: what `store.ingest_events(sessions=...)` takes."""
        return pl.DataFrame({"session_id": list(self.started_at), "started_at": list(self.started_at.values())},
                            schema={"session_id": pl.String, "started_at": pl.Datetime("us")})


def accept_batch(payload: Any, state: CaptureState, now: datetime | None = None) -> AcceptedBatch:
    """Validate one batch; return its canonical events (source "browser") or raise BatchRejected.

    Every value is checked against `store.schema.EVENT_BOUNDS` (the rules a CSV import meets too),
    and refusals quote at most a short prefix of the value. Delivery is at least once: the browser
    re-sends events until they are acknowledged (see `acknowledgements`), so events at or below a
    session's stored seq are skipped, and a batch already seen (same mount id and batch sequence) is
    a duplicate with no events. `state` is not changed: `state.record(accepted)` once the events are
    stored. `now` (UTC) dates the sessions: a session started `sent_at_ms - origins[session]`
    milliseconds before the batch arrived, by the browser's own clock, so a wrong client clock does
    not shift it.
    """
    if not isinstance(payload, dict):
        raise BatchRejected(f"a batch must be an object, got {type(payload).__name__}")
    unknown = set(payload) - BATCH_FIELDS
    if unknown:
        raise BatchRejected(f"unknown batch field(s): {_names(unknown)}")
    mount_id = _text(payload.get("mount_id"), "mount_id")
    batch_seq = _whole(payload.get("batch_seq"), "batch_seq", minimum=1)
    if payload.get("mode") not in MODES:
        raise BatchRejected(f"mode must be one of {', '.join(MODES)}, got {quote(payload.get('mode'))}")
    if payload.get("user_id") != state.user_id:
        raise BatchRejected("the batch is for another user than this page's")
    if (mount_id, batch_seq) in state.seen:
        return AcceptedBatch(events=conform(pl.DataFrame(), source="browser"), duplicate=True)
    sessions = payload.get("sessions")
    if not isinstance(sessions, dict) or not sessions:
        raise BatchRejected("sessions must be a non-empty object of session id -> list of events")
    if len(sessions) > MAX_SESSIONS_PER_BATCH:
        raise BatchRejected(f"{len(sessions):,} sessions in one batch; at most {MAX_SESSIONS_PER_BATCH} are accepted")
    for session_id, events in sessions.items():
        if not isinstance(session_id, str) or not session_id.startswith(state.session_prefix + "-") \
                or len(session_id) > MAX_ID_LENGTH or value_problem("session_id", session_id):
            raise BatchRejected(f"session {quote(session_id)} does not belong to this page")
        if not isinstance(events, list) or not events:
            raise BatchRejected(f"session {session_id}: events must be a non-empty list")
    total = sum(len(v) for v in sessions.values())
    if total > MAX_EVENTS_PER_BATCH:
        raise BatchRejected(f"{total:,} events in one batch; at most {MAX_EVENTS_PER_BATCH:,} are accepted")
    try:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        return _accept_sessions(payload, sessions, state, mount_id, batch_seq, now)
    except BatchRejected as refused:
        raise BatchRejected(str(refused), _last_sent(sessions, state)) from None


def _accept_sessions(payload: dict[str, Any], sessions: dict[str, list[Any]], state: CaptureState, mount_id: str,
                     batch_seq: int, now: datetime) -> AcceptedBatch:
    sent_at = _epoch_ms(payload.get("sent_at_ms"), "sent_at_ms")
    origins = payload.get("origins")
    if not isinstance(origins, dict) or set(origins) != set(sessions):
        raise BatchRejected("origins must give the clock origin (epoch ms) of every session in the batch")
    rows: list[dict[str, Any]] = []
    progress: dict[str, tuple[int, float]] = {}
    started_at: dict[str, datetime] = {}
    for session_id, events in sessions.items():
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
        elapsed_ms = sent_at - _epoch_ms(origins[session_id], f"session {session_id}: origin")
        if not 0 <= elapsed_ms <= MAX_SESSION_MS or previous[1] > elapsed_ms + CLOCK_TOLERANCE_MS:
            raise BatchRejected(f"session {session_id}: its clock origin is {elapsed_ms:,.0f} ms before the batch "
                                f"was sent, which does not fit its events (the last at t_ms {previous[1]:,.0f})")
        if fresh:
            span_s = (fresh[-1]["t_ms"] - fresh[0]["t_ms"]) / 1000
            if len(fresh) > MAX_EVENTS_PER_SECOND * max(span_s, 1.0):
                raise BatchRejected(f"session {session_id}: {len(fresh)} events in {span_s:.2f} s is faster "
                                    f"than {MAX_EVENTS_PER_SECOND} events/s")
        rows += fresh
        progress[session_id] = previous
        started_at[session_id] = (now - timedelta(milliseconds=elapsed_ms)).replace(tzinfo=None)
    completed = tuple(sorted({row["session_id"] for row in rows if row["type"] == "submit"}))

    events_frame = conform(pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(),
                           source="browser")
    return AcceptedBatch(events=events_frame, completed=completed, batch=(mount_id, batch_seq), progress=progress,
                         started_at=started_at)


def _last_sent(sessions: dict[str, list[Any]], state: CaptureState) -> dict[str, tuple[int, float]]:
    """Session -> (seq, t_ms) of the last event of it in a refused batch, where both are readable
    whole/finite numbers in bounds (a hostile payload may have neither: nothing to acknowledge then)."""
    last: dict[str, tuple[int, float]] = {}
    for session_id, events in sessions.items():
        if not events or not isinstance(events[-1], dict):
            continue
        seq, t_ms = events[-1].get("seq"), events[-1].get("t_ms")
        if isinstance(seq, bool) or not isinstance(seq, int) or value_problem("seq", seq):
            continue
        usable_t = isinstance(t_ms, int | float) and not isinstance(t_ms, bool) and not value_problem("t_ms", t_ms)
        last[session_id] = (seq, float(t_ms) if usable_t else state.last.get(session_id, (-1, 0.0))[1])
    return last


def _names(names: set[Any]) -> str:
    """At most five unknown names, each quoted short."""
    return ", ".join(quote(name) for name in sorted(map(str, names))[:5]) + (" ..." if len(names) > 5 else "")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise BatchRejected(f"{name} must be a non-empty text of at most {MAX_ID_LENGTH} characters")
    return value


def _whole(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BatchRejected(f"{name} must be a whole number >= {minimum}, got {quote(value)}")
    return value


def _epoch_ms(value: Any, name: str) -> float:
    low, high = EPOCH_MS_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BatchRejected(f"{name} must be a wall-clock time in epoch milliseconds, got {quote(value)}")
    return float(value)


def _event(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise BatchRejected(f"{where}: an event must be an object")
    unknown = set(event) - EVENT_FIELDS
    if unknown:
        raise BatchRejected(f"{where}: unknown field(s) {_names(unknown)} (only timings, key classes and positions are "
                            "accepted)")
    row: dict[str, Any] = {}
    for name in ("type", "key_class", "button", "field"):
        value = event.get(name)
        if value is None and name != "type":
            row[name] = None
        elif not isinstance(value, str):
            raise BatchRejected(f"{where}: {name} must be text, got {quote(value)}")
        elif name == "field" and value not in BROWSER_FIELDS:
            raise BatchRejected(f"{where}: field {quote(value)} is not one of the page's fields "
                                f"({', '.join(BROWSER_FIELDS)})")
        elif problem := value_problem(name, value):
            raise BatchRejected(f"{where}: {name}: {problem}")
        else:
            row[name] = value
    for name, whole, optional in (("seq", True, False), ("t_ms", False, False), ("press_id", True, True),
                                  ("pos", True, True), ("x", False, True), ("y", False, True)):
        value = event.get(name)
        if value is None and optional:
            row[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            kind = "a whole number" if whole else "a finite number"
            raise BatchRejected(f"{where}: {name} must be {kind}, got {quote(value)}")
        if problem := value_problem(name, value):
            raise BatchRejected(f"{where}: {name}: {problem}")
        row[name] = value if whole else float(value)
    kind = row["type"]
    if kind in ("key_down", "key_up") and (row["press_id"] is None or row["key_class"] is None):
        raise BatchRejected(f"{where}: a key event needs press_id and key_class")
    if kind in ("mouse_move", "mouse_down", "mouse_up") and (row["x"] is None or row["y"] is None):
        raise BatchRejected(f"{where}: a pointer event needs x and y")
    return row


def acknowledgements(state: CaptureState) -> dict[str, int]:
    """Session -> last stored seq: sent back to the browser, which then drops those events."""
    return {session_id: seq for session_id, (seq, _) in state.last.items()}
