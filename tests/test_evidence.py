"""Session evidence and window calibration: pure functions, checked on hand-computed numbers and by
properties (order consistency, monotonicity, the scalar and vectorised forms agreeing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from app.engine.evidence import (
    REPLAY_TOLERANCE_MS,
    EvidenceSettings,
    accumulate,
    accumulate_sessions,
    evidence_for_risk,
    increments,
    machine_like,
    replayed,
    risk_of,
    window_evidence,
    window_surprise,
)
from detectors.base import calibration_folds, fold_rows
from detectors.features import feature_names
from detectors.thresholds import EVIDENCE_RANGE, ScoreCalibration, evidence

KINDS = ("fixed_text", "free_text", "mouse", "time")


# -- how rare a score is ----------------------------------------------------------------------------
def test_surprise_is_the_mid_rank_share_of_genuine_reference_scores_at_or_above() -> None:
    calibration = ScoreCalibration.of([1.0, 2.0, 2.0, 3.0], sessions=2)
    # n = 4: (above + half the ties + 0.5) / 5
    assert calibration.surprise([0.0, 2.0, 2.5, 3.0]).tolist() == pytest.approx([4.5 / 5, 2.5 / 5, 1.5 / 5, 1.0 / 5])
    assert calibration.reference == (1.0, 2.0, 2.0, 3.0) and calibration.sessions == 2


def test_beyond_the_reference_surprise_falls_along_the_references_predictive_tail() -> None:
    from scipy.stats import t as student

    calibration = ScoreCalibration.of([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    just, further, far = calibration.surprise([6.000001, 8.0, 30.0])
    assert just == pytest.approx(0.5 / 7, rel=1e-4)  # continuous with the empirical share at the largest score
    assert just > further > far > 0
    logs = np.log([1, 2, 3, 4, 5, 6])  # all positive: the tail is fitted on the log scale
    spread = logs.std(ddof=1) * math.sqrt(1 + 1 / 6)
    ratio = (student.sf((math.log(8) - logs.mean()) / spread, 5)
             / student.sf((math.log(6) - logs.mean()) / spread, 5))
    assert further == pytest.approx(0.5 / 7 * ratio)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.lists(st.floats(-1e6, 1e6), min_size=2))
def test_surprise_never_rises_with_the_score_and_is_never_0_or_1(reference: list[float], scores: list[float]) -> None:
    calibration = ScoreCalibration.of(reference)
    ordered = np.sort(scores)
    surprise = calibration.surprise(ordered)
    assert (np.diff(surprise) <= 1e-12).all()
    assert ((surprise > 0) & (surprise < 1)).all()


def test_evidence_is_a_clipped_normal_quantile_of_the_surprise() -> None:
    assert evidence([0.5])[0] == pytest.approx(0.0)
    assert evidence([0.05])[0] == pytest.approx(1.6449, abs=1e-4)
    assert evidence([1e-12, 1 - 1e-12]).tolist() == [EVIDENCE_RANGE[1], EVIDENCE_RANGE[0]]


def test_a_windows_evidence_is_the_mean_of_its_detectors() -> None:
    assert window_evidence([np.array([0.05, 0.5]), np.array([0.5, 0.5])]).tolist() == pytest.approx([0.8224, 0.0],
                                                                                                    abs=1e-4)


# -- accumulating a session -------------------------------------------------------------------------
def test_evidence_accumulates_log_likelihood_ratios_and_never_drops_below_zero() -> None:
    tuning = EvidenceSettings(shift=1.0, weights={"time": 0.5})
    steps = increments(np.array([2.0, 2.0, -1.0, 0.0, 3.0]), ["free_text", "time", "mouse", "mouse", "mouse"], tuning)
    assert steps.tolist() == pytest.approx([1.5, 0.75, -1.5, -0.5, 2.5])
    assert accumulate(0.0, steps).tolist() == pytest.approx([1.5, 2.25, 0.75, 0.25, 2.75])
    assert accumulate(5.0, np.array([-1.0])).tolist() == [4.0]  # a session continues where it stood
    assert accumulate(0.0, np.array([-3.0, 1.0])).tolist() == [0.0, 1.0]


def test_risk_is_one_minus_the_inverse_likelihood_ratio() -> None:
    assert risk_of(0.0) == 0.0
    assert risk_of(math.log(20)) == pytest.approx(0.95)
    assert evidence_for_risk(0.95) == pytest.approx(math.log(20))


windows = st.lists(st.tuples(st.floats(-3, 4), st.sampled_from(KINDS)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(windows, st.floats(0.25, 2.0))
def test_the_same_windows_give_the_same_evidence_however_they_are_split(rows, shift) -> None:
    tuning = EvidenceSettings(shift=shift)
    z, kinds = np.array([r[0] for r in rows]), [r[1] for r in rows]
    once = accumulate(0.0, increments(z, kinds, tuning))
    again = accumulate(0.0, increments(z.copy(), list(kinds), tuning))
    assert once.tolist() == again.tolist()
    # decided in two calls (a scheduler run, then the next), the session continues where it stood
    split = len(rows) // 2
    first = accumulate(0.0, increments(z[:split], kinds[:split], tuning))
    second = accumulate(first[-1] if split else 0.0, increments(z[split:], kinds[split:], tuning))
    assert np.r_[first, second] == pytest.approx(once)
    # many sessions at once: each its own, whatever the others do
    steps = increments(z, kinds, tuning)
    both = accumulate_sessions(["a"] * len(rows) + ["b"] * len(rows), np.r_[steps, -steps], {"b": 1.0})
    assert both[:len(rows)] == pytest.approx(once)
    assert both[len(rows):] == pytest.approx(accumulate(1.0, -steps))


@settings(max_examples=60, deadline=None)
@given(windows, st.integers(0, 24), st.floats(0.01, 3))
def test_a_more_deviant_window_never_lowers_the_sessions_risk(rows, at, more) -> None:
    tuning = EvidenceSettings()
    z, kinds = np.array([r[0] for r in rows]), [r[1] for r in rows]
    raised = z.copy()
    raised[at % len(rows)] += more
    before = risk_of(accumulate(0.0, increments(z, kinds, tuning)))
    after = risk_of(accumulate(0.0, increments(raised, kinds, tuning)))
    assert (after >= before - 1e-12).all()


# -- calibration folds by session -------------------------------------------------------------------
def test_calibration_folds_keep_each_session_whole_and_in_order() -> None:
    sessions = ["a"] * 3 + ["b"] * 2 + ["c"] * 4 + ["d"] + ["e"] * 2 + ["f"] * 3 + ["g"]
    fold_of = calibration_folds(len(sessions), 5, sessions)
    by_session = {s: set(fold_of[[i for i, x in enumerate(sessions) if x == s]]) for s in set(sessions)}
    assert all(len(folds) == 1 for folds in by_session.values())  # a session is never split
    assert list(dict.fromkeys(fold_of)) == sorted(set(fold_of)) and fold_of.max() == 4  # at most 5, in order
    assert calibration_folds(4, 5, ["a"] * 4).tolist() == [0, 1, 2, 3]  # one session: blocks
    assert calibration_folds(1, 5).tolist() == [-1]
    assert [rows.tolist() for rows in fold_rows(np.array([1, 0, 1, -1]))] == [[1], [0, 2]]


# -- machine-like input -----------------------------------------------------------------------------
def fixed_text(holds: list[float], flights: float = 120.0) -> np.ndarray:
    names = feature_names("fixed_text")
    values = {name: (holds[int(name[3:5])] if name.startswith("H.") else flights) for name in names}
    return np.array([[values[name] for name in names]])


def test_machine_like_input_is_named_and_human_typing_is_not() -> None:
    names = feature_names("fixed_text")
    rng = np.random.default_rng(3)
    human = list(rng.lognormal(np.log(95), 0.3, 12))
    assert machine_like("fixed_text", names, fixed_text(human)) == [None]
    assert "sub-human key holds" in machine_like("fixed_text", names, fixed_text([10.0] * 12))[0]
    assert "without human variance" in machine_like("fixed_text", names, fixed_text([80.0] * 12))[0]
    mouse = feature_names("mouse")
    window = np.zeros((1, len(mouse)))
    window[0, mouse.index("action_count")], window[0, mouse.index("share_move")] = 5, 1.0
    assert machine_like("mouse", mouse, window) == ["perfectly straight pointer paths"]
    window[0, mouse.index("curvature_mean")] = 0.05
    assert machine_like("mouse", mouse, window) == [None]
    window[0, mouse.index("curvature_mean")], window[0, mouse.index("share_move")] = 0.0, 0.2  # clicks only
    assert machine_like("mouse", mouse, window) == [None]


def test_a_window_replays_an_earlier_one_within_the_tolerance_over_the_compared_features() -> None:
    earlier = np.array([[100.0, 50.0, 7.0],
                        [200.0, 80.0, 9.0]])
    X = np.array([[100.0, 50.03, 1.0],  # 0.03 ms from row 0 over the first two features: a replay
                  [100.0, 50.06, 7.0],  # 0.06 ms from row 0: beyond the tolerance
                  [200.0, 80.0, 9.0],  # equal to row 1, which came after it: not a replay
                  [200.0, 80.0, 0.0]])  # equal to row 1, which came before it
    before = [2, 2, 1, 2]

    assert replayed(X, earlier, before, compare_first=2).tolist() == [True, False, False, True]
    assert replayed(X, earlier, before, compare_first=3).tolist() == [False, False, False, False]  # the context
    assert replayed(X, earlier, [0, 0, 0, 0], compare_first=2).tolist() == [False] * 4  # nothing came before
    assert replayed(X, np.empty((0, 0)), before, compare_first=2).tolist() == [False] * 4
    assert REPLAY_TOLERANCE_MS == 0.05


def test_a_window_on_its_own_combines_its_detectors_and_keeps_one_detectors_surprise() -> None:
    alone = np.array([0.5, 0.05, 1e-4])
    assert_allclose(window_surprise([alone]), alone, rtol=1e-9)  # one detector: its own surprise
    assert_allclose(window_surprise([alone, alone]), alone, rtol=1e-9)  # two that agree: the same
    disagree = window_surprise([np.array([0.01]), np.array([0.5])])[0]
    assert 0.01 < disagree < 0.5  # between the two: one surprised detector alone is not the window
    assert window_surprise([np.array([0.0]), np.array([0.0])])[0] > 0  # never exactly zero


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2), st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_a_window_is_rarer_when_any_detector_finds_it_rarer(surprises: list[float], lower: float) -> None:
    before = window_surprise([np.array([s]) for s in surprises])[0]
    rarer = window_surprise([np.array([min(surprises[0], lower)]), np.array([surprises[1]])])[0]
    assert rarer <= before + 1e-12
