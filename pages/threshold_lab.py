"""Threshold lab: move the sensitivity and the policy's band edges, watch the error rates on labelled
windows and count the past decisions that would change; save the bands as a new policy revision.

Everything here re-labels stored scores (app.analysis); moving a slider never refits or loads a model.
"""

from __future__ import annotations

import math

import polars as pl
import streamlit as st

from app import analysis, charts, settings
from app.policy import Policy, PolicyError
from app.resources import get_store
from app.text import plural
from app.ui import teach
from store import StoreError, monitor, reads
from store.models import model_blobs
from store.policies import latest_policy, save_policy

TTL = 300  # seconds a query result is reused; results are also keyed by the row counts they depend on

st.title("Threshold lab")
st.caption("Try another sensitivity or other policy bands on the scores already stored. Nothing is refitted: "
           "every window keeps its stored risk, only the line that separates SAFE from UNSAFE moves.")


@st.cache_data(ttl=TTL, show_spinner=False)
def _labelled(db: str, enrolment_sessions: int, scores: int) -> pl.DataFrame:
    return monitor.labelled_scores(get_store(), enrolment_sessions)


@st.cache_data(ttl=TTL, show_spinner=False)
def _decisions(db: str, decisions: int) -> pl.DataFrame:
    return monitor.decision_scores(get_store())


@st.cache_data(ttl=3600, show_spinner=False)
def _thresholds(db: str, model_ids: tuple[str, ...]) -> dict[str, float]:
    """Calibrated risk thresholds of these models: from their metadata, else from their blob headers
    (read without unpickling the detector). A model's threshold never changes, hence the long ttl."""
    store = get_store()
    rows = monitor.model_rows(store, list(model_ids))
    missing = analysis.models_without_threshold(rows)
    headers = {}
    if missing:
        from detectors.persistence import read_metadata

        headers = {model_id: read_metadata(blob) for model_id, blob in model_blobs(store, missing).items()}
    return analysis.model_thresholds(rows, headers)


@st.cache_data(ttl=TTL, show_spinner=False)
def _policy(db: str, revisions: int) -> Policy:
    return latest_policy(get_store())


def _percent(rate: float | None) -> str:
    return "—" if rate is None or not math.isfinite(rate) else f"{rate:.1%}"


def _delta(now: float | None, before: float | None) -> str | None:
    """The change in percentage points, or None (no arrow) when there is none to show."""
    if now is None or before is None or not (math.isfinite(now) and math.isfinite(before)):
        return None
    points = (now - before) * 100
    return None if abs(points) < 0.05 else f"{points:+.1f} pp"


store = get_store()
db = store.path
counts = reads.table_counts(store)
if counts["events"] + counts["feature_windows"] == 0:
    st.info("The store is empty. Open **Data** to load the sample data or simulate users (simulated sessions "
            "carry ground-truth labels), then train models on **Models**; the scorer scores the windows and "
            "this page shows how the thresholds trade false rejects for false accepts.")
    st.stop()
if counts["scores"] == 0:
    st.info("No window has a score yet. Train the models on **Models** (or `python -m app train`); the scheduled "
            "scorer then scores every window and decides. Come back here to tune the thresholds on those scores.")
    st.stop()

policy = _policy(db, counts["policies"])
enrolment_sessions = settings.get("enrolment_sessions")
labelled = _labelled(db, enrolment_sessions, counts["scores"])
decided = _decisions(db, counts["decisions"])
model_ids = tuple(sorted(set(labelled["model_id"].to_list())
                         | set(decided["model_id"].drop_nulls().to_list())))
thresholds = _thresholds(db, model_ids)

# -- controls ------------------------------------------------------------------------------------------------
left, right = st.columns([1, 2])
with left:
    stored_sensitivity = float(settings.get("sensitivity"))
    sensitivity = st.slider(
        "Sensitivity", min_value=-1.0, max_value=1.0, value=stored_sensitivity, step=0.05, key="lab_sensitivity",
        help="Moves every user's calibrated threshold: 0 keeps it, +1 flags everything, −1 flags nothing. "
             f"The scorer uses TELLTALE_SENSITIVITY (now {stored_sensitivity:+.2f}).")
    kinds = sorted(labelled["kind"].unique().to_list())
    kind = st.selectbox("Window kind", ["all kinds", *kinds], key="lab_kind")
    in_sample = st.checkbox("Include enrolment windows", value=False, key="lab_in_sample",
                            help=f"Windows of each user's first {plural(enrolment_sessions, 'session')} trained their "
                                 "models; their scores are optimistic, so they are left out by default.")
