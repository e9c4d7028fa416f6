"""Threshold lab: move the sensitivity and the policy's band edges, and every stored decision is decided
again from its stored evidence: how sessions after enrolment would end, how windows on their own separate
genuine from attack, which past decisions would change; save the bands as a new policy revision.

Moving a control re-decides history (app.engine.history.redecide); no model is refitted or even loaded.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import polars as pl
import streamlit as st

from app import settings
from app.engine import history, pipeline
from app.engine.policies import latest_policy, save_policy
from app.engine.policy import Policy, PolicyError
from app.web import charts
from app.web.resources import get_store
from app.web.ui import teach
from store import StoreError, contents, decided_sessions
from store.text import plural

TTL = 300  # seconds a query result is reused; results are also keyed by the row counts they depend on

st.title("Threshold lab")
st.caption("Try another sensitivity or other policy bands on the decisions already stored. Nothing is refitted: "
           "every window keeps the risks its models gave it; the session evidence they add up to, and the "
           "decisions on it, are worked out again.")


@st.cache_data(ttl=TTL, show_spinner=False)
def _decisions(db: str, enrolment_sessions: int, decisions: int, scores: int, labels: int) -> pl.DataFrame:
    return decided_sessions.lab_decisions(get_store(), enrolment_sessions)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=16)
def _redecided(db: str, enrolment_sessions: int, decisions: int, scores: int, labels: int, policy_json: str,
               sensitivity: float) -> pl.DataFrame:
    """The stored decisions decided again under a policy (as JSON) at a sensitivity; the other evidence
    settings (shift, kind weights) are the live ones."""
    rows = _decisions(db, enrolment_sessions, decisions, scores, labels)
    tuning = replace(pipeline.evidence_settings(), sensitivity=sensitivity)
    return history.redecide(rows, Policy.from_json(policy_json), tuning)


@st.cache_data(ttl=TTL, show_spinner=False)
def _policy(db: str, revisions: int) -> Policy:
    return latest_policy(get_store())


def _outcomes(redecided: pl.DataFrame) -> pl.DataFrame:
    """How each labelled session after enrolment ends under a re-decided history."""
    labelled = redecided.filter(pl.col("label").is_not_null() & ~pl.col("enrolment"))
    return history.session_outcomes(labelled, "new_action", "new_risk")


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
counts = contents.table_counts(store)
if counts["events"] + counts["feature_windows"] == 0:
    st.info("The store is empty. Open **Data** to load the sample data or simulate users (simulated sessions "
            "carry ground-truth labels), then train models on **Models**; the scorer decides every window and "
            "this page shows how the sensitivity and the bands trade challenged users for missed attacks.")
    st.stop()
if counts["scores"] == 0 or counts["decisions"] == 0:
    st.info("No window has a score yet. Train the models on **Models** (or `python -m app train`); the scheduled "
            "scorer then scores every window and decides. Come back here to tune the setting on those decisions.")
    st.stop()

policy = _policy(db, counts["policies"])
enrolment_sessions = settings.get("enrolment_sessions")
target_frr = float(settings.get("target_frr"))
keys = (db, enrolment_sessions, counts["decisions"], counts["scores"], counts["session_labels"])
rows = _decisions(*keys)

# -- controls ------------------------------------------------------------------------------------------------
left, right = st.columns([1, 2])
with left:
    stored_sensitivity = float(settings.get("sensitivity"))
    sensitivity = st.slider(
        "Sensitivity", min_value=-1.0, max_value=1.0, value=stored_sensitivity, step=0.05, key="lab_sensitivity",
        help="How much a typical window wears a session's evidence down: 0 as calibrated, +1 not at all (every "
             "unusual window stays counted), −1 twice as much.")
    st.caption(f"TELLTALE_SENSITIVITY applies a sensitivity to live scoring (now {stored_sensitivity:+.2f}).")
    kinds = sorted(rows["kind"].drop_nulls().unique().to_list())
    kind = st.selectbox("Window kind (windows on their own)", ["all kinds", *kinds], key="lab_kind")
with right:
    st.markdown(f"**Bands of policy `{policy.policy_id}` revision {policy.revision}**")
    edges = [st.slider(f"{band.action} → {after.action}", min_value=0.0, max_value=1.0, value=float(band.upper),
                       step=0.01, key=f"lab_edge_{i}")
             for i, (band, after) in enumerate(zip(policy.bands, policy.bands[1:], strict=False))]
    described = re.sub(r"^Bands from the threshold lab \(explored at sensitivity [^)]*\)\. ", "", policy.description)
    try:
        draft = history.policy_with_edges(policy, edges, description=(
            f"Bands from the threshold lab (explored at sensitivity {sensitivity:+.2f}). {described}").strip())
    except PolicyError as error:
        draft = None
        st.error(f"These bands are not a valid policy: {error}. Move the sliders so that each edge is above the "
                 "one before it.")
teach("A session collects evidence window by window: a window rarer than the user's own adds to it, a typical "
      "window wears it down, so a genuine session drifts back to nothing while an attacker's keeps growing. The "
      "risk is 1 − e^−evidence, and the policy's bands map it to an action: below the first edge ALLOW (SAFE), "
      "above it a one-time code, a flag for review or a denial. The *sensitivity* sets how fast typical windows "
      "wear the evidence down; the edges set how much evidence each action needs.")

after_enrolment = rows.filter(pl.col("label").is_not_null() & ~pl.col("enrolment"))
baseline = _redecided(*keys, policy.to_json(), stored_sensitivity)
redecided = None if draft is None else _redecided(*keys, draft.to_json(), sensitivity)

# -- sessions after enrolment --------------------------------------------------------------------------------
st.subheader("Sessions after enrolment")
if draft is None:
    st.info("Fix the bands above to see how the sessions would end.")
elif after_enrolment.height == 0:
    st.info("None of the decided sessions after each user's enrolment carries a ground-truth label. Simulated "
            "sessions do: simulate users on **Data** (with attacks) to see how many genuine users are challenged "
            "and how many attacks are caught.")
else:
    sessions = _outcomes(redecided)
    now, before = history.outcome_rates(sessions), history.outcome_rates(_outcomes(baseline))
    figures = []
    if "genuine" in now:
        figures += [("Genuine challenged", now["genuine"]["challenged"], before["genuine"]["challenged"], "inverse",
                     "Share of genuine sessions asked for a code, flagged or denied at some window."),
                    ("Genuine denied", now["genuine"]["denied"], before["genuine"]["denied"], "inverse",
                     "Share of genuine sessions flagged or denied at some window.")]
    figures += [(f"{label.capitalize()} detected", rates["detected"], before[label]["detected"], "normal",
                 f"Share of {label} sessions challenged (a code asked, flagged or denied) at some window.")
                for label, rates in now.items() if label != "genuine"]
    for column, (label, value, stored_value, colour, explained) in zip(st.columns(len(figures)), figures,
                                                                        strict=True):
        column.metric(label, _percent(value), _delta(value, stored_value), delta_color=colour, help=explained)
    st.caption(" · ".join(f"{plural(rates['n'], f'{label} session')}" for label, rates in now.items())
               + f", after each user's first {plural(enrolment_sessions, 'session')} (their enrolment). Deltas "
               f"against the stored setting (sensitivity {stored_sensitivity:+.2f}, revision {policy.revision}'s "
               "bands). Sessions without any decision are not counted.")
    st.plotly_chart(charts.session_risk_chart(sessions, draft.bands), width="stretch")
    teach("Each dot is one session after enrolment, at the highest risk it reached, in a row for what it really "
          "was (simulated ground truth). The shaded bands are the policy's actions. Genuine dots right of the "
          "first edge are users asked for more; attack dots left of it got through. A hijacked session's owner "
          "leaves no credit behind (evidence never goes below zero), so the attacker's windows build it from zero "
          "and are caught once they have added up.")

# -- windows on their own -----------------------------------------------------------------------------------------
st.subheader("Windows on their own")
edge = 1.0 - target_frr
windows = history.labelled_windows(rows.filter(~pl.col("enrolment")))
if kind != "all kinds":
    windows = windows.filter(pl.col("kind") == kind)
if windows.height == 0:
    st.info("None of the scored windows after enrolment comes from a labelled session"
            + ("" if kind == "all kinds" else f" of kind {kind}") + ". Simulate users on **Data** (with attacks) "
            "to measure FAR and FRR here.")
else:
    rates = history.error_rates(windows, edge)
    figures = st.columns(4)
    figures[0].metric("FAR", _percent(rates.far), help="False accept rate: share of attack windows not flagged.")
    figures[1].metric("FRR", _percent(rates.frr), help="False reject rate: share of genuine windows flagged.")
    figures[2].metric("EER", _percent(rates.eer),
                      help="Equal error rate: where FAR and FRR meet on these windows, all users pooled.")
    figures[3].metric("AUC", "—" if rates.auc is None else f"{rates.auc:.3f}",
                      help="Area under the ROC curve: the chance that an attack window has a higher risk than a "
                           "genuine one (0.5 = guessing, 1 = perfect).")
    st.caption(f"{plural(rates.genuine.size, 'genuine window')} and {plural(rates.impostor.size, 'attack window')}"
               f"{'' if kind == 'all kinds' else f' of kind {kind}'} after enrolment (a hijacked session's windows "
               f"before the takeover are the owner's). A window is flagged on its own when it is rarer than "
               f"TELLTALE_TARGET_FRR = {target_frr:g} of the user's genuine windows: risk above {edge:g}. These risks "
               "are what the models said; the controls above do not move them.")
    if rates.eer is None:
        st.warning("Only one class is labelled among these windows, so there is no EER, ROC or DET curve: both "
                   "genuine and attack windows are needed. Simulate users with attacks on **Data**.")

    top_left, top_right = st.columns(2)
    with top_left:
        st.plotly_chart(charts.score_histograms(windows, threshold=edge, title="Genuine against attack windows"),
                        width="stretch")
        teach("Each window's own risk: the share of the user's genuine windows (from sessions its model never saw) "
              "that score lower. A genuine window is spread evenly over 0–1 by construction; an attacker's piles "
              "up near 1. Right of the dashed line a window is flagged on its own.")
    with top_right:
        st.plotly_chart(charts.far_frr_chart(rates.curve_thresholds, rates.curve_far, rates.curve_frr,
                                             threshold=edge, x_title="window risk threshold"), width="stretch")
        teach("FAR and FRR of single windows as the threshold moves: one falls as the other rises. One window "
              "decides little; the session's evidence is what adds many of them up.")
    bottom_left, bottom_right = st.columns(2)
    with bottom_left:
        st.plotly_chart(charts.roc_chart(rates.curve_far, 1 - rates.curve_frr,
                                         operating_point=(rates.far, 1 - rates.frr) if rates.eer is not None else None,
                                         auc=rates.auc), width="stretch")
        teach("ROC: every possible threshold as one point, genuine windows accepted against attack windows "
              "accepted. The closer the curve hugs the top-left corner the better. The red dot is the target "
              "false-reject rate.")
    with bottom_right:
        st.plotly_chart(charts.det_chart(rates.curve_far, rates.curve_frr,
                                         operating_point=(rates.far, rates.frr) if rates.eer is not None else None,
                                         eer=rates.eer), width="stretch")
        teach("DET: the same trade-off with both error rates on a probit scale, which stretches the small rates a "
              "real system runs at. Lower-left is better; the diamond is the EER.")

# -- what if --------------------------------------------------------------------------------------------------
st.subheader("What if: past decisions under this setting")
if redecided is None:
    st.info("Fix the bands above to see which past decisions would change.")
else:
    summary = history.what_if_summary(redecided)
    columns = st.columns(4)
    columns[0].metric("Decisions re-decided", f"{summary['decisions']:,}")
    columns[1].metric("Would change verdict", f"{summary['changed_verdict']:,}")
    columns[2].metric("SAFE → UNSAFE", f"{summary['safe_to_unsafe']:,}")
    columns[3].metric("UNSAFE → SAFE", f"{summary['unsafe_to_safe']:,}")
    st.caption(f"{summary['changed_action']:,} would change action, among the decisions of the newest sessions, "
               "labelled or not. Rules fire as they did then (replays, machine-like input, too little enrolment); a "
               "one-time code answered then starts the evidence again where it did."
               + (" " + plural(summary["not_recomputed"], "decision without its models' stored risks keeps its",
                               "decisions without their models' stored risks keep their")
                  + " stored risk under the new bands." if summary["not_recomputed"] else ""))
    moved = history.transitions(redecided)
    if moved.height:
        st.dataframe(moved, hide_index=True, width="content")
    teach("The store keeps every window's risks and every rule that fired, so history can be re-decided in an "
          "instant. This is how to see the cost of a stricter setting before anyone meets it: every SAFE → UNSAFE "
          "here is a session that would have been asked for a code, or worse.")

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
