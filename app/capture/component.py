"""Mounting the capture component in a page and storing what it sends (Streamlit side)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from app.capture import ACK_JS, CSS, JS, AcceptedBatch, BatchRejected, CaptureState, accept_batch, acknowledgements
from app.engine.pipeline import ingest_and_score, score_session
from store import Store, StoreError, ValidationError, ingest_events

PHRASE = ".tie5Roanl"
logger = logging.getLogger(__name__)

_component = st.components.v2.component("telltale_capture", html="", css=CSS, js=JS)
_ack_component = st.components.v2.component("telltale_capture_ack", js=ACK_JS)


@dataclass
class PageCapture:
    """Per page and mode: the validator state plus what the page shows about the last batches."""

    state: CaptureState
    mount_key: str
    stored_events: int = 0
    notices: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # sessions that ended (submit), oldest first
    scored: dict[str, bool] = field(default_factory=dict)  # finished session -> a model gave it a verdict


def page_capture(mode: str, user_id: str) -> PageCapture:
    """The capture bookkeeping of this browser tab for (mode, user), created on first use."""
    slot = f"capture:{mode}:{user_id}"
    if slot not in st.session_state:
        prefix = f"{mode}-{user_id}-{secrets.token_hex(3)}"
        st.session_state[slot] = PageCapture(CaptureState(prefix, user_id), mount_key=secrets.token_hex(4))
    return st.session_state[slot]


def mount_capture(store: Store, mode: str, user_id: str, *, on_completed: Callable[[str], None] | None = None,
                  score_finished: bool = False, **data: Any) -> PageCapture:
    """Show the component; each batch it sends is validated and stored before the rerun.

    `score_finished`: a batch that finishes a session (a login's submit) is stored and the session
    scored in one transaction (`app.engine.pipeline.ingest_and_score`); `PageCapture.scored` tells the outcome.
    """
    capture = page_capture(mode, user_id)
    key = f"telltale-capture-{mode}-{capture.mount_key}"

    def on_batch() -> None:
        result = st.session_state.get(key)
        payload = getattr(result, "batch", None) if result is not None else None
        if payload is None and isinstance(result, dict):
            payload = result.get("batch")
        if payload is None:
            return
        store_batch(store, capture, payload, on_completed, score_finished=score_finished)

    _component(key=key, data={"mode": mode, "user_id": user_id, "session_prefix": capture.state.session_prefix,
                              "mount_key": capture.mount_key, **data}, on_batch_change=on_batch)
    _ack_component(key=f"{key}-ack", data={"mount_key": capture.mount_key, "ack": acknowledgements(capture.state)},
                   height=0)
    return capture


def store_batch(store: Store, capture: PageCapture, payload: Any, on_completed: Callable[[str], None] | None, *,
                score_finished: bool = False) -> AcceptedBatch | None:
    """Validate and store one batch; a refused one leaves a notice and stores nothing. Never raises.

    The batch is acknowledged (`CaptureState.record`) only once it is stored, or once it is refused
    for good (`BatchRejected`, or the store's `ValidationError`: re-sent, it would be refused again).
    Any other failure leaves it unacknowledged, so the browser sends it again with its next flush and
    nothing is lost; storing is idempotent, so a write that committed before the failure is not doubled.
    """

    try:
        accepted = accept_batch(payload, capture.state)
    except BatchRejected as error:
        capture.state.record_refusal(error)
        _notice(capture, f"A batch from the browser was refused and nothing of it stored: {error}")
        return None
    finished = [s for s in accepted.completed if s not in capture.completed] if score_finished else []
    if accepted.events.height:
        try:
            if finished:
                scored = ingest_and_score(store, accepted.events, finished, source_name="browser capture",
                                          actor="capture", sessions=accepted.sessions_frame())
                report = scored.report
                capture.scored.update({s: verdict is not None for s, verdict in scored.verdicts.items()})
            else:
                report = ingest_events(store, accepted.events, source_name="browser capture", actor="capture",
                                       sessions=accepted.sessions_frame(), audit=False)
            capture.stored_events += report.events_added
        except ValidationError as error:
            capture.state.record(accepted)
            _notice(capture, f"The store refused a batch and nothing of it was stored: {error}")
            return None
        except StoreError as error:
            _notice(capture, f"A batch could not be stored yet; the browser sends it again: {error}")
            return None
        except Exception as error:  # a fault of ours: logged; the batch stays with the browser
            logger.exception("storing a capture batch failed; the browser sends it again")
            _notice(capture, f"A batch could not be stored yet ({type(error).__name__}); the browser sends it again.")
            return None
    capture.state.record(accepted)
    for session_id in accepted.completed:
        if session_id in capture.completed:
            continue
        if score_finished and session_id not in capture.scored:  # its batch held no events of its own
            try:
                capture.scored[session_id] = score_session(store, session_id) is not None
            except Exception:  # stored already: the scheduler decides it later
                logger.exception("scoring finished session %s failed; the scheduler tries again", session_id)
                capture.scored[session_id] = False
        capture.completed.append(session_id)
        if on_completed is not None:
            on_completed(session_id)
    return accepted


#: Notices a page keeps (the newest): a browser that keeps sending a bad batch must not grow them.
MAX_NOTICES = 20


def _notice(capture: PageCapture, text: str) -> None:
    if capture.notices and capture.notices[-1] == text:
        return
    capture.notices.append(text)
    del capture.notices[:-MAX_NOTICES]
