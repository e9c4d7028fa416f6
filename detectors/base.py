"""The detector contract, the registry of adapters, and the few helpers every adapter shares.

A detector follows the PyOD / scikit-learn habit: parameters are stored untouched in `__init__`, `fit`
learns state into attributes ending in `_` and returns the detector, `decision_function` returns one raw
score per window where higher means more anomalous (less like the enrolled user). Every adapter also
leaves `training_scores_` (scores of its own training windows, as it would score unseen genuine windows
where the algorithm allows it) and `n_features_in_` behind; thresholds and normalisation are built on
`training_scores_` and live in `detectors.thresholds`, never inside a detector.

This module imports numpy and the standard library only: `detectors.features` imports the package, and
PyOD / torch take seconds to import. It knows no detector: `detectors.adapters` registers them with
`register`, and importing the `detectors` package imports the adapters.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    """What the scoring job, the evaluation and persistence rely on."""

    def fit(self, X: np.ndarray) -> Detector: ...

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...  # shape (n,), higher = more anomalous


class NotFittedError(RuntimeError):
    """A detector was asked for scores before `fit`."""


_REGISTERED: dict[str, type] = {}
#: Every registered detector (read-only): iterate for the names, index for the class.
DETECTORS: Mapping[str, type] = MappingProxyType(_REGISTERED)

DetectorClass = TypeVar("DetectorClass", bound=type)


def register(name: str) -> Callable[[DetectorClass], DetectorClass]:
    """Class decorator: make a detector available as `make_detector(name)` and to the contract tests."""

    def add(cls: DetectorClass) -> DetectorClass:
        if name in _REGISTERED and _REGISTERED[name] is not cls:
            raise ValueError(f"detector name {name!r} is already registered by {_REGISTERED[name].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTERED[name] = cls
        return cls

    return add


def make_detector(name: str, **params: Any) -> Detector:
    """A new, unfitted detector of a registered kind, e.g. `make_detector("iforest", n_estimators=100)`."""
    if name not in DETECTORS:
        raise KeyError(f"unknown detector {name!r}; registered detectors: {', '.join(sorted(DETECTORS))}")
    cls = DETECTORS[name]
    accepted = set(parameter_names(cls))
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise TypeError(f"detector {name!r} has no parameter(s) {unknown}; it accepts {sorted(accepted)}")
    return cls(**params)


def parameter_names(cls: type) -> list[str]:
    """The keyword parameters of a detector class's `__init__`, in signature order."""
    signature = inspect.signature(cls.__init__)
    return [p.name for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def get_params(detector: object) -> dict[str, Any]:
    """The constructor parameters of a detector (read back from the attributes `__init__` stored)."""
    return {name: getattr(detector, name) for name in parameter_names(type(detector))}


def clone(detector: object) -> Any:
    """An unfitted copy with the same parameters (scikit-learn's `clone`, without its machinery)."""
    return type(detector)(**copy.deepcopy(get_params(detector)))


def detector_name(detector: object) -> str:
    """The registry name of a detector's class (`"iforest"`), or its class name when unregistered."""
    return getattr(type(detector), "name", type(detector).__name__)


def reference_for(name: str) -> str | None:
    """The detector a registered detector is a reference for (PyOD's own beside our reimplementation), or
    None for a detector the app offers."""
    return getattr(DETECTORS[name], "reference_for", None)


def requires_background(detector: object) -> bool:
    """True when `fit` needs other users' windows (`X_background`) next to the user's own."""
    return bool(getattr(detector, "requires_background", False))


def uses_background(detector: object) -> bool:
    """True when `fit` takes other users' windows, needing them or using them when there are some."""
    return requires_background(detector) or bool(getattr(detector, "uses_background", False))


def fit_detector(detector: Any, X: np.ndarray, X_background: np.ndarray | None = None,
                 folds: np.ndarray | None = None) -> Any:
    """Fit on a user's windows, passing other users' windows only to detectors that use them, and the
    calibration folds (`calibration_folds`) to those that compute out-of-fold scores while fitting."""
    extra: dict[str, Any] = {}
    if uses_background(detector):
        extra["X_background"] = X_background
    if folds is not None and getattr(detector, "folds_at_fit", False):
        extra["folds"] = folds
    return detector.fit(X, **extra)


Folds = int | np.ndarray
"""How a user's training windows are dealt into calibration folds: a number of contiguous blocks, or
the fold of each window (`calibration_folds`)."""


def calibration_folds(n: int, folds: int = 5, groups: Sequence[Any] | np.ndarray | None = None) -> np.ndarray:
    """The calibration fold (0, 1, ...) of each of `n` training windows; all -1 when two folds are impossible.

    Without `groups`: `folds` contiguous blocks in enrolment order. With `groups` (each window's session,
    windows in session order): whole sessions, dealt in order into at most `folds` runs, so no window
    is ever scored by a model that saw its session. What later logins bring is mostly variation between
    sessions, which only scores out of session show. A single session falls back to blocks.
    """
    fold_of = np.full(n, -1, dtype=np.int64)
    if n < 2 or folds < 2:
        return fold_of
    if groups is not None:
        labels = np.asarray(groups)
        if labels.shape[0] != n:
            raise ValueError(f"{labels.shape[0]} group labels for {n} windows")
        _, first, session_of = np.unique(labels, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # sessions numbered by first appearance
        sessions = first.size
        if sessions >= 2:
            runs = min(folds, sessions)
            return (order[session_of] * runs // sessions).astype(np.int64)
    for k, rows in enumerate(np.array_split(np.arange(n), min(folds, n))):
        fold_of[rows] = k
    return fold_of


def fold_rows(fold_of: np.ndarray) -> list[np.ndarray]:
    """The rows of each fold, in fold order (rows without a fold, -1, belong to none)."""
    return [np.flatnonzero(fold_of == k) for k in range(int(fold_of.max(initial=-1)) + 1)]


def cross_fitting_splits(n: int, folds: Folds) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows to fit on, rows to score) for each calibration fold of `n` windows, in fold order.

    `folds`: a number of contiguous blocks or a fold per window (`as_fold_assignment`); fewer than two
    folds become two contiguous blocks, so every window is scored by a model that did not see it. Every
    out-of-fold computation (refits, closed-form block scores, fold networks) deals windows here.
    """
    fold_of = as_fold_assignment(n, folds)
    if fold_of.max(initial=-1) < 1:
        fold_of = calibration_folds(n, 2)
    every = np.arange(n)
    for held_out in fold_rows(fold_of):
        yield np.setdiff1d(every, held_out), held_out


def as_fold_assignment(n: int, folds: Folds) -> np.ndarray:
    """`folds` as the fold of each window: a count becomes contiguous blocks."""
    if isinstance(folds, int | np.integer):
        return calibration_folds(n, int(folds))
    fold_of = np.asarray(folds, dtype=np.int64)
    if fold_of.shape != (n,):
        raise ValueError(f"a fold assignment for {n} windows has shape {fold_of.shape}")
    return fold_of


def training_scores(detector: Any, X: np.ndarray | None = None) -> np.ndarray:
    """Scores of the training windows: `training_scores_` when the detector keeps them, else re-scored."""
    scores = getattr(detector, "training_scores_", None)
    if scores is not None:
        return np.asarray(scores, dtype=float)
    if X is None:
        raise ValueError(f"{detector_name(detector)} keeps no training_scores_; pass the training windows X")
    return np.asarray(detector.decision_function(X), dtype=float)


def refit_fold_scores(detector: Any, X: np.ndarray, X_background: np.ndarray | None = None,
                      folds: Folds = 5) -> np.ndarray:
    """Out-of-fold scores of a user's training windows: each fold scored by a clone fitted on the others.

    `folds`: contiguous blocks (enrolment order) or a fold per window (`calibration_folds`, e.g. by
    session); costs one extra fit per fold. The generic way to get honest calibration scores from any
    detector (`cross_fitted_scores` prefers a cheaper one when the detector has it).
    """
    X = check_features(X)
    scores = np.empty(X.shape[0])
    for kept, held_out in cross_fitting_splits(X.shape[0], folds):
        member = fit_detector(clone(detector), X[kept], X_background)
        scores[held_out] = member.decision_function(X[held_out])
    return scores


def _is_fitted(detector: object) -> bool:
    return hasattr(detector, "n_features_in_") and hasattr(detector, "training_scores_")


def cross_fitted_scores(detector: Any, X: np.ndarray, X_background: np.ndarray | None = None,
                        folds: Folds = 5) -> np.ndarray:
    """Out-of-sample scores of a user's training windows, for calibrating how rare a score is.

    In-sample scores flatter most detectors (a window is close to a mean it helped make), so a threshold
    calibrated on them rejects more genuine windows than intended. The windows are dealt into folds
    (`folds`: contiguous blocks in enrolment order, or a fold per window from `calibration_folds`, whole
    sessions) and each fold is scored by a model that never saw it. A detector fitted on exactly these
    windows (and `X_background`) that defines `out_of_fold_scores(X, X_background, folds)` computes that
    itself without refitting: the refits' numbers in NumPy (Manhattan, z-score, LOF), the trees that never
    saw the fold (isolation forest, background), its members' own scores (ensemble), or all fold networks
    in one loop (autoencoder). Otherwise (or for an unfitted detector) `refit_fold_scores`.
    """
    own = getattr(detector, "out_of_fold_scores", None)
    if own is None or not _is_fitted(detector):
        return refit_fold_scores(detector, X, X_background, folds)
    X = check_features(X)
    if len(detector.training_scores_) != X.shape[0]:
        raise ValueError(f"{detector_name(detector)} was fitted on {len(detector.training_scores_)} windows, "
                         f"not on these {X.shape[0]}: cross-fitted scores need the training windows")
    return np.asarray(own(X, X_background, folds), dtype=float)


def fit_calibrated(detectors: Sequence[Any], Xs: Sequence[np.ndarray],
                   backgrounds: Sequence[np.ndarray | None] | None = None, folds: int = 5,
                   groups: Sequence[Any | None] | None = None) -> list[np.ndarray]:
    """Fit each detector on its own user's windows; return each one's `cross_fitted_scores`, the
    folds being whole sessions where `groups` gives each window's session (`calibration_folds`).

    A class with a `fit_calibrated_many` classmethod fits its detectors together (the autoencoder trains
    every network of every user in one batched loop); the others are fitted one by one.
    """
    backgrounds = list(backgrounds) if backgrounds is not None else [None] * len(detectors)
    groups = list(groups) if groups is not None else [None] * len(detectors)
    if not (len(detectors) == len(Xs) == len(backgrounds) == len(groups)):
        raise ValueError(f"got {len(detectors)} detectors, {len(Xs)} training sets, {len(backgrounds)} backgrounds "
                         f"and {len(groups)} group labellings")
    fold_ofs = [calibration_folds(len(X), folds, g) for X, g in zip(Xs, groups, strict=True)]
    scores: list[np.ndarray | None] = [None] * len(detectors)
    by_class: dict[type, list[int]] = {}
    for position, detector in enumerate(detectors):
        by_class.setdefault(type(detector), []).append(position)
    for cls, positions in by_class.items():
        together = getattr(cls, "fit_calibrated_many", None)
        if together is not None:
            found = together([detectors[p] for p in positions], [Xs[p] for p in positions],
                             [backgrounds[p] for p in positions], [fold_ofs[p] for p in positions])
            for p, s in zip(positions, found, strict=True):
                scores[p] = np.asarray(s, dtype=float)
            continue
        for p in positions:
            fit_detector(detectors[p], Xs[p], backgrounds[p], folds=fold_ofs[p])
            scores[p] = cross_fitted_scores(detectors[p], Xs[p], backgrounds[p], fold_ofs[p])
    if any(s is None for s in scores):
        raise RuntimeError("a detector was left without calibration scores")
    return [s for s in scores if s is not None]


def check_features(X: Any, *, n_features: int | None = None, min_rows: int = 1, what: str = "X") -> np.ndarray:
    """`X` as a 2-D float array of finite values, or a ValueError saying what is wrong and where."""
    array = np.asarray(X, dtype=float)
    if array.ndim == 1 and n_features is not None and array.shape[0] == n_features:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (windows x features); got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{what} has {array.shape[0]} window(s); at least {min_rows} needed")
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"{what} has {array.shape[1]} features; the detector was fitted on {n_features}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{what} has a non-finite value ({array[row, column]}) at row {row}, column {column}; "
                         "fill undefined features before scoring")
    return array


def signed_log1p(X: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames heavy-tailed timings (ms) and keeps negative overlaps (UD < 0) apart."""
    return np.sign(X) * np.log1p(np.abs(X))


SCALINGS = ("none", "standard", "robust")


def make_preprocessor(scaling: str, log_transform: bool) -> Any:
    """A scikit-learn `Pipeline` that adapters fit on a user's training windows, or None for no step.

    `log_transform` applies `signed_log1p` first; `scaling` is "standard" (mean / SD), "robust" (median /
    IQR, unaffected by a few wild repetitions) or "none". A feature that is constant in training keeps
    scale 1 rather than dividing by zero.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler

    steps: list[tuple[str, Any]] = []
    if log_transform:
        steps.append(("signed_log1p", FunctionTransformer(signed_log1p)))
    if scaling == "standard":
        steps.append(("scale", StandardScaler()))
    elif scaling == "robust":
        steps.append(("scale", RobustScaler()))
    return Pipeline(steps) if steps else None


class BaseDetector:
    """What adapters share: input checks, optional preprocessing, a readable repr.

    Subclasses set `requires_background` when `fit` takes other users' windows, and call
    `_fit_input` / `_score_input` so shapes and finiteness are checked the same way everywhere.
    """

    name: ClassVar[str]
    requires_background: ClassVar[bool] = False
    min_training_windows: ClassVar[int] = 2

    def _fit_input(self, X: Any, scaling: str = "none", log_transform: bool = False) -> np.ndarray:
        """Check the training windows, fit the preprocessing step on them and return them transformed."""
        X = check_features(X, min_rows=self.min_training_windows)
        self.n_features_in_ = X.shape[1]
        self.preprocessor_ = make_preprocessor(scaling, log_transform)
        return X if self.preprocessor_ is None else self.preprocessor_.fit_transform(X)

    def _score_input(self, X: Any) -> np.ndarray:
        """Check windows to be scored against what was fitted, and apply the fitted preprocessing step."""
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{detector_name(self)} is not fitted yet; call fit(X) first")
        X = check_features(X, n_features=self.n_features_in_)
        return X if self.preprocessor_ is None else self.preprocessor_.transform(X)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in get_params(self).items())
        return f"{type(self).__name__}({params})"
