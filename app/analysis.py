"""What the Investigation and Threshold lab pages compute: pure functions of frames, arrays and loaded
models (no database, no Streamlit), each testable on a few hand-made rows.

Three groups:

- **Explaining a window**: z-scores of its features against the user's enrolled baseline (units
  from `FEATURE_DICTIONARY`), and per-feature contributions, either the share of the total
  deviation (`deviation_contributions`) or leave-one-feature-out with the user's model
  (`leave_one_out_contributions`).
- **One session's behaviour**: key presses with flights, the pointer path with speeds, and an
  animated replay figure.
- **Re-labelling stored scores** (STYLE.md §2): the store keeps every model's per-user risk of
  every window; the decided risk is their mean after each model's calibrated threshold, moved by
  the sensitivity, is aligned to the policy's first band edge (`app.pipeline.align_to_policy`).
  Redoing that arithmetic under another sensitivity or other bands re-labels history without
  refitting or even loading a model: error rates on labelled windows (`error_rates`) and past
  decisions that would change (`what_if`).

Conventions as in `detectors.evaluation`: higher risk = less like the user; FRR = share of genuine
windows not allowed, FAR = share of impostor windows allowed. A window is allowed when its aligned
risk is below the first band edge (bands include their lower edge), which is what `app.policy.decide`
does with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from app.policy import Action, Band, Condition, Policy, decide_many
from app.text import plural
from detectors.features import FEATURE_DICTIONARY, key_presses, pointer_samples, with_flights

#: A baseline spread at or below this is "no spread": the z-score is undefined (null), not infinite.
MIN_STD = 1e-9
#: Decision reasons written by `app.policy.decide` when a rule fired (tests pin them to its output).
REPLAYED_REASON = "replayed pattern"
ENROLMENT_REASON = r"not enough enrolment \((\d+) of"


# ------------------------------------------------------------------------------- explaining a window


def feature_info(names: Sequence[str]) -> pl.DataFrame:
    """name, unit, meaning, family of each feature (empty strings for a name not in the dictionary)."""
    entries = [FEATURE_DICTIONARY.entries.get(n) for n in names]
    return pl.DataFrame({
        "name": list(names),
        "unit": [e.unit if e else "" for e in entries],
        "meaning": [e.meaning if e else "" for e in entries],
        "family": [e.family if e else "" for e in entries],
    }, schema={"name": pl.String, "unit": pl.String, "meaning": pl.String, "family": pl.String})


def _metadata(metadata: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if metadata is None:
        return {}
    if isinstance(metadata, str):
        try:
            loaded = json.loads(metadata)
        except json.JSONDecodeError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return metadata


def baseline_of(metadata: str | Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) per feature of the windows a model was trained on, from its metadata; None if absent."""
    baseline = _metadata(metadata).get("baseline") or {}
    mean, std = baseline.get("mean"), baseline.get("std")
    if not mean or not std or len(mean) != len(std):
        return None
    return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


def threshold_of(metadata: str | Mapping[str, Any] | None) -> float | None:
    """A model's calibrated risk threshold (metadata `threshold.risk`, as `UserModel.to_bytes` writes
    it into the blob header); None when the metadata does not carry it."""
    threshold = _metadata(metadata).get("threshold")
    value = threshold.get("risk") if isinstance(threshold, Mapping) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def feature_zscores(values: Sequence[float] | np.ndarray, names: Sequence[str], mean: Sequence[float] | np.ndarray,
                    std: Sequence[float] | np.ndarray) -> pl.DataFrame:
    """Each feature of one window beside the baseline: name, value, baseline_mean, baseline_std, z, unit,
    meaning. `z` = (value - mean) / std, null where the baseline has no spread (std <= MIN_STD)."""
    value, centre, spread = (np.asarray(a, dtype=float).reshape(-1) for a in (values, mean, std))
    if not value.size == centre.size == spread.size == len(names):
        raise ValueError(f"feature_zscores: {len(names)} names but {value.size} values, {centre.size} means "
                         f"and {spread.size} standard deviations; they must match (same feature schema)")
    usable = spread > MIN_STD
    z = np.divide(value - centre, spread, out=np.full(value.size, np.nan), where=usable)
    info = feature_info(names)
    return pl.DataFrame({
        "name": list(names), "value": value, "baseline_mean": centre, "baseline_std": spread,
        "z": pl.Series(z).fill_nan(None), "unit": info["unit"], "meaning": info["meaning"],
    })


