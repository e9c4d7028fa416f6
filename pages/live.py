"""Live monitor: the machine's load, incoming events, active sessions with their current risk and the latest
decisions with the reason that set each action, refreshed in place by a fragment (no full-page reruns)
until paused.

A session is active while its events are recent by the wall clock: within the session idle time
(TELLTALE_SESSION_IDLE_SECONDS), after which the scorer finalizes it. When nothing happened in the
chosen interval (sample data is historic), the charts show the same interval up to the newest stored
event or sample instead, and say so; its sessions are then listed as such, never as active.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import streamlit as st

from app import settings
from app.web import charts
from app.web.resources import get_store
from app.web.review import with_decisive_reason
from app.web.ui import teach
from store import contents, live_activity

st.title("Live monitor")
#: A session is active while its newest event is at most this many seconds old (wall clock).
IDLE_SECONDS = settings.get("session_idle_seconds")
#: The active-sessions table: its columns and how they are shown.
SESSION_COLUMNS = ("session_id", "user_id", "last_event_at", "events", "risk", "action", "reason", "max_risk",
                   "decisions")


def _interval(newest: datetime | None, now: datetime, minutes: int) -> tuple[datetime, datetime, bool]:
    """(since, until, live): the last `minutes` up to now, or up to `newest` when that is older."""
    live = newest is None or newest >= now - timedelta(minutes=minutes)
    until = now if live else newest + timedelta(milliseconds=1)
    return until - timedelta(minutes=minutes), until, live


@st.cache_data(ttl=1, show_spinner=False, max_entries=16)
def _snapshot(db: str, minutes: int) -> dict[str, Any]:
    """Everything the panel draws, read at most once a second whoever is watching."""
    store = get_store()
    now = datetime.now(UTC).replace(tzinfo=None)
    since, until, live = _interval(live_activity.newest_activity(store), now, minutes)
    m_since, m_until, m_live = _interval(live_activity.newest_metric(store), now, minutes)
    active = live_activity.active_sessions(store, now - timedelta(seconds=IDLE_SECONDS), now)
    return {
        "now": now, "since": since, "until": until, "live": live, "metrics_until": m_until, "metrics_live": m_live,
        "rates": live_activity.events_per_second(store, since, until),
        "metrics": live_activity.system_metrics_between(store, m_since, m_until),
        "active": with_decisive_reason(active),
        "sessions": with_decisive_reason(live_activity.active_sessions(store, since, until)) if active.is_empty()
        else None,
        "decisions": with_decisive_reason(live_activity.latest_decisions(store, 25)),
    }


store = get_store()
if contents.is_empty(store):
    st.info("The store is empty. Open **Data** to load the sample data, simulate users or start the live stream; "
            "this page then follows new events, decisions and the machine's load as they arrive.")

controls = st.columns([1, 1, 1, 3])
paused = controls[0].toggle("Pause", key="live_paused", help="Stop refreshing (the charts stay as they are).")
every = controls[1].selectbox("Refresh every", (1, 2, 5), index=1, format_func=lambda s: f"{s} s", key="live_every")
minutes = controls[2].selectbox("Show the last", (1, 5, 15, 60), index=1, format_func=lambda m: f"{m} min",
                                key="live_minutes")


def session_table(sessions: pl.DataFrame, key: str, events_label: str) -> None:
    """Sessions with their current risk and the action of their latest decision beside its reason."""
    st.dataframe(
        sessions.select(SESSION_COLUMNS), hide_index=True, width="stretch", key=key,
        column_config={
            "risk": st.column_config.ProgressColumn("current risk", min_value=0.0, max_value=1.0, format="%.2f"),
            "reason": st.column_config.TextColumn("why (what set the action)", width="large"),
            "max_risk": st.column_config.NumberColumn("highest risk", format="%.2f"),
            "last_event_at": st.column_config.DatetimeColumn("last event (UTC)", format="HH:mm:ss"),
            "events": st.column_config.NumberColumn(events_label)})


@st.fragment(run_every=None if paused else every)
def live_panel() -> None:
    snap = _snapshot(store.path, minutes)
    rates: pl.DataFrame = snap["rates"]
    active: pl.DataFrame = snap["active"]
    sessions: pl.DataFrame | None = snap["sessions"]
    decisions: pl.DataFrame = snap["decisions"]
    metrics: pl.DataFrame = snap["metrics"]
    state = "paused" if paused else f"refreshing every {every} s"
    st.caption(f"Updated {snap['now']:%H:%M:%S} UTC · {state}")
    if not snap["live"]:
        st.caption(f"Nothing arrived in the last {minutes} min; showing the {minutes} min up to the newest stored "
                   f"event ({snap['until']:%Y-%m-%d %H:%M:%S} UTC). Start the live stream on **Data** to watch "
                   "events arrive.")

    seconds = max(minutes * 60, 1)
    unsafe = int((decisions["verdict"] == "UNSAFE").sum()) if decisions.height else 0
    figures = st.columns(4)
    figures[0].metric("Events / s", f"{int(rates['events'].sum()) / seconds:,.1f}" if rates.height else "0",
                      help=f"Average over the {minutes} min shown.")
    figures[1].metric("Active sessions", f"{active.height:,}",
                      help=f"Sessions with events in the last {IDLE_SECONDS:g} s (TELLTALE_SESSION_IDLE_SECONDS).")
    figures[2].metric("UNSAFE among the latest decisions", f"{unsafe} of {decisions.height}")
    figures[3].metric("CPU", f"{metrics['cpu_percent'][-1]:.0f} %" if metrics.height else "—")

    load, incoming = st.columns(2)
    with load:
        st.plotly_chart(charts.system_load_chart(metrics), width="stretch", key="live_load")
        if not snap["metrics_live"] and metrics.height:
            st.caption(f"The newest CPU sample is from {snap['metrics_until']:%Y-%m-%d %H:%M:%S} UTC (the sampler "
                       "job writes one a second while the app runs with its scheduler on).")
        teach("CPU and memory of this machine, sampled every second. Scoring is cheap for distance models and "
              "heavier for forests and neural networks; a spike here while events pour in shows the cost.")
    with incoming:
        st.plotly_chart(charts.events_rate_chart(rates), width="stretch", key="live_rates")
        teach("Input events (key presses and releases, mouse moves, clicks) stored per second, by source. A person "
              "produces tens per second; thousands per second is a bulk import or a simulator.")

    active_column, stream = st.columns([3, 2])
    with active_column:
        st.markdown("**Active sessions**")
        if active.height:
            session_table(active, "live_sessions", f"events (last {IDLE_SECONDS:g} s)")
        else:
            st.caption(f"No session is active: none had events in the last {IDLE_SECONDS:g} s.")
            if sessions is not None and sessions.height:
                st.markdown(f"**Sessions with events in the {minutes} min shown** (none of them active)")
                session_table(sessions, "live_recent_sessions", "events shown")
        teach("A session's current risk is that of its latest decision: how unlike its user the most recent window "
              "was (0 = just like them, 1 = nothing like them). Open **Investigation** to see why.")
    with stream:
        st.markdown("**Latest decisions**")
        if decisions.height == 0:
            st.caption("No decisions yet: train the models on **Models** and the scorer decides as windows arrive.")
        for row in decisions.head(12).iter_rows(named=True):
            colour = "green" if row["verdict"] == "SAFE" else "red"
            st.markdown(f":{colour}-badge[{row['verdict']}] `{row['decided_at']:%H:%M:%S}` {row['action']} "
                        f"({row['reason'] or 'no reason stored'}) · {row['user_id'] or '—'} · "
                        f"{row['kind'] or 'window'} · "
                        + ("risk —" if row["risk"] is None else f"risk {row['risk']:.2f}"))
    if decisions.height:
        st.plotly_chart(charts.decision_timeline(decisions, colour_by="verdict", title="Latest decisions"),
                        width="stretch", key="live_timeline")
        teach("SAFE (green) windows were allowed; UNSAFE (red) ones asked for a one-time code, were flagged or "
              "denied, depending on the policy band their risk fell in or on a rule (a replayed window is denied "
              "at any risk). Hover a dot for the reason that set its action.")


live_panel()
