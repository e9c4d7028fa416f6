"""app.engine.history and app.web.investigation on tiny hand-made inputs whose answers are worked out in
the comments, and the store's reads behind the pages (store.live_activity, store.session_details,
store.decided_sessions) on a store of a few rows."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose
from polars.testing import assert_frame_equal

from app.engine import history
from app.engine.evidence import EvidenceSettings, surprise_of, window_surprise
from app.engine.policies import latest_policy
from app.engine.policy import DEFAULT_POLICY, Action, Condition, DecisionContext, PolicyError, decide
from app.web import investigation
from store import Store, decided_sessions, ingest_events, live_activity, session_details
from store.decisions import DecisionRecord, record_decisions
from store.stored_models import record_scores
from store.windows import store_window_rows, window_rows

# ------------------------------------------------------------------------------------------ z-scores


def test_zscores_divide_by_the_baseline_spread_and_carry_the_dictionary_units() -> None:
    # dwell_mean: (3 - 1) / 2 = 1; typing_speed: no spread -> null; mystery: (4 - 5) / 0.5 = -2, no unit
    frame = investigation.feature_zscores([3.0, 10.0, 4.0], ["dwell_mean", "typing_speed", "mystery"],
                                     [1.0, 10.0, 5.0], [2.0, 0.0, 0.5])
    assert frame["z"].to_list() == [1.0, None, -2.0]
    assert frame["unit"].to_list() == ["ms", "presses/s", ""]
    assert frame["baseline_mean"].to_list() == [1.0, 10.0, 5.0]
    assert frame["meaning"][0].startswith("mean hold time")


def test_zscores_refuse_vectors_of_another_schema() -> None:
    with pytest.raises(ValueError, match="2 names but 3 values"):
        investigation.feature_zscores([1.0, 2.0, 3.0], ["a", "b"], [0.0, 0.0], [1.0, 1.0])


def test_deviation_contributions_are_shares_of_the_total_absolute_z() -> None:
    # |z| = 2, 1, 1 (the null is left out): shares 0.5, 0.25, 0.25, largest first
    zscores = investigation.feature_zscores([3.0, -1.0, 0.0, 2.0],
                                            ["dwell_mean", "dwell_std", "key_count", "pause_rate"],
                                       [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    shares = investigation.deviation_contributions(zscores)
    assert shares["feature"].to_list() == ["dwell_mean", "dwell_std", "pause_rate"]
    assert shares["contribution"].to_list() == [0.5, 0.25, 0.25]
    assert shares["z"].to_list() == [2.0, -1.0, 1.0]


def test_deviation_contributions_of_a_window_at_the_baseline_are_zero() -> None:
    zscores = investigation.feature_zscores([1.0, 2.0], ["a", "b"], [1.0, 2.0], [1.0, 1.0])
    assert investigation.deviation_contributions(zscores)["contribution"].to_list() == [0.0, 0.0]


def test_leave_one_out_contribution_is_the_risk_lost_when_a_feature_returns_to_the_baseline() -> None:
    # risk = 0.1 a + 0.2 b; x = (1, 2): 0.5. a at its baseline 0: 0.4 (a gave 0.1); b at its baseline 3: 0.7 (-0.2)
    calls: list[int] = []

    def risk_of(X: np.ndarray) -> np.ndarray:
        calls.append(X.shape[0])
        return X[:, 0] * 0.1 + X[:, 1] * 0.2

    frame = investigation.leave_one_out_contributions(risk_of, [1.0, 2.0], [0.0, 3.0], ["dwell_mean", "b"])
    assert calls == [3]  # one call: the window and one row per feature
    assert frame["feature"].to_list() == ["b", "dwell_mean"]  # largest |contribution| first
    assert_allclose(frame["contribution"].to_numpy(), [-0.2, 0.1])
    assert frame["unit"].to_list() == ["", "ms"]


def test_baseline_comes_from_model_metadata() -> None:
    metadata = json.dumps({"baseline": {"mean": [1, 2], "std": [0.5, 1]}})
    mean, std = investigation.baseline_of(metadata)
    assert mean.tolist() == [1.0, 2.0] and std.tolist() == [0.5, 1.0]
    assert investigation.baseline_of("{}") is None and investigation.baseline_of(None) is None


class _Model:
    """Stands in for a UserModel: its risk of a window is one of the window's features."""

    def __init__(self, column: int) -> None:
        self.column, self.seen = column, []

    def risk(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        self.seen.append(schema_id)
        return X[:, self.column]


def test_mean_model_risk_averages_the_models_own_risks_for_leave_one_out() -> None:
    # models read feature 0 and feature 1: risk of (0.8, 0.4) = 0.6; feature 0 back to 0.2 gives 0.3
    models = [_Model(0), _Model(1)]
    risk = investigation.mean_model_risk(models, "schema-a")
    assert_allclose(risk(np.array([[0.8, 0.4], [0.2, 0.2]])), [0.6, 0.2])
    frame = investigation.leave_one_out_contributions(risk, [0.8, 0.4], [0.2, 0.4], ["dwell_mean", "b"])
    assert frame["feature"].to_list() == ["dwell_mean", "b"]
    assert_allclose(frame["contribution"].to_numpy(), [0.3, 0.0])
    assert models[0].seen == ["schema-a", "schema-a"]
    with pytest.raises(ValueError, match="at least one model"):
        investigation.mean_model_risk([], "schema-a")


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
    presses = investigation.session_presses(_session_events())
    assert presses["dwell"].to_list() == [80.0, 60.0]
    assert presses["flight_dd"].to_list() == [None, 150.0]
    assert presses["flight_ud"].to_list() == [None, 70.0]
    assert presses["key_class"].to_list() == ["letter", "space"]


def test_pointer_path_speeds_in_px_per_second() -> None:
    path = investigation.pointer_path(_session_events())
    assert path["type"].to_list() == ["mouse_move", "mouse_move", "mouse_down", "mouse_move"]
    assert path["speed"].to_list()[:3] == [None, 500.0, None]
    assert path["speed"][3] == pytest.approx(60 / 0.9)


def test_empty_session_gives_empty_frames_and_a_figure() -> None:
    empty = _session_events().head(0)
    assert investigation.session_presses(empty).height == 0
    assert investigation.pointer_path(empty).height == 0
    assert len(investigation.replay_figure(empty).frames) == 1


def test_replay_times_step_at_least_the_minimum_and_end_at_the_end() -> None:
    times, step = investigation.replay_times(1000.0, max_frames=5, min_step_ms=100.0)
    assert step == 250.0 and times.tolist() == [0.0, 250.0, 500.0, 750.0, 1000.0]
    times, step = investigation.replay_times(250.0, max_frames=100, min_step_ms=100.0)
    assert step == 100.0 and times.tolist() == [0.0, 100.0, 200.0, 250.0]


def test_replay_frames_show_what_had_happened_by_then_at_the_chosen_speed() -> None:
    fig = investigation.replay_figure(_session_events(), speed=2.0, max_frames=5, trail_ms=500.0)
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
        investigation.replay_figure(_session_events(), speed=0)


# ------------------------------------------------------------------------------ re-deciding history
# Evidence with shift 1 and the default weights (time windows count half): a window of evidence z (at most
# 2) moves the session by weight * (z - 0.5) at sensitivity 0, by weight * z at +1 and by weight * (z - 1)
# at -1. Bands of their own (risk 0.7 / 0.8 / 0.95, i.e. 1.20 / 1.61 / 3.00 nats), so a new default keeps
# these hand-worked histories.
POLICY = history.policy_with_edges(DEFAULT_POLICY, [0.7, 0.8, 0.95])


def _stored(decision_id: str, session_id: str, end_ms: float, kind: str, z: list[float] | None, evidence: float,
            change: float, label: str, context: DecisionContext | None = None) -> dict:
    """A decision as the scorer stored it: models whose evidence is `z` (their risk is 1 - surprise),
    the session's evidence after the window and how much it moved, decided by app.engine.policy.decide."""
    risk = 1 - math.exp(-evidence)
    made = decide(risk, POLICY, context)
    model_risks = None if z is None else [float(1 - surprise_of(v)) for v in z]
    return {"decision_id": decision_id, "session_id": session_id, "window_id": f"{decision_id}-w", "kind": kind,
            "end_ms": end_ms,
            "window_risk": None if z is None else float(1 - window_surprise([surprise_of(v) for v in z])),
            "evidence": evidence, "evidence_change": change, "action": made.action.value,
            "verdict": made.verdict.value, "risk": risk, "reasons": json.dumps(list(made.reasons)), "label": label,
            "takeover_ms": 1500.0 if label == "hijack" else None, "model_risks": model_risks}


def _history() -> pl.DataFrame:
    """Four sessions decided at sensitivity 0 under POLICY (S = evidence in nats, risk 1 - e^-S)."""
    rows = [
        # genuine a: z 0 -> max(0, -0.5) = 0; z 2 -> 1.5 (risk 0.78, REQUIRE_OTP); a time window of mean z 1: +0.25
        _stored("a1", "a", 1000, "fixed_text", [0, 0], 0.0, 0.0, "genuine"),
        _stored("a2", "a", 2000, "mouse", [2, 2], 1.5, 1.5, "genuine"),
        _stored("a3", "a", 3000, "time", [0, 2], 1.75, 0.25, "genuine"),  # risk 0.83, FLAG_SESSION
        # bot b: z 3, clipped to 2 -> 1.5 (machine-like: DENY); z -2 -> 0, replayed: DENY at risk 0
        _stored("b1", "b", 500, "free_text", [3, 3], 1.5, 1.5, "bot", DecisionContext(machine_like="scripted")),
        _stored("b2", "b", 900, "free_text", [-2, -2], 0.0, -1.5, "bot", DecisionContext(replayed=True)),
        # genuine c: z 2 -> 1.5 (REQUIRE_OTP); the user answered the code, so the live evidence restarted at 0:
        # z 1 -> 0.5 (not 2.0); then a window without stored scores (0.2, too little enrolment: REQUIRE_OTP)
        _stored("c1", "c", 1000, "mouse", [2, 2], 1.5, 1.5, "genuine"),
        _stored("c2", "c", 2000, "mouse", [1, 1], 0.5, 0.5, "genuine"),
        _stored("c3", "c", 3000, "fixed_text", None, 0.2, -0.3, "genuine", DecisionContext(enrolment_windows=2)),
        # genuine d: one typical window
        _stored("d1", "d", 1000, "fixed_text", [0, 0], 0.0, 0.0, "genuine"),
        # hijack h, taken over at 1500 ms: the owner's window, then z 2 -> 1.5 (REQUIRE_OTP)
        _stored("h1", "h", 1000, "free_text", [0, 0], 0.0, 0.0, "hijack"),
        _stored("h2", "h", 2000, "free_text", [2, 2], 1.5, 1.5, "hijack"),
    ]
    return pl.DataFrame(rows, schema_overrides={"window_risk": pl.Float64, "takeover_ms": pl.Float64,
                                                "model_risks": pl.List(pl.Float64)})


def test_the_reasons_say_which_rules_fired() -> None:
    fired = history.fired_rules(_history()["reasons"], DEFAULT_POLICY)
    held = {condition: [d for d, f in zip(_history()["decision_id"], flags, strict=True) if f]
            for condition, flags in fired.items()}
    assert held == {Condition.REPLAYED_PATTERN: ["b2"], Condition.MACHINE_LIKE: ["b1"],
                    Condition.INSUFFICIENT_ENROLMENT: ["c3"]}
    lenient = replace(DEFAULT_POLICY, min_enrolment_windows=2)  # the decision counted 2: enough now
    assert not history.fired_rules(_history()["reasons"], lenient)[Condition.INSUFFICIENT_ENROLMENT].any()


def test_redeciding_at_the_stored_setting_changes_nothing() -> None:
    rows = history.redecide(_history(), POLICY, EvidenceSettings())
    assert_allclose(rows["new_evidence"].to_numpy(), rows["evidence"].to_numpy(), atol=1e-9)
    assert rows["new_action"].to_list() == rows["action"].to_list() == [
        "ALLOW", "REQUIRE_OTP", "FLAG_SESSION", "DENY", "DENY", "REQUIRE_OTP", "ALLOW", "REQUIRE_OTP", "ALLOW",
        "ALLOW", "REQUIRE_OTP"]
    assert rows["recomputed"].to_list() == [True] * 7 + [False] + [True] * 3
    assert history.what_if_summary(rows) == {"decisions": 11, "changed_verdict": 0, "safe_to_unsafe": 0,
                                              "unsafe_to_safe": 0, "changed_action": 0, "not_recomputed": 1}


def test_full_sensitivity_keeps_every_unusual_window_counted() -> None:
    # +1: steps are weight * z. a: 0, 2, 2.5; b: 2, 0; c: 2, restart 1, c3 kept; d: 0; h: 0, 2
    rows = history.redecide(_history(), POLICY, EvidenceSettings(sensitivity=1.0))
    assert_allclose(rows["new_evidence"].to_numpy(), [0, 2, 2.5, 2, 0, 2, 1, 0.2, 0, 0, 2], atol=1e-9)
    assert (rows["new_evidence"] >= rows["evidence"] - 1e-12).all()  # never lowers any session's evidence
    assert rows["new_action"].to_list() == [
        "ALLOW", "FLAG_SESSION", "FLAG_SESSION", "DENY", "DENY", "FLAG_SESSION", "ALLOW", "REQUIRE_OTP", "ALLOW",
        "ALLOW", "FLAG_SESSION"]
    assert history.what_if_summary(rows) == {"decisions": 11, "changed_verdict": 0, "safe_to_unsafe": 0,
                                              "unsafe_to_safe": 0, "changed_action": 3, "not_recomputed": 1}
    assert history.transitions(rows).to_dicts() == [
        {"action": "REQUIRE_OTP", "new_action": "FLAG_SESSION", "decisions": 3}]


def test_less_sensitivity_and_other_bands_move_decisions_both_ways() -> None:
    # -1: steps are weight * (z - 1). a: 0, 1, 1 (risk 0.63: ALLOW); c1 and h2 1 (ALLOW), c2 restarts at 0
    lenient = history.redecide(_history(), POLICY, EvidenceSettings(sensitivity=-1.0))
    assert_allclose(lenient["new_evidence"].to_numpy()[:3], [0, 1, 1], atol=1e-9)
    assert lenient["new_action"].to_list()[:5] == ["ALLOW", "ALLOW", "ALLOW", "DENY", "DENY"]  # rules still fire
    assert history.what_if_summary(lenient)["unsafe_to_safe"] == 4  # a2, a3, c1, h2
    # a first edge at 0.3 asks c2 (0.5 nats: risk 0.39) for a code; c3 keeps its stored risk 0.18, below it
    strict = history.redecide(_history(), history.policy_with_edges(DEFAULT_POLICY, [0.3, 0.8, 0.95]),
                               EvidenceSettings())
    assert strict.filter(pl.col("changed_action"))["decision_id"].to_list() == ["c2"]  # a2 (0.78) still asks
    assert strict.filter(pl.col("decision_id") == "c3")["new_risk"].to_list() == pytest.approx([1 - math.exp(-0.2)])
    assert history.what_if_summary(strict)["safe_to_unsafe"] == 1


def test_redeciding_does_not_depend_on_the_row_order() -> None:
    tuning = EvidenceSettings(sensitivity=0.5)
    in_order = history.redecide(_history(), POLICY, tuning)
    shuffled = history.redecide(_history().sample(fraction=1.0, shuffle=True, seed=3), POLICY, tuning)
    assert_frame_equal(shuffled, in_order)
    assert in_order["decision_id"].to_list() == _history()["decision_id"].to_list()  # session, then time


def test_redeciding_nothing_gives_an_empty_frame() -> None:
    rows = history.redecide(_history().head(0), POLICY, EvidenceSettings())
    assert rows.height == 0 and {"new_evidence", "new_action", "changed_verdict"} <= set(rows.columns)
    assert history.what_if_summary(rows)["decisions"] == 0 and history.transitions(rows).height == 0


def test_session_outcomes_count_challenges_and_denials_per_label() -> None:
    stored = history.session_outcomes(_history())
    assert stored.select("session_id", "label", "challenged", "denied").rows() == [
        ("a", "genuine", True, True), ("b", "bot", True, True), ("c", "genuine", True, False),
        ("d", "genuine", False, False), ("h", "hijack", True, False)]
    assert stored["highest_risk"][0] == pytest.approx(1 - math.exp(-1.75))
    assert history.outcome_rates(stored) == {
        "genuine": {"n": 3, "challenged": pytest.approx(2 / 3), "denied": pytest.approx(1 / 3)},
        "bot": {"n": 1, "detected": 1.0, "denied": 1.0},
        "hijack": {"n": 1, "detected": 1.0, "denied": 0.0}}
    # at -1 session a is never challenged (see above); c still is (c3: too little enrolment), only asked
    lenient = history.redecide(_history(), POLICY, EvidenceSettings(sensitivity=-1.0))
    rates = history.outcome_rates(history.session_outcomes(lenient, "new_action", "new_risk"))
    assert rates["genuine"] == {"n": 3, "challenged": pytest.approx(1 / 3), "denied": 0.0}


def test_window_labels_give_a_hijack_its_owner_windows_before_the_takeover() -> None:
    windows = history.labelled_windows(_history())
    assert "c3-w" not in windows["window_id"].to_list()  # no stored window risk
    labels = dict(windows.select("window_id", "label").rows())
    assert (labels["h1-w"], labels["h2-w"], labels["b1-w"]) == ("genuine", "hijack", "bot")
    # flagged above 0.95: genuine a2 and c1 (z 2: 0.977; a3's detectors disagree, z 0 and 2: 0.84) of 7
    # genuine; attack b2 (0.023) of 3 passes
    rates = history.error_rates(windows, 0.95)
    assert (rates.frr, rates.far) == (pytest.approx(2 / 7), pytest.approx(1 / 3))
    assert rates.genuine.size == 7 and rates.impostor.size == 3 and 0 < rates.auc < 1


def test_error_rates_need_both_classes_for_the_curves() -> None:
    windows = pl.DataFrame({"risk": [0.1, 0.2, 0.7, 0.9, None], "label": ["genuine", "Genuine", "bot", "hijack",
                                                                         "impostor"]})
    rates = history.error_rates(windows, 0.6)
    assert (rates.far, rates.frr, rates.eer, rates.auc) == (0.0, 0.0, 0.0, 1.0)
    assert rates.genuine.tolist() == [0.1, 0.2] and rates.impostor.tolist() == [0.7, 0.9]
    on_edge = history.error_rates(windows, 0.7)  # flagged strictly above the edge: the bot window at 0.7 passes
    assert on_edge.far == 0.5
    only_genuine = history.error_rates(windows.filter(pl.col("label") != "bot").head(2), 0.6)
    assert only_genuine.eer is None and only_genuine.curve_far.size == 0 and math.isnan(only_genuine.far)


def test_policy_with_edges_keeps_actions_and_rules_and_names_a_bad_band() -> None:
    moved = history.policy_with_edges(DEFAULT_POLICY, [0.5, 0.7, 0.9])
    assert [(b.lower, b.upper, b.action) for b in moved.bands] == [
        (0.0, 0.5, Action.ALLOW), (0.5, 0.7, Action.REQUIRE_OTP), (0.7, 0.9, Action.FLAG_SESSION),
        (0.9, 1.0, Action.DENY)]
    assert moved.rules == DEFAULT_POLICY.rules and moved.revision == 0
    with pytest.raises(PolicyError, match="band 2 \\(REQUIRE_OTP\\)"):
        history.policy_with_edges(DEFAULT_POLICY, [0.8, 0.7, 0.9])
    with pytest.raises(PolicyError, match="3 inner edges"):
        history.policy_with_edges(DEFAULT_POLICY, [0.5])


# ------------------------------------------------------------------------------------- store reads

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
    for risk, when in ((0.2, T0), (0.8, T0 + timedelta(seconds=5))):  # ALLOW, REQUIRE_OTP
        record_decisions(store, [DecisionRecord(decide(risk, policy), "u1", "s1", decided_at=when)])
    return store


def test_events_per_second_buckets_wall_clock_seconds(small_store: Store) -> None:
    rates = live_activity.events_per_second(small_store, T0, T0 + timedelta(minutes=1))
    assert rates.to_dicts() == [{"second": T0, "source": "simulator", "events": 2},
                                {"second": T0 + timedelta(seconds=1), "source": "simulator", "events": 1}]
    assert live_activity.newest_activity(small_store) == T0 + timedelta(minutes=10)


def test_active_sessions_carry_the_latest_decision_as_current_risk(small_store: Store) -> None:
    active = live_activity.active_sessions(small_store, T0, T0 + timedelta(minutes=1))
    assert active.select("session_id", "events", "risk", "action", "max_risk", "decisions").to_dicts() == [
        {"session_id": "s1", "events": 3, "risk": 0.8, "action": "REQUIRE_OTP", "max_risk": 0.8, "decisions": 2}]
    assert active["last_event_at"][0] == T0 + timedelta(milliseconds=1500)
    later = live_activity.active_sessions(small_store, T0 + timedelta(minutes=9), T0 + timedelta(minutes=11))
    assert later["session_id"].to_list() == ["s2"] and later["risk"].to_list() == [None]


def test_session_reads_summarise_one_session(small_store: Store) -> None:
    summary = session_details.session_summary(small_store, "s1")
    assert {k: summary[k] for k in ("user_id", "events", "key_presses", "mouse_events", "duration_s", "decisions",
                                    "worst_action", "label")} == {
        "user_id": "u1", "events": 3, "key_presses": 1, "mouse_events": 2, "duration_s": 1.5, "decisions": 2,
        "worst_action": "REQUIRE_OTP", "label": None}
    assert session_details.session_summary(small_store, "nope") is None
    assert session_details.user_sessions(small_store, "u2").select("session_id", "label", "events").to_dicts() == [
        {"session_id": "s2", "label": "bot", "events": 1}]
    assert session_details.users(small_store)["user_id"].to_list() == ["u1", "u2"]
    assert live_activity.latest_decisions(small_store, 1)["risk"].to_list() == [0.8]
    assert session_details.session_decisions(small_store, "s1")["action"].to_list() == ["ALLOW", "REQUIRE_OTP"]


def test_lab_decisions_carry_each_decisions_model_risks_label_and_enrolment(small_store: Store) -> None:
    """s2 (u2's first session, a bot) gets two windows: one scored by two models, one by none."""
    names = ["a", "b"]
    windows = pl.DataFrame({"window_id": ["s2:mouse:1", "s2:mouse:0"], "user_id": ["u2", "u2"],
                            "session_id": ["s2", "s2"], "end_ms": [900.0, 400.0], "a": [1.0, 2.0], "b": [3.0, 4.0]})
    store_window_rows(small_store, window_rows(windows, names, kind="mouse", source="test"), names, kind="mouse",
                      source_name="test")
    record_scores(small_store, pl.DataFrame({"window_id": ["s2:mouse:1"] * 3, "model_id": ["m2", "m1", "old"],
                                             "raw_score": [1.0, 2.0, 3.0], "risk": [0.9, 0.6, 0.1]}))
    policy = latest_policy(small_store)
    record_decisions(small_store, [
        DecisionRecord(decide(0.5, policy), "u2", "s2", window_id, {"lof": "m1", "iforest": "m2"},
                       window_risk=0.9, evidence=evidence, evidence_change=0.7)
        for window_id, evidence in (("s2:mouse:1", 0.7), ("s2:mouse:0", 0.0))])

    rows = decided_sessions.lab_decisions(small_store, enrolment_sessions=1)
    # s1's two decisions (no window, no label) come first; s2's in window order, the earlier window first;
    # each session is its user's first: enrolment
    assert rows.select("session_id", "window_id", "kind", "end_ms", "label", "enrolment").rows() == [
        ("s1", None, None, None, None, True), ("s1", None, None, None, None, True),
        ("s2", "s2:mouse:0", "mouse", 400.0, "bot", True), ("s2", "s2:mouse:1", "mouse", 900.0, "bot", True)]
    assert rows["model_risks"].to_list()[2:] == [None, [0.6, 0.9]]  # by model id; the unnamed model left out
    assert rows["evidence"].to_list()[2:] == [0.0, 0.7] and rows["window_risk"].to_list()[2:] == [0.9, 0.9]
    assert decided_sessions.lab_decisions(small_store, enrolment_sessions=0)["enrolment"].to_list() == [False] * 4
    newest = decided_sessions.lab_decisions(small_store, enrolment_sessions=1, limit=1)
    assert newest["session_id"].unique().to_list() == ["s2"]
