"""Every registered detector honours the contract (River / scikit-learn style checks over the registry).

Adding a detector costs one adapter: these checks find it through `DETECTORS` and run on it unchanged.
The data are small seeded Gaussian "users": one genuine user, other users as background, and impostors
who are in neither the training nor the background (a stranger, as in production).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
import pytest

from detectors import DETECTORS, make_detector
from detectors.base import (
    NotFittedError,
    clone,
    fit_detector,
    get_params,
    parameter_names,
    requires_background,
    training_scores,
)
from detectors.evaluation import roc_auc
from detectors.persistence import (
    ModelFormatError,
    SchemaMismatch,
    UserModel,
    fit_user_model,
    load_model,
    save_model,
)

NAMES = sorted(DETECTORS)
N_FEATURES = 20
AUC_FLOOR = 0.85


@dataclass(frozen=True)
class Users:
    train: np.ndarray  # the genuine user's enrolment windows
    genuine_test: np.ndarray  # later windows of the same user
    impostors: np.ndarray  # windows of users seen nowhere in training
    background: np.ndarray  # windows of other users, for detectors that learn "not this user"


#: How far another typist's mean sits from the user's, in the user's SDs per feature (AUCs 0.96-1.0 here).
TYPIST_DISTANCE = 1.3


def _typist_windows(rng: np.random.Generator, n: int, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    return rng.normal(mean, spread, (n, N_FEATURES))


@functools.cache
def users() -> Users:
    """A user with timing-like features (means 60-300 ms, SD 5-15% of them) and similar other typists."""
    rng = np.random.default_rng(20240601)
    mean = rng.uniform(60.0, 300.0, N_FEATURES)
    spread = mean * rng.uniform(0.05, 0.15, N_FEATURES)

    def other_typist(n: int) -> np.ndarray:
        return _typist_windows(rng, n, mean + spread * rng.normal(0.0, TYPIST_DISTANCE, N_FEATURES), spread)

    genuine = _typist_windows(rng, 90, mean, spread)
    return Users(train=genuine[:60], genuine_test=genuine[60:],
                 impostors=np.vstack([other_typist(15) for _ in range(3)]),
                 background=np.vstack([other_typist(30) for _ in range(6)]))


def _fit(name: str, **params: object) -> object:
    data = users()
    return fit_detector(make_detector(name, **params), data.train, data.background)


@functools.cache
def fitted(name: str) -> object:
    """One fitted detector per name, shared by the checks that only read it."""
    return _fit(name)


def test_registry_has_the_documented_adapters() -> None:
    expected = {"iforest", "lof", "autoencoder", "manhattan_scaled", "zscore_count", "background", "ensemble"}
    assert expected <= set(NAMES)


def test_unknown_names_and_parameters_are_refused_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="manhattan_scaled"):
        make_detector("no_such_detector")
    with pytest.raises(TypeError, match="n_estimators"):
        make_detector("iforest", n_trees=3)


@pytest.mark.parametrize("name", NAMES)
def test_init_stores_parameters_untouched(name: str) -> None:
    cls = DETECTORS[name]
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"}
    assert all(default is not inspect.Parameter.empty for default in defaults.values()), "every parameter has a default"
    assert get_params(make_detector(name)) == defaults
    markers = {param: object() for param in parameter_names(cls)}
    detector = cls(**markers)
    assert all(getattr(detector, param) is marker for param, marker in markers.items())


@pytest.mark.parametrize("name", NAMES)
def test_learned_state_ends_with_underscore_and_appears_only_on_fit(name: str) -> None:
    detector = make_detector(name)
    before = set(vars(detector))
    assert not [a for a in before if a.endswith("_")]
    with pytest.raises(NotFittedError):
        detector.decision_function(users().genuine_test)
    learned = set(vars(fitted(name))) - before
    assert learned >= {"n_features_in_", "training_scores_"}
    assert all(attribute.endswith("_") for attribute in learned), sorted(learned)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_scores_are_finite_per_window(name: str) -> None:
    detector = make_detector(name)
    data = users()
    assert fit_detector(detector, data.train, data.background) is detector
    scores = detector.decision_function(data.impostors)
    assert scores.shape == (len(data.impostors),)
    assert np.isfinite(scores).all()
    train_scores = training_scores(detector)
    assert train_scores.shape == (len(data.train),)
    assert np.isfinite(train_scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_random_state_same_scores(name: str) -> None:
    data = users()
    again = fit_detector(clone(fitted(name)), data.train, data.background)
    windows = np.vstack([data.genuine_test, data.impostors])
    np.testing.assert_array_equal(again.decision_function(windows), fitted(name).decision_function(windows))


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_scores(name: str) -> None:
    data = users()
    blob = save_model(fitted(name), {"schema_id": "test-schema"})
    loaded, metadata = load_model(blob)
    np.testing.assert_array_equal(loaded.decision_function(data.impostors),
                                  fitted(name).decision_function(data.impostors))
    assert metadata["detector"] == name
    assert metadata["schema_id"] == "test-schema"
    assert metadata["n_samples"] == len(data.train)
    assert {"numpy", "scikit-learn", "pyod", "torch"} <= set(metadata["libraries"])


@pytest.mark.parametrize("name", NAMES)
def test_separates_impostors_from_the_user(name: str) -> None:
    data = users()
    detector = fitted(name)
    auc = roc_auc(detector.decision_function(data.genuine_test), detector.decision_function(data.impostors))
    assert auc >= AUC_FLOOR, f"{name}: ROC AUC {auc:.3f} below {AUC_FLOOR}"


#: A timing every window holds exactly (the browser test's Shift lead before R: 30 ms), and one timer tick.
CONSTANT_MS, TICK_MS = 30.0, 0.1


@pytest.mark.parametrize("name", NAMES)
def test_a_timer_tick_on_a_feature_constant_in_training_does_not_make_the_user_an_impostor(name: str) -> None:
    data = users()

    def with_constant(windows: np.ndarray, value: float) -> np.ndarray:
        return np.column_stack([windows, np.full(len(windows), value)])

    detector = fit_detector(make_detector(name), with_constant(data.train, CONSTANT_MS),
                            with_constant(data.background, CONSTANT_MS))
    genuine = detector.decision_function(with_constant(data.genuine_test, CONSTANT_MS + TICK_MS))
    impostors = detector.decision_function(with_constant(data.impostors, CONSTANT_MS))
    assert np.isfinite(genuine).all()
    assert np.median(genuine) < np.median(impostors), (name, np.median(genuine), np.median(impostors))


@pytest.mark.parametrize("name", NAMES)
def test_vectors_with_another_feature_count_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="features"):
        fitted(name).decision_function(users().impostors[:, :-1])


@pytest.mark.parametrize("name", [n for n in NAMES if requires_background(make_detector(n))])
def test_background_detectors_refuse_a_fit_without_background(name: str) -> None:
    with pytest.raises(ValueError, match="X_background"):
        make_detector(name).fit(users().train)


def test_autoencoder_fit_leaves_the_global_random_state_alone() -> None:
    np.random.seed(123)
    expected = np.random.random_sample()
    np.random.seed(123)
    _fit("autoencoder", epochs=2)
    assert np.random.random_sample() == expected


def test_autoencoder_fits_fewer_windows_than_its_batch_size() -> None:
    detector = make_detector("autoencoder", batch_size=64, epochs=2).fit(users().train[:5])
    assert detector.batch_size_ == 5
    assert np.isfinite(detector.decision_function(users().impostors)).all()


def test_user_model_refuses_vectors_of_another_schema() -> None:
    data = users()
    names = [f"f{i}" for i in range(N_FEATURES)]
    model = fit_user_model("manhattan_scaled", data.train, schema_id="schema-a", feature_names=names, user_id="u1")
    assert model.score(data.impostors, "schema-a").shape == (len(data.impostors),)
    with pytest.raises(SchemaMismatch, match=r"schema-a.*schema-b"):
        model.score(data.impostors, "schema-b")
    with pytest.raises(SchemaMismatch, match="20 features"):
        model.score(data.impostors[:, :5], "schema-a")


def test_user_model_round_trip_keeps_risks_calibration_and_schema() -> None:
    data = users()
    names = [f"f{i}" for i in range(N_FEATURES)]
    model = fit_user_model("background", data.train, schema_id="schema-a", feature_names=names,
                           X_background=data.background, user_id="u1")
    restored = UserModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(restored.risk(data.impostors, "schema-a"), model.risk(data.impostors, "schema-a"))
    assert (restored.schema_id, restored.feature_names) == ("schema-a", names)
    assert (restored.calibration, restored.target_frr) == (model.calibration, 0.05)
    assert restored.flagged(data.impostors, "schema-a").mean() > restored.flagged(data.genuine_test, "schema-a").mean()
    surprise = restored.surprise(data.genuine_test, "schema-a")
    assert ((surprise > 0) & (surprise < 1)).all()
    np.testing.assert_allclose(restored.risk(data.genuine_test, "schema-a"), 1 - surprise)
    with pytest.raises(SchemaMismatch):
        restored.flagged(data.impostors, "schema-b")


def test_a_model_saved_before_calibration_on_held_out_sessions_asks_to_be_retrained() -> None:
    from detectors.persistence import ModelFormatError, save_model

    data = users()
    names = [f"f{i}" for i in range(N_FEATURES)]
    model = fit_user_model("manhattan_scaled", data.train, schema_id="schema-a", feature_names=names)
    old = save_model(model.detector, {"schema_id": "schema-a", "feature_names": names,
                                      "normaliser": {"method": "ecdf"}, "threshold": {"risk": 0.5}})
    with pytest.raises(ModelFormatError, match="retrain"):
        UserModel.from_bytes(old)


def test_saved_metadata_describes_the_model_and_damage_is_detected() -> None:
    blob = save_model(fitted("manhattan_scaled"), {"schema_id": "s", "feature_names": ["a"] * N_FEATURES})
    _, metadata = load_model(blob)
    assert metadata["detector"] == "manhattan_scaled" and metadata["params"] == {"log_transform": False}
    assert metadata["trained_at"].endswith("+00:00")
    damaged = blob[:-1] + bytes([blob[-1] ^ 0xFF])
    with pytest.raises(ModelFormatError, match="checksum"):
        load_model(damaged)
    with pytest.raises(ModelFormatError, match="not a Telltale model"):
        load_model(b"\x80\x04 pickled something")
    with pytest.raises(TypeError, match=r"metadata\.when"):
        save_model(fitted("manhattan_scaled"), {"when": object()})
    with pytest.raises(ValueError, match="not fitted"):
        save_model(make_detector("manhattan_scaled"), {})
