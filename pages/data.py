"""Data: import CSV files and datasets, simulate users, export Parquet, see what is stored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import streamlit as st

from app import settings
from app.engine import samples
from app.engine.imports import IMPORT_FORMATS
from app.web.resources import get_live_control, get_store
from app.web.ui import progress_callback, show_error
from store import StoreError, contents, ingest_events_csv
from store.export import export_events_parquet
from store.text import plural

UPLOADS = Path(settings.get("db")).parent / "uploads"

st.title("Data")
store = get_store()
counts = contents.table_counts(store)

if contents.is_empty(store):
    st.info("The store is empty. Load the sample data, simulate users, or upload an events CSV below.")
    if st.button("Load the sample data", type="primary"):
        try:
            loaded = samples.load_sample_data(store, Path(settings.get("sample_data")))
            st.success(f"Loaded sample data: {plural(loaded['events_added'], 'event')}." if loaded
                       else "Nothing loaded.")
            st.rerun()
        except StoreError as error:
            show_error(error)

st.subheader("What is stored")
st.dataframe(pl.DataFrame({"table": list(counts), "rows": list(counts.values())}), hide_index=True,
             width="content")

upload_tab, dataset_tab, simulate_tab, live_tab, export_tab = st.tabs(
    ["Upload a CSV", "Import a dataset", "Simulate", "Live stream", "Export"])

with upload_tab:
    st.markdown("Canonical events CSV (see the README, *The events CSV format*). It is checked in full "
                "before anything is stored; a refused file leaves the store exactly as it was.")
    uploaded = st.file_uploader("Events CSV", type=["csv"], max_upload_size=settings.get("upload_limit_mb"))
    if uploaded is not None:
        digest = hashlib.sha256(uploaded.getvalue()).hexdigest()[:16]
        UPLOADS.mkdir(parents=True, exist_ok=True)
        path = UPLOADS / f"{digest}.csv"
        if not path.exists():
            path.write_bytes(uploaded.getvalue())
        try:
            preview = pl.read_csv(path, infer_schema=False, n_rows=20)
            st.caption(f"Preview of {uploaded.name} (first rows)")
            st.dataframe(preview, hide_index=True)
        except Exception:
            st.caption("No preview: the file does not parse as CSV.")
        try:
            check = ingest_events_csv(store, path, dry_run=True, actor="data-page", source_name=uploaded.name)
        except StoreError as error:
            show_error(error)
        else:
            st.success(f"{plural(check.rows_read, 'row passes', 'rows pass')} every check: "
                       f"{plural(check.events_added, 'new event')}, {check.already_stored:,} already stored.")
            if st.button(f"Import {uploaded.name}", type="primary", key=f"import-{digest}"):
                update, clear = progress_callback("Importing")
                try:
                    report = ingest_events_csv(store, path, progress=update, actor="data-page",
                                               source_name=uploaded.name)
                    st.success(report.summary())
                except StoreError as error:
                    show_error(error)
                finally:
                    clear()

with dataset_tab:
    st.markdown("A public dataset on this machine, by path: `events` (canonical CSV), `cmu` (CMU-layout "
                "feature vectors), `balabit` (Balabit mouse challenge folder), `aalto` (Aalto keystroke logs).")
    with st.form("dataset"):
        dataset_path = st.text_input("Path", placeholder="../shared/datasets/balabit-mouse")
        dataset_format = st.selectbox("Format", ["events", "cmu", "balabit", "aalto"])
        submitted = st.form_submit_button("Import")
    if submitted and dataset_path:
        update, clear = progress_callback(f"Importing {dataset_path}")
        try:
            report = IMPORT_FORMATS[dataset_format](store, Path(dataset_path).expanduser(), progress=update,
                                                    dry_run=False)
            st.success(report.summary())
        except StoreError as error:
            show_error(error)
        finally:
            clear()

with simulate_tab:
    st.markdown("Seeded synthetic genuine users plus impostors, bots, replays and hijacked sessions, each "
                "session labelled with its ground truth (kept for evaluation only).")
    with st.form("simulate"):
        left, middle, right, far = st.columns(4)
        users = left.number_input("Users", 1, 500, 10)
        per_user = middle.number_input("Sessions per user", 1, 200, 5)
        seed = right.number_input("Seed", 0, 2**31 - 1, 0)
        attack_share = far.slider("Attack share", 0.0, 1.0, 0.2, 0.05)
        simulate_now = st.form_submit_button("Simulate")
    if simulate_now:
        with st.spinner("Simulating"):
            try:
                report = samples.simulate_into(store, users=int(users), sessions=int(per_user), seed=int(seed),
                                               attack_share=float(attack_share), actor="data-page")
                st.success(report.summary())
            except StoreError as error:
                show_error(error)

with live_tab:
    st.markdown("Streams simulated sessions into the store at wall-clock pace (times the speed), as if people "
                "were typing and moving the mouse now. Seed 2026 is the sample population, so its users "
                "continue; the stream runs in the app process until it ends or you stop it. From a terminal: "
                "`python -m app simulate --live --speed 2` (it posts through the app's inbox).")
    control = get_live_control()
    with st.form("live"):
        left, middle, right, far = st.columns(4)
        live_users = left.number_input("Users", 1, 100, 8, key="live_users")
        live_seed = middle.number_input("Population seed", 0, 2**31 - 1, 2026, key="live_seed")
        live_speed = right.select_slider("Speed", [0.5, 1.0, 2.0, 5.0, 10.0, 50.0], 1.0)
        live_attacks = far.slider("Attack share", 0.0, 1.0, 0.25, 0.05, key="live_attacks")
        start_live = st.form_submit_button("Start live stream")
    if start_live:
        control.start(users=int(live_users), sessions=1, seed=int(live_seed), speed=float(live_speed),
                      attack_share=float(live_attacks))
    if st.button("Stop live stream"):
        control.stop()

    @st.fragment(run_every=1.0)
    def live_status() -> None:
        stream = control.stream
        if stream is None:
            st.caption("No live stream yet.")
            return
        status = stream.status
        state = "running" if status.running else "finished"
        st.progress(min(status.events / max(status.total_events, 1), 1.0),
                    text=f"Live stream {state}: {status.events:,} / {plural(status.total_events, 'event')}, "
                         f"{plural(status.batches, 'batch', 'batches')}, {plural(len(status.sessions), 'session')}")
        if status.error:
            st.error(f"The live stream stopped: {status.error}")

    live_status()

with export_tab:
    st.markdown("Events as hive-partitioned Parquet (`date=YYYY-MM-DD/user_id=.../*.parquet`), "
                "readable by DuckDB, Polars, Spark and Ray. Only events are exported.")
    with st.form("export"):
        folder = st.text_input("Folder", str(Path(settings.get("db")).parent / "export"))
        export_now = st.form_submit_button("Export")
    if export_now:
        report = export_events_parquet(store, folder, actor="data-page")
        st.success(f"Exported {plural(report.events, 'event')} to {report.folder} "
                   f"({plural(report.files, 'file')}).")

st.subheader("Sessions")
overview = contents.sessions_with_counts(store, limit=500)
if overview.height:
    st.dataframe(overview, hide_index=True)
else:
    st.caption("No sessions yet.")
