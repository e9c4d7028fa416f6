"""Audit: the append-only log of who did what (imports, policy changes, decisions, step-up, exports)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from app.web import review
from app.web.resources import get_store
from app.web.ui import teach
from store.audit import audit, audit_csv, audit_entries, audit_facets, audit_time_span
from store.text import plural

ACTOR = "audit-page"
TABLE_KEY = "audit_table"
LIMIT = 5_000

store = get_store()


def audit_export(rows: int, filters: dict) -> None:
    """The CSV was handed out: that, too, goes into the log."""
    audit(store, actor=ACTOR, action="export", subject="audit_log.csv", details={"rows": rows, "filters": filters})


st.title("Audit")
st.caption("Every change and every security-relevant event, in the order it happened. Rows are only ever "
           "added: nothing here can be edited or deleted. No secret or one-time code is ever written to it.")
teach("The audit log answers 'who did what, when': each import, policy change, decision, one-time-code "
      "attempt and export leaves one row.")

facets = audit_facets(store)
if not facets["action"]:
    st.info("The audit log is empty. Rows appear as soon as something happens: load data on **Data**, change a "
            "policy in the **Threshold lab**, or enrol an authenticator on **Step-up**.")
    st.stop()

with st.container(border=True):
    actor_column, action_column, subject_column = st.columns(3)
    actor = actor_column.selectbox("Actor", [None, *facets["actor"]], format_func=lambda v: "any" if v is None else v)
    action = action_column.selectbox("Action", [None, *facets["action"]],
                                     format_func=lambda v: "any" if v is None else v)
    subject = subject_column.text_input("Subject contains", placeholder="a session, challenge or file name")
    first, last = audit_time_span(store)
    days = st.date_input("Days (UTC)", value=(first.date(), last.date()))

picked = tuple(days) if isinstance(days, list | tuple) else (days,)
since, until = review.day_bounds(picked[0] if picked else None, picked[-1] if picked else None)
filters = {"actor": actor, "action": action, "subject": subject.strip() or None, "since": since, "until": until}
rows = audit_entries(store, **filters, limit=LIMIT)
st.caption(f"{plural(rows.height, 'row matches', 'rows match')} (newest first; at most {LIMIT:,} are shown).")
if rows.is_empty():
    st.info("No audit row matches these filters: widen the days, or set a filter back to *any*.")
    st.stop()

readable = rows.with_columns(pl.Series("details", [review.details_summary(text) for text in rows["details"]],
                                        dtype=pl.String))
selection = st.dataframe(readable, hide_index=True, width="stretch", key=TABLE_KEY, on_select="rerun",
                         selection_mode="single-row",
                         column_config={"details": st.column_config.TextColumn("details", width="large")})
row = review.selected_row(rows, selection.selection.rows)
if row is None:
    st.caption("Select a row to read its details in full.")
else:
    st.markdown(f"**#{row['audit_id']}** · {row['happened_at']:%Y-%m-%d %H:%M:%S} UTC · {row['actor']} · "
                f"`{row['action']}` · {row['subject'] or '—'}")
    st.text("\n".join(review.details_lines(row["details"])) or "no details")

st.download_button("Export these rows (CSV)", audit_csv(store, **filters, limit=LIMIT), file_name="audit_log.csv",
                   mime="text/csv", on_click=audit_export,
                   args=(rows.height, review.described_filters((), **filters)),
                   help="The filtered audit rows; the export itself is recorded in the audit log.")