with right:
    st.markdown(f"**Bands of policy `{policy.policy_id}` revision {policy.revision}**")
    edges = [st.slider(f"{band.action} → {after.action}", min_value=0.0, max_value=1.0, value=float(band.upper),
                       step=0.01, key=f"lab_edge_{i}")
             for i, (band, after) in enumerate(zip(policy.bands, policy.bands[1:], strict=False))]
    try:
        draft = analysis.policy_with_edges(policy, edges, description=(
            f"Bands from the threshold lab (explored at sensitivity {sensitivity:+.2f}). {policy.description}").strip())
    except PolicyError as error:
        draft = None
        st.error(f"These bands are not a valid policy: {error}. Move the sliders so that each edge is above the "
                 "one before it.")
edge = edges[0] if edges else policy.bands[0].upper
teach("A policy maps a risk (0–1) to an action through bands. Below the first edge a window is ALLOWed (SAFE); "
      "every band above it is UNSAFE and asks for more: a one-time code, a flag for review, or a denial. Each "
      "user's calibrated threshold is aligned to the first edge, so the *sensitivity* decides who is SAFE; the "
      "higher edges grade how UNSAFE.")

# -- error rates on labelled windows -------------------------------------------------------------------------
st.subheader("Error rates on labelled windows")
chosen = labelled if kind == "all kinds" else labelled.filter(pl.col("kind") == kind)
if not in_sample:
    chosen = chosen.filter(~pl.col("enrolment"))
windows = chosen.unique("window_id", keep="first", maintain_order=True).select("window_id", "label", "kind")


def _window_risks(at_sensitivity: float, at_edge: float) -> pl.DataFrame:
    return analysis.combined_risks(chosen, thresholds, at_sensitivity, at_edge).join(windows, on="window_id")


if windows.height == 0:
    st.info("None of the scored windows comes from a labelled session"
            + ("" if in_sample else " outside enrolment") + ". Simulated sessions carry labels: simulate users "
            "on **Data** (with attacks) to measure FAR and FRR here"
            + ("." if in_sample else ", or tick *Include enrolment windows*."))
    rates = None
else:
    risks = _window_risks(sensitivity, edge)
    rates = analysis.error_rates(risks, edge)
    saved = analysis.error_rates(_window_risks(stored_sensitivity, policy.bands[0].upper), policy.bands[0].upper)
    figures = st.columns(4)
    figures[0].metric("FAR", _percent(rates.far), _delta(rates.far, saved.far), delta_color="inverse",
                      help="False accept rate: share of attack windows that would be ALLOWed.")
    figures[1].metric("FRR", _percent(rates.frr), _delta(rates.frr, saved.frr), delta_color="inverse",
                      help="False reject rate: share of genuine windows that would be UNSAFE.")
    figures[2].metric("EER", _percent(rates.eer),
                      help="Equal error rate: where FAR and FRR meet on these windows, all users pooled. It moves a "
                           "little with the sensitivity, because each user's risks are re-aligned to their own "
                           "moved threshold.")
    figures[3].metric("AUC", "—" if rates.auc is None else f"{rates.auc:.3f}",
                      help="Area under the ROC curve: the chance that an attack window has a higher risk than a "
                           "genuine one (0.5 = guessing, 1 = perfect).")
    st.caption(f"{plural(rates.genuine.size, 'genuine window')} and {plural(rates.impostor.size, 'attack window')}"
               f"{'' if kind == 'all kinds' else f' of kind {kind}'}. Deltas against the stored setting "
               f"(sensitivity {stored_sensitivity:+.2f}, first edge {policy.bands[0].upper:g}). Windows whose models "
               "have no stored threshold are left out.")
    if rates.eer is None:
        st.warning("Only one class is labelled among these windows, so there is no EER, ROC or DET curve: both "
                   "genuine and attack windows are needed. Simulate users with attacks on **Data**.")

    top_left, top_right = st.columns(2)
    with top_left:
        st.plotly_chart(charts.score_histograms(risks, threshold=edge, title="Genuine against attack windows"),
                        width="stretch")
        teach("Each window's risk, split by what really happened (simulated ground truth). Everything right of the "
              "dashed line is UNSAFE. Where the two humps overlap, no line can be right for both: moving it left "
              "rejects more genuine users (FRR up), moving it right lets more attackers in (FAR up).")
    with top_right:
        st.plotly_chart(charts.far_frr_chart(rates.curve_thresholds, rates.curve_far, rates.curve_frr,
                                             threshold=edge, x_title="risk threshold"), width="stretch")
        teach("FAR and FRR as the threshold moves: one falls as the other rises. The EER is where they cross: one "
              "number to compare detectors, although a deployment rarely runs exactly there.")
    bottom_left, bottom_right = st.columns(2)
    with bottom_left:
        st.plotly_chart(charts.roc_chart(rates.curve_far, 1 - rates.curve_frr,
                                         operating_point=(rates.far, 1 - rates.frr) if rates.eer is not None else None,
                                         auc=rates.auc), width="stretch")
        teach("ROC: every possible threshold as one point, genuine users accepted against attackers accepted. The "
              "closer the curve hugs the top-left corner the better; AUC is the chance that an attack window "
              "scores above a genuine one. The red dot is the current setting.")
    with bottom_right:
        st.plotly_chart(charts.det_chart(rates.curve_far, rates.curve_frr,
                                         operating_point=(rates.far, rates.frr) if rates.eer is not None else None,
                                         eer=rates.eer), width="stretch")
        teach("DET: the same trade-off with both error rates on a probit scale, which stretches the small rates a "
              "real system runs at. Lower-left is better; the diamond is the EER.")

