"""History: every stored decision over time, filtered, counted and exported, with a way into any session."""

from __future__ import annotations

import streamlit as st

from app.engine.policy import Action, Verdict
from app.web import charts, review
from app.web.resources import get_store
from app.web.ui import teach
from store.audit import audit
from store.decisions import BUCKETS, decisions
from store.text import plural

ACTOR = "history-page"
TABLE_KEY = "history_table"
ANY = "any"

store = get_store()


def audit_export(rows: int, filters: dict) -> None:
    """The CSV was handed out: append its "export" audit row (as decisions_csv does for the CLI)."""
    audit(store, actor=ACTOR, action="export", subject="decisions.csv", details={"rows": rows, "filters": filters})


def investigate(session_id: str, user_id: str | None) -> None:
    st.session_state["investigate_session"] = session_id
    st.session_state["investigate_user"] = user_id
    st.switch_page("../../pages/investigation.py")


st.title("History")
st.caption("Every decision the policy made: SAFE (allowed) or UNSAFE (one-time code asked, session flagged or "
           "denied), with the policy revision and the reasons behind it.")

everything = decisions(store)
if everything.is_empty():
    st.info("No decisions yet. They appear once sessions are scored: load or simulate data on **Data**, train "
            "models on **Models** (the scheduled jobs then score new windows), or start the **Live monitor**.")
    st.stop()

with st.container(border=True):
    user_column, verdict_column, action_column = st.columns([2, 1, 1])
    users = user_column.multiselect("Users", review.distinct_values(everything["user_id"]),
                                    placeholder="all users")
    verdict = verdict_column.selectbox("Verdict", [ANY, *Verdict])
    action = action_column.selectbox("Action", [ANY, *Action])
    days_column, policy_column, bucket_column = st.columns([2, 1, 1])
    first_day, last_day = review.date_range(everything, "decided_at")
    days = days_column.date_input("Days (UTC)", value=(first_day, last_day))
    revision = policy_column.selectbox("Policy revision", [None, *review.policy_revisions_in(everything)],
                                       format_func=lambda pair: "any" if pair is None else f"{pair[0]} rev {pair[1]}")
    bucket = bucket_column.selectbox("Count per", BUCKETS, index=BUCKETS.index("hour"))

picked = tuple(days) if isinstance(days, list | tuple) else (days,)
since, until = review.day_bounds(picked[0] if picked else None, picked[-1] if picked else None)
filters = {
    "verdict": None if verdict == ANY else str(verdict),
    "action": None if action == ANY else str(action),
    "since": since,
    "until": until,
    "policy_id": revision[0] if revision else None,
    "policy_revision": revision[1] if revision else None,
}
shown = review.decisions_for(store, users, **filters)
st.caption(f"{plural(shown.height, 'decision matches', 'decisions match')} (newest first; at most 10,000 per "
           "user are read).")
if shown.is_empty():
    st.info("No decision matches these filters: widen the days, or set a filter back to *any*.")
    st.stop()

st.plotly_chart(charts.decision_timeline(shown, colour_by="action", title="Risk and action of each decision"),
                key="history_timeline")
teach("Each dot is one decision: higher means the behaviour looked less like the user's own. Green was "
      "allowed (SAFE); orange and red were challenged, flagged or denied (UNSAFE).")
st.plotly_chart(charts.decision_counts_chart(review.counts_for(store, users, bucket, **filters),
                                             title=f"Decisions per {bucket}"), key="history_counts")
teach("How many decisions of each kind were made in each period: a sudden rise of red or orange is worth a look.")

st.subheader("Decisions")
table = shown.select("decided_at", "user_id", "session_id", "action", "verdict", "risk", "policy_id", "policy_rev",
                     review.reasons_text("reasons"), "decision_id")
selection = st.dataframe(table, hide_index=True, width="stretch", key=TABLE_KEY, on_select="rerun",
                         selection_mode="single-row",
                         column_config={"risk": st.column_config.NumberColumn(format="%.3f"),
                                        "reasons": st.column_config.TextColumn("reasons", width="large")})
row = review.selected_row(table, selection.selection.rows)
investigate_column, export_column = st.columns(2)
with investigate_column:
    if row is None:
        st.caption("Select a row to open its session in the investigation view.")
    elif row["session_id"] is None:
        st.caption("This decision has no session to investigate.")
    if st.button("Investigate", type="primary", disabled=row is None or row["session_id"] is None,
                 help="Open the selected decision's session on the Investigation page."):
        investigate(row["session_id"], row["user_id"])
with export_column:
    st.download_button("Export these decisions (CSV)", review.decisions_export(store, users, **filters),
                       file_name="decisions.csv", mime="text/csv", on_click=audit_export,
                       args=(shown.height, review.described_filters(users, **filters)),
                       help="The filtered decisions, every column; the export is recorded in the audit log.")
