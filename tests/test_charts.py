"""Chart builders (app/web/charts.py): the figure each builder returns, checked as data, never as pixels.

Every builder is called on a small frame whose expected traces were worked out by hand, and on an
empty input, which must give a figure with no traces and the "No data yet" annotation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from numpy.testing import assert_allclose

from app.engine.evidence import evidence_for_risk
from app.engine.policy import DEFAULT_POLICY, Action, Band
from app.web import charts
from app.web.charts import (
    ACTION_COLOURS,
    FLAG_ORANGE,
    GENUINE_BLUE,
    IMPOSTOR_RED,
    NO_DATA,
    OTP_AMBER,
    SAFE_GREEN,
    UNSAFE_RED,
    VERDICT_COLOURS,
)

T0 = datetime(2025, 3, 1, 12, 0, 0)


def seconds(n: int) -> list[datetime]:
    return [T0 + timedelta(seconds=i) for i in range(n)]


def trace(fig: go.Figure, name: str) -> go.Scatter | go.Bar | go.Histogram:
    """The one trace whose name is `name` or starts with `name (`."""
    found = [t for t in fig.data if t.name == name or (t.name or "").startswith(f"{name} (")]
    assert len(found) == 1, f"expected one trace named {name!r}, got {[t.name for t in fig.data]}"
    return found[0]


def as_datetimes(values) -> list[datetime]:
    """Plotly keeps datetime64 arrays as ISO strings; read them back."""
    return [datetime.fromisoformat(str(v)) for v in values]


def vline_xs(fig: go.Figure) -> list[float]:
    return [s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]


# ------------------------------------------------------------------------------------- empty inputs

EMPTY_CALLS: dict[str, Callable[[], go.Figure]] = {
    "system_load_chart": lambda: charts.system_load_chart(pl.DataFrame()),
    "system_load_chart(None)": lambda: charts.system_load_chart(None),
    "events_rate_chart": lambda: charts.events_rate_chart(
        pl.DataFrame(schema={"second": pl.Datetime, "events": pl.Int64})),
    "decision_timeline": lambda: charts.decision_timeline(pl.DataFrame(schema={
        "decided_at": pl.Datetime, "risk": pl.Float64, "verdict": pl.String, "action": pl.String,
        "user_id": pl.String, "session_id": pl.String})),
    "decision_counts_chart": lambda: charts.decision_counts_chart(pl.DataFrame()),
    "score_histograms": lambda: charts.score_histograms(pl.DataFrame(), threshold=0.5),
    "score_histograms(only nulls)": lambda: charts.score_histograms(
        pl.DataFrame({"risk": [None, float("nan")], "label": ["genuine", "bot"]}, schema_overrides={
            "risk": pl.Float64})),
    "roc_chart": lambda: charts.roc_chart(np.array([]), np.array([]), operating_point=(0.1, 0.9), auc=0.9),
    "det_chart": lambda: charts.det_chart([], [], operating_point=(0.1, 0.1), eer=0.1),
    "far_frr_chart": lambda: charts.far_frr_chart([], [], [], threshold=0.5),
    "keystroke_rhythm_chart": lambda: charts.keystroke_rhythm_chart(pl.DataFrame()),
    "mouse_path_chart": lambda: charts.mouse_path_chart(pl.DataFrame(), width=1280, height=800),
    "mouse_path_chart(no positions)": lambda: charts.mouse_path_chart(pl.DataFrame(
        {"x": [None], "y": [None], "speed": [None], "type": ["key_down"]},
        schema={"x": pl.Float64, "y": pl.Float64, "speed": pl.Float64, "type": pl.String})),
    "feature_zscore_chart": lambda: charts.feature_zscore_chart(pl.DataFrame()),
    "feature_zscore_chart(null z)": lambda: charts.feature_zscore_chart(pl.DataFrame(
        {"name": ["a"], "value": [1.0], "baseline_mean": [None], "baseline_std": [None], "z": [None], "unit": ["ms"]},
        schema_overrides={"baseline_mean": pl.Float64, "baseline_std": pl.Float64, "z": pl.Float64})),
    "contribution_chart": lambda: charts.contribution_chart(pl.DataFrame(schema={
        "feature": pl.String, "contribution": pl.Float64})),
    "session_risk_chart": lambda: charts.session_risk_chart(pl.DataFrame(), DEFAULT_POLICY.bands),
    "session_risk_chart(no label)": lambda: charts.session_risk_chart(
        pl.DataFrame({"session_id": ["s1"], "label": [None], "highest_risk": [0.5]},
                     schema_overrides={"label": pl.String}), DEFAULT_POLICY.bands),
    "evidence_chain_chart": lambda: charts.evidence_chain_chart(None, DEFAULT_POLICY.bands),
}


@pytest.mark.parametrize("call", EMPTY_CALLS.values(), ids=EMPTY_CALLS.keys())
def test_empty_input_gives_a_figure_saying_no_data_yet(call: Callable[[], go.Figure]) -> None:
    fig = call()

    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 0
    assert [a.text for a in fig.layout.annotations] == [NO_DATA]
    fig.to_json()  # serialisable as Streamlit will send it


def test_a_frame_missing_a_column_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="mem_percent"):
        charts.system_load_chart(pl.DataFrame({"sampled_at": seconds(1), "cpu_percent": [3.0]}))


def test_arrays_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        charts.roc_chart([0.0, 0.5, 1.0], [0.0, 1.0])


# ---------------------------------------------------------------------------------- system, events


def test_system_load_draws_cpu_and_memory_lines_in_time_order_on_a_0_100_axis() -> None:
    metrics = pl.DataFrame({"sampled_at": list(reversed(seconds(3))), "cpu_percent": [30.0, 20.0, 10.0],
                            "mem_percent": [43.0, 42.0, 41.0], "rss_mb": [130.0, 120.0, 110.0]})

    fig = charts.system_load_chart(metrics)

    assert [(type(t), t.name, t.mode) for t in fig.data] == [(go.Scatter, "CPU %", "lines"),
                                                               (go.Scatter, "memory %", "lines")]
    assert as_datetimes(fig.data[0].x) == seconds(3)
    assert_allclose(fig.data[0].y, [10.0, 20.0, 30.0])
    assert_allclose(fig.data[1].y, [41.0, 42.0, 43.0])
    assert_allclose(fig.data[1].customdata, [110.0, 120.0, 130.0])  # RSS in the memory hover
    assert tuple(fig.layout.yaxis.range) == (0, 100.0)
    assert "%" in fig.layout.yaxis.title.text
    assert 300 <= fig.layout.height <= 380


def test_system_load_converts_aware_times_to_naive_utc_and_works_without_rss() -> None:
    aware = pl.DataFrame({"sampled_at": [datetime(2025, 3, 1, 13, 0, tzinfo=UTC)], "cpu_percent": [5.0],
                          "mem_percent": [50.0]})
    aware = aware.with_columns(pl.col("sampled_at").dt.convert_time_zone("Europe/Paris"))

    fig = charts.system_load_chart(aware)

    assert as_datetimes(fig.data[0].x) == [datetime(2025, 3, 1, 13, 0)]
    assert fig.data[1].customdata is None


def test_events_rate_stacks_one_bar_trace_per_source() -> None:
    rates = pl.DataFrame({"second": [T0, T0, T0 + timedelta(seconds=1)], "events": [5, 7, 3],
                          "source": ["simulator", "browser", "browser"]})

    fig = charts.events_rate_chart(rates)

    assert [(type(t), t.name) for t in fig.data] == [(go.Bar, "browser"), (go.Bar, "simulator")]
    assert_allclose(trace(fig, "browser").y, [7, 3])
    assert_allclose(trace(fig, "simulator").y, [5])
    assert fig.layout.barmode == "stack"
    assert fig.layout.yaxis.title.text == "events / s"


def test_events_rate_without_source_is_one_bar_trace() -> None:
    fig = charts.events_rate_chart(pl.DataFrame({"second": seconds(3), "events": [1, 2, 3]}))

    assert [(type(t), t.name) for t in fig.data] == [(go.Bar, "events")]
    assert as_datetimes(fig.data[0].x) == seconds(3)
    assert_allclose(fig.data[0].y, [1, 2, 3])


# -------------------------------------------------------------------------------------- decisions

DECISIONS = pl.DataFrame({
    "decided_at": seconds(5),
    "risk": [0.1, 0.95, 0.55, 0.2, 0.7],
    "verdict": ["SAFE", "UNSAFE", "UNSAFE", "SAFE", "UNSAFE"],
    "action": ["ALLOW", "DENY", "REQUIRE_OTP", "ALLOW", "FLAG_SESSION"],
    "user_id": ["alice", "bob", "alice", "carol", "bob"],
    "session_id": ["s1", "s2", "s3", "s4", None],
})


def test_decision_timeline_has_one_trace_per_action_in_severity_order_with_its_colour() -> None:
    fig = charts.decision_timeline(DECISIONS)

    assert [t.name for t in fig.data] == ["ALLOW", "REQUIRE_OTP", "FLAG_SESSION", "DENY"]
    assert all(isinstance(t, go.Scatter) and t.mode == "markers" for t in fig.data)
    assert {t.name: t.marker.color for t in fig.data} == {
        "ALLOW": SAFE_GREEN, "REQUIRE_OTP": OTP_AMBER, "FLAG_SESSION": FLAG_ORANGE, "DENY": UNSAFE_RED}
    allow = trace(fig, "ALLOW")
    assert_allclose(allow.y, [0.1, 0.2])
    assert as_datetimes(allow.x) == [T0, T0 + timedelta(seconds=3)]
    assert [list(row) for row in allow.customdata] == [["alice", "s1", "ALLOW", "SAFE"],
                                                        ["carol", "s4", "ALLOW", "SAFE"]]
    assert [list(row) for row in trace(fig, "FLAG_SESSION").customdata] == [["bob", "—", "FLAG_SESSION", "UNSAFE"]]
    assert "user" in allow.hovertemplate and "session" in allow.hovertemplate


def test_decision_timeline_hover_says_why_when_the_decisive_reason_is_given() -> None:
    reasons = ["risk 0.1 is in band ALLOW [0, 0.6)", "replayed pattern (the window is identical to an earlier one) "
               "→ at least DENY", None, "risk 0.2 is in band ALLOW [0, 0.6)", "risk 0.7 is in band FLAG_SESSION"]
    fig = charts.decision_timeline(DECISIONS.with_columns(reason=pl.Series(reasons)), colour_by="verdict")

    unsafe = trace(fig, "UNSAFE")
    assert [row[-1] for row in unsafe.customdata] == [reasons[1], "—", reasons[4]]
    assert "customdata[4]" in unsafe.hovertemplate
    assert "customdata[4]" not in trace(charts.decision_timeline(DECISIONS), "ALLOW").hovertemplate


def test_decision_timeline_coloured_by_verdict() -> None:
    fig = charts.decision_timeline(DECISIONS, colour_by="verdict")

    assert [(t.name, t.marker.color) for t in fig.data] == [("SAFE", SAFE_GREEN), ("UNSAFE", UNSAFE_RED)]
    assert_allclose(trace(fig, "UNSAFE").y, [0.95, 0.55, 0.7])
    assert VERDICT_COLOURS == {"SAFE": SAFE_GREEN, "UNSAFE": UNSAFE_RED}
    assert ACTION_COLOURS["DENY"] == UNSAFE_RED


def test_decision_counts_stack_per_action_and_sum_rows_split_by_verdict() -> None:
    hour = timedelta(hours=1)
    counts = pl.DataFrame({
        "bucket_start": [T0, T0, T0 + hour, T0 + hour, T0 + hour],
        "action": ["DENY", "ALLOW", "ALLOW", "ALLOW", "MYSTERY"],
        "decisions": [2, 10, 4, 1, 3],
    })

    fig = charts.decision_counts_chart(counts)

    assert [(type(t), t.name, t.marker.color) for t in fig.data] == [
        (go.Bar, "ALLOW", SAFE_GREEN), (go.Bar, "DENY", UNSAFE_RED), (go.Bar, "MYSTERY", charts.UNKNOWN_GREY)]
    assert as_datetimes(trace(fig, "ALLOW").x) == [T0, T0 + hour]
    assert_allclose(trace(fig, "ALLOW").y, [10, 5])
    assert fig.layout.barmode == "stack"


def hline_ys(fig: go.Figure) -> list[float]:
    return [s.y0 for s in fig.layout.shapes if s.type == "line" and s.y0 == s.y1]


#: Bands of the charts' own, so a new default policy keeps these hand-worked figures.
BANDS = (Band(0.0, 0.7, Action.ALLOW), Band(0.7, 0.8, Action.REQUIRE_OTP), Band(0.8, 0.95, Action.FLAG_SESSION),
         Band(0.95, 1.0, Action.DENY))


def test_session_risk_puts_each_label_on_its_own_row_over_the_shaded_bands() -> None:
    sessions = pl.DataFrame({"session_id": ["g1", "g2", "h1", "b1", "x1", "g3"],
                             "label": ["genuine", "genuine", "hijack", "bot", "bot", "genuine"],
                             "highest_risk": [0.9, 0.1, 0.75, 0.99, None, 0.5]})

    fig = charts.session_risk_chart(sessions, BANDS)

    assert [t.name for t in fig.data] == ["genuine (3)", "bot (1)", "hijack (1)"]  # genuine first, then LABEL_ORDER
    genuine = trace(fig, "genuine")
    assert_allclose(genuine.x, [0.1, 0.5, 0.9])  # by risk
    assert list(genuine.customdata) == ["g2", "g3", "g1"]
    assert np.all(np.abs(np.asarray(genuine.y)) <= 0.25) and len(set(genuine.y)) == 3  # spread within row 0
    assert np.all(np.abs(np.asarray(trace(fig, "hijack").y) - 2) <= 0.25)
    assert genuine.marker.color == GENUINE_BLUE and trace(fig, "bot").marker.color == IMPOSTOR_RED
    assert list(fig.layout.yaxis.ticktext) == ["genuine", "bot", "hijack"]
    assert vline_xs(fig) == [0.7, 0.8, 0.95]
    stripes = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(s.x0, s.x1, s.fillcolor) for s in stripes] == [
        (0.0, 0.7, SAFE_GREEN), (0.7, 0.8, OTP_AMBER), (0.8, 0.95, FLAG_ORANGE), (0.95, 1.0, UNSAFE_RED)]
    assert [a.text for a in fig.layout.annotations] == ["REQUIRE_OTP ≥ 0.7", "FLAG_SESSION ≥ 0.8", "DENY ≥ 0.95"]
    again = charts.session_risk_chart(sessions.reverse(), BANDS)  # same dots every time, whatever the row order
    assert [list(t.y) for t in again.data] == [list(t.y) for t in fig.data]


def test_evidence_chain_draws_each_windows_change_the_evidence_and_the_band_edges_in_nats() -> None:
    chain = pl.DataFrame({"end_ms": [3000.0, 1000.0, 2000.0, None], "evidence": [1.75, 0.0, 1.5, 9.0],
                          "evidence_change": [0.25, -0.5, 1.5, 9.0], "kind": ["time", "fixed_text", "mouse", "mouse"],
                          "action": ["FLAG_SESSION", "ALLOW", "REQUIRE_OTP", "DENY"],
                          "window_risk": [0.84, 0.5, 0.977, 1.0]})

    fig = charts.evidence_chain_chart(chain, BANDS)

    assert [t.name for t in fig.data] == ["window change", "evidence", "ALLOW", "REQUIRE_OTP", "FLAG_SESSION"]
    bars, line = fig.data[0], fig.data[1]
    assert isinstance(bars, go.Bar)
    assert_allclose(bars.x, [1.0, 2.0, 3.0])
    assert_allclose(bars.y, [-0.5, 1.5, 0.25])  # the window without an end is left out
    assert list(bars.marker.color) == [SAFE_GREEN, UNSAFE_RED, UNSAFE_RED]
    assert_allclose(line.y, [0.0, 1.5, 1.75])
    flagged = trace(fig, "FLAG_SESSION")
    assert flagged.marker.color == FLAG_ORANGE
    assert_allclose(flagged.y, [1.75])
    assert flagged.customdata[0][0] == pytest.approx(1 - np.exp(-1.75))  # the session's risk in the hover
    assert flagged.customdata[0][1] == "time window, on its own risk 0.84"
    assert_allclose(hline_ys(fig), [evidence_for_risk(0.7), evidence_for_risk(0.8), evidence_for_risk(0.95)])
    assert fig.layout.yaxis.range[1] > evidence_for_risk(0.95)  # the DENY edge (3 nats) is on the chart
    assert fig.layout.yaxis.title.text == "evidence (nats)"


def test_evidence_chain_of_decisions_without_stored_evidence_says_so() -> None:
    old = pl.DataFrame({"end_ms": [1000.0], "evidence": [None], "evidence_change": [None], "kind": ["mouse"],
                        "action": ["ALLOW"]}, schema_overrides={"evidence": pl.Float64, "evidence_change": pl.Float64})

    fig = charts.evidence_chain_chart(old, DEFAULT_POLICY.bands)

    assert len(fig.data) == 0 and "No evidence stored" in fig.layout.annotations[0].text


# --------------------------------------------------------------------------------- score evaluation


def test_score_histograms_split_genuine_impostor_and_unlabelled_with_a_threshold_line() -> None:
    scores = pl.DataFrame({"risk": [0.1, 0.2, 0.8, 0.9, 0.95, 0.5, None],
                           "label": ["genuine", "Genuine", "impostor", "bot", "replay", None, "genuine"]})

    fig = charts.score_histograms(scores, threshold=0.6)

    assert all(isinstance(t, go.Histogram) for t in fig.data)
    assert [t.name for t in fig.data] == ["genuine (2)", "impostor (3)", "unlabelled (1)"]
    assert_allclose(trace(fig, "genuine").x, [0.1, 0.2])
    assert_allclose(trace(fig, "impostor").x, [0.8, 0.9, 0.95])
    assert trace(fig, "genuine").marker.color == GENUINE_BLUE
    assert trace(fig, "impostor").marker.color == IMPOSTOR_RED
    assert fig.layout.barmode == "overlay"
    assert vline_xs(fig) == [0.6]
    assert [a.text for a in fig.layout.annotations] == ["threshold 0.6"]
    bins = [t.xbins for t in fig.data]
    assert all((b.start, b.size) == (0.0, 1.0 / 40) for b in bins)  # shared bins over 0-1 for risk


def test_score_histograms_can_drop_unlabelled_and_read_a_raw_score_column() -> None:
    scores = pl.DataFrame({"raw_score": [3.0, 5.0, 12.0, 7.0], "label": ["genuine", "genuine", "hijack", None]})

    fig = charts.score_histograms(scores, value_column="raw_score", show_unlabelled=False, bins=9)

    assert [t.name for t in fig.data] == ["genuine (2)", "impostor (1)"]
    assert (fig.data[0].xbins.start, fig.data[0].xbins.size) == (3.0, 1.0)
    assert fig.layout.xaxis.title.text.startswith("raw_score")
    assert vline_xs(fig) == []


def test_roc_chart_draws_the_curve_the_diagonal_and_the_operating_point() -> None:
    far = np.array([0.0, 0.1, 0.3, 1.0])
    tar = np.array([0.0, 0.6, 0.9, 1.0])

    fig = charts.roc_chart(far, tar, operating_point=(0.1, 0.6), auc=0.8734)

    assert [(type(t), t.name) for t in fig.data] == [(go.Scatter, "ROC"), (go.Scatter, "chance"),
                                                     (go.Scatter, "operating point")]
    assert_allclose(trace(fig, "ROC").x, far)
    assert_allclose(trace(fig, "ROC").y, tar)
    assert_allclose(trace(fig, "chance").x, [0, 1])
    assert_allclose(trace(fig, "chance").y, [0, 1])
    point = trace(fig, "operating point")
    assert (tuple(point.x), tuple(point.y), point.mode) == ((0.1,), (0.6,), "markers")
    assert "AUC 0.873" in fig.layout.title.text
    assert fig.layout.xaxis.title.text.startswith("FAR")
    assert "TAR" in fig.layout.yaxis.title.text


def test_roc_chart_without_auc_or_operating_point() -> None:
    fig = charts.roc_chart([0.0, 1.0], [0.0, 1.0])

    assert [t.name for t in fig.data] == ["ROC", "chance"]
    assert "AUC" not in fig.layout.title.text


def test_probit_maps_half_to_zero_and_clips_the_ends() -> None:
    assert_allclose(charts.probit([0.5, 0.8413447460685429, 0.0, 1.0]),
                    [0.0, 1.0, charts.probit(1e-4), -charts.probit(1e-4)], atol=1e-12)
    assert_allclose(charts.probit(1e-4), -3.7190164854556804)


def test_det_chart_uses_probit_axes_with_percent_ticks_and_marks_operating_point_and_eer() -> None:
    far = np.array([0.0, 0.01, 0.1, 0.5])
    frr = np.array([0.5, 0.2, 0.1, 0.0])

    fig = charts.det_chart(far, frr, operating_point=(0.01, 0.2), eer=0.1)

    assert [(type(t), t.name) for t in fig.data] == [(go.Scatter, "DET"), (go.Scatter, "operating point"),
                                                     (go.Scatter, "EER")]
    curve = trace(fig, "DET")
    assert_allclose(curve.x, charts.probit(far))
    assert curve.x[3] == 0.0  # a FAR of 50% sits at 0
    assert curve.y[0] == 0.0
    assert_allclose(curve.x[0], -3.7190164854556804)  # a FAR of 0 is clipped to 0.01%
    assert_allclose(np.asarray(curve.customdata), np.column_stack([far, frr]))  # hover shows the real rates
    point = trace(fig, "operating point")
    assert_allclose([point.x[0], point.y[0]], charts.probit([0.01, 0.2]))
    eer = trace(fig, "EER")
    assert_allclose([eer.x[0], eer.y[0]], [charts.probit(0.1)] * 2)
    assert [a.text for a in fig.layout.annotations] == ["EER 10%"]
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert_allclose(axis.tickvals, charts.probit([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99]))
        assert list(axis.ticktext) == ["0.1%", "1%", "5%", "20%", "50%", "80%", "95%", "99%"]


def test_det_chart_finds_the_eer_itself_when_not_given() -> None:
    # FAR - FRR: -0.4, -0.1, +0.3: the gap closes a quarter of the way from the 2nd point, FAR 0.1 + 0.25 * 0.2
    fig = charts.det_chart([0.0, 0.1, 0.3], [0.4, 0.2, 0.0])

    assert [t.name for t in fig.data] == ["DET", "EER"]
    assert_allclose(trace(fig, "EER").customdata[0], [0.15, 0.15])
    assert [a.text for a in fig.layout.annotations] == ["EER 15%"]


def test_far_frr_chart_marks_the_eer_crossing_and_the_threshold() -> None:
    thresholds = np.array([0.6, 0.2, 0.4, 0.8])  # unsorted on purpose
    far = np.array([0.5, 0.1, 0.3, 0.9])
    frr = np.array([0.2, 0.8, 0.4, 0.0])

    fig = charts.far_frr_chart(thresholds, far, frr, threshold=0.5)

    assert [(type(t), t.name) for t in fig.data] == [(go.Scatter, "FAR"), (go.Scatter, "FRR"),
                                                     (go.Scatter, "EER 35%")]
    assert_allclose(trace(fig, "FAR").x, [0.2, 0.4, 0.6, 0.8])
    assert_allclose(trace(fig, "FAR").y, [0.1, 0.3, 0.5, 0.9])
    assert_allclose(trace(fig, "FRR").y, [0.8, 0.4, 0.2, 0.0])
    assert trace(fig, "FAR").line.color == IMPOSTOR_RED and trace(fig, "FRR").line.color == GENUINE_BLUE
    # between 0.4 (gap -0.1) and 0.6 (gap +0.3) the gap closes a quarter of the way: threshold 0.45, rate 0.35
    eer = fig.data[2]
    assert_allclose([eer.x[0], eer.y[0]], [0.45, 0.35])
    assert vline_xs(fig) == [0.5]
    assert [a.text for a in fig.layout.annotations] == ["threshold 0.5: FAR 40%, FRR 30%"]


def test_far_frr_chart_without_a_crossing_has_no_eer_marker() -> None:
    fig = charts.far_frr_chart([0.1, 0.2], [0.0, 0.1], [0.5, 0.4])

    assert [t.name for t in fig.data] == ["FAR", "FRR"]


def test_crossing_takes_an_exact_meeting_point_before_a_later_sign_change() -> None:
    assert charts.crossing([1, 2, 3, 4], [0.0, 0.2, 0.3, 0.9], [0.4, 0.2, 0.5, 0.1]) == (2.0, 0.2)
    assert charts.crossing([1, 2], [0.0, 0.1], [0.5, 0.4]) is None


# ------------------------------------------------------------------------------------- one session


def test_keystroke_rhythm_plots_dwell_and_flight_against_seconds_since_the_first_press() -> None:
    presses = pl.DataFrame({"t_down": [1_500.0, 1_000.0, 2_250.0], "dwell": [90.0, 80.0, 70.0],
                            "flight_dd": [500.0, None, 750.0], "key_class": ["space", "letter", None]})

    fig = charts.keystroke_rhythm_chart(presses)

    assert [(type(t), t.name) for t in fig.data] == [(go.Scatter, "dwell"), (go.Scatter, "flight (down → down)")]
    dwell, flight = fig.data
    assert_allclose(dwell.x, [0.0, 0.5, 1.25])
    assert_allclose(dwell.y, [80.0, 90.0, 70.0])
    assert list(dwell.customdata) == ["letter", "space", "—"]
    assert_allclose(flight.x, [0.5, 1.25])  # the first press has no flight
    assert_allclose(flight.y, [500.0, 750.0])
    assert "ms" in fig.layout.yaxis.title.text and "seconds" in fig.layout.xaxis.title.text


def test_mouse_path_colours_by_log_speed_marks_clicks_reverses_y_and_keeps_equal_aspect() -> None:
    samples = pl.DataFrame({"x": [10.0, 20.0, 30.0, None, 40.0], "y": [5.0, 15.0, 25.0, None, 35.0],
                            "speed": [None, 100.0, 1_000.0, None, 0.0],
                            "type": ["mouse_move", "mouse_move", "mouse_down", "key_down", "mouse_up"]})

    fig = charts.mouse_path_chart(samples)

    assert [(type(t), t.name) for t in fig.data] == [(go.Scatter, "path"), (go.Scatter, "speed"),
                                                     (go.Scatter, "clicks")]
    path, speed, clicks = fig.data
    assert_allclose(path.x, [10.0, 20.0, 30.0, 40.0])  # the key event has no position
    assert path.mode == "lines"
    assert_allclose(speed.x, [20.0, 30.0, 40.0])  # null speed: on the path line only
    assert_allclose(speed.marker.color, np.log1p([100.0, 1_000.0, 0.0]))
    assert_allclose(speed.customdata, [100.0, 1_000.0, 0.0])  # hover in px/s
    assert list(speed.marker.colorbar.ticktext) == ["0", "10", "100", "1,000"]
    assert (tuple(clicks.x), tuple(clicks.y)) == ((30.0,), (25.0,))
    assert fig.layout.yaxis.autorange == "reversed"
    assert (fig.layout.yaxis.scaleanchor, fig.layout.yaxis.scaleratio) == ("x", 1)


def test_mouse_path_with_a_screen_size_fixes_the_axes_and_has_no_clicks_trace_without_clicks() -> None:
    samples = pl.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0], "speed": [None, 50.0], "type": ["mouse_move"] * 2})

    fig = charts.mouse_path_chart(samples, width=1280, height=800)

    assert [t.name for t in fig.data] == ["path", "speed"]
    assert tuple(fig.layout.xaxis.range) == (0, 1280)
    assert tuple(fig.layout.yaxis.range) == (800, 0)  # y downwards


# ------------------------------------------------------------------------------------ explanations


def test_feature_zscores_keep_the_top_n_by_absolute_z_largest_first_and_highlight_beyond_3() -> None:
    z = [0.5, -4.0, 2.0, None, 3.5, -1.0, 3.0]
    features = pl.DataFrame({
        "name": [f"f{i}" for i in range(len(z))], "value": [float(i) for i in range(len(z))],
        "baseline_mean": [1.0] * len(z), "baseline_std": [0.5] * len(z), "z": z,
        "unit": ["ms", "ms", "px/s", "ms", None, "ms", "ratio"],
    })

    fig = charts.feature_zscore_chart(features, top_n=4)

    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar) and fig.data[0].orientation == "h"
    bars = fig.data[0]
    assert list(bars.y) == ["f1", "f4", "f6", "f2"]  # |z| 4, 3.5, 3, 2; the null z is dropped
    assert_allclose(bars.x, [-4.0, 3.5, 3.0, 2.0])
    assert list(bars.marker.color) == [UNSAFE_RED, UNSAFE_RED, GENUINE_BLUE, GENUINE_BLUE]  # |z| = 3 is not beyond
    assert [list(row) for row in bars.customdata] == [[1.0, 1.0, 0.5, "ms"], [4.0, 1.0, 0.5, ""],
                                                      [6.0, 1.0, 0.5, "ratio"], [2.0, 1.0, 0.5, "px/s"]]
    assert fig.layout.yaxis.autorange == "reversed"  # the first (largest) bar is drawn on top
    assert sorted(vline_xs(fig)) == [-3.0, 3.0]


def test_feature_zscores_default_top_n_is_15() -> None:
    features = pl.DataFrame({"name": [f"f{i:02d}" for i in range(20)], "value": [0.0] * 20,
                             "baseline_mean": [0.0] * 20, "baseline_std": [1.0] * 20,
                             "z": [float(i) for i in range(20)], "unit": ["ms"] * 20})

    bars = charts.feature_zscore_chart(features).data[0]

    assert list(bars.y) == [f"f{i:02d}" for i in range(19, 4, -1)]


def test_contributions_keep_the_top_n_by_magnitude_ordered_by_value() -> None:
    contributions = pl.DataFrame({"feature": ["a", "b", "c", "d", "e"],
                                  "contribution": [0.05, -0.4, 0.3, float("nan"), 0.2],
                                  "unit": ["ms", "px/s", None, "ms", "ratio"]})

    fig = charts.contribution_chart(contributions, top_n=3)

    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar) and fig.data[0].orientation == "h"
    bars = fig.data[0]
    assert list(bars.y) == ["c", "e", "b"]
    assert_allclose(bars.x, [0.3, 0.2, -0.4])
    assert list(bars.marker.color) == [UNSAFE_RED, UNSAFE_RED, SAFE_GREEN]
    assert list(bars.customdata) == ["", "ratio", "px/s"]
    assert fig.layout.yaxis.autorange == "reversed"


def test_contributions_without_a_unit_column() -> None:
    bars = charts.contribution_chart(pl.DataFrame({"feature": ["a", "b"], "contribution": [-1.0, 2.0]})).data[0]

    assert list(bars.y) == ["b", "a"]
    assert list(bars.customdata) == ["", ""]


def test_every_builder_gives_a_compact_serialisable_figure() -> None:
    figures = [
        charts.system_load_chart(pl.DataFrame({"sampled_at": seconds(2), "cpu_percent": [1.0, 2.0],
                                               "mem_percent": [3.0, 4.0]})),
        charts.decision_timeline(DECISIONS),
        charts.roc_chart([0.0, 1.0], [0.0, 1.0]),
        charts.det_chart([0.1, 0.2], [0.2, 0.1]),
        charts.mouse_path_chart(pl.DataFrame({"x": [1.0], "y": [1.0], "speed": [1.0], "type": ["mouse_move"]})),
        charts.session_risk_chart(pl.DataFrame({"session_id": ["s"], "label": ["bot"], "highest_risk": [0.9]}),
                                  DEFAULT_POLICY.bands),
        charts.evidence_chain_chart(pl.DataFrame({"end_ms": [1.0], "evidence": [0.5], "evidence_change": [0.5],
                                                  "kind": ["mouse"], "action": ["ALLOW"]}), DEFAULT_POLICY.bands),
    ]

    for fig in figures:
        assert 300 <= fig.layout.height <= 380
        assert fig.layout.margin.t <= 50
        assert fig.layout.title.text
        fig.to_json()
