"""The capture component's batch handler: every payload fully validated, nothing stored from a bad one."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from app.capture import (
    MAX_EVENTS_PER_BATCH,
    AcceptedBatch,
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


#: The browser's wall clock when it sends the test batches (epoch ms), and the server's clock then.
SENT_AT_MS = 1_780_000_000_000.0
SERVER_NOW = datetime(2026, 5, 28, 12, 0, tzinfo=UTC)


def batch(events: list[dict[str, Any]], seq: int = 1, **extra: Any) -> dict[str, Any]:
    """A batch as capture.js sends it; its sessions started 10 s before it was sent."""
    payload = {"mount_id": "m1", "batch_seq": seq, "mode": "enrol", "user_id": "alice",
               "sessions": {SESSION: events}, "sent_at_ms": SENT_AT_MS, **extra}
    sessions = payload["sessions"] if isinstance(payload["sessions"], dict) else {}
    return {"origins": {session_id: SENT_AT_MS - 10_000 for session_id in sessions}, **payload}


@pytest.fixture
def state() -> CaptureState:
    return CaptureState(session_prefix=PREFIX, user_id="alice")


def stored(payload: dict[str, Any], state: CaptureState) -> AcceptedBatch:
    """Accept a batch and record it as stored (what the page does once the store has it)."""
    accepted = accept_batch(payload, state)
    state.record(accepted)
    return accepted


def test_a_good_batch_becomes_canonical_browser_events(state: CaptureState) -> None:
    submit = {"seq": 2, "t_ms": 90.0, "type": "submit"}
    accepted = accept_batch(batch([key(0, 0.0, "key_down", 1), key(1, 87.5, "key_up", 1), submit]), state)
    events = accepted.events
    assert events["source"].to_list() == ["browser"] * 3
    assert events["t_ms"].to_list() == [0.0, 87.5, 90.0]
    assert events["session_id"].unique().to_list() == [SESSION]
    assert accepted.completed == (SESSION,)
    assert acknowledgements(state) == {}  # nothing is acknowledged before it is stored
    state.record(accepted)
    assert state.last[SESSION] == (2, 90.0)
    assert acknowledgements(state) == {SESSION: 2}


def test_a_batch_not_recorded_as_stored_is_taken_whole_when_resent(state: CaptureState) -> None:
    payload = batch([key(0, 0.0, "key_down", 1), key(1, 80.0, "key_up", 1)])
    accept_batch(payload, state)  # validated, then the write failed: not recorded
    again = accept_batch({**copy.deepcopy(payload), "batch_seq": 2}, state)
    assert again.events["seq"].to_list() == [0, 1] and not again.duplicate


def test_events_resent_before_their_acknowledgement_arrived_are_skipped(state: CaptureState) -> None:
    stored(batch([key(0, 0.0, "key_down", 1)]), state)
    # the browser did not get the ack yet: it re-sends seq 0 together with the new seq 1
    again = accept_batch(batch([key(0, 0.0, "key_down", 1), key(1, 80.0, "key_up", 1)], seq=2), state)
    assert again.events["seq"].to_list() == [1]
    assert again.completed == ()


def test_a_resent_batch_is_a_duplicate_and_adds_nothing(state: CaptureState) -> None:
    payload = batch([key(0, 0.0, "key_down", 1)])
    assert stored(payload, state).events.height == 1
    again = accept_batch(copy.deepcopy(payload), state)
    assert again.duplicate and again.events.height == 0


def test_batches_continue_a_session_in_order(state: CaptureState) -> None:
    stored(batch([key(0, 0.0, "key_down", 1)]), state)
    accepted = stored(batch([key(1, 90.0, "key_up", 1)], seq=2), state)
    assert accepted.events["seq"].to_list() == [1]
    with pytest.raises(BatchRejected, match="seq 5 does not follow 1"):
        accept_batch(batch([key(5, 95.0, "key_down", 2)], seq=3), state)
    with pytest.raises(BatchRejected, match="goes back"):
        accept_batch(batch([key(2, 10.0, "key_down", 2)], seq=4), state)


BAD_PAYLOADS = [
    ("not an object", [1, 2], "must be an object"),
    ("unknown batch field", {**batch([]), "password": "hunter2"}, "unknown batch field"),
    ("typed text in an event", batch([{**key(0, 0.0, "key_down", 1), "key": "a"}]), "unknown field"),
    ("characters as key class", batch([key(0, 0.0, "key_down", 1, cls="a")]), "key_class: unknown value 'a'"),
    ("unknown event type", batch([{**key(0, 0.0, "key_down", 1), "type": "keypress"}]),
     "type: unknown value 'keypress'"),
    ("text timestamp", batch([{**key(0, 0.0, "key_down", 1), "t_ms": "12"}]), "finite number"),
    ("NaN timestamp", batch([key(0, float("nan"), "key_down", 1)]), "finite number"),
    ("negative timestamp", batch([key(0, -1.0, "key_down", 1)]), "t_ms: -1.0 is negative"),
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


# -- storing: a batch is acknowledged only once the store has it -----------------------------------
REPETITION = [key(0, 0.0, "key_down", 1), key(1, 87.5, "key_up", 1), {"seq": 2, "t_ms": 90.0, "type": "submit"}]


def capture_page() -> Any:
    from app.capture.component import PageCapture

    return PageCapture(CaptureState(session_prefix=PREFIX, user_id="alice"), mount_key="k1")


def stored_events(store: Store) -> list[tuple[str, int]]:
    return store.rows("SELECT session_id, seq FROM events ORDER BY seq")


def test_a_batch_whose_write_failed_is_not_acknowledged_and_is_stored_once_resent(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.capture import component
    from store import StoreError

    failures = iter([StoreError("the disk is busy")])

    def ingest_failing_once(*args: Any, **kwargs: Any) -> Any:
        for error in failures:
            raise error
        return ingest_events(*args, **kwargs)

    monkeypatch.setattr(component, "ingest_events", ingest_failing_once)
    capture, finished = capture_page(), []
    with Store(tmp_path / "capture.duckdb") as store:
        assert component.store_batch(store, capture, batch(REPETITION), finished.append) is None
        assert "sends it again" in capture.notices[-1]
        assert acknowledgements(capture.state) == {} and stored_events(store) == [] and capture.completed == []
        # the browser's next flush re-sends the unacknowledged events in a new batch
        component.store_batch(store, capture, batch(copy.deepcopy(REPETITION), seq=2), finished.append)
        assert stored_events(store) == [(SESSION, 0), (SESSION, 1), (SESSION, 2)]
        assert acknowledgements(capture.state) == {SESSION: 2}
        assert capture.completed == [SESSION] and finished == [SESSION]


def test_a_batch_interrupted_after_its_commit_is_not_stored_twice_when_resent(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.capture import component

    class ScriptRunInterrupted(BaseException):
        """As Streamlit's own script-control exceptions: not an Exception, so nothing swallows it."""

    interruptions = iter([ScriptRunInterrupted("the script run was cut short")])

    def ingest_then_interrupted_once(*args: Any, **kwargs: Any) -> Any:
        report = ingest_events(*args, **kwargs)
        for error in interruptions:
            raise error
        return report

    monkeypatch.setattr(component, "ingest_events", ingest_then_interrupted_once)
    capture, finished = capture_page(), []
    with Store(tmp_path / "capture.duckdb") as store:
        with pytest.raises(ScriptRunInterrupted, match="cut short"):
            component.store_batch(store, capture, batch(REPETITION), finished.append)
        assert acknowledgements(capture.state) == {} and capture.completed == []
        component.store_batch(store, capture, batch(copy.deepcopy(REPETITION), seq=2), finished.append)
        assert stored_events(store) == [(SESSION, 0), (SESSION, 1), (SESSION, 2)]  # once, not twice
        assert capture.stored_events == 0  # the second write found all three already stored
        assert capture.completed == [SESSION] and finished == [SESSION]


