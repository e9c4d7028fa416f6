"""Step-up: enrol an authenticator, issue and answer one-time-code challenges, unlock locked ones.

The secret of a new enrolment is shown once: it stays in this browser session's state only until
"Done" is clicked or another page is opened, and is never logged.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import streamlit as st

from app.engine import stepup
from app.web import review
from app.web.resources import get_store
from app.web.ui import teach
from store import otp

ACTOR = "stepup-page"
#: The Enrolment shown once (it holds the secret) and whether this run is the one that made it.
ENROLMENT_KEY = "stepup_enrolment"
#: The "Done" button's key. Streamlit drops a widget's state after a run that did not draw it, so
#: its absence means another page ran since the secret was last shown.
DONE_KEY = "stepup_enrolment_done"
LAST_KEY = "stepup_last_submission"
NOTICE_KEY = "stepup_notice"
USER_KEY, CHALLENGE_KEY, TYPED_KEY = "stepup_user", "stepup_challenge", "stepup_typed_code"

store = get_store()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def notice(kind: str, text: str, place: str = "top") -> None:
    """A message for the next run, shown at `place` ("top" or "answer", next to the code inputs)."""
    st.session_state[NOTICE_KEY] = (place, kind, text)


def show_notice(place: str) -> None:
    waiting = st.session_state.get(NOTICE_KEY)
    if waiting is not None and waiting[0] == place:
        del st.session_state[NOTICE_KEY]
        getattr(st, waiting[1])(waiting[2])


# -- callbacks (they run before the page is drawn, so the tables below show their effect) ---------
def enrol_user(user_id: str) -> None:
    try:
        made = stepup.enrol(store, user_id, actor=ACTOR)
    except stepup.StepUpError as error:
        notice("error", str(error))
        return
    st.session_state[ENROLMENT_KEY] = {"enrolment": made, "fresh": True}


def forget_enrolment() -> None:
    st.session_state.pop(ENROLMENT_KEY, None)


def issue_test_challenge(user_id: str) -> None:
    try:
        issued = stepup.issue_challenge(store, user_id, now=time.time(), actor=ACTOR)
    except stepup.StepUpError as error:
        notice("error", str(error))
        return
    notice("success", f"Test challenge {issued.challenge_id} issued for {user_id}; it expires at "
                      f"{issued.expires_at:%H:%M:%S} UTC.")


def unlock_challenge(challenge_id: str) -> None:
    try:
        stepup.unlock(store, challenge_id, actor=ACTOR)
    except stepup.StepUpError as error:
        notice("error", str(error))
        return
    last = st.session_state.get(LAST_KEY)
    if last is not None and last.challenge_id == challenge_id:
        del st.session_state[LAST_KEY]  # its outcome ("Locked") no longer holds
    notice("success", f"Challenge {challenge_id} unlocked: its failure count starts again.")


def submit(challenge_id: str | None, code: str) -> None:
    """Send one code to `verify`, unless it is a double submit of a code just decided."""
    if challenge_id is None:
        notice("warning", "Pick a challenge to answer first.", "answer")
        return
    last = st.session_state.get(LAST_KEY)
    if review.is_double_submit(last, challenge_id, code):
        notice("info", f"This code was just submitted to this challenge ({last.outcome}); it was not sent "
                       "again and nothing changed.", "answer")
        return
    result = stepup.verify(store, challenge_id, code, time.time())
    st.session_state[LAST_KEY] = review.Submitted(review.submission_key(challenge_id, code), result.outcome,
                                                   result.message, challenge_id)


def submit_typed() -> None:
    typed = st.session_state.get(TYPED_KEY) or ""
    problem = review.typed_code_problem(typed)
    if problem:
        notice("warning", problem, "answer")
        return
    submit(st.session_state.get(CHALLENGE_KEY), typed)


# -- the page -------------------------------------------------------------------------------------
st.title("Step-up")
st.caption("One-time codes (TOTP, RFC 6238) asked of a user whose session looked risky: enrol an "
           "authenticator, answer challenges, unlock a challenge locked after repeated wrong codes.")
teach("A step-up asks for proof the behaviour alone could not give: a 6-digit code from the user's phone, "
      "which changes every 30 seconds and works only once.")

shown = st.session_state.get(ENROLMENT_KEY)
if shown is not None and not shown["fresh"] and DONE_KEY not in st.session_state:
    forget_enrolment()  # another page ran since it was shown: never show it again
    shown = None
if shown is not None:
    shown["fresh"] = False
    enrolment = shown["enrolment"]
    with st.container(border=True):
        st.subheader(f"Authenticator for {enrolment.user_id}")
        st.warning("**Shown only now.** Scan the QR code (or type the secret) into an authenticator app. "
                   "Once you click *Done* or open another page it is gone for good; losing it means "
                   "enrolling again.", icon=":material/visibility:")
        qr_column, text_column = st.columns([1, 2])
        qr_column.image(enrolment.qr_png, caption="QR code for an authenticator app", width=220)
        with text_column:
            st.markdown("Secret (base32, 160 bits)")
            st.code(enrolment.secret, language=None)
            st.markdown("Provisioning URI")
            st.code(enrolment.provisioning_uri, language=None, wrap_lines=True)
            if enrolment.replaced:
                st.caption("This replaced the user's earlier authenticator; codes from it no longer work.")
        st.button("Done", key=DONE_KEY, type="primary", on_click=forget_enrolment)

show_notice("top")
users = review.known_users(store)
if not users:
    st.info("There are no users yet. Open **Data** to load the sample data or simulate users; then enrol "
            "an authenticator for one of them here.")
    st.stop()

user = st.selectbox("User", users, key=USER_KEY)
if not stepup.is_enrolled(store, user):
    st.info(f"**{user}** has no authenticator yet: enrol one to be able to ask them for a one-time code.")
    st.button("Enrol authenticator", type="primary", on_click=enrol_user, args=(user,))
    st.stop()

enrolled_at = otp.enrolments(store).filter(user_id=user)["enrolled_at"]
st.caption(f"{user} has an authenticator (enrolled {enrolled_at[0]:%Y-%m-%d %H:%M} UTC).")
with st.expander("Replace the authenticator"):
    st.caption("Makes a new secret; the old one stops working at once. The new secret is shown once.")
    st.button("Re-enrol authenticator", on_click=enrol_user, args=(user,))

st.subheader("Challenges")
states = review.challenge_states(otp.challenges(store, user_id=user), utc_now())
st.button("Issue a test challenge", on_click=issue_test_challenge, args=(user,),
          help="A demo challenge for this user, as the policy would issue for a risky session.")
if states.is_empty():
    st.info(f"No challenges for {user} yet. The scoring job issues one when a session's action is "
            "REQUIRE_OTP; for a demo, issue a test challenge above.")
else:
    st.dataframe(states.select("challenge_id", "state", "seconds_left", "failures", "session_id", "issued_at",
                               "expires_at", "resolved_at"), hide_index=True, width="stretch")
for challenge_id in review.locked_ids(states):
    locked_column, button_column = st.columns([3, 1])
    locked_column.error(f"Challenge {challenge_id} is locked after repeated wrong codes.")
    button_column.button("Unlock", key=f"unlock-{challenge_id}", on_click=unlock_challenge, args=(challenge_id,),
                         help="Analyst action (audited): the failure count restarts; the challenge stays "
                              "open until it expires.")


@st.fragment(run_every=1)
def simulated_authenticator(user_id: str, challenge_id: str) -> None:
    """The code a phone app would show now, redrawn every second (a simulation; see SIMULATION_LABEL)."""
    with st.container(border=True):
        st.markdown("**Simulated authenticator (a demo stand-in for a phone app)**")
        st.caption(stepup.SIMULATION_LABEL)
        try:
            current = stepup.current_code(store, user_id, time.time())
        except stepup.NotEnrolledError as error:
            st.error(str(error))
            return
        st.markdown(f"### `{current.code[:3]} {current.code[3:]}`")
        left = current.seconds_remaining
        st.progress(min(max(left / stepup.STEP_SECONDS, 0.0), 1.0), text=f"changes in {math.ceil(left)} s")
        if st.button("Use this code", key="stepup_use_code"):
            submit(challenge_id, current.code)
            st.rerun(scope="app")  # redraw the whole page: the challenge table shows the outcome


open_ids = review.answerable(states)
if open_ids:
    st.subheader("Answer a challenge")
    challenge_id = st.selectbox("Challenge", open_ids, key=CHALLENGE_KEY)
    simulated_column, typed_column = st.columns(2)
    with simulated_column:
        simulated_authenticator(user, challenge_id)
    with typed_column, st.form("stepup_code_form", clear_on_submit=True, border=True):
        st.text_input("Code from the authenticator", key=TYPED_KEY, placeholder="6 digits",
                      autocomplete="one-time-code")
        st.form_submit_button("Submit code", on_click=submit_typed)
elif not states.is_empty():
    st.caption("No challenge is waiting for a code.")

show_notice("answer")
last = st.session_state.get(LAST_KEY)
if last is not None and last.challenge_id in states["challenge_id"]:
    style, title = review.OUTCOME_STYLE.get(last.outcome, ("info", str(last.outcome)))
    getattr(st, style)(f"**{title}** (challenge {last.challenge_id}): {last.message}")
teach("Each code is accepted once; wrong codes slow further attempts down and the fifth in a row locks the "
      "challenge until an analyst unlocks it. Every attempt is written to the audit log.")
