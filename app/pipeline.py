"""The live pipeline: new events -> windows -> scores -> decisions (called by jobs and pages).

Business logic lives here, not in pages: the scheduler's "score" job and the capture page both call
`process_pending`, which builds windows for sessions with new events, scores the windows that
have no score yet against the user's models, and turns each risk into a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from app import settings
from detectors.features import WindowSettings, build_windows, feature_names
from store import Store
from store.progress import events_for_sessions, mark_featurized, sessions_to_featurize
from store.windows import ingest_feature_windows


def window_settings() -> WindowSettings:
    """Window sizes from the settings table (TELLTALE_* variables)."""
    return WindowSettings(
        fixed_text_keys=settings.get("fixed_text_keys"),
        free_text_keys=settings.get("free_text_keys"),
        mouse_actions=settings.get("mouse_actions"),
        time_seconds=settings.get("time_window_seconds"),
    )


@dataclass(frozen=True)
class FeaturizeReport:
    sessions: int
    windows_added: int


def featurize_sessions(store: Store, session_ids: list[str], *, final: bool,
                       window_settings_: WindowSettings | None = None) -> int:
    """Build and store the windows of these sessions; returns windows added (idempotent by id)."""
    if not session_ids:
        return 0
    ws = window_settings_ or window_settings()
    events = events_for_sessions(store, session_ids)
    added = 0
    for kind, windows in build_windows(events, settings=ws, open_sessions=not final).items():
        if windows.height:
            report = ingest_feature_windows(store, windows, feature_names(kind, ws), kind=kind,
                                            source="pipeline", source_name="featurize", actor=None)
            added += report.windows_added
    return added


def featurize_pending(store: Store) -> FeaturizeReport:
    """Windows for every session with new events; idle sessions are finalized."""
    todo = sessions_to_featurize(store, settings.get("session_idle_seconds"))
    if todo.height == 0:
        return FeaturizeReport(0, 0)
    added = 0
    for final in (False, True):
        ids = todo.filter(pl.col("final") == final)["session_id"].to_list()
        added += featurize_sessions(store, ids, final=final)
    mark_featurized(store, todo)
    return FeaturizeReport(todo.height, added)
