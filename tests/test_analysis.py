"""app.analysis on tiny hand-made inputs whose answers are worked out in the comments, and the
store.monitor reads behind the pages on a store of a few rows."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from app import analysis
from app.pipeline import align_to_policy
from app.policy import DEFAULT_POLICY, Action, DecisionContext, PolicyError, decide
from detectors.thresholds import apply_sensitivity
from store import Store, ingest_events, monitor
from store.decisions import record_decision
from store.policies import latest_policy

# ------------------------------------------------------------------------------------------ z-scores


def test_zscores_divide_by_the_baseline_spread_and_carry_the_dictionary_units() -> None:
    # dwell_mean: (3 - 1) / 2 = 1; typing_speed: no spread -> null; mystery: (4 - 5) / 0.5 = -2, no unit
    frame = analysis.feature_zscores([3.0, 10.0, 4.0], ["dwell_mean", "typing_speed", "mystery"],
                                     [1.0, 10.0, 5.0], [2.0, 0.0, 0.5])
    assert frame["z"].to_list() == [1.0, None, -2.0]
    assert frame["unit"].to_list() == ["ms", "presses/s", ""]
    assert frame["baseline_mean"].to_list() == [1.0, 10.0, 5.0]
    assert frame["meaning"][0].startswith("mean hold time")


def test_zscores_refuse_vectors_of_another_schema() -> None:
    with pytest.raises(ValueError, match="2 names but 3 values"):
        analysis.feature_zscores([1.0, 2.0, 3.0], ["a", "b"], [0.0, 0.0], [1.0, 1.0])


def test_deviation_contributions_are_shares_of_the_total_absolute_z() -> None:
    # |z| = 2, 1, 1 (the null is left out): shares 0.5, 0.25, 0.25, largest first
    zscores = analysis.feature_zscores([3.0, -1.0, 0.0, 2.0], ["dwell_mean", "dwell_std", "key_count", "pause_rate"],
                                       [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    shares = analysis.deviation_contributions(zscores)
    assert shares["feature"].to_list() == ["dwell_mean", "dwell_std", "pause_rate"]
    assert shares["contribution"].to_list() == [0.5, 0.25, 0.25]
    assert shares["z"].to_list() == [2.0, -1.0, 1.0]


def test_deviation_contributions_of_a_window_at_the_baseline_are_zero() -> None:
    zscores = analysis.feature_zscores([1.0, 2.0], ["a", "b"], [1.0, 2.0], [1.0, 1.0])
    assert analysis.deviation_contributions(zscores)["contribution"].to_list() == [0.0, 0.0]


def test_leave_one_out_contribution_is_the_risk_lost_when_a_feature_returns_to_the_baseline() -> None:
    # risk = 0.1 a + 0.2 b; x = (1, 2): 0.5. a at its baseline 0: 0.4 (a gave 0.1); b at its baseline 3: 0.7 (-0.2)
    calls: list[int] = []

    def risk_of(X: np.ndarray) -> np.ndarray:
        calls.append(X.shape[0])
        return X[:, 0] * 0.1 + X[:, 1] * 0.2

    frame = analysis.leave_one_out_contributions(risk_of, [1.0, 2.0], [0.0, 3.0], ["dwell_mean", "b"])
    assert calls == [3]  # one call: the window and one row per feature
    assert frame["feature"].to_list() == ["b", "dwell_mean"]  # largest |contribution| first
    assert_allclose(frame["contribution"].to_numpy(), [-0.2, 0.1])
    assert frame["unit"].to_list() == ["", "ms"]


def test_baseline_and_threshold_come_from_model_metadata() -> None:
    metadata = json.dumps({"baseline": {"mean": [1, 2], "std": [0.5, 1]}, "threshold": {"risk": 0.7}})
    mean, std = analysis.baseline_of(metadata)
    assert mean.tolist() == [1.0, 2.0] and std.tolist() == [0.5, 1.0]
    assert analysis.threshold_of(metadata) == 0.7
    assert analysis.baseline_of("{}") is None and analysis.baseline_of(None) is None
    assert analysis.threshold_of(json.dumps({"threshold": {"target_frr": 0.05}})) is None


def test_model_thresholds_fall_back_to_the_blob_header() -> None:
    rows = pl.DataFrame({"model_id": ["m1", "m2", "m3"],
                         "metadata": [json.dumps({"threshold": {"risk": 0.6}}), "{}", None]})
    assert analysis.models_without_threshold(rows) == ["m2", "m3"]
    found = analysis.model_thresholds(rows, {"m2": {"threshold": {"risk": 0.8}}})
    assert found == {"m1": 0.6, "m2": 0.8}  # m3 has neither: left out


# ------------------------------------------------------------------------------------------ one session


def _session_events() -> pl.DataFrame:
    rows = [  # seq, t_ms, type, key_class, press_id, x, y
        (0, 0.0, "mouse_move", None, None, 0.0, 0.0),
        (1, 100.0, "mouse_move", None, None, 30.0, 40.0),  # 50 px in 100 ms: 500 px/s
        (2, 100.0, "mouse_down", None, None, 30.0, 40.0),  # no time passed: speed unknown
        (3, 200.0, "key_down", "letter", 1, None, None),
        (4, 280.0, "key_up", "letter", 1, None, None),  # dwell 80
        (5, 350.0, "key_down", "space", 2, None, None),  # flight DD 150, UD 70
        (6, 410.0, "key_up", "space", 2, None, None),  # dwell 60
        (7, 1000.0, "mouse_move", None, None, 30.0, 100.0),  # 60 px in 900 ms
    ]
    return pl.DataFrame(rows, schema={"seq": pl.Int64, "t_ms": pl.Float64, "type": pl.String, "key_class": pl.String,
                                      "press_id": pl.Int64, "x": pl.Float64, "y": pl.Float64}, orient="row"
                        ).with_columns(session_id=pl.lit("s1"), user_id=pl.lit("u1"), pos=pl.lit(None, pl.Int32),
                                       field=pl.lit(None, pl.String))


def test_session_presses_have_dwell_and_flights() -> None:
    presses = analysis.session_presses(_session_events())
    assert presses["dwell"].to_list() == [80.0, 60.0]
    assert presses["flight_dd"].to_list() == [None, 150.0]
    assert presses["flight_ud"].to_list() == [None, 70.0]
    assert presses["key_class"].to_list() == ["letter", "space"]


def test_pointer_path_speeds_in_px_per_second() -> None:
    path = analysis.pointer_path(_session_events())
    assert path["type"].to_list() == ["mouse_move", "mouse_move", "mouse_down", "mouse_move"]
    assert path["speed"].to_list()[:3] == [None, 500.0, None]
    assert path["speed"][3] == pytest.approx(60 / 0.9)


def test_empty_session_gives_empty_frames_and_a_figure() -> None:
    empty = _session_events().head(0)
    assert analysis.session_presses(empty).height == 0
    assert analysis.pointer_path(empty).height == 0
    assert len(analysis.replay_figure(empty).frames) == 1


def test_replay_times_step_at_least_the_minimum_and_end_at_the_end() -> None:
    times, step = analysis.replay_times(1000.0, max_frames=5, min_step_ms=100.0)
    assert step == 250.0 and times.tolist() == [0.0, 250.0, 500.0, 750.0, 1000.0]
    times, step = analysis.replay_times(250.0, max_frames=100, min_step_ms=100.0)
    assert step == 100.0 and times.tolist() == [0.0, 100.0, 200.0, 250.0]


def test_replay_frames_show_what_had_happened_by_then_at_the_chosen_speed() -> None:
    fig = analysis.replay_figure(_session_events(), speed=2.0, max_frames=5, trail_ms=500.0)
    # duration 1000 ms, 5 frames: 0, 250, 500, 750, 1000 ms; a frame lasts 250 ms / 2
    assert [f.name for f in fig.frames] == ["0", "1", "2", "3", "4"]
    assert [step.label for step in fig.layout.sliders[0].steps] == ["0.0", "0.2", "0.5", "0.8", "1.0"]
    assert fig.layout.updatemenus[0].buttons[0].args[1]["frame"]["duration"] == 125
    at_250 = fig.frames[1].data
    assert list(at_250[1].x) == [30.0] and list(at_250[1].y) == [40.0]  # the pointer: last sample by 250 ms
    assert list(at_250[2].x) == [0.2]  # the key pressed at 200 ms, in seconds
    at_1000 = fig.frames[4].data
    assert list(at_1000[0].y) == [100.0]  # trail of 500 ms: only the sample at 1000 ms
    assert list(at_1000[2].x) == []  # both presses are older than the trail
    with pytest.raises(ValueError, match="above 0"):
        analysis.replay_figure(_session_events(), speed=0)


# ---------------------------------------------------------------------------------- re-labelling scores


@pytest.mark.parametrize("sensitivity", [-1.0, -0.4, 0.0, 0.3, 1.0])
def test_vectorised_threshold_and_alignment_match_the_scorer(sensitivity: float) -> None:
    thresholds = np.array([0.0, 0.2, 0.5, 0.77, 1.0])
    moved = analysis.moved_thresholds(thresholds, sensitivity)
    assert_allclose(moved, [apply_sensitivity(t, sensitivity) for t in thresholds])
    risks = np.linspace(0, 1, 11)
    for threshold in moved:
        assert_allclose(analysis.aligned_risk(risks, np.full(risks.size, threshold), 0.6),
                        align_to_policy(risks, threshold, 0.6))


def test_combined_risk_is_the_mean_of_each_models_aligned_risk() -> None:
    per_model = pl.DataFrame({"window_id": ["w1", "w1", "w1", "w2"], "model_id": ["m1", "m2", "m3", "m1"],
                              "risk": [0.5, 0.75, 0.9, 0.25]})
    thresholds = {"m1": 0.5, "m2": 0.5}  # m3 unknown: left out
    # sensitivity 0, edge 0.6: m1 0.5 -> 0.6; m2 0.75 -> 0.6 + 0.25/0.5 * 0.4 = 0.8; w1 = 0.7. w2: 0.25/0.5 * 0.6 = 0.3
    combined = analysis.combined_risks(per_model, thresholds, 0.0, 0.6)
    assert combined["window_id"].to_list() == ["w1", "w2"]
    assert_allclose(combined["risk"].to_numpy(), [0.7, 0.3])
    assert combined["models"].to_list() == [2, 1]
    # sensitivity 1 moves both thresholds to 0: risk r -> 0.6 + 0.4 r; w1 = (0.8 + 0.9) / 2
    assert_allclose(analysis.combined_risks(per_model, thresholds, 1.0, 0.6)["risk"].to_numpy(), [0.85, 0.7])


def test_operating_point_counts_a_risk_on_the_edge_as_unsafe() -> None:
    # genuine 0.1 | 0.6 0.7 -> FRR 2/3 (0.6 is in the band above the edge); impostor 0.5 | 0.9 -> FAR 1/2
    assert analysis.operating_point([0.1, 0.6, 0.7], [0.5, 0.9], 0.6) == (0.5, pytest.approx(2 / 3))
    far, frr = analysis.operating_point([0.1], [], 0.6)
    assert math.isnan(far) and frr == 0.0


def test_error_rates_need_both_classes_for_the_curves() -> None:
    windows = pl.DataFrame({"risk": [0.1, 0.2, 0.7, 0.9, None], "label": ["genuine", "Genuine", "bot", "hijack",
                                                                         "impostor"]})
    rates = analysis.error_rates(windows, 0.6)
    assert (rates.far, rates.frr, rates.eer, rates.auc) == (0.0, 0.0, 0.0, 1.0)
    assert rates.genuine.tolist() == [0.1, 0.2] and rates.impostor.tolist() == [0.7, 0.9]
    only_genuine = analysis.error_rates(windows.filter(pl.col("label") != "bot").head(2), 0.6)
    assert only_genuine.eer is None and only_genuine.curve_far.size == 0


def test_policy_with_edges_keeps_actions_and_rules_and_names_a_bad_band() -> None:
    moved = analysis.policy_with_edges(DEFAULT_POLICY, [0.5, 0.7, 0.9])
    assert [(b.lower, b.upper, b.action) for b in moved.bands] == [
        (0.0, 0.5, Action.ALLOW), (0.5, 0.7, Action.REQUIRE_OTP), (0.7, 0.9, Action.FLAG_SESSION),
        (0.9, 1.0, Action.DENY)]
    assert moved.rules == DEFAULT_POLICY.rules and moved.revision == 0
    with pytest.raises(PolicyError, match="band 2 \\(REQUIRE_OTP\\)"):
        analysis.policy_with_edges(DEFAULT_POLICY, [0.8, 0.7, 0.9])
    with pytest.raises(PolicyError, match="3 inner edges"):
        analysis.policy_with_edges(DEFAULT_POLICY, [0.5])


def _decision_rows() -> pl.DataFrame:
    """Five decisions under the default policy (edge 0.6), one model m1 with threshold 0.5, reasons
    written by app.policy.decide itself."""
    def row(decision_id, model_risk, context=None, model_id="m1"):
        risk = 0.3 if model_risk is None else float(align_to_policy(np.array([model_risk]), 0.5, 0.6)[0])
        decision = decide(risk, DEFAULT_POLICY, context)
        return {"decision_id": decision_id, "action": decision.action.value, "verdict": decision.verdict.value,
                "risk": risk, "reasons": json.dumps(list(decision.reasons)),
                "model_id": None if model_risk is None else model_id, "model_risk": model_risk}

    return pl.DataFrame([
        row("d1", 0.4),  # 0.48 ALLOW
        row("d2", 0.55),  # 0.64 REQUIRE_OTP
        row("d3", 0.05, DecisionContext(replayed=True)),  # 0.06, DENY by the replay rule
        row("d4", None),  # no stored scores: decided risk 0.3 ALLOW
        row("d5", 0.05, DecisionContext(enrolment_windows=2)),  # REQUIRE_OTP: 2 of 5 enrolment windows
    ])


def test_what_if_at_the_decided_setting_changes_nothing() -> None:
    rows = analysis.what_if(_decision_rows(), {"m1": 0.5}, 0.0, DEFAULT_POLICY)
    assert_allclose(rows["new_risk"].to_numpy(), rows["risk"].to_numpy())
    assert rows["new_action"].to_list() == ["ALLOW", "REQUIRE_OTP", "DENY", "ALLOW", "REQUIRE_OTP"]
    assert rows["recomputed"].to_list() == [True, True, True, False, True]
    assert analysis.what_if_summary(rows) == {"decisions": 5, "changed_verdict": 0, "safe_to_unsafe": 0,
                                              "unsafe_to_safe": 0, "changed_action": 0, "not_recomputed": 1}


def test_what_if_counts_the_decisions_a_new_setting_would_change() -> None:
    # sensitivity 0.5: threshold 0.5 -> 0.25. d1: 0.6 + (0.4 - 0.25) / 0.75 * 0.4 = 0.68 -> REQUIRE_OTP (SAFE -> UNSAFE)
    # d2: 0.6 + 0.3 / 0.75 * 0.4 = 0.76 REQUIRE_OTP; d3 stays DENY (replayed); d5 stays REQUIRE_OTP (enrolment)
    # first edge 0.25: d4 keeps its decided risk 0.3, now above the edge -> REQUIRE_OTP
    strict = analysis.policy_with_edges(DEFAULT_POLICY, [0.25, 0.8, 0.95])
    rows = analysis.what_if(_decision_rows(), {"m1": 0.5}, 0.5, strict)
    # with edge 0.25: d1 -> 0.25 + 0.15 / 0.75 * 0.75 = 0.4, d2 -> 0.25 + 0.3 / 0.75 * 0.75 = 0.55
    assert_allclose(rows["new_risk"].to_numpy()[:2], [0.4, 0.55])
    assert rows["new_action"].to_list() == ["REQUIRE_OTP", "REQUIRE_OTP", "DENY", "REQUIRE_OTP", "REQUIRE_OTP"]
    assert analysis.what_if_summary(rows) == {"decisions": 5, "changed_verdict": 2, "safe_to_unsafe": 2,
                                              "unsafe_to_safe": 0, "changed_action": 2, "not_recomputed": 1}
    assert analysis.transitions(rows).to_dicts() == [{"action": "ALLOW", "new_action": "REQUIRE_OTP", "decisions": 2}]
    lenient = analysis.what_if(_decision_rows(), {"m1": 0.5}, -1.0, DEFAULT_POLICY)  # thresholds at 1: all below 0.6
    assert lenient["new_action"].to_list() == ["ALLOW", "ALLOW", "DENY", "ALLOW", "REQUIRE_OTP"]
    assert analysis.what_if_summary(lenient)["unsafe_to_safe"] == 1


def test_what_if_without_decisions_is_empty() -> None:
    rows = analysis.what_if(_decision_rows().head(0), {}, 0.0, DEFAULT_POLICY)
    assert rows.height == 0 and analysis.what_if_summary(rows)["decisions"] == 0
    assert analysis.transitions(rows).height == 0


# ------------------------------------------------------------------------------- store.monitor reads

T0 = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def small_store(store: Store) -> Store:
    """Two sessions: s1 (u1) with 3 events at 0, 400 and 1500 ms from T0; s2 (u2) with 1 event 10 min later."""
    events = pl.DataFrame({
        "session_id": ["s1", "s1", "s1", "s2"], "user_id": ["u1", "u1", "u1", "u2"], "seq": [0, 1, 2, 0],
        "t_ms": [0.0, 400.0, 1500.0, 0.0], "type": ["mouse_move", "mouse_move", "key_down", "mouse_move"],
        "key_class": [None, None, "letter", None], "press_id": [None, None, 1, None],
        "x": [1.0, 2.0, None, 5.0], "y": [1.0, 2.0, None, 5.0], "source": ["simulator"] * 4})
    sessions = pl.DataFrame({"session_id": ["s1", "s2"], "user_id": ["u1", "u2"],
                             "started_at": [T0, T0 + timedelta(minutes=10)]})
    labels = pl.DataFrame({"session_id": ["s2"], "label": ["bot"], "actor_id": [None], "takeover_ms": [None]},
                          schema={"session_id": pl.String, "label": pl.String, "actor_id": pl.String,
                                  "takeover_ms": pl.Float64})
    ingest_events(store, events, sessions=sessions, labels=labels)
    policy = latest_policy(store)
    for risk, when in ((0.2, T0), (0.7, T0 + timedelta(seconds=5))):
        record_decision(store, decide(risk, policy), user_id="u1", session_id="s1", decided_at=when)
    return store


def test_events_per_second_buckets_wall_clock_seconds(small_store: Store) -> None:
    rates = monitor.events_per_second(small_store, T0, T0 + timedelta(minutes=1))
    assert rates.to_dicts() == [{"second": T0, "source": "simulator", "events": 2},
                                {"second": T0 + timedelta(seconds=1), "source": "simulator", "events": 1}]
    assert monitor.newest_activity(small_store) == T0 + timedelta(minutes=10)


def test_active_sessions_carry_the_latest_decision_as_current_risk(small_store: Store) -> None:
    active = monitor.active_sessions(small_store, T0, T0 + timedelta(minutes=1))
    assert active.select("session_id", "events", "risk", "action", "max_risk", "decisions").to_dicts() == [
        {"session_id": "s1", "events": 3, "risk": 0.7, "action": "REQUIRE_OTP", "max_risk": 0.7, "decisions": 2}]
    assert active["last_event_at"][0] == T0 + timedelta(milliseconds=1500)
    later = monitor.active_sessions(small_store, T0 + timedelta(minutes=9), T0 + timedelta(minutes=11))
    assert later["session_id"].to_list() == ["s2"] and later["risk"].to_list() == [None]


def test_session_reads_summarise_one_session(small_store: Store) -> None:
    summary = monitor.session_summary(small_store, "s1")
    assert {k: summary[k] for k in ("user_id", "events", "key_presses", "mouse_events", "duration_s", "decisions",
                                    "worst_action", "label")} == {
        "user_id": "u1", "events": 3, "key_presses": 1, "mouse_events": 2, "duration_s": 1.5, "decisions": 2,
        "worst_action": "REQUIRE_OTP", "label": None}
    assert monitor.session_summary(small_store, "nope") is None
    assert monitor.user_sessions(small_store, "u2").select("session_id", "label", "events").to_dicts() == [
        {"session_id": "s2", "label": "bot", "events": 1}]
    assert monitor.users(small_store)["user_id"].to_list() == ["u1", "u2"]
    assert monitor.latest_decisions(small_store, 1)["risk"].to_list() == [0.7]
    assert monitor.session_decisions(small_store, "s1")["action"].to_list() == ["ALLOW", "REQUIRE_OTP"]
