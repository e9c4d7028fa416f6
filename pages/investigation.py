"""Investigation: one user's session in detail: how they typed and moved, how each feature compares with
their enrolled baseline, what drove a window's risk, how the session's evidence built up window by window
and what was decided, and a replay of the session.

Arriving from History: `st.session_state["investigate_user"]` / `["investigate_session"]` preselect.
Only the chosen session's events are read.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from app.engine import training
from app.engine.policies import latest_policy
from app.engine.policy import Policy
from app.web import charts, investigation, review
from app.web.resources import get_store
from app.web.ui import ACTION_STYLE, teach
from store import contents, session_details
from store.text import plural
from store.windows import feature_windows

TTL = 60  # seconds; per-session results are also keyed by the session's row counts

st.title("Investigation")


@st.cache_data(ttl=TTL, show_spinner=False)
def _users(db: str, users: int, sessions: int) -> pl.DataFrame:
    return session_details.users(get_store())


@st.cache_data(ttl=TTL, show_spinner=False)
def _sessions(db: str, user_id: str, decisions: int) -> pl.DataFrame:
    return session_details.user_sessions(get_store(), user_id)


@st.cache_data(ttl=TTL, show_spinner=False)
def _summary(db: str, session_id: str, events: int, decisions: int) -> dict | None:
    return session_details.session_summary(get_store(), session_id)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=8)
def _events(db: str, session_id: str, events: int) -> pl.DataFrame:
    return contents.events_for_sessions(get_store(), [session_id])


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=32)
def _windows(db: str, session_id: str, windows: int) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    return feature_windows(get_store(), sessions=[session_id])


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=32)
def _judged(db: str, session_id: str, decisions: int, otp_events: int) -> tuple[pl.DataFrame, ...]:
    """The session's decisions, its windows' scores and its step-up events."""
    store = get_store()
    return (session_details.session_decisions(store, session_id),
            session_details.session_window_scores(store, session_id),
            session_details.session_stepups(store, session_id))


@st.cache_data(ttl=TTL, show_spinner=False)
def _policy(db: str, revisions: int) -> Policy:
    return latest_policy(get_store())


@st.cache_data(ttl=TTL, show_spinner=False)
def _models(db: str, model_ids: tuple[str, ...]) -> pl.DataFrame:
    return session_details.model_rows(get_store(), list(model_ids))


@st.cache_data(ttl=TTL, show_spinner=False)
def _fallback_models(db: str, user_id: str, kind: str, schema_id: str, models: int) -> pl.DataFrame:
    return session_details.scoring_models(get_store(), user_id, kind, schema_id)


def _seconds(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


store = get_store()
db = store.path
counts = contents.table_counts(store)
users = _users(db, counts["users"], counts["sessions"])
if users.height == 0:
    st.info("Nothing to investigate yet. Open **Data** to load the sample data, simulate users or import events; "
            "then train models on **Models** so that sessions get scores and decisions to explain.")
    st.stop()

# -- which session -----------------------------------------------------------------------------------------
wanted_user = st.session_state.pop("investigate_user", None)
wanted_session = st.session_state.pop("investigate_session", None)
if wanted_session:
    owner = session_details.session_summary(store, wanted_session)
    if owner is None:
        st.warning(f"Session `{wanted_session}` is not in the store; pick another one below.")
        wanted_session = None
    else:
        wanted_user = owner["user_id"]
user_ids = users["user_id"].to_list()
sessions_of = dict(zip(user_ids, users["sessions"].to_list(), strict=True))
if wanted_user in user_ids:
    st.session_state["inv_user"] = wanted_user
pick_user, pick_session = st.columns([1, 3])
user_id = pick_user.selectbox(
    "User", user_ids, key="inv_user",
    format_func=lambda u: f"{u} ({plural(sessions_of[u], 'session')})")
sessions = _sessions(db, user_id, counts["decisions"])
if sessions.height == 0:
    st.info(f"User {user_id} has no sessions yet.")
    st.stop()
session_ids = sessions["session_id"].to_list()
if wanted_session in session_ids:
    st.session_state["inv_session"] = wanted_session
elif st.session_state.get("inv_session") not in session_ids:
    st.session_state.pop("inv_session", None)
labels = {row["session_id"]: " · ".join(str(part) for part in (
    row["session_id"], row["started_at"].strftime("%Y-%m-%d %H:%M") if row["started_at"] else "imported",
    row["worst_action"] or "not scored", plural(row['events'], 'event')) if part)
    for row in sessions.iter_rows(named=True)}
session_id = pick_session.selectbox("Session (newest first)", session_ids, key="inv_session",
                                    format_func=labels.__getitem__)

summary = _summary(db, session_id, counts["events"], counts["decisions"])
if summary is None:
    st.warning(f"Session `{session_id}` disappeared from the store; pick another one.")
    st.stop()

st.markdown(f"#### Session `{session_id}` of user `{summary['user_id']}`")
worst = summary["worst_action"]
colour, word = ACTION_STYLE.get(worst, ("gray", "not scored yet"))
figures = st.columns(6)
figures[0].metric("Events", f"{summary['events']:,}")
figures[1].metric("Key presses", f"{summary['key_presses']:,}")
figures[2].metric("Mouse events", f"{summary['mouse_events']:,}")
figures[3].metric("Duration", f"{summary['duration_s'] or 0:g} s")
figures[4].metric("Windows", f"{summary['windows']:,}")
figures[5].metric("Highest risk", "—" if summary["max_risk"] is None else f"{summary['max_risk']:.2f}")
st.markdown(f"Worst decision: :{colour}[**{word}**]" + (f" · {worst}" if worst else "")
            + (f" · started {summary['started_at']:%Y-%m-%d %H:%M:%S} UTC" if summary["started_at"] else ""))
if summary["label"]:
    truth = summary["label"] + (f" by {summary['actor_id']}" if summary["actor_id"] else "")
    if summary["takeover_ms"] is not None:
        truth += f", taken over at {_seconds(summary['takeover_ms'])}"
    st.caption(f"Ground truth (simulation label, never used to decide): {truth}.")

events = _events(db, session_id, summary["events"])
windows, schema_names = _windows(db, session_id, summary["windows"])
decided, scores, stepups = _judged(db, session_id, summary["decisions"] or 0, counts["otp_events"])
behaviour_tab, features_tab, decisions_tab, replay_tab = st.tabs(
    ["Behaviour", "Features against the baseline", "Decisions and step-up", "Replay"])

# -- behaviour -------------------------------------------------------------------------------------------------
with behaviour_tab:
    if events.height == 0:
        st.info("This session has no stored events (imported feature vectors only), so there is no rhythm or "
                "path to draw.")
    else:
        rhythm, path = st.columns(2)
        with rhythm:
            st.plotly_chart(charts.keystroke_rhythm_chart(investigation.session_presses(events)), width="stretch")
            teach("Dwell is how long each key is held; flight is the time from one key going down to the next. "
                  "People are remarkably consistent in both, pair by pair, which is what keystroke dynamics "
                  "measures. Only timings and key classes are stored, never the keys.")
        with path:
            st.plotly_chart(charts.mouse_path_chart(investigation.pointer_path(events)), width="stretch")
            teach("The pointer's path on the screen, coloured by speed (px/s). Speed, acceleration, curvature and "
                  "pauses are personal; a bot's straight, constant-speed lines stand out.")

# -- features against the baseline -----------------------------------------------------------------------------
with features_tab:
    if windows.height == 0:
        st.info("This session has no feature windows yet: the featurize job builds them from new events within "
                "seconds (a session is finalized once it has been idle).")
    else:
        risk_of_window = {row["window_id"]: row for row in decided.iter_rows(named=True)}
        own_risk = {w: r["risk"] if r["window_risk"] is None else r["window_risk"] for w, r in risk_of_window.items()}
        ordered = windows.with_columns(
            _risk=pl.col("window_id").replace_strict(own_risk, default=None, return_dtype=pl.Float64))
        window_ids = ordered["window_id"].to_list()
        riskiest = ordered.sort("_risk", descending=True, nulls_last=True)["window_id"][0]

        def _window_label(window_id: str) -> str:
            row = ordered.row(window_ids.index(window_id), named=True)
            decision = risk_of_window.get(window_id)
            verdict = (f"window risk {own_risk[window_id]:.2f} · session {decision['action']}" if decision
                       else "not scored")
            return f"{row['kind']} · {_seconds(row['start_ms'])}–{_seconds(row['end_ms'])} · {verdict}"

        window_id = st.selectbox("Window (the rarest for this user is preselected)", window_ids,
                                 index=window_ids.index(riskiest), format_func=_window_label,
                                 key=f"inv_window_{session_id}")
        window = ordered.row(window_ids.index(window_id), named=True)
        names = schema_names.get(window["schema_id"], [])
        scored_by = scores.filter(pl.col("window_id") == window_id)["model_id"].to_list()
        models = _models(db, tuple(scored_by)) if scored_by else _fallback_models(
            db, summary["user_id"], window["kind"], window["schema_id"], counts["models"])
        baselines = map(investigation.baseline_of, models["metadata"].to_list())
        baseline = next((b for b in baselines if b is not None), None)
        if baseline is None or len(baseline[0]) != len(names):
            st.info("No baseline for this window yet: no model of this user (or the global one) covers its kind. "
                    "Train the models on **Models**.")
        else:
            personal = models["user_id"].drop_nulls().len() > 0
            if not personal:
                st.caption("Scored by the global model (this user has too little enrolment of this kind): the "
                           "baseline is every user's, not theirs.")
            zscores = investigation.feature_zscores(window["features"], names, *baseline)
            chart, drivers = st.columns(2)
            with chart:
                st.plotly_chart(charts.feature_zscore_chart(zscores), width="stretch")
                teach("How many standard deviations each feature of this window lies from the same feature in the "
                      "user's enrolment windows. |z| above 3 (red) is rare for the real user; a few features far "
                      "out are what an impostor usually looks like.")
            with drivers:
                method = st.radio("Contribution", ["share of the deviation", "leave one feature out (model)"],
                                  horizontal=True, key="inv_method")
                if method == "share of the deviation":
                    contributions = investigation.deviation_contributions(zscores)
                    explanation = ("Each feature's share of the window's total |z|: model-free, quick, and a fair "
                                   "guide for distance-based detectors.")
                else:
                    loaded = list(training.load_models(store, models["model_id"].to_list()).values())
                    if not loaded:
                        st.info("The model is no longer stored; showing the deviation share instead.")
                        contributions = investigation.deviation_contributions(zscores)
                    else:
                        contributions = investigation.leave_one_out_contributions(
                            investigation.mean_model_risk(loaded, window["schema_id"]), window["features"], baseline[0],
                            names)
                    explanation = ("How much the window's own risk (the share of the user's genuine windows that "
                                   "score lower, averaged over its models) drops when one feature is put back to "
                                   "the user's average and the models score the window again (negative: that "
                                   "feature made the window look more like the user). A window rarer than every "
                                   "genuine one stays at the top until a feature brings it back among them, so "
                                   "several features can show 0.")
                st.plotly_chart(charts.contribution_chart(contributions), width="stretch")
                teach(explanation)
            st.dataframe(zscores.sort(pl.col("z").abs(), descending=True, nulls_last=True), hide_index=True,
                         width="stretch", column_config={
                             "z": st.column_config.NumberColumn("z", format="%.2f"),
                             "value": st.column_config.NumberColumn(format="%.4g"),
                             "baseline_mean": st.column_config.NumberColumn("baseline mean", format="%.4g"),
                             "baseline_std": st.column_config.NumberColumn("baseline std", format="%.4g")})

# -- decisions and step-up -------------------------------------------------------------------------------------
with decisions_tab:
    if decided.height == 0:
        st.info("No decision for this session yet: the scorer decides once its windows are built and the user's "
                "models are trained.")
    else:
        policy = _policy(db, counts["policies"])
        st.plotly_chart(charts.evidence_chain_chart(decided, policy.bands), width="stretch")
        teach("The session's evidence after each window, in nats: e^evidence is how many times likelier what the "
              "session has shown is from an attacker than from the user. A window rarer than the user's own adds "
              "to it (red bar), a typical one wears it down (green), and it never goes below zero; the dotted "
              "lines are where the policy's bands start, at risk = 1 − e^−evidence. A session that stays low and "
              "climbs part-way is what a hijack looks like: the owner's windows leave no credit for the attacker "
              "to use up, so theirs build the evidence from zero. Answering a one-time code starts it again from "
              "zero.")
        st.dataframe(decided.select("decided_at", "kind", "window_risk", "evidence_change", "evidence", "action",
                                    "risk", "policy_rev", review.reasons_text("reasons")),
                     hide_index=True, width="stretch",
                     column_config={"decided_at": st.column_config.DatetimeColumn("behaviour at (UTC)"),
                                    "window_risk": st.column_config.ProgressColumn(
                                        "window risk", min_value=0.0, max_value=1.0, format="%.2f",
                                        help="The window on its own: share of the user's genuine windows that "
                                             "score lower."),
                                    "evidence_change": st.column_config.NumberColumn("change (nats)", format="%+.2f"),
                                    "evidence": st.column_config.NumberColumn("evidence (nats)", format="%.2f"),
                                    "risk": st.column_config.ProgressColumn(
                                        "session risk", min_value=0.0, max_value=1.0, format="%.2f")})
    st.markdown("**Step-up**")
    if stepups.height == 0:
        st.caption("No one-time-code challenge was issued in this session.")
    else:
        st.dataframe(stepups, hide_index=True, width="stretch")

# -- replay ------------------------------------------------------------------------------------------------------
with replay_tab:
    if events.height == 0:
        st.info("No events to replay in this session.")
    else:
        speed = st.select_slider("Speed", options=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0], value=1.0,
                                 format_func=lambda s: f"{s:g}×", key="inv_speed")
        if st.button("Replay", key="inv_replay_button"):
            st.session_state["inv_replay"] = session_id
        if st.session_state.get("inv_replay") == session_id:
            st.plotly_chart(investigation.replay_figure(events, speed), width="stretch", key="inv_replay_chart")
            st.caption("Press ▶ Play under the chart; drag the slider to jump to a moment.")
        teach("The session as it happened: the pointer with a short trail, and the keys pressed in the last moment "
              "by how long they were held. Speed it up to see rhythm, slow it down to see hesitation.")