def deviation_contributions(zscores: pl.DataFrame) -> pl.DataFrame:
    """Share of the window's total deviation that each feature carries: |z| / sum |z| (sums to 1).

    Columns: feature, contribution (0-1), z, unit; largest first. Features without a z-score are
    left out; when every |z| is 0 every share is 0. Model-free, so it explains any detector roughly;
    `leave_one_out_contributions` asks the model itself.
    """
    frame = zscores.filter(pl.col("z").is_not_null() & pl.col("z").is_finite())
    total = float(frame["z"].abs().sum()) if frame.height else 0.0
    return frame.select(
        feature=pl.col("name"),
        contribution=(pl.col("z").abs() / total) if total > 0 else pl.lit(0.0),
        z=pl.col("z"), unit=pl.col("unit"),
    ).sort("contribution", descending=True, maintain_order=True)


def leave_one_out_contributions(risk_of: Callable[[np.ndarray], np.ndarray], x: Sequence[float] | np.ndarray,
                                reference: Sequence[float] | np.ndarray, names: Sequence[str]) -> pl.DataFrame:
    """How much each feature raises the risk: risk(x) minus risk(x with that feature set to the baseline mean).

    `risk_of` maps a matrix (rows = windows) to risks; it is called once, on len(names) + 1 rows.
    Columns: feature, contribution (risk units; positive raises, negative lowers), unit; largest first.
    Features interact, so the contributions need not add up to the risk.
    """
    x, reference = np.asarray(x, dtype=float).reshape(-1), np.asarray(reference, dtype=float).reshape(-1)
    if not x.size == reference.size == len(names):
        raise ValueError(f"leave_one_out_contributions: {len(names)} names, {x.size} values, "
                         f"{reference.size} reference values; they must match")
    rows = np.tile(x, (x.size + 1, 1))
    index = np.arange(x.size)
    rows[index + 1, index] = reference
    risks = np.asarray(risk_of(rows), dtype=float).reshape(-1)
    if risks.size != x.size + 1:
        raise ValueError(f"risk_of returned {risks.size} risks for {x.size + 1} rows")
    return pl.DataFrame({
        "feature": list(names), "contribution": risks[0] - risks[1:], "unit": feature_info(names)["unit"],
    }).sort(pl.col("contribution").abs(), descending=True, maintain_order=True)


def model_risk_function(models: Sequence[Any], schema_id: str, sensitivity: float,
                        edge: float) -> Callable[[np.ndarray], np.ndarray]:
    """The decided risk of windows as the scorer computes it, from loaded `UserModel`s: each model's
    normalised risk aligned at its moved threshold, averaged (for leave-one-feature-out)."""
    from detectors.thresholds import normalise

    thresholds = moved_thresholds(np.array([m.threshold for m in models], dtype=float), sensitivity)

    def risk_of(X: np.ndarray) -> np.ndarray:
        per_model = [aligned_risk(normalise(m.score(X, schema_id), m.normaliser), t, edge)
                     for m, t in zip(models, thresholds, strict=True)]
        return np.mean(per_model, axis=0)

    return risk_of


# ------------------------------------------------------------------------------------- one session


def session_presses(events: pl.DataFrame) -> pl.DataFrame:
    """Complete key presses of one session's events in keydown order, with flights (ms) from the
    previous press: t_down, t_up, dwell, flight_dd, flight_ud, flight_uu, key_class, pos, field."""
    if events.height == 0:
        return pl.DataFrame(schema={"t_down": pl.Float64, "t_up": pl.Float64, "dwell": pl.Float64,
                                    "flight_dd": pl.Float64, "flight_ud": pl.Float64, "flight_uu": pl.Float64,
                                    "key_class": pl.String, "pos": pl.Int32, "field": pl.String})
    presses = key_presses(events.lazy().sort("session_id", "seq")).sort("session_id", "t_down")
    return (with_flights(presses, ["session_id"])
            .select("t_down", "t_up", "dwell", "flight_dd", "flight_ud", "flight_uu", "key_class", "pos", "field")
            .collect())


