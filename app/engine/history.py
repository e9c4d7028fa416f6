"""Re-deciding history from stored evidence, and measuring decisions against labels (what the
Threshold lab, Overview and the replay evaluation compute; no database, no Streamlit).

The store keeps every model's risk of every window (1 minus its surprise) and the rules that fired on
every decision. Redoing the session evidence (`app.engine.evidence`) and the policy
(`app.engine.policy.decide_many`) on them under another sensitivity or other bands re-decides history
without refitting or even loading a model (`redecide`); the outcome per session (`session_outcomes`,
`outcome_rates`: the figures `app.engine.replay` reports) and the error rates of windows on their own
(`error_rates`) measure it on labelled sessions.

Conventions as in `detectors.evaluation`: higher risk = less like the user; FRR = share of genuine
windows (or sessions) rejected, FAR = share of attack windows accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from app.engine.evidence import EvidenceSettings, accumulate_sessions, increments, risk_of, window_evidence
from app.engine.policy import Action, Band, Condition, Policy, PolicyError, decide_many
from detectors.evaluation import det_curve, eer, roc_auc

#: Ground-truth labels in display order: genuine first, then the attack types.
LABEL_ORDER = ("genuine", "impostor", "bot", "replay", "hijack")
#: Decision reasons written by `app.engine.policy.decide` when a rule fired (tests pin them to its output).
REPLAYED_REASON = "replayed pattern"
MACHINE_REASON = "machine-like input"
ENROLMENT_REASON = r"not enough enrolment \((\d+) of"
#: Session evidence (nats) at or below this is nothing: where a stored chain shows the live evidence
#: started again from zero after a one-time code was answered.
NO_EVIDENCE = 1e-9


# ------------------------------------------------------------------------------- re-deciding history


def fired_rules(reasons: pl.Series, policy: Policy) -> dict[Condition, np.ndarray]:
    """Per condition, where it held when each stored decision was made, read from its reasons (JSON
    text as `app.engine.policy.decide` wrote them): a replayed window and machine-like input as they were;
    too little enrolment where the enrolment the decision counted is below `policy`'s minimum."""
    text = reasons.fill_null("")
    enrolled = text.str.extract(ENROLMENT_REASON, 1).cast(pl.Float64).fill_null(np.inf).to_numpy()
    return {Condition.REPLAYED_PATTERN: text.str.contains(REPLAYED_REASON, literal=True).to_numpy(),
            Condition.MACHINE_LIKE: text.str.contains(MACHINE_REASON, literal=True).to_numpy(),
            Condition.INSUFFICIENT_ENROLMENT: enrolled < policy.min_enrolment_windows}


def _evidence_of_windows(model_risks: pl.Series) -> np.ndarray:
    """Evidence z of each window from its models' stored risks (a list per window, none empty), as the
    scorer computes it (`app.engine.evidence.window_evidence` of the surprises), a group per model count."""

    z = np.zeros(model_risks.len())
    counts = model_risks.list.len().to_numpy()
    for count in np.unique(counts):
        rows = np.flatnonzero(counts == count)
        risks = model_risks.gather(rows).list.to_array(int(count)).to_numpy()  # windows x models
        z[rows] = window_evidence(list(1.0 - risks.T))
    return z


