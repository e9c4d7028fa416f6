"""Streamlit entry: `streamlit run app/web/main.py` (what `make run` does).

Builds the navigation frame; each page lives in `pages/` and calls `store`, `detectors`, `app`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # Streamlit puts only this file's folder on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.web.resources import get_store, get_worker  # noqa: E402
from store import StoreError  # noqa: E402

PAGES = ROOT / "pages"

st.set_page_config(page_title="Telltale", page_icon="🫆", layout="wide")
try:
    get_store()
    get_worker()  # start the scheduled jobs once per process (TELLTALE_SCHEDULER=off skips them)
except StoreError as error:
    st.error(f"Telltale cannot open its store. {error}")
    st.caption("Reload this page once the other process has finished.")
    st.stop()

navigation = st.navigation({
    "Telltale": [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page(PAGES / "capture.py", title="Capture", icon=":material/keyboard:"),
        st.Page(PAGES / "live.py", title="Live monitor", icon=":material/monitor_heart:"),
    ],
    "Analyse": [
        st.Page(PAGES / "investigation.py", title="Investigation", icon=":material/search:"),
        st.Page(PAGES / "history.py", title="History", icon=":material/history:"),
        st.Page(PAGES / "threshold_lab.py", title="Threshold lab", icon=":material/tune:"),
        st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:"),
    ],
    "Operate": [
        st.Page(PAGES / "stepup.py", title="Step-up", icon=":material/password:"),
        st.Page(PAGES / "audit.py", title="Audit", icon=":material/fact_check:"),
        st.Page(PAGES / "data.py", title="Data", icon=":material/database:"),
    ],
})
teaching = st.sidebar.toggle("Teaching mode", key="teaching_mode",
                             help="Adds a short plain-language explanation beside each chart.")
navigation.run()