def test_a_batch_the_store_refuses_is_acknowledged_dropped_and_leaves_earlier_data(tmp_path) -> None:
    from app.capture import component

    capture = capture_page()
    with Store(tmp_path / "capture.duckdb") as store:
        claimed = accept_batch(batch(REPETITION), CaptureState(session_prefix=PREFIX, user_id="alice")).events
        ingest_events(store, claimed.with_columns(user_id=pl.lit("bob")), source_name="bob's import")
        before = store.rows("SELECT * FROM events ORDER BY seq")
        assert component.store_batch(store, capture, batch(REPETITION), None) is None
        assert "refused" in capture.notices[-1] and "nothing of it was stored" in capture.notices[-1]
        assert store.rows("SELECT * FROM events ORDER BY seq") == before
        assert acknowledgements(capture.state) == {SESSION: 2}  # re-sending it would be refused again
        assert capture.completed == []


# -- bounds: every value checked against the table CSV imports meet too ----------------------------
OUT_OF_BOUNDS = [
    ("press id beyond its column", {"press_id": 2**70}, "press_id: 1180591620717411303424 is above"),
    ("position beyond its column", {"pos": 2**40}, "pos: 1099511627776 is above"),
    ("time beyond a day", {"t_ms": 1e300}, "t_ms: 1e+300 is above 86,400,000"),
    ("seq beyond a session", {"seq": 10**12}, "seq: 1000000000000 is above"),
    ("a field the page has not", {"field": "credit_card"}, "field 'credit_card' is not one of the page's fields"),
    ("a megabyte as type", {"type": "k" * 1_000_000}, "type: unknown value 'kkkk"),
    ("a megabyte as key class", {"key_class": "c" * 1_000_000}, "key_class: unknown value 'cccc"),
]


@pytest.mark.parametrize(("change", "reason"), [(c, r) for _, c, r in OUT_OF_BOUNDS],
                         ids=[name for name, _, _ in OUT_OF_BOUNDS])