def pointer_path(events: pl.DataFrame) -> pl.DataFrame:
    """Pointer samples of one session in order: t_ms, type, x, y (px) and speed (px/s since the previous
    sample; null for the first one and where no time passed)."""
    schema = {"t_ms": pl.Float64, "type": pl.String, "x": pl.Float64, "y": pl.Float64, "speed": pl.Float64}
    if events.height == 0:
        return pl.DataFrame(schema=schema)
    dt = pl.col("t_ms") - pl.col("t_ms").shift(1)
    step = ((pl.col("x") - pl.col("x").shift(1)) ** 2 + (pl.col("y") - pl.col("y").shift(1)) ** 2).sqrt()
    return (pointer_samples(events.lazy().sort("session_id", "seq"))
            .filter(pl.col("x").is_not_null() & pl.col("y").is_not_null())
            .with_columns(speed=pl.when(dt > 0).then(step / dt * 1000.0))
            .select(*schema).collect())


def replay_times(duration_ms: float, max_frames: int = 120, min_step_ms: float = 100.0) -> tuple[np.ndarray, float]:
    """Frame times (ms of the session clock, from 0 to the end inclusive) and the step between them:
    at least `min_step_ms`, and no more than `max_frames` frames."""
    duration = max(float(duration_ms), 0.0)
    step = max(float(min_step_ms), duration / max(int(max_frames) - 1, 1))
    count = math.floor(duration / step) + 1
    times = np.arange(count, dtype=float) * step
    if times[-1] < duration:
        times = np.r_[times, duration]
    return times, step


