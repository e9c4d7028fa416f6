"""The capture component's batch handler: every payload fully validated, nothing stored from a bad one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.capture import (
    MAX_EVENTS_PER_BATCH,
    BatchRejected,
    CaptureState,
    accept_batch,
    acknowledgements,
)
from store import Store, ingest_events

PREFIX = "enrol-alice"
SESSION = f"{PREFIX}-m1-rep1"


def key(seq: int, t: float, kind: str, press: int, pos: int | None = 0, cls: str = "letter") -> dict[str, Any]:
    return {"seq": seq, "t_ms": t, "type": kind, "key_class": cls, "press_id": press, "pos": pos,
            "field": "password", "x": None, "y": None, "button": None}


def batch(events: list[dict[str, Any]], seq: int = 1, **extra: Any) -> dict[str, Any]:
    return {"mount_id": "m1", "batch_seq": seq, "mode": "enrol", "user_id": "alice",
            "sessions": {SESSION: events}, **extra}


@pytest.fixture
def state() -> CaptureState:
    return CaptureState(session_prefix=PREFIX, user_id="alice")


def test_a_good_batch_becomes_canonical_browser_events(state: CaptureState) -> None:
    submit = {"seq": 2, "t_ms": 90.0, "type": "submit"}
    accepted = accept_batch(batch([key(0, 0.0, "key_down", 1), key(1, 87.5, "key_up", 1), submit]), state)
    events = accepted.events
    assert events["source"].to_list() == ["browser"] * 3
    assert events["t_ms"].to_list() == [0.0, 87.5, 90.0]
    assert events["session_id"].unique().to_list() == [SESSION]
    assert accepted.completed == (SESSION,)
    assert state.last[SESSION] == (2, 90.0)
    assert acknowledgements(state) == {SESSION: 2}


def test_events_resent_before_their_acknowledgement_arrived_are_skipped(state: CaptureState) -> None:
    accept_batch(batch([key(0, 0.0, "key_down", 1)]), state)
    # the browser did not get the ack yet: it re-sends seq 0 together with the new seq 1
    again = accept_batch(batch([key(0, 0.0, "key_down", 1), key(1, 80.0, "key_up", 1)], seq=2), state)
    assert again.events["seq"].to_list() == [1]
    assert again.completed == ()


def test_a_resent_batch_is_a_duplicate_and_adds_nothing(state: CaptureState) -> None:
    payload = batch([key(0, 0.0, "key_down", 1)])
    assert accept_batch(payload, state).events.height == 1
    again = accept_batch(copy.deepcopy(payload), state)
    assert again.duplicate and again.events.height == 0


def test_batches_continue_a_session_in_order(state: CaptureState) -> None:
    accept_batch(batch([key(0, 0.0, "key_down", 1)]), state)
    accepted = accept_batch(batch([key(1, 90.0, "key_up", 1)], seq=2), state)
    assert accepted.events["seq"].to_list() == [1]
    with pytest.raises(BatchRejected, match="seq 5 does not follow 1"):
        accept_batch(batch([key(5, 95.0, "key_down", 2)], seq=3), state)
    with pytest.raises(BatchRejected, match="goes back"):
        accept_batch(batch([key(2, 10.0, "key_down", 2)], seq=4), state)


BAD_PAYLOADS = [
    ("not an object", [1, 2], "must be an object"),
    ("unknown batch field", {**batch([]), "password": "hunter2"}, "unknown batch field"),
    ("typed text in an event", batch([{**key(0, 0.0, "key_down", 1), "key": "a"}]), "unknown field"),
    ("characters as key class", batch([key(0, 0.0, "key_down", 1, cls="a")]), "unknown key class"),
    ("unknown event type", batch([{**key(0, 0.0, "key_down", 1), "type": "keypress"}]), "unknown event type"),
    ("text timestamp", batch([{**key(0, 0.0, "key_down", 1), "t_ms": "12"}]), "finite number"),
    ("NaN timestamp", batch([key(0, float("nan"), "key_down", 1)]), "finite number"),
    ("negative timestamp", batch([key(0, -1.0, "key_down", 1)]), "must not be negative"),
    ("bool as seq", batch([{**key(0, 0.0, "key_down", 1), "seq": True}]), "whole number"),
    ("key event without press id", batch([{**key(0, 0.0, "key_down", 1), "press_id": None}]), "needs press_id"),
    ("pointer event without x", batch([{"seq": 0, "t_ms": 0.0, "type": "mouse_move", "y": 3.0}]), "needs x and y"),
    ("another user's batch", {**batch([]), "user_id": "mallory"}, "another user"),
    ("another page's session", {**batch([]), "sessions": {"login-bob-x": []}}, "does not belong"),
    ("bad mode", {**batch([]), "mode": "admin"}, "mode must be"),
    ("missing mount id", {**batch([]), "mount_id": ""}, "mount_id"),
    ("zero batch sequence", {**batch([]), "batch_seq": 0}, "batch_seq"),
    ("non-monotonic", batch([key(0, 50.0, "key_down", 1), key(1, 40.0, "key_up", 1)]), "goes back"),
    ("too many events", batch([key(i, float(i), "key_down", i + 1) for i in range(MAX_EVENTS_PER_BATCH + 1)]),
     "at most"),
    ("too fast", batch([key(i, i * 0.1, "key_down", i + 1) for i in range(1500)]), "faster than"),
    ("old completion field", batch([], clean=True), "unknown batch field"),
]


@pytest.mark.parametrize(("payload", "reason"), [(p, r) for _, p, r in BAD_PAYLOADS],
                         ids=[name for name, _, _ in BAD_PAYLOADS])
def test_bad_payloads_are_refused_whole_and_leave_the_state_alone(payload: Any, reason: str,
                                                                   state: CaptureState) -> None:
    with pytest.raises(BatchRejected, match=reason):
        accept_batch(payload, state)
    assert state.seen == set() and state.last == {}


def test_accepted_events_pass_the_store_checks_and_hold_no_text(state: CaptureState, tmp_path) -> None:
    accepted = accept_batch(batch([
        {"seq": 0, "t_ms": 0.0, "type": "field_enter", "field": "password"},
        key(1, 10.0, "key_down", 1, pos=0), key(2, 95.0, "key_up", 1, pos=0),
        {"seq": 3, "t_ms": 120.0, "type": "mouse_move", "x": 10.5, "y": 20.0},
    ]), state)
    with Store(tmp_path / "capture.duckdb") as store:
        report = ingest_events(store, accepted.events, source_name="capture test")
        assert report.events_added == 4
        text_columns = store.rows("SELECT DISTINCT key_class, field, type, button FROM events")
    allowed = {None, "letter", "password", "field_enter", "key_down", "key_up", "mouse_move"}
    assert {value for row in text_columns for value in row} <= allowed
