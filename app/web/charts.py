"""Plotly chart builders: pure `frame -> go.Figure` functions (STYLE.md §7), testable without Streamlit.

Every builder takes Polars frames (or numpy arrays) whose columns its docstring lists with their units,
and returns a compact figure. None of them reads the database or raises on an empty input: an empty
frame (or array, or `None`) gives a figure with no traces and a "No data yet" annotation. A frame with
rows but without a required column is a programming error and raises `ValueError` naming the columns.

Colours are the same everywhere: actions and verdicts (`ACTION_COLOURS`, `VERDICT_COLOURS`), genuine
blue against impostor red. Times from the store are naive UTC and are drawn as such; timezone-aware
columns are converted to UTC first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import polars as pl
from scipy.special import ndtri

from app.engine.evidence import evidence_for_risk
from app.engine.history import LABEL_ORDER
from app.engine.policy import Action, Band, Verdict

SAFE_GREEN = "#2e7d32"
UNSAFE_RED = "#c62828"
OTP_AMBER = "#f9a825"
FLAG_ORANGE = "#ef6c00"
GENUINE_BLUE = "#1565c0"
IMPOSTOR_RED = UNSAFE_RED
UNKNOWN_GREY = "#9e9e9e"
CPU_PURPLE = "#6a1b9a"
MEMORY_TEAL = "#00838f"

ACTION_COLOURS: dict[str, str] = {
    Action.ALLOW.value: SAFE_GREEN,
    Action.REQUIRE_OTP.value: OTP_AMBER,
    Action.FLAG_SESSION.value: FLAG_ORANGE,
    Action.DENY.value: UNSAFE_RED,
}
VERDICT_COLOURS: dict[str, str] = {Verdict.SAFE.value: SAFE_GREEN, Verdict.UNSAFE.value: UNSAFE_RED}
#: Ground-truth labels in the order charts and pages list them: genuine, then the attack types.
#: Series colours for event sources; a source not listed here is grey.
SOURCE_COLOURS: dict[str, str] = {
    "browser": GENUINE_BLUE, "simulator": CPU_PURPLE, "csv": MEMORY_TEAL, "dataset": "#5d4037"}

NO_DATA = "No data yet"
HEIGHT = 340
TALL_HEIGHT = 380
MARGIN = {"l": 55, "r": 20, "t": 45, "b": 45}

#: Rates are clipped to [PROBIT_CLIP, 1 - PROBIT_CLIP] before the probit transform (0 and 1 map to ±inf).
PROBIT_CLIP = 1e-4
DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)


# ------------------------------------------------------------------------------------------ helpers


def _style(fig: go.Figure, title: str, x_title: str | None = None, y_title: str | None = None,
           height: int = HEIGHT) -> go.Figure:
    # No `template=`: naming one makes Plotly validate and copy it into every figure (40 ms a figure
    # here, measured), and st.plotly_chart's default theme restyles the chart in the browser anyway.
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 14}},
        height=height, margin=MARGIN, hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def empty_figure(title: str, message: str = NO_DATA, height: int = HEIGHT) -> go.Figure:
    """A figure with no traces and `message` in the middle, for inputs with nothing to draw."""
    fig = _style(go.Figure(), title, height=height)
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 15, "color": "#757575"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _is_empty(frame: pl.DataFrame | None) -> bool:
    return frame is None or frame.height == 0


def _require(frame: pl.DataFrame, columns: Sequence[str], builder: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{builder}: the frame has no column(s) {', '.join(missing)} "
                         f"(it has {', '.join(frame.columns) or 'none'}); see the builder's docstring")


def _times(series: pl.Series) -> np.ndarray:
    """A datetime column as numpy datetime64, naive UTC (aware columns are converted to UTC first)."""
    if isinstance(series.dtype, pl.Datetime) and series.dtype.time_zone is not None:
        series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return series.to_numpy()


def _floats(series: pl.Series) -> np.ndarray:
    """A numeric column as float64 with nulls as NaN."""
    return series.cast(pl.Float64).to_numpy()


def _finite(column: str) -> pl.Expr:
    """Rows whose `column` is a finite number (not null, NaN or infinite)."""
    return pl.col(column).cast(pl.Float64).is_finite().fill_null(False)


def _arrays(builder: str, **named: Any) -> dict[str, np.ndarray]:
    """Equal-length 1-d float arrays, keeping only the positions where every one of them is finite."""
    arrays = {name: np.asarray(values if values is not None else [], dtype=float).reshape(-1)
              for name, values in named.items()}
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{builder}: arrays of different lengths {sizes}")
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays.values()])
    return {name: a[keep] for name, a in arrays.items()}


def _categories(values: pl.Series, known: Sequence[str]) -> list[str]:
    """Distinct non-null values: the known ones in their given order, then the others sorted."""
    present = set(values.drop_nulls().unique().to_list())
    return [k for k in known if k in present] + sorted(present - set(known))


def crossing(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """(x, value) of the first point where curves `a` and `b` meet, interpolated linearly; None if never.

    Used for the EER: with `a = far`, `b = frr` along ascending thresholds (`x`), the value is the rate
    at which both are equal. Same interpolation as `detectors.evaluation.eer` between two thresholds.
    """
    x, a, b = (np.asarray(v, dtype=float) for v in (x, a, b))
    gap = a - b
    if gap.size == 0:
        return None
    equal = np.flatnonzero(gap == 0)
    change = np.flatnonzero(gap[:-1] * gap[1:] < 0)
    if equal.size and (not change.size or equal[0] <= change[0]):
        i = int(equal[0])
        return float(x[i]), float(a[i])
    if not change.size:
        return None
    j = int(change[0])
    share = gap[j] / (gap[j] - gap[j + 1])
    return float(x[j] + share * (x[j + 1] - x[j])), float(a[j] + share * (a[j + 1] - a[j]))


def probit(rates: Any) -> np.ndarray:
    """Normal deviates of rates in [0, 1] (the DET axis), clipped to [PROBIT_CLIP, 1 - PROBIT_CLIP].

    `scipy.special.ndtri` is `scipy.stats.norm.ppf` without the distribution machinery.
    """
    clipped = np.clip(np.asarray(rates, dtype=float), PROBIT_CLIP, 1 - PROBIT_CLIP)
    return ndtri(clipped)


def _threshold_line(fig: go.Figure, x: float, label: str, middle: float) -> None:
    """A dashed vertical line with its label inside the plot, on the side of the line with more room."""
    fig.add_vline(x=x, line={"color": "#212121", "dash": "dash", "width": 1.5}, annotation_text=label,
                  annotation_position="top right" if x <= middle else "top left",
                  annotation_bgcolor="rgba(255,255,255,0.8)", annotation_font_size=11)


def _percent(rate: float) -> str:
    """0.096 -> '9.6%', 0.001 -> '0.1%', 0.2 -> '20%'."""
    text = f"{rate * 100:.2g}" if rate < 0.1 else f"{rate * 100:.3g}"
    return f"{text}%"


# -------------------------------------------------------------------------------- system and events


def system_load_chart(metrics: pl.DataFrame | None, title: str = "System load") -> go.Figure:
    """CPU and memory use over time: two lines, y in percent.

    Columns: `sampled_at` (datetime, UTC), `cpu_percent` and `mem_percent` (0-100), optional `rss_mb`
    (resident memory of the app process in MB, shown in the memory hover). The y axis spans 0-100 and
    grows only if a CPU reading passes 100 (a process can use more than one core).
    """
    if _is_empty(metrics):
        return empty_figure(title)
    _require(metrics, ("sampled_at", "cpu_percent", "mem_percent"), "system_load_chart")
    frame = metrics.sort("sampled_at")
    when = _times(frame["sampled_at"])
    cpu, memory = _floats(frame["cpu_percent"]), _floats(frame["mem_percent"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=when, y=cpu, name="CPU %", mode="lines", line={"color": CPU_PURPLE, "width": 1.8},
                             hovertemplate="%{x|%H:%M:%S}<br>CPU %{y:.1f} %<extra></extra>"))
    memory_hover = "%{x|%H:%M:%S}<br>memory %{y:.1f} %"
    rss = None
    if "rss_mb" in frame.columns:
        rss = _floats(frame["rss_mb"])
        memory_hover += "<br>app RSS %{customdata:.0f} MB"
    fig.add_trace(go.Scatter(x=when, y=memory, name="memory %", mode="lines", customdata=rss,
                             line={"color": MEMORY_TEAL, "width": 1.8}, hovertemplate=memory_hover + "<extra></extra>"))
    top = np.nanmax(np.r_[cpu, memory, 100.0])
    fig.update_yaxes(range=[0, max(100.0, float(top) * 1.02) if top > 100 else 100.0])
    return _style(fig, title, "time (UTC)", "use (%)")


def events_rate_chart(rates: pl.DataFrame | None, title: str = "Events per second") -> go.Figure:
    """Ingest rate: bars of events per second, stacked by source when there is a `source` column.

    Columns: `second` (datetime, UTC, the start of the second), `events` (count in that second), optional
    `source` (browser, csv, dataset, simulator; null is drawn as "unknown"). Seconds without events
    may simply be absent: they show as gaps.
    """
    if _is_empty(rates):
        return empty_figure(title)
    _require(rates, ("second", "events"), "events_rate_chart")
    frame = rates.sort("second")
    fig = go.Figure()
    if "source" in frame.columns:
        frame = frame.with_columns(pl.col("source").cast(pl.String).fill_null("unknown"))
        for source in _categories(frame["source"], list(SOURCE_COLOURS)):
            part = frame.filter(pl.col("source") == source)
            fig.add_trace(go.Bar(x=_times(part["second"]), y=_floats(part["events"]), name=source,
                                 marker_color=SOURCE_COLOURS.get(source, UNKNOWN_GREY),
                                 hovertemplate=f"%{{x|%H:%M:%S}}<br>{source}: %{{y:,.0f}} events/s<extra></extra>"))
        fig.update_layout(barmode="stack")
    else:
        fig.add_trace(go.Bar(x=_times(frame["second"]), y=_floats(frame["events"]), name="events",
                             marker_color=GENUINE_BLUE,
                             hovertemplate="%{x|%H:%M:%S}<br>%{y:,.0f} events/s<extra></extra>"))
    fig.update_layout(bargap=0.1)
    return _style(fig, title, "time (UTC)", "events / s")


# ------------------------------------------------------------------------------------------ decisions


def decision_timeline(decisions: pl.DataFrame | None, colour_by: Literal["action", "verdict"] = "action",
                      title: str = "Decisions over time") -> go.Figure:
    """Risk of each decision over time: one scatter trace per action (or verdict), in severity order.

    Columns: `decided_at` (datetime, UTC), `risk` (0-1), `verdict` (SAFE/UNSAFE), `action` (ALLOW,
    REQUIRE_OTP, FLAG_SESSION, DENY), `user_id`, `session_id`; optional `reason` (text: what set the
    action, e.g. a replayed window denied at a low risk). Colours follow `ACTION_COLOURS` or
    `VERDICT_COLOURS`; a null or unknown category is grey. Hover shows user, session, action and verdict,
    and the reason when given.
    """
    if _is_empty(decisions):
        return empty_figure(title)
    if colour_by not in ("action", "verdict"):
        raise ValueError(f"decision_timeline: colour_by must be 'action' or 'verdict', not {colour_by!r}")
    _require(decisions, ("decided_at", "risk", "verdict", "action", "user_id", "session_id"), "decision_timeline")
    palette = ACTION_COLOURS if colour_by == "action" else VERDICT_COLOURS
    frame = decisions.sort("decided_at").with_columns(
        pl.col(colour_by).cast(pl.String).fill_null("unknown").alias("_category"))
    fig = go.Figure()
    hovered = ["user_id", "session_id", "action", "verdict"] + (["reason"] if "reason" in frame.columns else [])
    reason = "<br>%{customdata[4]}" if "reason" in hovered else ""
    for category in _categories(frame["_category"], list(palette)):
        part = frame.filter(pl.col("_category") == category)
        hover = part.select(pl.col(hovered).cast(pl.String).fill_null("—"))
        fig.add_trace(go.Scatter(
            x=_times(part["decided_at"]), y=_floats(part["risk"]), name=category, mode="markers",
            marker={"color": palette.get(category, UNKNOWN_GREY), "size": 7, "opacity": 0.8},
            customdata=hover.to_numpy(),
            hovertemplate="%{x|%Y-%m-%d %H:%M:%S}<br>risk %{y:.3f}<br>user %{customdata[0]}"
                          f"<br>session %{{customdata[1]}}<br>%{{customdata[2]}} (%{{customdata[3]}}){reason}"
                          "<extra></extra>"))
    fig.update_yaxes(range=[-0.02, 1.02])
    return _style(fig, title, "decided at (UTC)", "risk (0–1)")


def decision_counts_chart(counts: pl.DataFrame | None, title: str = "Decisions by action") -> go.Figure:
    """Decisions per time bucket, stacked by action (ALLOW at the bottom, DENY on top).

    Columns: `bucket_start` (datetime, UTC), `action`, `decisions` (count). Rows repeating a bucket and
    action (as `store.decisions.decision_counts_over_time` gives, one per verdict) are summed.
    """
    if _is_empty(counts):
        return empty_figure(title)
    _require(counts, ("bucket_start", "action", "decisions"), "decision_counts_chart")
    frame = (counts.with_columns(pl.col("action").cast(pl.String).fill_null("unknown"))
             .group_by("bucket_start", "action").agg(pl.col("decisions").sum()).sort("bucket_start"))
    fig = go.Figure()
    for action in _categories(frame["action"], list(ACTION_COLOURS)):
        part = frame.filter(pl.col("action") == action)
        fig.add_trace(go.Bar(x=_times(part["bucket_start"]), y=_floats(part["decisions"]), name=action,
                             marker_color=ACTION_COLOURS.get(action, UNKNOWN_GREY),
                             hovertemplate=f"%{{x}}<br>{action}: %{{y:,.0f}}<extra></extra>"))
    fig.update_layout(barmode="stack", bargap=0.15)
    return _style(fig, title, "bucket start (UTC)", "decisions")


def _band_shading(fig: go.Figure, bands: Sequence[Band]) -> None:
    """Each band of a policy as a faint stripe in its action's colour along x (risk), each inner edge
    as a dashed line labelled with the action that starts there."""
    for band in bands:
        fig.add_vrect(x0=band.lower, x1=band.upper, fillcolor=ACTION_COLOURS.get(str(band.action), UNKNOWN_GREY),
                      opacity=0.08, layer="below", line_width=0)
        if band.lower > 0:
            fig.add_vline(x=band.lower, line={"color": "#212121", "dash": "dash", "width": 1},
                          annotation_text=f"{band.action} ≥ {band.lower:g}", annotation_position="top left",
                          annotation_textangle=-90, annotation_font_size=10)


def session_risk_chart(sessions: pl.DataFrame | None, bands: Sequence[Band] = (),
                       title: str = "Each session's highest risk") -> go.Figure:
    """Each session as a dot at its highest risk, one row per ground-truth label (genuine on top, then
    the attack types), over the policy's bands: where the dots of a row fall is how those sessions end.

    Columns: `session_id`, `label` (genuine, impostor, bot, replay, hijack, ...; null rows are dropped),
    `highest_risk` (0-1, the highest session risk any of its decisions reached; non-finite rows are
    dropped). `bands`: the policy's bands (`app.engine.policy.Band`), shaded in their action's colour with a
    dashed line at each inner edge. Dots spread vertically within their row by a fixed pattern (no
    randomness), so the figure is the same every time. Traces: one per label, in `LABEL_ORDER`, then
    other labels sorted; names carry the counts; genuine blue, attacks red.
    """
    if _is_empty(sessions):
        return empty_figure(title)
    _require(sessions, ("session_id", "label", "highest_risk"), "session_risk_chart")
    frame = sessions.filter(_finite("highest_risk") & pl.col("label").is_not_null()).with_columns(
        pl.col("label").cast(pl.String))
    if frame.height == 0:
        return empty_figure(title)
    labels = _categories(frame["label"], LABEL_ORDER)
    fig = go.Figure()
    for row, label in enumerate(labels):
        part = frame.filter(pl.col("label") == label).sort("highest_risk", "session_id")
        spread = ((np.arange(part.height) * 0.618034) % 1.0 - 0.5) * 0.5  # golden-ratio steps: even, repeatable
        fig.add_trace(go.Scatter(
            x=_floats(part["highest_risk"]), y=row + spread, name=f"{label} ({part.height:,})", mode="markers",
            marker={"color": GENUINE_BLUE if label == "genuine" else IMPOSTOR_RED, "size": 8, "opacity": 0.75,
                    "line": {"color": "white", "width": 0.5}},
            customdata=part["session_id"].cast(pl.String).to_numpy(),
            hovertemplate=f"{label}<br>session %{{customdata}}<br>highest risk %{{x:.3f}}<extra></extra>"))
    _band_shading(fig, bands)
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, range=[len(labels) - 0.5, -0.5],
                     zeroline=False)
    return _style(fig, title, "highest session risk (0–1)", None)


def evidence_chain_chart(decisions: pl.DataFrame | None, bands: Sequence[Band] = (),
                         title: str = "The session's evidence, window by window") -> go.Figure:
    """How a session's evidence built up: after each window, the evidence (a line, markers in the colour
    of the action decided) and how much that window moved it (bars: red raised it, green wore it down),
    against seconds of the session, with the policy's band edges as the evidence at which they start.

    Columns: `end_ms` (ms of the session clock at the window's end), `evidence` (nats, after the
    window), `evidence_change` (nats), `action`, `kind` (window kind, in the hover); optional
    `window_risk` (0-1, the window on its own, in the hover). Rows without a finite end_ms or
    evidence (decisions made before evidence was stored) are dropped. `bands`: the policy's bands;
    each inner edge at risk r is a dotted line at evidence -ln(1 - r) (`app.engine.evidence.evidence_for_risk`).
    Traces: window change (bars), evidence (line), then one marker trace per action in severity order.
    """
    if _is_empty(decisions):
        return empty_figure(title)
    _require(decisions, ("end_ms", "evidence", "evidence_change", "action", "kind"), "evidence_chain_chart")
    frame = decisions.filter(_finite("end_ms") & _finite("evidence")).sort("end_ms", maintain_order=True)
    if frame.height == 0:
        return empty_figure(title, "No evidence stored for these decisions")
    frame = frame.with_columns(
        _seconds=pl.col("end_ms").cast(pl.Float64) / 1000.0,
        _change=pl.col("evidence_change").cast(pl.Float64).fill_null(0.0),
        _risk=1.0 - (-pl.col("evidence").cast(pl.Float64)).exp(),
        _action=pl.col("action").cast(pl.String).fill_null("unknown"),
        _hover=pl.concat_str(pl.col("kind").cast(pl.String).fill_null("—"), pl.lit(" window"),
                             *([pl.lit(", on its own risk "), pl.col("window_risk").cast(pl.Float64).round(3)
                                .cast(pl.String).fill_null("—")] if "window_risk" in decisions.columns else [])))
    seconds, change, level = frame["_seconds"].to_numpy(), frame["_change"].to_numpy(), _floats(frame["evidence"])
    fig = go.Figure()
    fig.add_trace(go.Bar(x=seconds, y=change, name="window change", opacity=0.6,
                         marker_color=np.where(change > 0, UNSAFE_RED, SAFE_GREEN),
                         customdata=frame["_hover"].to_numpy(),
                         hovertemplate="%{x:.1f} s · %{customdata}<br>change %{y:+.2f} nats<extra></extra>"))
    fig.add_trace(go.Scatter(x=seconds, y=level, name="evidence", mode="lines", hoverinfo="skip",
                             line={"color": "#424242", "width": 1.5, "shape": "linear"}))
    for action in _categories(frame["_action"], list(ACTION_COLOURS)):
        part = frame.filter(pl.col("_action") == action)
        fig.add_trace(go.Scatter(
            x=part["_seconds"].to_numpy(), y=_floats(part["evidence"]), name=action, mode="markers",
            marker={"color": ACTION_COLOURS.get(action, UNKNOWN_GREY), "size": 9,
                    "line": {"color": "white", "width": 1}},
            customdata=np.column_stack([part["_risk"].to_numpy(), part["_hover"].to_numpy()]),
            hovertemplate=f"%{{x:.1f}} s · %{{customdata[1]}}<br>evidence %{{y:.2f}} nats · session risk "
                          f"%{{customdata[0]:.3f}}<br>{action}<extra></extra>"))
    edges = [(evidence_for_risk(band.lower), band) for band in bands if band.lower > 0]
    for at, band in edges:
        fig.add_hline(y=at, line={"color": ACTION_COLOURS.get(str(band.action), UNKNOWN_GREY), "dash": "dot",
                                  "width": 1.5},
                      annotation_text=f"{band.action} (risk {band.lower:g})", annotation_position="top left",
                      annotation_font_size=10)
    top = max([float(level.max()), float(change.max()), *[at for at, _ in edges]])
    fig.update_yaxes(range=[min(0.0, float(change.min())) - 0.2, top * 1.1 + 0.2])
    return _style(fig, title, "seconds since the session started (window end)", "evidence (nats)")


# --------------------------------------------------------------------------------- score evaluation


def score_histograms(scores: pl.DataFrame | None, threshold: float | None = None, value_column: str = "risk",
                     bins: int = 40, show_unlabelled: bool = True, title: str = "Scores by label") -> go.Figure:
    """Overlaid histograms of genuine against impostor scores, with the threshold as a vertical line.

    Columns: `value_column` (`risk` in 0-1, or a raw detector score, higher = more anomalous) and
    `label`. A label of "genuine" (any case) is genuine; any other label (impostor, bot, replay, hijack, ...)
    counts as impostor; a null label is *unlabelled* and gets a third, grey histogram (live traffic is
    mostly unlabelled) unless `show_unlabelled=False`, when it is dropped. Rows whose value is null or
    not finite are dropped. Each histogram is normalised to percent of its own class, so classes of very
    different sizes compare; all share the same `bins` bins (0-1 for `risk`). Traces: genuine, impostor
    (both always, even if one is empty), then unlabelled when drawn; trace names carry the counts.
    """
    if _is_empty(scores):
        return empty_figure(title)
    _require(scores, (value_column, "label"), "score_histograms")
    frame = scores.filter(_finite(value_column)).with_columns(
        _value=pl.col(value_column).cast(pl.Float64),
        _class=pl.when(pl.col("label").is_null()).then(pl.lit("unlabelled"))
        .when(pl.col("label").cast(pl.String).str.strip_chars().str.to_lowercase() == "genuine").then(pl.lit("genuine"))
        .otherwise(pl.lit("impostor")),
    )
    if not show_unlabelled:
        frame = frame.filter(pl.col("_class") != "unlabelled")
    if frame.height == 0:
        return empty_figure(title)
    low, high = float(frame["_value"].min()), float(frame["_value"].max())
    if value_column == "risk" and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    if high <= low:
        high = low + 1.0
    size = (high - low) / max(int(bins), 1)
    xbins = {"start": low, "end": high + size / 2, "size": size}  # the half bin keeps a value == high inside
    colours = {"genuine": GENUINE_BLUE, "impostor": IMPOSTOR_RED, "unlabelled": UNKNOWN_GREY}
    fig = go.Figure()
    present = set(frame["_class"].unique().to_list())
    for kind in ("genuine", "impostor", "unlabelled"):
        if kind == "unlabelled" and kind not in present:
            continue
        values = frame.filter(pl.col("_class") == kind)["_value"].to_numpy()
        fig.add_trace(go.Histogram(x=values, name=f"{kind} ({values.size:,})", xbins=xbins, autobinx=False,
                                   histnorm="percent", marker_color=colours[kind], opacity=0.55,
                                   hovertemplate=f"{kind}<br>%{{x}}<br>%{{y:.1f}} % of the class<extra></extra>"))
    fig.update_layout(barmode="overlay")
    if threshold is not None:
        _threshold_line(fig, float(threshold), f"threshold {threshold:.3g}", (low + high) / 2)
    x_title = "risk (0–1)" if value_column == "risk" else f"{value_column} (raw score, higher = more anomalous)"
    return _style(fig, title, x_title, "% of the class's windows")


def roc_chart(far: Any, tar: Any, operating_point: tuple[float, float] | None = None,
              auc: float | None = None, title: str = "ROC") -> go.Figure:
    """ROC in the biometric convention: FAR on x, TAR = 1 - FRR on y, with the chance diagonal.

    Arrays (fractions in [0, 1], same length; pairs with a non-finite value are dropped): `far` (impostor
    windows accepted), `tar` (genuine windows accepted). From `detectors.evaluation.det_curve`:
    `far, frr, _ = det_curve(genuine, impostor); roc_chart(far, 1 - frr, auc=roc_auc(genuine, impostor))`
    (this curve mirrors `evaluation.roc_curve`, which puts impostors positive, so its area is the same AUC).
    `operating_point` is (far, tar) at the current threshold. Traces: ROC, chance, then operating point.
    """
    data = _arrays("roc_chart", far=far, tar=tar)
    title = f"{title} — AUC {auc:.3f}" if auc is not None else title
    if data["far"].size == 0:
        return empty_figure(title, height=TALL_HEIGHT)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=data["far"], y=data["tar"], name="ROC", mode="lines",
                             line={"color": GENUINE_BLUE, "width": 2},
                             hovertemplate="FAR %{x:.2%}<br>TAR %{y:.2%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0.0, 1.0], y=[0.0, 1.0], name="chance", mode="lines", hoverinfo="skip",
                             line={"color": UNKNOWN_GREY, "dash": "dot", "width": 1}))
    if operating_point is not None:
        op_far, op_tar = (float(v) for v in operating_point)
        fig.add_trace(go.Scatter(x=[op_far], y=[op_tar], name="operating point", mode="markers",
                                 marker={"color": UNSAFE_RED, "size": 11, "symbol": "circle",
                                         "line": {"color": "white", "width": 1.5}},
                                 hovertemplate="operating point<br>FAR %{x:.2%}<br>TAR %{y:.2%}<extra></extra>"))
    fig.update_xaxes(range=[-0.01, 1.01], tickformat=".0%", constrain="domain")
    fig.update_yaxes(range=[-0.01, 1.01], tickformat=".0%", scaleanchor="x", scaleratio=1, constrain="domain")
    return _style(fig, title, "FAR (impostors accepted)", "TAR = 1 − FRR (genuine accepted)", height=TALL_HEIGHT)


def det_chart(far: Any, frr: Any, operating_point: tuple[float, float] | None = None,
              eer: float | None = None, title: str = "DET") -> go.Figure:
    """DET curve: FRR against FAR on normal-deviate (probit) axes, ticks labelled in percent.

    Arrays (fractions in [0, 1], same length, along ascending thresholds as `detectors.evaluation.det_curve`
    gives them; pairs with a non-finite value are dropped): `far`, `frr`. Both axes carry `probit(rate)`,
    rates clipped to [0.01%, 99.99%], so a rate of 0 is drawn at 0.01% and 50% at 0. `operating_point` is
    (far, frr) at the current threshold. The EER point sits on the FAR = FRR diagonal (a dotted line); when
    `eer` is not given it is where the curve crosses the diagonal, interpolated. Traces: DET, then
    operating point (if given), then EER (if known); the EER is also a text annotation. Each trace's
    customdata holds the untransformed rates.
    """
    data = _arrays("det_chart", far=far, frr=frr)
    if data["far"].size == 0:
        return empty_figure(title, height=TALL_HEIGHT)
    if eer is None:
        met = crossing(np.arange(data["far"].size), data["far"], data["frr"])
        eer = met[1] if met is not None else None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=probit(data["far"]), y=probit(data["frr"]), name="DET", mode="lines",
                             line={"color": GENUINE_BLUE, "width": 2},
                             customdata=np.column_stack([data["far"], data["frr"]]),
                             hovertemplate="FAR %{customdata[0]:.2%}<br>FRR %{customdata[1]:.2%}<extra></extra>"))
    if operating_point is not None:
        op = np.asarray(operating_point, dtype=float)
        fig.add_trace(go.Scatter(x=probit(op[:1]), y=probit(op[1:]), name="operating point", mode="markers",
                                 customdata=[op], marker={"color": UNSAFE_RED, "size": 11,
                                                          "line": {"color": "white", "width": 1.5}},
                                 hovertemplate="operating point<br>FAR %{customdata[0]:.2%}"
                                               "<br>FRR %{customdata[1]:.2%}<extra></extra>"))
    if eer is not None:
        at = float(probit(eer))
        fig.add_trace(go.Scatter(x=[at], y=[at], name="EER", mode="markers", customdata=[[eer, eer]],
                                 marker={"color": "#212121", "size": 9, "symbol": "diamond"},
                                 hovertemplate="EER %{customdata[0]:.2%}<extra></extra>"))
        fig.add_annotation(x=at, y=at, text=f"EER {_percent(eer)}", showarrow=True, arrowhead=2, ax=40, ay=-30,
                           font={"size": 12})
    edge = float(probit(PROBIT_CLIP)) - 0.15
    fig.add_shape(type="line", x0=edge, y0=edge, x1=-edge, y1=-edge, layer="below",
                  line={"color": UNKNOWN_GREY, "dash": "dot", "width": 1})
    ticks = {"tickvals": probit(DET_TICKS).tolist(), "ticktext": [_percent(t) for t in DET_TICKS],
             "range": [edge, -edge], "zeroline": False}
    fig.update_xaxes(**ticks, tickangle=0, tickfont_size=10, constrain="domain")
    fig.update_yaxes(**ticks, scaleanchor="x", scaleratio=1, constrain="domain")
    return _style(fig, title, "FAR (impostors accepted, probit scale)", "FRR (genuine rejected, probit scale)",
                  height=TALL_HEIGHT)


def far_frr_chart(thresholds: Any, far: Any, frr: Any, threshold: float | None = None,
                  title: str = "FAR and FRR by threshold", x_title: str = "threshold") -> go.Figure:
    """FAR and FRR as functions of the threshold, the current threshold as a vertical line, the EER marked.

    Arrays (same length; any order, sorted by threshold here; triples with a non-finite value dropped):
    `thresholds` (risk or raw score; a window above it is flagged), `far` and `frr` (fractions in [0, 1]),
    as `detectors.evaluation.det_curve` returns them. The EER is where the two curves first cross,
    interpolated linearly (a marker, only if they cross). The threshold line's label gives the FAR and FRR
    there, interpolated. Traces: FAR (red: impostors accepted), FRR (blue: genuine rejected), then EER.
    """
    data = _arrays("far_frr_chart", thresholds=thresholds, far=far, frr=frr)
    if data["thresholds"].size == 0:
        return empty_figure(title)
    order = np.argsort(data["thresholds"], kind="stable")
    cuts, far_at, frr_at = data["thresholds"][order], data["far"][order], data["frr"][order]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=cuts, y=far_at, name="FAR", mode="lines", line={"color": IMPOSTOR_RED, "width": 2},
                             hovertemplate="threshold %{x:.4g}<br>FAR %{y:.2%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=cuts, y=frr_at, name="FRR", mode="lines", line={"color": GENUINE_BLUE, "width": 2},
                             hovertemplate="threshold %{x:.4g}<br>FRR %{y:.2%}<extra></extra>"))
    met = crossing(cuts, far_at, frr_at)
    if met is not None:
        fig.add_trace(go.Scatter(x=[met[0]], y=[met[1]], name=f"EER {_percent(met[1])}", mode="markers",
                                 marker={"color": "#212121", "size": 9, "symbol": "diamond"},
                                 hovertemplate="EER %{y:.2%}<br>at threshold %{x:.4g}<extra></extra>"))
    if threshold is not None:
        at = float(threshold)
        label = (f"threshold {at:.3g}: FAR {_percent(float(np.interp(at, cuts, far_at)))}, "
                 f"FRR {_percent(float(np.interp(at, cuts, frr_at)))}")
        _threshold_line(fig, at, label, float(cuts[0] + cuts[-1]) / 2)
    fig.update_yaxes(range=[-0.01, 1.01], tickformat=".0%")
    return _style(fig, title, x_title, "error rate")


# ------------------------------------------------------------------------------------ one session


def keystroke_rhythm_chart(presses: pl.DataFrame | None, title: str = "Keystroke rhythm") -> go.Figure:
    """Dwell and flight of each key press over a session: two traces against seconds since the first press.

    Columns (one row per press, as `detectors.features` builds them): `t_down` (ms, session clock),
    `dwell` (ms, key held), `flight_dd` (ms since the previous press went down; null for the first press
    of a group, and such rows are left out of the flight trace), `key_class` (shown in the hover; never
    the key itself). Traces: dwell, flight.
    """
    if _is_empty(presses):
        return empty_figure(title)
    _require(presses, ("t_down", "dwell", "flight_dd", "key_class"), "keystroke_rhythm_chart")
    frame = presses.filter(_finite("t_down")).sort("t_down")
    if frame.height == 0:
        return empty_figure(title)
    start = float(frame["t_down"].min())
    frame = frame.with_columns(_seconds=(pl.col("t_down").cast(pl.Float64) - start) / 1000.0,
                               _class=pl.col("key_class").cast(pl.String).fill_null("—"))
    fig = go.Figure()
    for column, name, colour in (("dwell", "dwell", GENUINE_BLUE), ("flight_dd", "flight (down → down)", FLAG_ORANGE)):
        part = frame.filter(_finite(column))
        fig.add_trace(go.Scatter(
            x=part["_seconds"].to_numpy(), y=_floats(part[column]), name=name, mode="lines+markers",
            line={"color": colour, "width": 1}, marker={"color": colour, "size": 5},
            customdata=part["_class"].to_numpy(),
            hovertemplate=f"%{{x:.2f}} s<br>{name} %{{y:.0f}} ms<br>%{{customdata}}<extra></extra>"))
    return _style(fig, title, "seconds since the first press", "time (ms)")


def mouse_path_chart(samples: pl.DataFrame | None, width: float | None = None, height: float | None = None,
                     title: str = "Mouse path") -> go.Figure:
    """The pointer's path on screen, markers coloured by speed, clicks marked; y runs downwards, equal aspect.

    Columns (one row per mouse sample, in time order): `x`, `y` (px, screen plane, y downwards), `speed`
    (px/s, null where unknown, e.g. the first sample), `type` (event type; `mouse_down` is a click).
    Rows without x or y (key events) are ignored. Colour is `log1p(speed)` so slow and fast movements both
    show; the colour bar is labelled in px/s. `width`/`height` (px) fix the axes to the screen size.
    Traces: path (grey line through every sample), speed (markers where speed is known), then clicks
    (only when there are mouse_down rows).
    """
    if _is_empty(samples):
        return empty_figure(title, height=TALL_HEIGHT)
    _require(samples, ("x", "y", "speed", "type"), "mouse_path_chart")
    frame = samples.filter(_finite("x") & _finite("y"))
    if frame.height == 0:
        return empty_figure(title, height=TALL_HEIGHT)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=_floats(frame["x"]), y=_floats(frame["y"]), name="path", mode="lines",
                             line={"color": "#bdbdbd", "width": 1}, hoverinfo="skip", showlegend=False))
    moving = frame.filter(_finite("speed") & (pl.col("speed") >= 0))
    speed = _floats(moving["speed"])
    top = float(speed.max()) if speed.size else 0.0
    ticks = [v for v in (0, 10, 100, 1_000, 10_000, 100_000) if v <= max(top, 10)]
    fig.add_trace(go.Scatter(
        x=_floats(moving["x"]), y=_floats(moving["y"]), name="speed", mode="markers", customdata=speed,
        marker={"color": np.log1p(speed), "colorscale": "Viridis", "size": 5, "showscale": True,
                "colorbar": {"title": {"text": "px/s"}, "tickvals": np.log1p(ticks).tolist(),
                             "ticktext": [f"{v:,}" for v in ticks], "thickness": 12}},
        hovertemplate="(%{x:.0f}, %{y:.0f}) px<br>%{customdata:,.0f} px/s<extra></extra>", showlegend=False))
    clicks = frame.filter(pl.col("type") == "mouse_down")
    if clicks.height:
        fig.add_trace(go.Scatter(x=_floats(clicks["x"]), y=_floats(clicks["y"]), name="clicks", mode="markers",
                                 marker={"color": UNSAFE_RED, "size": 11, "symbol": "x"},
                                 hovertemplate="click at (%{x:.0f}, %{y:.0f}) px<extra></extra>"))
    if width is not None:
        fig.update_xaxes(range=[0, float(width)])
    if height is not None:
        fig.update_yaxes(range=[float(height), 0])
    else:
        fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return _style(fig, title, "x (px)", "y (px, downwards)", height=TALL_HEIGHT)


# ------------------------------------------------------------------------------------ explanations


def feature_zscore_chart(features: pl.DataFrame | None, top_n: int = 15, alert_z: float = 3.0,
                         title: str = "Features against the user's baseline") -> go.Figure:
    """How far each feature of a window lies from the user's baseline: horizontal bars of z-scores.

    Columns: `name` (feature), `value`, `baseline_mean`, `baseline_std` (all in the feature's unit),
    `z` (standard deviations from the baseline mean; null where there is no baseline, and such rows are
    dropped), `unit` (e.g. ms, px/s). Keeps the `top_n` features with the largest |z|, the largest on
    top; bars with |z| > `alert_z` are red, the others blue; dotted lines mark ±`alert_z`. Hover shows
    the value and the baseline mean ± std with the unit. One trace.
    """
    if _is_empty(features):
        return empty_figure(title)
    _require(features, ("name", "value", "baseline_mean", "baseline_std", "z", "unit"), "feature_zscore_chart")
    frame = (features.filter(_finite("z")).with_columns(_abs=pl.col("z").cast(pl.Float64).abs())
             .sort("_abs", descending=True, maintain_order=True).head(max(int(top_n), 0)))
    if frame.height == 0:
        return empty_figure(title)
    z = _floats(frame["z"])
    details = frame.select(pl.col("value", "baseline_mean", "baseline_std").cast(pl.Float64),
                           pl.col("unit").cast(pl.String).fill_null(""))
    fig = go.Figure(go.Bar(
        x=z, y=frame["name"].cast(pl.String).to_numpy(), orientation="h", name="z-score",
        marker_color=np.where(np.abs(z) > alert_z, UNSAFE_RED, GENUINE_BLUE),
        customdata=details.to_numpy(),
        hovertemplate="%{y}<br>z = %{x:.2f}<br>value %{customdata[0]:.4g} %{customdata[3]}"
                      "<br>baseline %{customdata[1]:.4g} ± %{customdata[2]:.4g} %{customdata[3]}<extra></extra>"))
    for edge in (-alert_z, alert_z):
        fig.add_vline(x=edge, line={"color": UNKNOWN_GREY, "dash": "dot", "width": 1})
    fig.update_yaxes(autorange="reversed", automargin=True, type="category")
    return _style(fig, title, "z-score (standard deviations from the baseline)", None,
                  height=HEIGHT if frame.height <= 10 else TALL_HEIGHT)


def contribution_chart(contributions: pl.DataFrame | None, top_n: int = 15,
                       title: str = "What drove the risk") -> go.Figure:
    """Per-feature contributions to a window's risk: horizontal bars, largest contribution on top.

    Columns: `feature`, `contribution` (any real number; positive raises the risk, negative lowers it;
    null or non-finite rows are dropped), optional `unit` (the feature's unit, shown in the hover). Keeps
    the `top_n` rows with the largest |contribution|, then orders them by contribution, highest on top.
    Positive bars are red, the rest green. One trace.
    """
    if _is_empty(contributions):
        return empty_figure(title)
    _require(contributions, ("feature", "contribution"), "contribution_chart")
    frame = (contributions.filter(_finite("contribution"))
             .with_columns(_value=pl.col("contribution").cast(pl.Float64))
             .sort(pl.col("_value").abs(), descending=True, maintain_order=True).head(max(int(top_n), 0))
             .sort("_value", descending=True, maintain_order=True))
    if frame.height == 0:
        return empty_figure(title)
    value = frame["_value"].to_numpy()
    units = (frame["unit"].cast(pl.String).fill_null("") if "unit" in frame.columns
             else pl.Series([""] * frame.height)).to_numpy()
    fig = go.Figure(go.Bar(
        x=value, y=frame["feature"].cast(pl.String).to_numpy(), orientation="h", name="contribution",
        marker_color=np.where(value > 0, UNSAFE_RED, SAFE_GREEN), customdata=units,
        hovertemplate="%{y} (%{customdata})<br>contribution %{x:+.3g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", automargin=True, type="category")
    return _style(fig, title, "contribution to risk (+ raises, − lowers)", None,
                  height=HEIGHT if frame.height <= 10 else TALL_HEIGHT)
