"""Overview: what is in the store and where to go next."""

import streamlit as st

from app.resources import get_store
from store import reads

st.title("Telltale")
st.caption("A workbench for behavioral-biometrics authentication: how people type and move a mouse tells who they are.")

store = get_store()
counts = reads.table_counts(store)
if reads.is_empty(store):
    st.info("The store is empty. Open **Data** to load the sample data, simulate users or import a CSV.")
columns = st.columns(4)
for column, (label, table) in zip(columns, [("Users", "users"), ("Sessions", "sessions"), ("Events", "events"),
                                           ("Feature windows", "feature_windows")], strict=True):
    column.metric(label, f"{counts[table]:,}")
st.markdown(
    "**Data** imports events (CSV, public datasets), simulates genuine users, impostors and bots, and exports "
    "Parquet. Only timings, key classes and positions are stored, never what was typed."
)
