"""Calibration scores stay out of sample when they are computed cheaply (no refits), and batching users changes
nothing: properties checked on every registered detector, on small seeded Gaussian "users"."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from detectors import DETECTORS, make_detector
from detectors.base import (
    cross_fitted_scores,
    fit_calibrated,
    fit_detector,
    refit_fold_scores,
    requires_background,
)
from detectors.persistence import fit_user_model, fit_user_models
from detectors.thresholds import calibrate_threshold

NAMES = sorted(DETECTORS)
N_FEATURES = 12
FOLDS = 5


def _user(rng: np.random.Generator, n: int, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    return rng.normal(mean, spread, (n, N_FEATURES))


@functools.cache
def population(users: int = 4, per_user: int = 160) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per user: windows (timing-like, means 60-300 ms, SD 5-15%) and a background of the other users' windows."""
    rng = np.random.default_rng(7)
    base = rng.uniform(60.0, 300.0, N_FEATURES)
    own = []
    for _ in range(users):
        mean = base * np.exp(rng.normal(0.0, 0.15, N_FEATURES))
        own.append(_user(rng, per_user, mean, mean * rng.uniform(0.05, 0.15, N_FEATURES)))
    backgrounds = [np.vstack([w for j, w in enumerate(own) if j != i]) for i in range(users)]
    return own, backgrounds


def _small(name: str) -> dict[str, object]:
    """Parameters that keep the slow detectors quick in tests (the properties do not depend on size)."""
    return {"autoencoder": {"epochs": 8}, "iforest": {"n_estimators": 100}, "background": {"n_estimators": 50},
            "ensemble": {"members": ("manhattan_log", ("background", {"n_estimators": 50}))},
            "pyod_autoencoder": {"epochs": 8}, "pyod_iforest": {"n_estimators": 50}}.get(name, {})


def _calibration(name: str, X: np.ndarray, background: np.ndarray) -> np.ndarray:
    detector = make_detector(name, **_small(name))
    return fit_calibrated([detector], [X], [background if requires_background(detector) else None], FOLDS)[0]


@pytest.mark.parametrize("name", ["manhattan_scaled", "manhattan_log", "zscore_count", "lof"])
@pytest.mark.parametrize("folds", [2, 5])
def test_closed_form_block_scores_equal_refitting_per_block(name: str, folds: int) -> None:
    X = population()[0][0][:43]
    X = np.column_stack([X, np.full(len(X), 7.0)])  # a constant feature takes the zero-spread path
    detector = fit_detector(make_detector(name), X)
    np.testing.assert_allclose(cross_fitted_scores(detector, X, folds=folds),
                               refit_fold_scores(detector, X, folds=folds), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "ensemble"])
def test_a_window_never_shapes_the_calibration_scores_of_its_own_block(name: str) -> None:
    """Cheap paths (block out-of-bag trees, batched fold networks, closed-form refits) keep the blocks apart:
    changing one window changes no other calibration score of its block. An in-sample shortcut would."""
    own, backgrounds = population()
    X = own[0][:100]
    before = _calibration(name, X, backgrounds[0])
    changed = X.copy()
    changed[3] *= 1.5  # window 3 of block 0 (rows 0-19 of 100 in 5 contiguous blocks)
    after = _calibration(name, changed, backgrounds[0])
    others_in_block = np.arange(20) != 3
    np.testing.assert_allclose(after[:20][others_in_block], before[:20][others_in_block], rtol=1e-6, atol=1e-9)
    assert not np.allclose(after[20:], before[20:]), "the other blocks' models do see window 3"


@pytest.mark.parametrize("name", NAMES)
def test_a_calibration_score_is_not_the_in_sample_score(name: str) -> None:
    """Training windows scored by the fitted model look more like the user than their calibration scores say."""
    own, backgrounds = population()
    X = own[1][:100]
    detector = make_detector(name, **_small(name))
    background = backgrounds[1] if requires_background(detector) else None
    calibration = fit_calibrated([detector], [X], [background], FOLDS)[0]
    in_sample = detector.decision_function(X)
    assert calibration.mean() > in_sample.mean()


@pytest.mark.parametrize("name", NAMES)
def test_calibrated_thresholds_give_about_the_target_frr_on_later_genuine_windows(name: str) -> None:
    own, backgrounds = population()
    train, later = [w[:100] for w in own], [w[100:] for w in own]
    detector_backgrounds = backgrounds if requires_background(make_detector(name)) else None
    models = fit_user_models(name, train, schema_id="s", feature_names=[f"f{i}" for i in range(N_FEATURES)],
                             params=_small(name), X_backgrounds=detector_backgrounds, target_frr=0.05)
    frr = np.mean([model.flagged(x, "s").mean() for model, x in zip(models, later, strict=True)])
    assert 0.0 < frr <= 0.12, f"{name}: {frr:.3f} of later genuine windows flagged at a 5% target"