def redecide(rows: pl.DataFrame, policy: Policy, tuning: EvidenceSettings) -> pl.DataFrame:
    """Stored decisions decided again under `policy` and session evidence settings `tuning`.

    `rows`: one per stored decision (as `store.decided_sessions.lab_decisions`): decision_id, session_id,
    window_id, kind, end_ms (ms of the session clock), evidence and evidence_change (nats, as stored),
    action, verdict, risk, reasons (JSON text) and model_risks (the stored risk of each of the
    decision's models, 1 - surprise). Any row order: they are sorted by session, end_ms and window,
    the order the scorer accumulates evidence in, and returned in that order with new columns:
    new_evidence (nats), new_risk, new_action, new_verdict, recomputed, changed_action, changed_verdict.

    Each window's evidence z is recomputed from its models' risks, weighted and accumulated per session
    from 0 (`app.engine.evidence.increments`, `accumulate_sessions`), and its risk 1 - e^-S decided with the
    rules as they fired then (`fired_rules`). Where the stored chain shows the live evidence started
    again from 0 (the user answered a one-time code; stored evidence minus change is 0 after a window
    that left some), the replay starts again there too; challenges another setting would have raised
    elsewhere are not imagined, so a stricter setting is judged as if nobody answered its extra codes.

    A decision without stored per-model risks, or made before session evidence was stored (null
    evidence: its scores meant something else), keeps its stored evidence and risk (recomputed false;
    in its session's chain it moves the evidence as it did then); its risk is still decided under
    `policy`, so new bands apply to it.
    """
    frame = rows.sort("session_id", "end_ms", "window_id", "decision_id", nulls_last=True)
    recomputable = (pl.col("model_risks").list.len().fill_null(0) > 0) & pl.col("evidence").is_not_null()
    frame = frame.with_columns(recomputed=recomputable)
    usable = frame["recomputed"].to_numpy()
    z = np.zeros(frame.height)
    if usable.any():
        z[usable] = _evidence_of_windows(frame.filter(pl.col("recomputed"))["model_risks"])
    steps = increments(z, frame["kind"].fill_null("").to_list(), tuning)
    steps = np.where(usable, steps, frame["evidence_change"].fill_null(0.0).to_numpy())
    same_session = (pl.col("session_id") == pl.col("session_id").shift(1)).fill_null(False)
    restarted = (same_session & (pl.col("evidence").shift(1).fill_null(0.0) > NO_EVIDENCE)
                 & ((pl.col("evidence") - pl.col("evidence_change")).fill_null(np.inf) <= NO_EVIDENCE))
    stretch = frame.select((~same_session | restarted).cum_sum().cast(pl.String))[:, 0].to_list()
    level = accumulate_sessions(stretch, steps)
    frame = frame.with_columns(
        new_evidence=pl.when(pl.col("recomputed")).then(pl.Series(level)).otherwise(pl.col("evidence")),
        new_risk=pl.when(pl.col("recomputed")).then(pl.Series(risk_of(level))).otherwise(pl.col("risk")))
    actions = decide_many(frame["new_risk"].to_numpy(), policy, fired_rules(frame["reasons"], policy))
    verdicts = {action.value: action.verdict.value for action in Action}
    return frame.with_columns(new_action=pl.Series(actions, dtype=pl.String)).with_columns(
        new_verdict=pl.col("new_action").replace_strict(verdicts, return_dtype=pl.String),
        changed_action=pl.col("action") != pl.col("new_action"),
    ).with_columns(changed_verdict=pl.col("verdict") != pl.col("new_verdict"))


def session_outcomes(rows: pl.DataFrame, action_column: str = "action", risk_column: str = "risk") -> pl.DataFrame:
    """One row per session of decisions `rows` (session_id, label, and the action and risk columns
    named): label (the session's ground truth; a hijack stays a hijack although its first windows are
    the owner's), challenged (any action but ALLOW: a code asked, flagged or denied), denied (DENY or
    FLAG_SESSION) and highest_risk. Pass the sessions to count (after enrolment, labelled): sessions
    without a decision are not in `rows`, where `app.engine.replay.outcome` counts them as allowed."""
    action = pl.col(action_column)
    return (rows.group_by("session_id").agg(
        label=pl.col("label").first(),
        challenged=(action != Action.ALLOW.value).any(),
        denied=action.is_in([Action.DENY.value, Action.FLAG_SESSION.value]).any(),
        highest_risk=pl.col(risk_column).max())
            .sort("session_id"))