# -- what if --------------------------------------------------------------------------------------------------
st.subheader("What if: past decisions under this setting")
if draft is None:
    st.info("Fix the bands above to see which past decisions would change.")
elif decided.height == 0:
    st.info("No decisions yet: the scorer decides as it scores windows.")
else:
    changed = analysis.what_if(decided, thresholds, sensitivity, draft)
    summary = analysis.what_if_summary(changed)
    columns = st.columns(4)
    columns[0].metric("Decisions re-decided", f"{summary['decisions']:,}")
    columns[1].metric("Would change verdict", f"{summary['changed_verdict']:,}")
    columns[2].metric("SAFE → UNSAFE", f"{summary['safe_to_unsafe']:,}")
    columns[3].metric("UNSAFE → SAFE", f"{summary['unsafe_to_safe']:,}")
    st.caption(f"{summary['changed_action']:,} would change action. Rules fire as they did then (replays, too "
               "little enrolment)." + (" " + plural(summary["not_recomputed"],
                                                    "decision without its models' stored risks keeps its",
                                                    "decisions without their models' stored risks keep their")
                                       + " decided risk under the new bands." if summary["not_recomputed"] else ""))
    moved = analysis.transitions(changed)
    if moved.height:
        st.dataframe(moved, hide_index=True, width="content")
    teach("A decision is a pure function of a stored risk and a policy, so history can be re-decided in an instant. "
          "This is how to see the cost of a stricter setting before anyone meets it: every SAFE → UNSAFE here is a "
          "genuine user who would have been asked for a code, or worse.")

# -- save -----------------------------------------------------------------------------------------------------
st.subheader("Save")
unchanged = draft is not None and draft.bands == policy.bands
st.caption("Saves the bands as the next revision of the policy (audited as `policy_change` by `threshold-lab`); "
           "decisions from then on name that revision. The sensitivity is a setting, not part of the policy: set "
           "TELLTALE_SENSITIVITY to apply it.")
if st.button("Save as new policy revision", type="primary", disabled=draft is None or unchanged, key="lab_save"):
    try:
        saved_policy = save_policy(store, draft, actor="threshold-lab")
    except (StoreError, PolicyError) as error:
        st.error(f"The policy was not saved: {error}")
    else:
        st.success(f"Saved policy `{saved_policy.policy_id}` revision {saved_policy.revision}: "
                   + ", ".join(b.describe(last=b is saved_policy.bands[-1]) for b in saved_policy.bands))
if unchanged:
    st.caption("The bands are those of the current revision; move a slider to save new ones.")
