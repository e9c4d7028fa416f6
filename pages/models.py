"""Models: who is enrolled, what is trained, train now, and evaluate detectors on a public dataset."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from app import settings
from app.engine import training
from app.engine.detector_evaluation import DEFAULT_DETECTORS, evaluate, markdown, protocol_text
from app.web import charts
from app.web.resources import get_store
from app.web.ui import progress_callback, teach
from detectors import DETECTORS
from store.metrics import latest_drift
from store.session_progress import clear_session_failures, session_failures
from store.stored_models import active_models
from store.text import plural
from store.windows import window_counts

st.title("Models")
store = get_store()

counts = window_counts(store)
if counts.height == 0:
    st.info("No feature windows yet. Load the sample data or simulate users on **Data**, or enrol on **Capture**.")
else:
    enrolment = counts.pivot(on="kind", index="user_id", values="windows").fill_null(0)
    trained = active_models(store)
    per_user = (trained.group_by("user_id").agg(detectors=pl.col("detector").unique().sort().str.join(", "),
                                                 kinds=pl.col("kind").unique().sort().str.join(", "),
                                                 trained_at=pl.col("trained_at").max(),
                                                 samples=pl.col("n_samples").max()))
    table = enrolment.join(per_user, on="user_id", how="left")
    drift = latest_drift(store)
    if drift.height:
        table = table.join(drift.group_by("user_id").agg(drifted=pl.col("drifted").any()), on="user_id", how="left")
    st.subheader("Users")
    st.caption(f"Windows per kind, the models trained for each user, and drift. Users below "
               f"{plural(settings.get('min_enrolment_windows'), 'window')} of a kind are scored by the global "
               "model and their decisions say 'not enough enrolment'.")
    st.dataframe(table.sort("user_id"), hide_index=True)
    global_models = trained.filter(pl.col("user_id").is_null())
    if global_models.height:
        st.caption("Global models (users without enough enrolment): " + ", ".join(
            f"{k} ({d}, {plural(n, 'window')})"
            for k, d, n in global_models.select("kind", "detector", "n_samples").rows()))

    if st.button("Train now", type="primary", help=f"Detectors: {settings.get('detectors')}"):
        update, clear = progress_callback("Training")
        report = training.train(store, progress=update, actor="models-page")
        clear()
        st.session_state["models_trained"] = report.summary()
        st.rerun()  # redraw the table with the new models
    if "models_trained" in st.session_state:
        st.success(st.session_state.pop("models_trained"))

failures = session_failures(store)
if failures.height:
    st.subheader("Sessions set aside")
    st.caption(f"{plural(failures.height, 'session')} could not be windowed or scored; every other session "
               "was decided. A session is tried again when it gets new events, or now with the button.")
    st.dataframe(failures, hide_index=True)
    if st.button("Try these sessions again"):
        st.session_state["retried"] = clear_session_failures(store)
        st.rerun()
if "retried" in st.session_state:
    st.success(f"{plural(st.session_state.pop('retried'), 'session')} queued for the next scoring run.")

st.divider()
st.subheader("Evaluate on a public dataset")
teach("EER, the equal-error rate, is where false accepts (impostors let in) and false rejects (the real user "
      "turned away) are equally frequent: lower is better. The DET curve shows the whole trade-off.")
with st.form("evaluate"):
    path = st.text_input("Path", "../shared/datasets/meu-mobile-ksd/meu-mobile-ksd.csv")
    fmt = st.selectbox("Format", ["cmu", "balabit", "aalto"])
    chosen = st.multiselect("Detectors (empty: the format's defaults)", list(DETECTORS))
    left, right = st.columns(2)
    train_reps = left.number_input("Training repetitions (cmu) / sentences (aalto)", 1, 1000, 25)
    impostor_reps = right.number_input("Impostor repetitions per other subject", 1, 100, 5)
    run = st.form_submit_button("Evaluate")
if run:
    if not Path(path).exists():
        st.error(f"{path} not found on this machine.")
    else:
        update, clear = progress_callback("Evaluating")
        try:
            result = evaluate(Path(path), fmt, detectors=chosen or DEFAULT_DETECTORS[fmt], train_reps=int(train_reps),
                              impostor_reps=int(impostor_reps), progress=update)
            st.session_state["evaluation"] = (fmt, result)
        except (KeyError, ValueError) as error:
            st.error(str(error))
        finally:
            clear()
if "evaluation" in st.session_state:
    fmt, result = st.session_state["evaluation"]
    st.markdown(markdown(result, fmt))
    st.caption(f"Protocol: {protocol_text(result['protocol'])}")
    name = st.selectbox("DET curve of", list(result["detectors"]))
    det = result["detectors"][name].get("det")
    if det:
        st.plotly_chart(charts.det_chart(det["far"], det["frr"], eer=result["detectors"][name]["eer_mean"]))
