"""Process-wide resources of the Streamlit app, created once per process (st.cache_resource).

The app process owns the DuckDB file: one `Store` here (a cursor per thread inside it), the one
scheduler that works on it, and the live stream the Data page controls.
"""

from __future__ import annotations

import atexit
import threading

import streamlit as st

from app import settings
from app.engine.jobs import Worker
from app.engine.stream import LiveStream
from store import Store, ingest_events
from store.audit import audit


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    """The one connection owner of this process (closed at exit by the Store itself)."""
    return Store(settings.get("db"))


def import_before_threads() -> None:
    """Finish importing what background threads would otherwise import while a page draws.

    Plotly looks pandas up in `sys.modules` without waiting for an import in progress: a chart built
    while a scheduler job is still importing pandas fails with "partially initialized module 'pandas'
    has no attribute 'Series'".
    """
    import pandas  # noqa: F401


@st.cache_resource(show_spinner=False)
def get_worker() -> Worker | None:
    """The scheduler, started once; None when TELLTALE_SCHEDULER=off."""
    import_before_threads()
    if settings.get("scheduler") == "off":
        return None
    return Worker(get_store()).start()  # shuts down when the interpreter begins to exit


class LiveControl:
    """At most one live stream per process, started and stopped from the Data page."""

    def __init__(self, store: Store):
        self.store = store
        self.stream: LiveStream | None = None
        self._lock = threading.Lock()

    def deliver(self, events, sessions) -> int:
        return ingest_events(self.store, events, source_name="live stream", sessions=sessions,
                             actor="live", audit=False).events_added

    def start(self, **options) -> LiveStream:
        with self._lock:
            if self.stream is not None and self.stream.status.running:
                return self.stream
            self.stream = LiveStream(self.deliver, **options).start()
            audit(self.store, actor="data-page", action="live_stream_start", subject=None,
                  details={**options, "sessions": self.stream.status.sessions})
            return self.stream

    def stop(self) -> None:
        with self._lock:
            if self.stream is not None:
                self.stream.stop()
                audit(self.store, actor="data-page", action="live_stream_stop", subject=None,
                      details={"events": self.stream.status.events, "batches": self.stream.status.batches})


@st.cache_resource(show_spinner=False)
def get_live_control() -> LiveControl:
    control = LiveControl(get_store())
    atexit.register(control.stop)
    return control