@pytest.mark.parametrize("name", NAMES)
def test_fitting_users_together_gives_each_the_model_it_gets_alone(name: str) -> None:
    own, backgrounds = population()
    needs = requires_background(make_detector(name))
    together = [make_detector(name, **_small(name)) for _ in own]
    scores = fit_calibrated(together, own, backgrounds if needs else None, FOLDS)
    for i, X in enumerate(own):
        alone = make_detector(name, **_small(name))
        [solo] = fit_calibrated([alone], [X], [backgrounds[i] if needs else None], FOLDS)
        np.testing.assert_allclose(scores[i], solo, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(together[i].decision_function(own[0][:20]), alone.decision_function(own[0][:20]),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_a_retrain_gives_the_same_models(name: str) -> None:
    own, backgrounds = population()
    needs = requires_background(make_detector(name))
    names = [f"f{i}" for i in range(N_FEATURES)]

    def retrain() -> list:
        return fit_user_models(name, own[:2], schema_id="s", feature_names=names, params=_small(name),
                               X_backgrounds=backgrounds[:2] if needs else None)

    for first, again in zip(retrain(), retrain(), strict=True):
        assert first.calibration == again.calibration
        np.testing.assert_array_equal(first.score(own[3][:20], "s"), again.score(own[3][:20], "s"))


def test_user_models_do_not_depend_on_worker_processes() -> None:
    own, _ = population()
    names = [f"f{i}" for i in range(N_FEATURES)]
    one = fit_user_models("lof", own, schema_id="s", feature_names=names, user_ids=["a", "b", "c", "d"])
    two = fit_user_models("lof", own, schema_id="s", feature_names=names, user_ids=["a", "b", "c", "d"], n_jobs=2)
    assert [m.metadata["user_id"] for m in two] == ["a", "b", "c", "d"]
    for a, b in zip(one, two, strict=True):
        assert a.calibration == b.calibration
        np.testing.assert_array_equal(a.score(own[0][:10], "s"), b.score(own[0][:10], "s"))


def test_forest_calibration_falls_back_to_refits_without_blocks() -> None:
    X = population()[0][0][:60]
    detector = fit_detector(make_detector("iforest", n_estimators=50, oob_folds=1), X)
    np.testing.assert_allclose(cross_fitted_scores(detector, X), refit_fold_scores(detector, X))


def test_cross_fitted_scores_refuse_windows_the_detector_was_not_fitted_on() -> None:
    X = population()[0][0]
    detector = fit_detector(make_detector("manhattan_log"), X[:50])
    with pytest.raises(ValueError, match="fitted on 50 windows"):
        cross_fitted_scores(detector, X[:40])


def test_threshold_on_calibration_scores_flags_the_target_share_of_them() -> None:
    own, backgrounds = population()
    scores = _calibration("background", own[2][:100], backgrounds[2])
    assert np.mean(scores > calibrate_threshold(scores, 0.05)) <= 0.05


@pytest.mark.parametrize("name", ["manhattan_scaled", "background", "iforest"])
def test_calibration_scores_come_from_models_that_never_saw_the_windows_session(name: str) -> None:
    """Four sessions, each tight around its own level: scored out of session, a window is far from the
    others; scored by contiguous blocks of windows, its session's other windows trained the model."""
    rng = np.random.default_rng(7)
    levels = np.array([0.0, 3.0, 6.0, 9.0])
    X = np.vstack([level + rng.normal(0, 0.05, (10, N_FEATURES)) for level in levels])
    sessions = np.repeat(["a", "b", "c", "d"], 10)
    background = rng.uniform(-2, 11, (80, N_FEATURES))  # other users, all over the same range
    names = [f"f{i}" for i in range(N_FEATURES)]
    params = _small(name)
    by_session = fit_user_model(name, X, schema_id="s", feature_names=names, params=params, groups=sessions,
                                X_background=background if requires_background(make_detector(name)) else None)
    by_block = fit_user_model(name, X, schema_id="s", feature_names=names, params=params, folds=8,
                              X_background=background if requires_background(make_detector(name)) else None)
    assert by_session.calibration.sessions == 4
    assert np.mean(by_session.calibration.reference) > np.mean(by_block.calibration.reference)