def outcome_rates(outcomes: pl.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per label of `session_outcomes`, genuine first: n (sessions), and the share of them challenged
    ("challenged" for genuine sessions, "detected" for an attack type) and denied, as `app.engine.replay`
    reports them. Labels without sessions are left out."""
    counts = outcomes.group_by("label").agg(n=pl.len(), challenged=pl.col("challenged").mean(),
                                            denied=pl.col("denied").mean())
    present = counts.drop_nulls("label")["label"].to_list()
    ordered = [label for label in LABEL_ORDER if label in present] + sorted(set(present) - set(LABEL_ORDER))
    by_label = {row["label"]: row for row in counts.iter_rows(named=True)}
    return {label: {"n": by_label[label]["n"],
                    "challenged" if label == "genuine" else "detected": by_label[label]["challenged"],
                    "denied": by_label[label]["denied"]} for label in ordered}


def labelled_windows(rows: pl.DataFrame) -> pl.DataFrame:
    """The windows of decisions `rows` that have a label and a window risk, each on its own: window_id,
    kind, risk (the stored window_risk: 1 - its models' combined surprise,
    `app.engine.evidence.window_surprise`) and label, the session's except that a hijacked session's
    windows ending before the takeover are "genuine" (the owner was still typing)."""
    owner_still = ((pl.col("label") == "hijack") & pl.col("takeover_ms").is_not_null()
                   & (pl.col("end_ms") < pl.col("takeover_ms"))).fill_null(False)
    return (rows.filter(pl.col("label").is_not_null() & pl.col("window_risk").is_not_null())
            .unique("window_id", keep="first", maintain_order=True)
            .select("window_id", "kind", risk=pl.col("window_risk"),
                    label=pl.when(owner_still).then(pl.lit("genuine")).otherwise(pl.col("label"))))


def is_genuine(label: pl.Expr) -> pl.Expr:
    """Genuine = the label "genuine" (any case); any other label is an attack (as `charts.score_histograms`)."""
    return label.cast(pl.String).str.strip_chars().str.to_lowercase() == "genuine"


@dataclass(frozen=True)
class ErrorRates:
    """Error rates of labelled windows at one operating point, and the curves around it."""

    genuine: np.ndarray  # risks of genuine windows
    impostor: np.ndarray  # risks of attack windows
    edge: float  # a window is flagged when its risk is above this
    far: float  # share of attack windows not flagged (NaN without any)
    frr: float  # share of genuine windows flagged (NaN without any)
    eer: float | None  # None without both classes
    eer_threshold: float | None
    auc: float | None
    curve_far: np.ndarray  # along ascending thresholds (detectors.evaluation.det_curve)
    curve_frr: np.ndarray
    curve_thresholds: np.ndarray


def error_rates(windows: pl.DataFrame, edge: float) -> ErrorRates:
    """FAR and FRR at `edge`, EER, ROC AUC and the DET curve of windows with a `risk` and a `label`.

    A window is flagged when its risk is strictly above `edge` (as `detectors.evaluation.far_frr_at`), as
    the scorer flags a window whose surprise is below TELLTALE_TARGET_FRR: pass 1 - that target.
    """

    genuine_rows = is_genuine(pl.col("label"))
    finite = windows.filter(pl.col("risk").is_not_null() & pl.col("risk").is_finite() & pl.col("label").is_not_null())
    genuine = finite.filter(genuine_rows)["risk"].to_numpy().astype(float)
    impostor = finite.filter(~genuine_rows)["risk"].to_numpy().astype(float)
    far = float(np.mean(impostor <= edge)) if impostor.size else math.nan
    frr = float(np.mean(genuine > edge)) if genuine.size else math.nan
    if genuine.size and impostor.size:
        rate, at = eer(genuine, impostor)
        curve = det_curve(genuine, impostor)
        return ErrorRates(genuine, impostor, edge, far, frr, rate, at, roc_auc(genuine, impostor), *curve)
    empty = np.empty(0)
    return ErrorRates(genuine, impostor, edge, far, frr, None, None, None, empty, empty, empty)


def policy_with_edges(policy: Policy, edges: Sequence[float], description: str | None = None) -> Policy:
    """`policy` with its inner band edges replaced (len(bands) - 1 of them, low to high), actions and
    rules kept, as a draft (revision 0). Raises `app.engine.policy.PolicyError` naming the band when the
    edges do not make valid bands (out of order, equal, outside (0, 1))."""

    edges = [float(e) for e in edges]
    if len(edges) != len(policy.bands) - 1:
        raise PolicyError(f"the policy has {len(policy.bands)} bands, so {len(policy.bands) - 1} inner edges are "
                          f"needed; got {len(edges)}")
    bounds = [0.0, *edges, 1.0]
    bands = tuple(Band(bounds[i], bounds[i + 1], band.action) for i, band in enumerate(policy.bands))
    return Policy(policy_id=policy.policy_id, bands=bands, rules=policy.rules,
                  min_enrolment_windows=policy.min_enrolment_windows, revision=0,
                  description=policy.description if description is None else description)


def what_if_summary(rows: pl.DataFrame) -> dict[str, int]:
    """Counts of a `redecide` frame: decisions, changed_verdict, safe_to_unsafe, unsafe_to_safe,
    changed_action, not_recomputed."""
    if rows.height == 0:
        return dict.fromkeys(("decisions", "changed_verdict", "safe_to_unsafe", "unsafe_to_safe", "changed_action",
                              "not_recomputed"), 0)
    counts = rows.select(
        decisions=pl.len(),
        changed_verdict=pl.col("changed_verdict").sum(),
        safe_to_unsafe=((pl.col("verdict") == "SAFE") & (pl.col("new_verdict") == "UNSAFE")).sum(),
        unsafe_to_safe=((pl.col("verdict") == "UNSAFE") & (pl.col("new_verdict") == "SAFE")).sum(),
        changed_action=pl.col("changed_action").sum(),
        not_recomputed=(~pl.col("recomputed")).sum(),
    ).row(0, named=True)
    return {k: int(v) for k, v in counts.items()}


def transitions(rows: pl.DataFrame) -> pl.DataFrame:
    """Decisions per (action, new_action) pair that differ, most frequent first: action, new_action, decisions."""
    if rows.height == 0:
        return pl.DataFrame(schema={"action": pl.String, "new_action": pl.String, "decisions": pl.UInt32})
    return (rows.filter(pl.col("changed_action")).group_by("action", "new_action").agg(decisions=pl.len())
            .sort("decisions", "action", "new_action", descending=[True, False, False]))
