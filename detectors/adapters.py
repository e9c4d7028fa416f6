"""Registered detectors: thin adapters over PyOD and scikit-learn, plus baselines from the keystroke literature.

Each adapter is fitted on one user's windows (rows) of one feature schema (columns) and scores new windows,
higher = less like that user. PyOD and torch are imported when a model is first fitted, not when this
module is, because they take seconds to import.

Registered names: iforest, lof, autoencoder (PyOD); manhattan_scaled, manhattan_log, zscore_count
(Killourhy & Maxion 2009 baselines and a log-feature variant); background (per-user classifier against
other users, the universal-background-model idea); ensemble (averages normalised member scores).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from detectors.base import (
    DETECTORS,
    BaseDetector,
    check_features,
    detector_name,
    fit_detector,
    make_detector,
    parameter_names,
    register,
    requires_background,
    training_scores,
)
from detectors.thresholds import ScoreNormaliser, fit_normaliser, normalise, robust_center_scale

# --------------------------------------------------------------------------------------------- PyOD models


@register("iforest")
class IForestDetector(BaseDetector):
    """Isolation forest (PyOD IForest): windows that random axis splits isolate quickly are anomalous."""

    def __init__(self, n_estimators: int = 200, max_samples: int | float | str = "auto",
                 log_transform: bool = False, random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.log_transform = log_transform
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> IForestDetector:
        from pyod.models.iforest import IForest

        features = self._fit_input(X, log_transform=self.log_transform)
        self.model_ = IForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                              random_state=self.random_state, n_jobs=1).fit(features)
        self.training_scores_ = np.asarray(self.model_.decision_scores_, dtype=float)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.decision_function(features), dtype=float)


@register("lof")
class LOFDetector(BaseDetector):
    """Local outlier factor (PyOD LOF, novelty mode): density of a window's neighbourhood vs. its neighbours'.

    The fitted model keeps the user's training windows (LOF needs them to find neighbours), so a saved
    model holds feature vectors of that user. Training scores are PyOD's `decision_scores_` (each training
    window scored without counting itself), the same scale as `decision_function` on new windows; PyOD's
    `predict` on training data disagrees with them, so it is not used.
    """

    def __init__(self, n_neighbors: int = 10, scaling: str = "robust", log_transform: bool = True):
        self.n_neighbors = n_neighbors
        self.scaling = scaling
        self.log_transform = log_transform

    def fit(self, X: np.ndarray) -> LOFDetector:
        from pyod.models.lof import LOF

        features = self._fit_input(X, scaling=self.scaling, log_transform=self.log_transform)
        self.n_neighbors_ = max(1, min(self.n_neighbors, features.shape[0] - 1))
        self.model_ = LOF(n_neighbors=self.n_neighbors_, novelty=True, n_jobs=1).fit(features)
        self.training_scores_ = np.asarray(self.model_.decision_scores_, dtype=float)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.decision_function(features), dtype=float)


_TORCH_READY = False


def _torch_single_thread() -> None:
    """Import torch once and pin it to one thread: on two busy cores more threads ran up to 30x slower."""
    global _TORCH_READY
    if not _TORCH_READY:
        import torch

        torch.set_num_threads(1)
        _TORCH_READY = True


@contextmanager
def _seeded_torch(seed: int | None) -> Iterator[None]:
    """Seed torch, numpy and random for one fit, then put the caller's global RNG state back.

    PyOD's deep models seed the global generators (and PYTHONHASHSEED) in their constructor; restoring
    them keeps a model fit from changing what unrelated code draws afterwards.
    """
    import torch

    saved = random.getstate(), np.random.get_state(), torch.random.get_rng_state(), os.environ.get("PYTHONHASHSEED")
    torch.manual_seed(0 if seed is None else seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.random.set_rng_state(saved[2])
        if saved[3] is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved[3]


@register("autoencoder")
class AutoEncoderDetector(BaseDetector):
    """Auto-associative network (PyOD AutoEncoder): reconstruction error of a window, in scaled units.

    Small by default (hidden layers 32 and 8, 50 epochs, batches of 16) so a fit on 200 x 30 windows takes
    about a second on one thread (MEU-Mobile KSD: EER 0.099 with these, 0.105-0.110 with more epochs).
    The batch size is capped at the number of training windows: PyOD 3.6.7 drops the last incomplete
    batch and then fails with `UnboundLocalError: loss` when no full batch is left.
    Scaling is done here (`scaling`, `log_transform`) instead of by PyOD, whose own standardisation divides
    by a zero SD for a feature that is constant in training.
    """

    min_training_windows = 2  # a batch of one window gives a degenerate loss

    def __init__(self, hidden_neurons: tuple[int, ...] = (32, 8), epochs: int = 50, batch_size: int = 16,
                 learning_rate: float = 1e-3, dropout_rate: float = 0.0, weight_decay: float = 1e-5,
                 scaling: str = "standard", log_transform: bool = True, random_state: int | None = 0):
        self.hidden_neurons = hidden_neurons
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout_rate = dropout_rate
        self.weight_decay = weight_decay
        self.scaling = scaling
        self.log_transform = log_transform
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> AutoEncoderDetector:
        _torch_single_thread()
        from pyod.models.auto_encoder import AutoEncoder

        features = self._fit_input(X, scaling=self.scaling, log_transform=self.log_transform)
        self.batch_size_ = max(2, min(self.batch_size, features.shape[0]))
        seed = 0 if self.random_state is None else self.random_state
        with _seeded_torch(seed):
            self.model_ = AutoEncoder(
                hidden_neuron_list=list(self.hidden_neurons), epoch_num=self.epochs, batch_size=self.batch_size_,
                lr=self.learning_rate, dropout_rate=self.dropout_rate, batch_norm=False, preprocessing=False,
                optimizer_params={"weight_decay": self.weight_decay}, random_state=seed, verbose=0,
                device="cpu",
            ).fit(features)
        self.training_scores_ = np.asarray(self.model_.decision_scores_, dtype=float)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        _torch_single_thread()
        return np.asarray(self.model_.decision_function(features), dtype=float)


# ------------------------------------------------------------------------------- keystroke literature


def _positive_spread(spread: np.ndarray) -> np.ndarray:
    """Per-feature spreads with zeros (a feature constant in training) replaced by the smallest positive one."""
    positive = spread[spread > 0]
    floor = positive.min() if positive.size else 1.0
    return np.where(spread > 0, spread, floor)


@register("manhattan_scaled")
class ManhattanScaledDetector(BaseDetector):
    """Scaled Manhattan distance (Killourhy & Maxion 2009): sum over features of |x - mean| / MAD.

    MAD is the mean absolute deviation of each feature from its training mean, so every feature counts
    in units of that user's own variability. The best published detector on the CMU benchmark (EER 0.0962).
    """

    def __init__(self, log_transform: bool = False):
        self.log_transform = log_transform

    def fit(self, X: np.ndarray) -> ManhattanScaledDetector:
        features = self._fit_input(X, log_transform=self.log_transform)
        self.mean_ = features.mean(axis=0)
        self.mad_ = _positive_spread(np.abs(features - self.mean_).mean(axis=0))
        self.training_scores_ = self._distance(features)
        return self

    def _distance(self, features: np.ndarray) -> np.ndarray:
        return (np.abs(features - self.mean_) / self.mad_).sum(axis=1)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self._distance(self._score_input(X))


@register("manhattan_log")
class LogManhattanDetector(ManhattanScaledDetector):
    """Scaled Manhattan on sign-preserving log1p features: timings are right-skewed, logs are less so."""

    def __init__(self, log_transform: bool = True):
        super().__init__(log_transform=log_transform)


@register("zscore_count")
class ZScoreCountDetector(BaseDetector):
    """Outlier count (Killourhy & Maxion 2009): how many features lie beyond |z| > `z_limit` (CMU EER 0.1022)."""

    def __init__(self, z_limit: float = 1.96, log_transform: bool = False):
        self.z_limit = z_limit
        self.log_transform = log_transform

    def fit(self, X: np.ndarray) -> ZScoreCountDetector:
        features = self._fit_input(X, log_transform=self.log_transform)
        self.mean_ = features.mean(axis=0)
        self.std_ = _positive_spread(features.std(axis=0))
        self.training_scores_ = self._count(features)
        return self

    def _count(self, features: np.ndarray) -> np.ndarray:
        return (np.abs((features - self.mean_) / self.std_) > self.z_limit).sum(axis=1).astype(float)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self._count(self._score_input(X))


# ------------------------------------------------------------------------------ background, ensemble

BACKGROUND_CLASSIFIERS = ("extra_trees", "logistic")


@register("background")
class BackgroundClassifierDetector(BaseDetector):
    """This user against everyone else: a classifier trained on the user's windows (genuine) and other
    users' windows (`X_background`), the universal-background-model idea from speaker verification.

    Score = predicted probability that a window is *not* this user. `classifier` is "extra_trees"
    (extremely randomised trees, bootstrapped) or "logistic" (L2 logistic regression on scaled features);
    classes are weighted so the few genuine windows count as much as the many background ones.
    Training scores are out-of-sample (out-of-bag votes for trees, `cv_folds`-fold predictions for the
    logistic model), because in-sample probabilities of a flexible classifier are all near 0.
    The model keeps no background windows, only what the classifier learned from them.
    """

    requires_background = True

    def __init__(self, classifier: str = "extra_trees", n_estimators: int = 200, C: float = 0.1,
                 cv_folds: int = 5, scaling: str = "standard", log_transform: bool = True,
                 random_state: int | None = 0):
        self.classifier = classifier
        self.n_estimators = n_estimators
        self.C = C
        self.cv_folds = cv_folds
        self.scaling = scaling
        self.log_transform = log_transform
        self.random_state = random_state

    def _make_classifier(self) -> Any:
        if self.classifier == "extra_trees":
            from sklearn.ensemble import ExtraTreesClassifier

            return ExtraTreesClassifier(n_estimators=self.n_estimators, bootstrap=True, oob_score=True,
                                        class_weight="balanced_subsample", random_state=self.random_state,
                                        n_jobs=1)
        if self.classifier == "logistic":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        raise ValueError(f"classifier must be one of {BACKGROUND_CLASSIFIERS}; got {self.classifier!r}")

    def fit(self, X: np.ndarray, X_background: np.ndarray | None = None) -> BackgroundClassifierDetector:
        if X_background is None or len(X_background) == 0:
            raise ValueError(
                "the background detector needs other users' windows: call fit(X, X_background=...) with "
                "windows of the same feature schema from users other than this one (or use another detector)")
        genuine = check_features(X, min_rows=self.min_training_windows)
        others = check_features(X_background, n_features=genuine.shape[1], what="X_background")
        both = self._fit_input(np.vstack([genuine, others]), scaling=self.scaling, log_transform=self.log_transform)
        labels = np.r_[np.zeros(len(genuine)), np.ones(len(others))]  # 1 = not this user
        self.n_background_ = len(others)
        self.model_ = self._make_classifier().fit(both, labels)
        self.training_scores_ = self._out_of_sample_scores(both, labels, len(genuine))
        return self

    def _out_of_sample_scores(self, both: np.ndarray, labels: np.ndarray, n_genuine: int) -> np.ndarray:
        """Scores of the user's own training windows from models that did not see them."""
        if self.classifier == "extra_trees":
            votes = self.model_.oob_decision_function_[:n_genuine, 1]
            in_sample = self.model_.predict_proba(both[:n_genuine])[:, 1]
            return np.where(np.isfinite(votes), votes, in_sample)  # a window never out of bag: rare
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        folds = max(2, min(self.cv_folds, n_genuine))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        predicted = cross_val_predict(self._make_classifier(), both, labels, cv=splitter, method="predict_proba")
        return predicted[:n_genuine, 1]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.predict_proba(features)[:, 1], dtype=float)