def replay_figure(events: pl.DataFrame, speed: float = 1.0, max_frames: int = 120, trail_ms: float = 1500.0,
                  title: str = "Replay") -> go.Figure:
    """An animated replay of one session: the pointer with a short trail on the screen plane (top) and
    the keys pressed in the last `trail_ms` by dwell (bottom), with ▶ / ❚❚ and a time slider.

    Deterministic: frames sit at fixed steps of the session clock (`replay_times`) and each one shows
    what had happened by then. `speed` 1 plays in real time, 2 twice as fast (a frame lasts
    step / speed ms). Grey in the background: the whole mouse path and every press.
    """
    from plotly.subplots import make_subplots

    if speed <= 0:
        raise ValueError(f"replay speed must be above 0, got {speed}")
    path, presses = pointer_path(events), session_presses(events)
    start = float(events["t_ms"].min()) if events.height else 0.0
    end = float(events["t_ms"].max()) if events.height else 0.0
    times, step = replay_times(end - start, max_frames)
    t_path = path["t_ms"].to_numpy() - start
    x_path, y_path = path["x"].to_numpy(), path["y"].to_numpy()
    t_keys = presses["t_down"].to_numpy().astype(float) - start
    dwell = presses["dwell"].to_numpy().astype(float)

    fig = make_subplots(rows=2, cols=1, row_heights=[0.7, 0.3], vertical_spacing=0.12,
                        subplot_titles=("pointer (px)", f"keys pressed in the last {trail_ms / 1000:g} s"))
    fig.add_trace(go.Scatter(x=x_path, y=y_path, mode="lines", name="path", hoverinfo="skip",
                             line={"color": "#e0e0e0", "width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t_keys / 1000, y=dwell, mode="markers", name="every press", hoverinfo="skip",
                             marker={"color": "#e0e0e0", "size": 6}), row=2, col=1)

    def frame_data(at: float) -> list[go.Scatter]:
        lo, hi = np.searchsorted(t_path, at - trail_ms, side="right"), np.searchsorted(t_path, at, side="right")
        k_lo, k_hi = np.searchsorted(t_keys, at - trail_ms, side="right"), np.searchsorted(t_keys, at, side="right")
        here = slice(hi - 1, hi) if hi else slice(0, 0)
        return [
            go.Scatter(x=x_path[lo:hi], y=y_path[lo:hi], mode="lines", line={"color": "#1565c0", "width": 2}),
            go.Scatter(x=x_path[here], y=y_path[here], mode="markers",
                       marker={"color": "#c62828", "size": 12, "symbol": "circle"}),
            go.Scatter(x=t_keys[k_lo:k_hi] / 1000, y=dwell[k_lo:k_hi], mode="markers",
                       marker={"color": "#ef6c00", "size": 10}),
        ]

    for trace, row, name in zip(frame_data(0.0), (1, 1, 2), ("trail", "pointer", "keys"), strict=True):
        trace.name = name
        fig.add_trace(trace, row=row, col=1)
    duration = max(round(step / speed), 1)
    fig.frames = [go.Frame(data=frame_data(at), traces=[2, 3, 4], name=str(k)) for k, at in enumerate(times)]
    steps = [{"args": [[str(k)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
              "label": f"{at / 1000:.1f}", "method": "animate"} for k, at in enumerate(times)]
    fig.update_layout(
        title={"text": f"{title} — {speed:g}× ({plural(len(times), 'frame')}, {step / 1000:.2g} s each)", "x": 0.01},
        height=560, template="plotly_white", showlegend=False, margin={"l": 55, "r": 20, "t": 70, "b": 40},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.08, "xanchor": "left",
                      "buttons": [
                          {"label": "▶ Play", "method": "animate",
                           "args": [None, {"frame": {"duration": duration, "redraw": True}, "fromcurrent": True,
                                           "transition": {"duration": 0}, "mode": "immediate"}]},
                          {"label": "❚❚ Pause", "method": "animate",
                           "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}]}],
        sliders=[{"steps": steps, "x": 0.2, "len": 0.8, "y": -0.04,
                  "currentvalue": {"prefix": "t = ", "suffix": " s"}}],
    )
    if x_path.size:
        pad_x = max(float(np.ptp(x_path)) * 0.05, 10.0)
        pad_y = max(float(np.ptp(y_path)) * 0.05, 10.0)
        fig.update_xaxes(range=[float(x_path.min()) - pad_x, float(x_path.max()) + pad_x], row=1, col=1)
        fig.update_yaxes(range=[float(y_path.max()) + pad_y, float(y_path.min()) - pad_y], row=1, col=1)
    else:
        fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(range=[0, max((end - start) / 1000, 0.1)], title_text="seconds since the session started",
                     row=2, col=1)
    top = float(dwell.max()) if dwell.size else 100.0
    fig.update_yaxes(range=[0, top * 1.1 + 1], title_text="dwell (ms)", row=2, col=1)
    return fig


# -------------------------------------------------------------------------- re-labelling stored scores


def moved_thresholds(thresholds: Any, sensitivity: float) -> np.ndarray:
    """`detectors.thresholds.apply_sensitivity` over an array of risk thresholds."""
    if not -1.0 <= sensitivity <= 1.0:
        raise ValueError(f"sensitivity must be in [-1, 1]; got {sensitivity}")
    threshold = np.asarray(thresholds, dtype=float)
    toward = 0.0 if sensitivity >= 0 else 1.0
    return np.clip(threshold + (toward - threshold) * abs(sensitivity), 0.0, 1.0)


def aligned_risk(risk: Any, threshold: Any, edge: float) -> np.ndarray:
    """`app.pipeline.align_to_policy` with a threshold per risk: [0, t] -> [0, edge], [t, 1] -> [edge, 1]."""
    risk = np.clip(np.asarray(risk, dtype=float), 0.0, 1.0)
    threshold = np.clip(np.asarray(threshold, dtype=float), 1e-9, 1 - 1e-9)
    below = risk / threshold * edge
    above = edge + (risk - threshold) / (1 - threshold) * (1 - edge)
    return np.where(risk <= threshold, below, above)


def model_thresholds(models: pl.DataFrame, headers: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float]:
    """model_id -> calibrated risk threshold, from each model's stored metadata (`model_id`, `metadata`
    columns) or, where that lacks it, from its blob's metadata header (`headers`, model_id -> metadata
    as `detectors.persistence.read_metadata` gives it). Models with neither are left out."""
    found: dict[str, float] = {}
    for model_id, metadata in models.select("model_id", "metadata").iter_rows():
        value = threshold_of(metadata)
        if value is None and headers is not None and model_id in headers:
            value = threshold_of(headers[model_id])
        if value is not None:
            found[model_id] = value
    return found


def models_without_threshold(models: pl.DataFrame) -> list[str]:
    """Ids of models whose stored metadata does not carry the risk threshold (their blob header does)."""
    return [m for m, metadata in models.select("model_id", "metadata").iter_rows() if threshold_of(metadata) is None]


def combined_risks(per_model: pl.DataFrame, thresholds: Mapping[str, float], sensitivity: float, edge: float,
                   key: str = "window_id", risk: str = "risk") -> pl.DataFrame:
    """The decided risk of each `key` (window or decision) under another sensitivity and first band edge.

    `per_model` has one row per key and model: `key`, `model_id`, `risk` (the stored per-user risk).
    Each model's risk is aligned at its threshold moved by `sensitivity`; the mean over the key's
    models is its risk. Rows of models without a known threshold are left out, and so is a key with
    none left. Returns `key`, `risk`, `models`, in the order keys first appear.
    """
    known = per_model.filter(pl.col("model_id").is_in(list(thresholds)) & pl.col(risk).is_not_null())
    if known.height == 0:
        return pl.DataFrame(schema={key: per_model.schema.get(key, pl.String), "risk": pl.Float64,
                                    "models": pl.UInt32})
    threshold = known["model_id"].replace_strict(dict(thresholds), return_dtype=pl.Float64).to_numpy()
    value = aligned_risk(known[risk].to_numpy(), moved_thresholds(threshold, sensitivity), edge)
    return (known.select(key).with_columns(_aligned=pl.Series(value))
            .group_by(key, maintain_order=True).agg(risk=pl.col("_aligned").mean(), models=pl.len()))


def is_genuine(label: pl.Expr) -> pl.Expr:
    """Genuine = the label "genuine" (any case); any other label is an attack (as `charts.score_histograms`)."""
    return label.cast(pl.String).str.strip_chars().str.to_lowercase() == "genuine"


def operating_point(genuine: Any, impostor: Any, edge: float) -> tuple[float, float]:
    """(FAR, FRR) of the policy's SAFE/UNSAFE split: allowed when the risk is below `edge`.

    FAR = share of impostor risks below the edge, FRR = share of genuine risks at or above it; an empty
    class gives NaN for its rate.
    """
    genuine, impostor = np.asarray(genuine, dtype=float), np.asarray(impostor, dtype=float)
    far = float(np.mean(impostor < edge)) if impostor.size else math.nan
    frr = float(np.mean(genuine >= edge)) if genuine.size else math.nan
    return far, frr


@dataclass(frozen=True)
class ErrorRates:
    """Error rates of labelled windows at one operating point, and the curves around it."""

    genuine: np.ndarray  # decided risks of genuine windows
    impostor: np.ndarray  # decided risks of attack windows
    edge: float  # the first band edge: the SAFE/UNSAFE threshold
    far: float
    frr: float
    eer: float | None  # None without both classes
    eer_threshold: float | None
    auc: float | None
    curve_far: np.ndarray  # along ascending thresholds (detectors.evaluation.det_curve)
    curve_frr: np.ndarray
    curve_thresholds: np.ndarray


def error_rates(windows: pl.DataFrame, edge: float) -> ErrorRates:
    """FAR and FRR at `edge`, EER, ROC AUC and the DET curve of windows with a decided `risk` and a `label`."""
    from detectors.evaluation import det_curve, eer, roc_auc

    genuine_rows = is_genuine(pl.col("label"))
    finite = windows.filter(pl.col("risk").is_not_null() & pl.col("risk").is_finite() & pl.col("label").is_not_null())
    genuine = finite.filter(genuine_rows)["risk"].to_numpy().astype(float)
    impostor = finite.filter(~genuine_rows)["risk"].to_numpy().astype(float)
    far, frr = operating_point(genuine, impostor, edge)
    if genuine.size and impostor.size:
        rate, at = eer(genuine, impostor)
        curve = det_curve(genuine, impostor)
        return ErrorRates(genuine, impostor, edge, far, frr, rate, at, roc_auc(genuine, impostor), *curve)
    empty = np.empty(0)
    return ErrorRates(genuine, impostor, edge, far, frr, None, None, None, empty, empty, empty)


def policy_with_edges(policy: Policy, edges: Sequence[float], description: str | None = None) -> Policy:
    """`policy` with its inner band edges replaced (len(bands) - 1 of them, low to high), actions and
    rules kept, as a draft (revision 0). Raises `app.policy.PolicyError` naming the band when the
    edges do not make valid bands (out of order, equal, outside (0, 1))."""
    from app.policy import PolicyError

    edges = [float(e) for e in edges]
    if len(edges) != len(policy.bands) - 1:
        raise PolicyError(f"the policy has {len(policy.bands)} bands, so {len(policy.bands) - 1} inner edges are "
                          f"needed; got {len(edges)}")
    bounds = [0.0, *edges, 1.0]
    bands = tuple(Band(bounds[i], bounds[i + 1], band.action) for i, band in enumerate(policy.bands))
    return Policy(policy_id=policy.policy_id, bands=bands, rules=policy.rules,
                  min_enrolment_windows=policy.min_enrolment_windows, revision=0,
                  description=policy.description if description is None else description)


def what_if(decisions: pl.DataFrame, thresholds: Mapping[str, float], sensitivity: float,
            policy: Policy) -> pl.DataFrame:
    """Past decisions re-decided under `sensitivity` and `policy`, from their stored per-model risks.

    `decisions` has one row per decision and model (as `store.monitor.decision_scores`): decision_id,
    action, verdict, risk (as decided), reasons (JSON text), model_id, model_risk. A decision whose
    models' risks are not all known keeps its decided risk (`recomputed` false). Rules fire as they did
    then (a replayed window, too little enrolment: read from the decision's reasons).

    One row per decision: decision_id, action, verdict, risk, new_risk, new_action, new_verdict,
    recomputed, changed_action, changed_verdict.
    """
    edge = policy.bands[0].upper
    if decisions.height == 0:
        return pl.DataFrame(schema={"decision_id": pl.String, "action": pl.String, "verdict": pl.String,
                                    "risk": pl.Float64, "new_risk": pl.Float64, "new_action": pl.String,
                                    "new_verdict": pl.String, "recomputed": pl.Boolean,
                                    "changed_action": pl.Boolean, "changed_verdict": pl.Boolean})
    per_decision = decisions.group_by("decision_id", maintain_order=True).agg(
        pl.col("action", "verdict", "risk", "reasons").first(),
        complete=(pl.col("model_id").is_not_null() & pl.col("model_id").is_in(list(thresholds))
                  & pl.col("model_risk").is_not_null()).all(),
    )
    again = combined_risks(decisions.filter(pl.col("model_id").is_not_null()), thresholds, sensitivity, edge,
                           key="decision_id", risk="model_risk")
    frame = (per_decision.join(again.select("decision_id", new_risk="risk"), on="decision_id", how="left",
                               maintain_order="left")
             .with_columns(recomputed=pl.col("complete") & pl.col("new_risk").is_not_null())
             .with_columns(new_risk=pl.when(pl.col("recomputed")).then(pl.col("new_risk"))
                           .otherwise(pl.col("risk")).clip(0.0, 1.0),
                           replayed=pl.col("reasons").fill_null("").str.contains(REPLAYED_REASON, literal=True),
                           enrolment=pl.col("reasons").fill_null("").str.extract(ENROLMENT_REASON, 1)
                           .cast(pl.Float64)))
    fired = {Condition.REPLAYED_PATTERN: frame["replayed"].to_numpy(),
             Condition.INSUFFICIENT_ENROLMENT: frame["enrolment"].fill_null(np.inf).to_numpy()
             < policy.min_enrolment_windows}
    actions = decide_many(frame["new_risk"].to_numpy(), policy, fired)
    verdicts = [Action(a).verdict.value for a in actions]
    return frame.with_columns(new_action=pl.Series(actions, dtype=pl.String),
                              new_verdict=pl.Series(verdicts, dtype=pl.String)).select(
        "decision_id", "action", "verdict", "risk", "new_risk", "new_action", "new_verdict", "recomputed",
        changed_action=pl.col("action") != pl.col("new_action"),
        changed_verdict=pl.col("verdict") != pl.col("new_verdict"))


def what_if_summary(rows: pl.DataFrame) -> dict[str, int]:
    """Counts of a `what_if` frame: decisions, changed_verdict, safe_to_unsafe, unsafe_to_safe,
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
