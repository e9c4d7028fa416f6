"""Capture: enrol by typing a phrase, log in or type freely, and see the verdict within seconds."""

from __future__ import annotations

import polars as pl
import streamlit as st

from app import pipeline, settings
from app.capture.component import PHRASE, mount_capture, page_capture
from app.resources import get_store
from app.text import plural
from app.ui import verdict_badge

st.title("Capture")
st.caption("Only timings, key classes and positions leave your browser: never the characters you type.")
store = get_store()

user_id = st.text_input("Your user name", value=st.session_state.get("capture_user", ""),
                        placeholder="e.g. alice", max_chars=40).strip()
if not user_id:
    st.info("Enter a user name to enrol or log in as that user.")
    st.stop()
if not user_id.replace("-", "").replace("_", "").isalnum():
    st.error("A user name is letters, digits, '-' and '_' only.")
    st.stop()
st.session_state["capture_user"] = user_id

repetitions = settings.get("enrolment_repetitions")
enrol_tab, login_tab, pad_tab = st.tabs(["Enrol", "Log in", "Free activity pad"])

with enrol_tab:
    st.markdown(f"Type the phrase **`{PHRASE}`** {plural(repetitions, 'time')}, each followed by Enter. A "
                "repetition with a typo or a correction is dropped in the browser and typed again.")
    stored_now = st.empty()  # filled below, once this run's repetitions are stored and any training is done

    def after_repetition(session_id: str) -> None:
        pipeline.featurize_sessions(store, [session_id], final=True)

    capture = mount_capture(store, "enrol", user_id, on_completed=after_repetition, phrase=PHRASE,
                            repetitions=repetitions, expected_keys=settings.get("fixed_text_keys"))
    status = pipeline.enrolment_status(store, user_id)
    done = len(capture.completed)
    st.progress(min(done / repetitions, 1.0), text=f"{done} / {plural(repetitions, 'repetition')} this visit")
    trained_key = f"trained:{user_id}:{capture.mount_key}"
    finished_now = done >= repetitions and trained_key not in st.session_state
    if finished_now or st.button("Train my models now", disabled=status.clean_repetitions < 2):
        bar = st.progress(0.0, text="Training")
        report = pipeline.train_user(store, user_id,
                                     progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Training {d}/{t}"))
        bar.empty()
        st.session_state[trained_key] = report.summary()
        status = pipeline.enrolment_status(store, user_id)  # with the models just trained
    if trained_key in st.session_state:
        complete = "Enrolment complete: " if done >= repetitions else ""
        st.success(complete + st.session_state[trained_key])
    stored_now.caption(f"{user_id} has {plural(status.clean_repetitions, 'clean repetition')} stored; "
                       f"models: {', '.join(status.detectors) or 'none yet'}.")

with login_tab:
    st.markdown(f"Log in as **{user_id}** with the password **`{PHRASE}`** (everyone shares it, as in the CMU "
                "benchmark: what differs is how you type it). Press Enter or click *Log in*.")

    def after_login(session_id: str) -> None:  # the batch that finished it was stored and scored at once
        if not page_capture("login", user_id).scored.get(session_id):
            st.session_state["login_unscored"] = session_id

    login = mount_capture(store, "login", user_id, on_completed=after_login, score_finished=True)

    @st.fragment(run_every=1.0)
    def login_verdict() -> None:
        # Read back from the store: the verdict survives a rerun that was cut short by the next batch.
        decided = pipeline.latest_login_decision(store, login.state.session_prefix)
        if decided is not None:
            if decided.session_id in login.completed:
                st.caption(f"Login #{login.completed.index(decided.session_id) + 1} of this visit")
            verdict_badge(decided)
        elif login.completed and st.session_state.get("login_unscored"):
            st.warning(f"No model can score {user_id}'s logins yet: enrol first (Enrol tab), then train.")

    login_verdict()

with pad_tab:
    st.markdown("Type anything and use the mouse in the area below. Every few seconds the scheduler builds "
                "windows from what arrived and scores them.")
    pad = mount_capture(store, "pad", user_id)

    @st.fragment(run_every=2.0)
    def pad_verdicts() -> None:
        recent = pipeline.recent_decisions(store, session_prefix=pad.state.session_prefix)
        if recent.height == 0:
            st.caption(f"{plural(pad.stored_events, 'event')} stored from this pad; no decision yet.")
            return
        st.dataframe(recent.select(pl.exclude("session_id")), hide_index=True)

    pad_verdicts()

for capture_state in ("enrol", "login", "pad"):
    slot = st.session_state.get(f"capture:{capture_state}:{user_id}")
    for notice in getattr(slot, "notices", [])[-3:]:
        st.warning(notice)
