"""Capture: enrol by typing a phrase, log in or type freely, and see the verdict within seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import streamlit as st

from app import settings
from app.capture.component import PHRASE, mount_capture, page_capture
from app.engine import pipeline, stepup
from app.web.resources import get_store
from app.web.ui import verdict_badge
from store.text import plural

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

def ask_for_code(store, user_id: str, session_id: str) -> None:
    """Step-up where the user is: the login's behaviour asked for a one-time code, so ask for it here."""
    if not stepup.is_enrolled(store, user_id):
        st.warning(f"This login did not look like {user_id}'s usual typing, so it needs a one-time code, but "
                   f"{user_id} has no authenticator yet. Add one on **Step-up** (a QR code for your phone's "
                   "authenticator app), then log in again.")
        st.page_link("../../pages/stepup.py", label="Enrol an authenticator on Step-up", icon=":material/password:")
        return
    challenge = stepup.session_challenge(store, session_id)
    if challenge is None:
        st.warning("This login needs a one-time code, but no challenge could be opened (an earlier one of "
                   f"{user_id} is locked after wrong codes): an analyst can unlock it on **Step-up**.")
        return
    if challenge.status == "verified":
        st.success("Code accepted: it is you. The session's evidence starts again from zero.")
        return
    if challenge.status != "issued":
        st.error(f"The one-time code was not given in time or was wrong too often ({challenge.status}): "
                 "log in again to get a new one.")
        return
    answer_key, result_key = f"code_input_{challenge.challenge_id}", f"code_result_{challenge.challenge_id}"

    def submit_code() -> None:  # a callback: runs before the next script run, which a batch may cut short
        typed = st.session_state.get(answer_key) or ""
        st.session_state[result_key] = stepup.verify(store, challenge.challenge_id, typed, datetime.now(UTC),
                                                     actor=user_id).message

    with st.form(f"code_{challenge.challenge_id}", clear_on_submit=True):
        st.markdown(f"**This login did not look like {user_id}'s usual typing.** Enter the 6-digit code your "
                    "authenticator app shows to confirm it is you.")
        st.text_input("One-time code", max_chars=8, key=answer_key)
        st.form_submit_button("Confirm", type="primary", on_click=submit_code)
    st.caption("No phone at hand? The Step-up page has a clearly labelled simulated authenticator.")
    if result_key in st.session_state:
        st.error(st.session_state[result_key])


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
    asked = st.empty()  # the one-time-code form of the newest login, when its behaviour asked for one

    @st.fragment(run_every=1.0)
    def login_verdict() -> None:
        # Read back from the store: the verdict survives a rerun that was cut short by the next batch.
        decided = pipeline.latest_login_decision(store, login.completed)
        if decided is not None:
            if decided.session_id in login.completed:
                st.caption(f"Login #{login.completed.index(decided.session_id) + 1} of this visit")
            verdict_badge(decided)
            if decided.action == "REQUIRE_OTP" and st.session_state.get("capture_code_for") != decided.session_id:
                st.session_state["capture_code_for"] = decided.session_id
                st.rerun(scope="app")  # the code form below belongs to the whole page, not to this refresh
        elif login.completed and st.session_state.get("login_unscored"):
            st.warning(f"No model can score {user_id}'s logins yet: enrol first (Enrol tab), then train.")

    login_verdict()
    code_for = st.session_state.get("capture_code_for")
    if code_for and code_for.startswith(login.state.session_prefix):
        with asked.container():
            ask_for_code(store, user_id, code_for)

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
