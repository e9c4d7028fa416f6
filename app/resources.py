"""Process-wide resources of the Streamlit app, created once per process (st.cache_resource).

The app process owns the DuckDB file: one `Store` here, a cursor per thread inside it.
"""

from __future__ import annotations

import streamlit as st

from app import settings
from store import Store


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    """The one connection owner of this process (closed at exit by the Store itself)."""
    return Store(settings.get("db"))
