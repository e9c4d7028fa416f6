"""Score normalisation and threshold calibration (used by the CMU protocol and the ensemble): properties and hand
examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.thresholds import (
    NORMALISERS,
    calibrate_threshold,
    fit_normaliser,
    normalise,
)

scores = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
score_lists = st.lists(scores, min_size=1, max_size=60)
rates = st.floats(min_value=0.0, max_value=1.0)
methods = st.sampled_from(NORMALISERS)


@given(genuine=score_lists, a=scores, b=scores, method=methods)
def test_a_higher_raw_score_never_gets_a_lower_risk(genuine: list[float], a: float, b: float, method: str) -> None:
    low, high = sorted((a, b))
    risk_low, risk_high = normalise([low, high], fit_normaliser(genuine, method))
    assert risk_low <= risk_high


@given(genuine=score_lists, probe=st.lists(scores, min_size=1, max_size=20), method=methods)
def test_risk_stays_in_zero_one(genuine: list[float], probe: list[float], method: str) -> None:
    risks = normalise(probe, fit_normaliser(genuine, method))
    assert ((risks >= 0.0) & (risks <= 1.0)).all()


@given(genuine=score_lists, target=rates)
def test_calibration_meets_the_target_frr_on_its_own_scores(genuine: list[float], target: float) -> None:
    threshold = calibrate_threshold(genuine, target)
    assert np.mean(np.asarray(genuine) > threshold) <= target


@given(genuine=st.lists(scores, min_size=2, max_size=60, unique=True), target=rates)
def test_calibration_flags_as_many_as_the_target_allows(genuine: list[float], target: float) -> None:
    """The next lower score as threshold would exceed the target (unless the threshold is the lowest score)."""
    threshold = calibrate_threshold(genuine, target)
    lower = [g for g in genuine if g < threshold]
    if lower:
        assert np.mean(np.asarray(genuine) > max(lower)) > target


def test_robust_logistic_maps_median_and_quartiles_to_half_and_quarters() -> None:
    genuine = [1.0, 2.0, 3.0, 4.0, 5.0]  # median 3, quartiles 2 and 4
    normaliser = fit_normaliser(genuine)
    np.testing.assert_allclose(normalise([2.0, 3.0, 4.0], normaliser), [0.25, 0.5, 0.75])
    assert normaliser.scale == pytest.approx(2.0 / (2 * math.log(3.0)))


def test_ecdf_gives_the_mid_rank_share_of_training_scores_below() -> None:
    normaliser = fit_normaliser([1.0, 2.0, 3.0, 4.0], method="ecdf")
    np.testing.assert_allclose(normalise([0.0, 2.0, 2.5, 9.0], normaliser), [0.0, 0.375, 0.5, 1.0])


def test_constant_training_scores_still_separate_anything_above_them() -> None:
    """A counting detector scores every enrolment window 0; a window with 1 outlier must be high risk."""
    normaliser = fit_normaliser([0.0] * 10)
    low, same, high = normalise([-1.0, 0.0, 1.0], normaliser)
    assert low < 0.01 and same == 0.5 and high > 0.99


def test_calibration_hand_example() -> None:
    genuine = np.arange(1.0, 21.0)  # 20 scores
    assert calibrate_threshold(genuine, 0.05) == 19.0  # flags only 20: 1 of 20 = 5%
    assert calibrate_threshold(genuine, 0.0) == 20.0
    assert calibrate_threshold(genuine, 0.12) == 18.0  # 2 of 20 = 10% <= 12%, 3 would be 15%


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="NaN"):
        fit_normaliser([1.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        calibrate_threshold([], 0.05)
    with pytest.raises(ValueError, match="target_frr"):
        calibrate_threshold([1.0], 1.5)
    with pytest.raises(ValueError, match="method"):
        fit_normaliser([1.0], method="softmax")