def test_values_out_of_bounds_are_refused_naming_the_field_and_quoting_a_short_prefix(
        change: dict[str, Any], reason: str, state: CaptureState) -> None:
    with pytest.raises(BatchRejected) as refused:
        accept_batch(batch([{**key(0, 0.0, "key_down", 1), **change}]), state)
    message = str(refused.value)
    assert reason in message and message.startswith(f"session {SESSION}, event 0: ")
    assert len(message) < 300


def test_sessions_per_batch_are_capped_and_none_may_be_empty(state: CaptureState) -> None:
    crowd = {f"{PREFIX}-m1-{i}": [] for i in range(100_000)}
    with pytest.raises(BatchRejected, match="100,000 sessions in one batch; at most 8"):
        accept_batch(batch([], sessions=crowd), state)
    with pytest.raises(BatchRejected, match="must be a non-empty list"):
        accept_batch(batch([]), state)
    with pytest.raises(BatchRejected, match="non-empty object"):
        accept_batch(batch([], sessions={}), state)


def test_a_session_is_dated_by_the_browsers_clock_origin_on_the_servers_clock(state: CaptureState) -> None:
    # the browser's clock is an hour fast; only the difference of its two readings counts
    payload = batch([key(0, 0.0, "key_down", 1), key(1, 2_500.0, "key_up", 1)],
                    sent_at_ms=SENT_AT_MS + 3_600_000)
    payload["origins"] = {SESSION: SENT_AT_MS + 3_600_000 - 3_000}
    accepted = accept_batch(payload, state, now=SERVER_NOW)
    assert accepted.started_at == {SESSION: datetime(2026, 5, 28, 11, 59, 57)}
    assert accepted.sessions_frame().rows() == [(SESSION, datetime(2026, 5, 28, 11, 59, 57))]


CLOCKS = [
    ("origin after the send", {"origins": {SESSION: SENT_AT_MS + 5_000}}, "clock origin"),
    ("events after the send", {"origins": {SESSION: SENT_AT_MS - 1_000}}, "does not fit its events"),
    ("origin over a day back", {"origins": {SESSION: SENT_AT_MS - 90_000_000}}, "clock origin"),
    ("no origin", {"origins": {}}, "origins must give"),
    ("no send time", {"sent_at_ms": None}, "sent_at_ms must be a wall-clock time"),
    ("a send time in 1970", {"sent_at_ms": 5.0}, "sent_at_ms must be a wall-clock time"),
]


@pytest.mark.parametrize(("change", "reason"), [(c, r) for _, c, r in CLOCKS], ids=[name for name, _, _ in CLOCKS])
def test_a_clock_origin_that_does_not_fit_the_events_is_refused(change: dict[str, Any], reason: str,
                                                                 state: CaptureState) -> None:
    with pytest.raises(BatchRejected, match=reason):
        accept_batch({**batch([key(0, 0.0, "key_down", 1), key(1, 2_500.0, "key_up", 1)]), **change}, state)


def test_a_browser_batch_starts_its_stored_session_at_its_clock_origin(tmp_path) -> None:
    from app.capture import component

    capture = capture_page()
    with Store(tmp_path / "capture.duckdb") as store:
        before = datetime.now(UTC).replace(tzinfo=None)
        component.store_batch(store, capture, batch(REPETITION), None)
        started = store.scalar("SELECT started_at FROM sessions WHERE session_id = ?", [SESSION])
        assert abs((before - started).total_seconds() - 10.0) < 2.0  # the origin was 10 s before the send


def test_a_refused_batch_is_acknowledged_so_the_browser_drops_it_and_nothing_is_stored(tmp_path) -> None:
    from app.capture import component

    capture = capture_page()
    hostile = batch([key(0, 0.0, "key_down", 1), {**key(1, 80.0, "key_up", 1), "press_id": 2**70}])
    with Store(tmp_path / "capture.duckdb") as store:
        for resent in range(1, 4):  # the browser re-sends until acknowledged: one notice, no exception
            assert component.store_batch(store, capture, {**copy.deepcopy(hostile), "batch_seq": resent}, None) is None
        assert store.scalar("SELECT count(*) FROM events") == 0
        assert acknowledgements(capture.state) == {SESSION: 1}
        assert len(capture.notices) == 1 and "press_id" in capture.notices[0]
        # the page goes on: the session's next events are taken
        component.store_batch(store, capture, batch([key(2, 90.0, "key_down", 2)], seq=9), None)
        assert stored_events(store) == [(SESSION, 2)]


def test_nothing_raises_out_of_the_capture_callback(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.capture import component

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a fault of ours")

    monkeypatch.setattr(component, "ingest_events", broken)
    capture = capture_page()
    with Store(tmp_path / "capture.duckdb") as store:
        assert component.store_batch(store, capture, batch(REPETITION[:2]), None) is None
        assert "sends it again" in capture.notices[-1]
        assert acknowledgements(capture.state) == {}  # kept by the browser, not lost
        assert component.store_batch(store, capture, [1, 2, 3], None) is None  # not even an object
