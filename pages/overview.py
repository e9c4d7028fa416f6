"""Overview: what is in the store and what happened to it: sessions decided SAFE or UNSAFE, attacks
caught by type and the friction genuine users met (when sessions carry ground-truth labels), over the
time of the behaviour judged, with ways into History and Investigation."""

from __future__ import annotations

import polars as pl
import streamlit as st

from app import settings
from app.engine import history
from app.web import charts
from app.web.resources import get_store
from app.web.ui import teach
from store import contents, decided_sessions
from store.decisions import decision_counts_over_time
from store.text import plural

TTL = 60  # seconds; results are also keyed by the row counts they depend on

st.title("Telltale")
st.caption("A workbench for behavioral-biometrics authentication: how people type and move a mouse tells who they "
           "are. Only timings, key classes and positions are stored, never what was typed.")


@st.cache_data(ttl=TTL, show_spinner=False)
def _sessions(db: str, enrolment_sessions: int, decisions: int, labels: int) -> pl.DataFrame:
    return decided_sessions.session_outcomes(get_store(), enrolment_sessions)


@st.cache_data(ttl=TTL, show_spinner=False)
def _per_day(db: str, decisions: int) -> pl.DataFrame:
    return decision_counts_over_time(get_store(), "day")


def investigate(session_id: str, user_id: str) -> None:
    st.session_state["investigate_session"] = session_id
    st.session_state["investigate_user"] = user_id
    st.switch_page("../../pages/investigation.py")


store = get_store()
counts = contents.table_counts(store)
columns = st.columns(4)
for column, (label, table) in zip(columns, [("Users", "users"), ("Sessions", "sessions"), ("Events", "events"),
                                           ("Feature windows", "feature_windows")], strict=True):
    column.metric(label, f"{counts[table]:,}")
if contents.is_empty(store):
    st.info("The store is empty. Open **Data** to load the sample data, simulate users or import a CSV; "
            "enrol yourself on **Capture**.")
    st.stop()

enrolment_sessions = settings.get("enrolment_sessions")
sessions = _sessions(store.path, enrolment_sessions, counts["decisions"], counts["session_labels"])
if sessions.height == 0:
    st.info("No session has been decided yet: models are trained once users have enough enrolment windows "
            "(**Models**), and the scheduler decides new windows within seconds.")
    st.stop()

st.subheader("What happened")
unsafe = sessions.filter(pl.col("worst_action") != "ALLOW")
first, last = sessions["first_decided"].min(), sessions["last_decided"].max()
enrolling = unsafe.filter(pl.col("enrolment")).height
st.markdown(f"{plural(sessions.height, 'session')} decided between {first:%Y-%m-%d} and {last:%Y-%m-%d} (UTC, the "
            f"time of the behaviour judged): **{sessions.height - unsafe.height:,} SAFE** throughout, "
            f"**{unsafe.height:,} UNSAFE** at some point (a one-time code asked, the session flagged or denied): "
            f"{enrolling:,} of them during their user's enrolment (their first {plural(enrolment_sessions, 'session')}"
            f", when too little of their behaviour is known and the policy asks for a code), "
            f"{unsafe.height - enrolling:,} after it.")
st.plotly_chart(charts.decision_counts_chart(_per_day(store.path, counts["decisions"]), title="Decisions per day"),
                key="overview_per_day")
teach("Every window of a session is decided on the evidence the session has shown so far. Most days are green: "
      "people being themselves. Orange and red are the sessions that looked unlike their user.")

labelled = sessions.filter(pl.col("label").is_not_null() & ~pl.col("enrolment"))
if labelled.height:
    outcomes = labelled.select("session_id", "label", challenged=pl.col("worst_action") != "ALLOW",
                               denied=pl.col("worst_action").is_in(["FLAG_SESSION", "DENY"]),
                               highest_risk="highest_risk")
    rates = history.outcome_rates(outcomes)
    st.subheader("Against the ground truth")
    st.caption(f"Sessions after each user's first {plural(enrolment_sessions, 'session')} (their enrolment), whose "
               "true author is known (simulated data). The labels are only read here, never to decide.")
    figures = st.columns(len(rates))
    for column, (label, rate) in zip(figures, rates.items(), strict=True):
        if label == "genuine":
            column.metric("Genuine users asked for more", f"{rate['challenged']:.0%}",
                          help=f"{plural(rate['n'], 'genuine session')}; {rate['denied']:.0%} flagged or denied.")
        else:
            column.metric(f"{label.capitalize()}s caught", f"{rate['detected']:.0%}",
                          help=f"{plural(rate['n'], f'{label} session')}; {rate['denied']:.0%} flagged or denied.")
    teach("Friction is the share of genuine sessions asked for a one-time code or worse; an attack is caught when "
          "its session is challenged at all. A good setting keeps the first low and the others high: the "
          "Threshold lab shows the trade-off.")
    attacks = labelled.filter(pl.col("label") != "genuine").sort("highest_risk", descending=True)
    friction = labelled.filter((pl.col("label") == "genuine") & (pl.col("worst_action") != "ALLOW"))
    for title, frame, key in (("Attacks", attacks, "overview_attacks"),
                              ("Genuine sessions that met friction", friction, "overview_friction")):
        if frame.height == 0:
            continue
        st.markdown(f"**{title}**")
        table = frame.select("session_id", "user_id", "label", "worst_action", "highest_risk", "first_decided")
        picked = st.dataframe(table, hide_index=True, width="stretch", key=key, on_select="rerun",
                              selection_mode="single-row",
                              column_config={"highest_risk": st.column_config.ProgressColumn(
                                  "highest risk", min_value=0.0, max_value=1.0, format="%.2f")})
        if picked.selection.rows:
            row = table.row(picked.selection.rows[0], named=True)
            if st.button(f"Investigate {row['session_id']}", key=f"{key}_go"):
                investigate(row["session_id"], row["user_id"])
st.page_link("../../pages/history.py", label="Every decision, filtered and exported: History",
             icon=":material/history:")
st.page_link("../../pages/investigation.py", label="One session in detail: Investigation", icon=":material/search:")