ENSEMBLE_NORMALISATIONS = ("robust_z", "rank")
MemberSpec = str | tuple[str, Mapping[str, Any]]


def _member_name_params(spec: MemberSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    name, params = spec
    return name, dict(params)


@register("ensemble")
class EnsembleDetector(BaseDetector):
    """Average of member detectors' scores, each first normalised against its own training scores.

    `members` are registry names or (name, params) pairs. `normalisation` "robust_z" maps a member's score
    to (score - median) / IQR of its training scores (unbounded, so a far-out window keeps counting);
    "rank" maps it to the mid-rank share of training scores below it (bounded in [0, 1]). A member that
    needs a background gets the `X_background` passed to `fit`; `random_state` goes to members that take one.
    """

    def __init__(self, members: Sequence[MemberSpec] = ("manhattan_log", "background"),
                 normalisation: str = "robust_z", random_state: int | None = 0):
        self.members = members
        self.normalisation = normalisation
        self.random_state = random_state

    @property
    def requires_background(self) -> bool:  # type: ignore[override]
        return any(requires_background(member) for member in self._new_members())

    def _new_members(self) -> list[Any]:
        if not self.members:
            raise ValueError("an ensemble needs at least one member detector")
        made = []
        for spec in self.members:
            name, params = _member_name_params(spec)
            if name == "ensemble":
                raise ValueError("an ensemble cannot contain another ensemble")
            if "random_state" in parameter_names(DETECTORS[name]):
                params.setdefault("random_state", self.random_state)
            made.append(make_detector(name, **params))
        return made

    def _member_normaliser(self, scores: np.ndarray) -> ScoreNormaliser:
        if self.normalisation == "rank":
            return fit_normaliser(scores, method="ecdf")
        if self.normalisation == "robust_z":
            center, spread = robust_center_scale(scores)
            return ScoreNormaliser(method="robust_z", center=center, scale=spread)
        raise ValueError(f"normalisation must be one of {ENSEMBLE_NORMALISATIONS}; got {self.normalisation!r}")

    def _normalised(self, scores: np.ndarray, normaliser: ScoreNormaliser) -> np.ndarray:
        if normaliser.method == "robust_z":
            return (scores - normaliser.center) / normaliser.scale
        return normalise(scores, normaliser)

    def fit(self, X: np.ndarray, X_background: np.ndarray | None = None) -> EnsembleDetector:
        self._fit_input(X)
        members = self._new_members()
        self.members_ = [fit_detector(member, X, X_background) for member in members]
        member_training = [training_scores(member, X) for member in self.members_]
        self.normalisers_ = [self._member_normaliser(scores) for scores in member_training]
        self.training_scores_ = np.mean(
            [self._normalised(s, n) for s, n in zip(member_training, self.normalisers_, strict=True)], axis=0)
        self.member_names_ = [detector_name(member) for member in self.members_]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.mean([self._normalised(member.decision_function(features), normaliser)
                        for member, normaliser in zip(self.members_, self.normalisers_, strict=True)], axis=0)
