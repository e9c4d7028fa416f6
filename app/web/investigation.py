"""What the Investigation page computes to explain a session: pure functions of frames, arrays and
loaded models (no database, no Streamlit), each testable on a few hand-made rows.

- **Explaining a window**: z-scores of its features against the user's enrolled baseline (units
  from `FEATURE_DICTIONARY`), and per-feature contributions, either the share of the total
  deviation (`deviation_contributions`) or leave-one-feature-out with the user's models
  (`leave_one_out_contributions` of `mean_model_risk`).
- **One session's behaviour**: key presses with flights, the pointer path with speeds, and an
  animated replay figure.

Higher risk = less like the user.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from detectors.features import FEATURE_DICTIONARY, key_presses, pointer_samples, with_flights
from store.text import plural

#: A baseline spread at or below this is "no spread": the z-score is undefined (null), not infinite.
MIN_STD = 1e-9


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


def mean_model_risk(models: Sequence[Any], schema_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """The risk of windows (rows of a matrix of schema `schema_id`) as the scorer's models see them on
    their own: the mean over the loaded `UserModel`s of `risk` (1 - surprise: the share of the user's
    genuine windows that score lower), for leave-one-feature-out. A window rarer than every genuine
    one already has the highest risk a model can give, so a feature put back to the baseline only
    counts once it brings the window back among the genuine ones."""
    if not models:
        raise ValueError("mean_model_risk needs at least one model")

    def mean_risk(X: np.ndarray) -> np.ndarray:
        return np.mean([model.risk(X, schema_id) for model in models], axis=0)

    return mean_risk


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


