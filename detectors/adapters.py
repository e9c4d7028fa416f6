"""Registered detectors: adapters over PyOD, scikit-learn, torch and compiled forests, plus baselines from the
keystroke literature.

Each adapter is fitted on one user's windows (rows) of one feature schema (columns) and scores new windows,
higher = less like that user. PyOD, torch and numba are imported when a model is first fitted, not when
this module is, because they take seconds to import.

Registered names: iforest (isolation forest, `detectors.forests`), lof (PyOD), autoencoder (PyOD's network
and recipe, trained batched with torch); manhattan_scaled, manhattan_log, zscore_count (Killourhy & Maxion
2009 baselines and a log-feature variant); background (per-user classifier against other users, the
universal-background-model idea); ensemble (averages normalised member scores); pyod_iforest and
pyod_autoencoder (PyOD's own detectors as they come, the references iforest and autoencoder are measured
against).

Every detector also gives honest calibration scores cheaply (`out_of_fold_scores`, used by
`detectors.base.cross_fitted_scores`): the numbers the fold refits would give, or trees / networks that
never saw a window's fold. Folds are contiguous blocks of enrolment or whole sessions, never single
windows or plain out-of-bag draws: a window's neighbours in time resemble it, so a model they trained
finds it more typical than a later genuine window, and thresholds set on such scores reject more later
genuine windows than their target.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from detectors.base import (
    DETECTORS,
    SCALINGS,
    BaseDetector,
    Folds,
    as_fold_assignment,
    calibration_folds,
    check_features,
    cross_fitted_scores,
    cross_fitting_splits,
    detector_name,
    fit_detector,
    make_detector,
    parameter_names,
    refit_fold_scores,
    register,
    requires_background,
    signed_log1p,
    training_scores,
)
from detectors.thresholds import ScoreNormaliser, fit_normaliser, normalise, robust_center_scale

# ------------------------------------------------------------------------- isolation forest, LOF, autoencoder


def _seed(random_state: int | None) -> int:
    """An integer seed for the compiled and batched fits: `random_state`, or a fresh one when None."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    return int(random_state)


def _tree_folds(n: int, oob_folds: int, folds: np.ndarray | None) -> np.ndarray:
    """The fold of each training window for a forest: the given calibration folds, else `oob_folds`
    contiguous blocks (none when `oob_folds` is 1)."""
    if folds is not None and oob_folds >= 2:
        return as_fold_assignment(n, folds)
    return calibration_folds(n, oob_folds)


@register("iforest")
class IForestDetector(BaseDetector):
    """Isolation forest (Liu, Ting & Zhou 2008): windows that random axis splits isolate quickly are anomalous.

    Score = 2 ** -(mean path length / its expected value), in (0, 1]; about 0.5 for a typical window.
    Trees grow on up to `max_samples` windows ("auto": 256; a float: that share of the user's windows).
    Tree t never sees fold t % `oob_folds` of the user's windows (contiguous blocks in enrolment order, or
    the calibration folds given to `fit`), so a training window's score from its fold's trees (1/oob_folds
    of the forest) is out of sample: `training_scores_` are those, and calibration uses them at no extra
    fit. `oob_folds=1` lets every tree see every window (then calibration refits). 1000 trees by default,
    so that a fold's 200 trees score its windows about as steadily as the whole forest scores new ones: with
    fewer, the noisier calibration scores set thresholds too high. Grown in one compiled call
    (`detectors.forests`) rather than by PyOD's IForest (`pyod_iforest`), whose per-tree overhead the
    scheduler's retrain cannot afford (docs/detectors.md, "PyOD's detectors and ours").
    """

    def __init__(self, n_estimators: int = 1000, max_samples: int | float | str = "auto", oob_folds: int = 5,
                 log_transform: bool = False, random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.oob_folds = oob_folds
        self.log_transform = log_transform
        self.random_state = random_state

    def _sample_size(self, n: int) -> int:
        if self.max_samples == "auto":
            return 256
        if isinstance(self.max_samples, float):
            if not 0.0 < self.max_samples <= 1.0:
                raise ValueError(f"max_samples as a share must be in (0, 1]; got {self.max_samples}")
            return max(2, int(self.max_samples * n))
        if isinstance(self.max_samples, int) and self.max_samples >= 2:
            return self.max_samples
        raise ValueError(f"max_samples must be 'auto', an int >= 2 or a share in (0, 1]; got {self.max_samples!r}")

    folds_at_fit = True

    def fit(self, X: np.ndarray, *, folds: np.ndarray | None = None) -> IForestDetector:
        """`folds`: the calibration fold of each window (`calibration_folds`); default `oob_folds` blocks."""
        from detectors.forests import block_out_of_bag_mean, grow_isolation_forest, leaf_values

        features = self._fit_input(X, log_transform=self.log_transform)
        fold_of = _tree_folds(features.shape[0], self.oob_folds, folds)
        self.model_ = grow_isolation_forest(features, n_trees=self.n_estimators,
                                            max_samples=self._sample_size(features.shape[0]), fold_of=fold_of,
                                            seed=_seed(self.random_state))
        depths = leaf_values(self.model_, features)
        out_of_bag = block_out_of_bag_mean(depths, fold_of)
        # NaN without folds or for a block without trees (n_estimators < oob_folds): in-sample instead
        self.training_scores_ = 2.0 ** -np.where(np.isfinite(out_of_bag), out_of_bag, depths.mean(axis=1))
        return self

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """The out-of-bag `training_scores_` of the folds given to `fit` (no extra fit); refits when the
        forest has no folds (`oob_folds` 1)."""
        if min(self.oob_folds, len(self.training_scores_)) >= 2 and self.n_estimators >= self.oob_folds:
            return np.array(self.training_scores_)
        return refit_fold_scores(self, X, X_background, folds)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        from detectors.forests import mean_leaf_value

        features = self._score_input(X)
        return 2.0 ** -mean_leaf_value(self.model_, features)


@register("lof")
class LOFDetector(BaseDetector):
    """Local outlier factor (PyOD LOF, novelty mode): density of a window's neighbourhood vs. its neighbours'.

    The fitted model keeps the user's training windows (LOF needs them to find neighbours), so a saved
    model holds feature vectors of that user. Training scores are PyOD's `decision_scores_` (each training
    window scored without counting itself), the same scale as `decision_function` on new windows; PyOD's
    `predict` on training data disagrees with them, so it is not used. Calibration scores are those of
    `folds` refits on contiguous blocks, computed in NumPy (`out_of_fold_scores`).
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

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """`refit_fold_scores` computed directly: per contiguous block, the scaling step and LOF fitted on
        the other blocks (NumPy, `_local_outlier_factors`) score the block. Same numbers without building
        PyOD's neighbour-search structure once per fold."""
        X = check_features(X)
        scores = np.empty(X.shape[0])
        for kept, held_out in cross_fitting_splits(X.shape[0], folds):
            if kept.size < self.min_training_windows:
                return refit_fold_scores(self, X, X_background, folds)  # raises what a refit raises
            train, query = _scaled(X[kept], X[held_out], self.scaling, self.log_transform)
            k = max(1, min(self.n_neighbors, kept.size - 1))  # as `fit` chooses
            scores[held_out] = _local_outlier_factors(train, query, k)
        return scores

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.decision_function(features), dtype=float)


def _scaled(train: np.ndarray, query: np.ndarray, scaling: str, log_transform: bool) -> tuple[np.ndarray, np.ndarray]:
    """`make_preprocessor(scaling, log_transform)` fitted on `train`, applied to both, in plain NumPy: the
    same numbers as scikit-learn's scalers (a spread below 10 machine epsilons counts as 1) without their
    per-column loops (calibration fits one scaling per fold and user)."""
    if log_transform:
        train, query = signed_log1p(train), signed_log1p(query)
    if scaling == "none":
        return train, query
    if scaling == "standard":
        center, spread = train.mean(axis=0), train.std(axis=0)
    elif scaling == "robust":
        center = np.median(train, axis=0)
        low, high = np.percentile(train, [25.0, 75.0], axis=0)
        spread = high - low
    else:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    spread = np.where(spread < 10 * np.finfo(float).eps, 1.0, spread)
    return (train - center) / spread, (query - center) / spread


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, rows of A x rows of B (|a|^2 + |b|^2 - 2 a.b, clipped at 0)."""
    return np.maximum((A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2.0 * A @ B.T, 0.0)


def _nearest(distance: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each row's k smallest entries, nearest first."""
    if k < distance.shape[1]:
        candidates = np.argpartition(distance, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(distance.shape[1]), distance.shape).copy()
    near = np.take_along_axis(candidates, np.argsort(np.take_along_axis(distance, candidates, axis=1), axis=1,
                                                     kind="stable"), axis=1)
    return near, np.take_along_axis(distance, near, axis=1)


def _local_outlier_factors(train: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """LOF of each query window against training windows, with scikit-learn's formulas (novelty mode):
    k-distance of a training window = distance to its k-th nearest other training window;
    reach(a, b) = max(k-distance(b), d(a, b)); lrd = 1 / (mean reach to the k nearest + 1e-10);
    LOF = mean lrd of the query's k nearest training windows / the query's lrd."""
    within = np.sqrt(_squared_distances(train, train))
    np.fill_diagonal(within, np.inf)  # a training window is not its own neighbour
    near, near_distance = _nearest(within, k)
    k_distance = near_distance[:, -1]
    train_lrd = 1.0 / (np.maximum(k_distance[near], near_distance).mean(axis=1) + 1e-10)
    query_near, query_distance = _nearest(np.sqrt(_squared_distances(query, train)), k)
    query_lrd = 1.0 / (np.maximum(k_distance[query_near], query_distance).mean(axis=1) + 1e-10)
    return train_lrd[query_near].mean(axis=1) / query_lrd


_TORCH_READY = False


def _torch_single_thread() -> None:
    """Import torch once and pin it to one thread: the networks are small, so more threads only contend with
    the other fits for the machine's cores."""
    global _TORCH_READY
    if not _TORCH_READY:
        import torch

        torch.set_num_threads(1)
        _TORCH_READY = True


@contextmanager
def _seeded_torch(seed: int | None) -> Iterator[None]:
    """Seed torch's global generator for one fit (dropout draws from it), then put the caller's global RNG
    states (torch, numpy, random, PYTHONHASHSEED) back, so a fit never changes what other code draws.
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


#: At most this many networks train in one batched loop (bounds the step schedule's memory: ~20 MB).
AUTOENCODER_BATCH = 256
#: A trained network: (weights in x out, bias) per layer.
Layers = list[tuple[np.ndarray, np.ndarray]]
#: One network to train: (its detector, its scaled training windows, its seed).
_Job = tuple["AutoEncoderDetector", np.ndarray, int]


def _train_autoencoders(datas: Sequence[np.ndarray], seeds: Sequence[int], *, hidden: Sequence[int], epochs: int,
                        batch_size: int, learning_rate: float, weight_decay: float,
                        dropout_rate: float) -> list[Layers]:
    """Train one autoencoder per training set, all in one loop of batched matrix products.

    Per network (as PyOD 3.6.7's AutoEncoder with batch_norm off): layers d -> hidden -> mirrored hidden -> d,
    ReLU (then dropout) after every layer but the last, PyTorch's default initialisation (uniform within
    1 / sqrt(fan in)), MSE loss, Adam with L2 weight decay, every epoch a fresh shuffle cut into batches of
    `batch_size` (at most the windows; the last incomplete batch dropped). Networks are independent: each
    has its own loss term, Adam is elementwise, and its initialisation and shuffles come from its own
    seed, so a network trains the same alone or beside others (up to float rounding). A network whose
    last step has passed is copied out then, so networks of different sizes share the loop.
    Returns each network's layers as (weights in x out, bias) float32 arrays.
    """
    _torch_single_thread()
    import torch

    count = len(datas)
    width = datas[0].shape[1]
    sizes = [width, *hidden, *list(hidden)[-2::-1], width]
    rows = np.array([len(x) for x in datas])
    batch = np.maximum(2, np.minimum(batch_size, rows))
    per_epoch = rows // batch
    steps = epochs * per_epoch
    widest = int(batch.max())
    data = torch.zeros(count, int(rows.max()), width)
    schedule = np.zeros((int(steps.max()), count, widest), dtype=np.int64)
    for m, x in enumerate(datas):
        data[m, :rows[m]] = torch.from_numpy(np.asarray(x, dtype=np.float32))
        shuffles = np.random.default_rng(seeds[m]).random((epochs, rows[m])).argsort(axis=1)
        used = shuffles[:, :per_epoch[m] * batch[m]].reshape(steps[m], batch[m])
        schedule[:steps[m], m, :batch[m]] = used
    # MSE of network m = sum over its real rows of squared errors / (its batch size x features)
    row_weight = torch.from_numpy(((np.arange(widest)[None, :] < batch[:, None]) / (batch[:, None] * width))
                                  .astype(np.float32))
    weights, biases = [], []
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1.0 / math.sqrt(fan_in)
        W, b = torch.empty(count, fan_in, fan_out), torch.empty(count, 1, fan_out)
        for m, generator in enumerate(generators):
            W[m] = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator).T
            b[m, 0] = torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
        weights.append(W.requires_grad_())
        biases.append(b.requires_grad_())
    optimizer = torch.optim.Adam([*weights, *biases], lr=learning_rate, weight_decay=weight_decay, fused=True)
    trained: list[Layers] = [[] for _ in range(count)]

    def copy_out(members: np.ndarray) -> None:
        for m in members:
            trained[m] = [(W[m].detach().numpy().copy(), b[m, 0].detach().numpy().copy())
                          for W, b in zip(weights, biases, strict=True)]

    copy_out(np.flatnonzero(steps == 0))
    which = torch.arange(count)[:, None]
    last = len(weights) - 1
    with _seeded_torch(int(seeds[0])):  # dropout draws from torch's global generator
        for step in range(int(steps.max())):
            x = data[which, torch.from_numpy(schedule[step])]
            h = x
            for layer, (W, b) in enumerate(zip(weights, biases, strict=True)):
                h = torch.baddbmm(b, h, W)
                if layer < last:
                    h = torch.relu(h)
                    if dropout_rate > 0:
                        h = torch.nn.functional.dropout(h, dropout_rate, training=True)
            loss = (((h - x) ** 2).sum(dim=-1) * row_weight).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            copy_out(np.flatnonzero(steps == step + 1))
    return trained


def _reconstruction_errors(layers: Layers, X: np.ndarray) -> np.ndarray:
    """Euclidean distance between each (scaled) window and its reconstruction, as PyOD scores it."""
    h = X
    for layer, (W, b) in enumerate(layers):
        h = h @ W.astype(float) + b.astype(float)
        if layer < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return np.sqrt(((h - X) ** 2).sum(axis=1))


class _AutoEncoderParameters(BaseDetector):
    """The parameters PyOD's AutoEncoder recipe and ours share (so both are set and compared alike)."""

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


@register("autoencoder")
class AutoEncoderDetector(_AutoEncoderParameters):
    """Auto-associative network: reconstruction error of a window (Euclidean, in scaled units).

    PyOD 3.6.7's AutoEncoder network and recipe (`_train_autoencoders`), small by default: hidden layers 32
    and 8, 50 epochs, batches of 16. Training small networks one by one is all per-step overhead, so
    `fit_calibrated_many` trains every user's network and its `folds` cross-fitting networks in one
    batched loop, and scoring is NumPy; PyOD's own fit, one network at a time, is `pyod_autoencoder`
    (docs/detectors.md, "PyOD's detectors and ours").
    The batch size is capped at the number of training windows. Scaling is done here (`scaling`,
    `log_transform`), fitted on each network's own training windows; a feature constant in training
    keeps scale 1.
    """

    def _recipe(self) -> tuple[Any, ...]:
        return (tuple(self.hidden_neurons), self.epochs, self.batch_size, self.learning_rate, self.weight_decay,
                self.dropout_rate)

    @classmethod
    def _train(cls, jobs: list[_Job]) -> list[Layers]:
        """Networks for (detector, scaled windows, seed) jobs, batched by identical recipe and width."""
        trained: list[Layers] = [[] for _ in jobs]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for position, (detector, data, _) in enumerate(jobs):
            groups.setdefault((*detector._recipe(), data.shape[1]), []).append(position)
        for positions in groups.values():
            for chunk in np.array_split(np.array(positions), -(-len(positions) // AUTOENCODER_BATCH)):
                chunk = chunk.tolist()
                detector = jobs[chunk[0]][0]
                result = _train_autoencoders(
                    [jobs[p][1] for p in chunk], [jobs[p][2] for p in chunk], hidden=detector.hidden_neurons,
                    epochs=detector.epochs, batch_size=detector.batch_size, learning_rate=detector.learning_rate,
                    weight_decay=detector.weight_decay, dropout_rate=detector.dropout_rate)
                for p, layers in zip(chunk, result, strict=True):
                    trained[p] = layers
        return trained

    def _fold_jobs(self, X: np.ndarray, folds: Folds) -> tuple[list[_Job], list[tuple[np.ndarray, np.ndarray]]]:
        """Per fold: a training job on the other windows (scaled by a step fitted on them), and the held-out
        rows with their windows scaled the same way."""
        seed = _seed(self.random_state)
        jobs, held = [], []
        for k, (kept, held_out) in enumerate(cross_fitting_splits(X.shape[0], folds)):
            if kept.size < self.min_training_windows:
                raise ValueError(f"{len(X)} windows are too few for cross-fitting the autoencoder")
            train, query = _scaled(X[kept], X[held_out], self.scaling, self.log_transform)
            jobs.append((self, np.asarray(train, dtype=np.float32), seed + 1 + k))
            held.append((held_out, query))
        return jobs, held

    @classmethod
    def fit_calibrated_many(cls, detectors: Sequence[AutoEncoderDetector], Xs: Sequence[np.ndarray],
                            backgrounds: Sequence[np.ndarray | None],
                            folds: Sequence[Folds]) -> list[np.ndarray]:
        """Fit every detector on its windows and return their cross-fitted scores, all networks (one per
        detector plus `folds` per detector, each fitted without one contiguous block) in one loop."""
        _ = backgrounds  # an autoencoder learns from the user's windows only
        jobs: list[_Job] = []
        plans = []
        for detector, X, fold_of in zip(detectors, Xs, folds, strict=True):
            features = detector._fit_input(X, scaling=detector.scaling, log_transform=detector.log_transform)
            raw = check_features(X)
            fold_jobs, held = detector._fold_jobs(raw, fold_of)
            plans.append((len(jobs), features, held))
            jobs += [(detector, np.asarray(features, dtype=np.float32), _seed(detector.random_state)), *fold_jobs]
        trained = cls._train(jobs)
        scores = []
        for detector, (first, features, held) in zip(detectors, plans, strict=True):
            detector._set_fitted(trained[first], features)
            out = np.empty(features.shape[0])
            for k, (rows, windows) in enumerate(held):
                out[rows] = _reconstruction_errors(trained[first + 1 + k], np.asarray(windows, dtype=float))
            scores.append(out)
        return scores

    def _set_fitted(self, layers: Layers, features: np.ndarray) -> None:
        self.batch_size_ = max(2, min(self.batch_size, features.shape[0]))
        self.layers_ = layers
        self.training_scores_ = _reconstruction_errors(layers, np.asarray(features, dtype=float))

    def fit(self, X: np.ndarray) -> AutoEncoderDetector:
        features = self._fit_input(X, scaling=self.scaling, log_transform=self.log_transform)
        [layers] = self._train([(self, np.asarray(features, dtype=np.float32), _seed(self.random_state))])
        self._set_fitted(layers, features)
        return self

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """Scores of the training windows from `folds` networks each trained without their block (one loop)."""
        jobs, held = self._fold_jobs(check_features(X), folds)
        trained = self._train(jobs)
        out = np.empty(len(X))
        for layers, (rows, windows) in zip(trained, held, strict=True):
            out[rows] = _reconstruction_errors(layers, np.asarray(windows, dtype=float))
        return out

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = np.asarray(self._score_input(X), dtype=float)
        return _reconstruction_errors(self.layers_, features)


# ------------------------------------------------------------------------------- keystroke literature


#: A spread at or below this fraction of a feature's magnitude is the rounding noise of a feature that was
#: constant in training (the mean of identical floats can be off by an ulp), not variability: dividing by
#: it would make a later difference of one timer tick (0.1 ms) score about 1e12.
CONSTANT_SPREAD = 1e-9


def _positive_spread(spread: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Per-feature spreads with those of constant features (zero, or rounding noise of `center`) replaced
    by the smallest real one, so that no feature can outweigh all others by its own lack of variation."""
    real = spread > CONSTANT_SPREAD * np.maximum(1.0, np.abs(center))
    floor = spread[real].min() if real.any() else 1.0
    return np.where(real, spread, floor)


@register("manhattan_scaled")
class ManhattanScaledDetector(BaseDetector):
    """Scaled Manhattan distance (Killourhy & Maxion 2009): sum over features of |x - mean| / MAD.

    MAD is the mean absolute deviation of each feature from its training mean, so every feature counts
    in units of that user's own variability. The best of the detectors Killourhy & Maxion compared on the CMU
    benchmark.
    """

    def __init__(self, log_transform: bool = False):
        self.log_transform = log_transform

    def fit(self, X: np.ndarray) -> ManhattanScaledDetector:
        features = self._fit_input(X, log_transform=self.log_transform)
        self.mean_ = features.mean(axis=0)
        self.mad_ = _positive_spread(np.abs(features - self.mean_).mean(axis=0), self.mean_)
        self.training_scores_ = self._distance(features)
        return self

    def _distance(self, features: np.ndarray) -> np.ndarray:
        return (np.abs(features - self.mean_) / self.mad_).sum(axis=1)

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """`refit_fold_scores` computed directly: each contiguous block against the mean and MAD of the
        other blocks (the log step has no fitted state). Same numbers without building `folds` detectors."""
        features = self._score_input(X)
        scores = np.empty(features.shape[0])
        for kept, held_out in cross_fitting_splits(features.shape[0], folds):
            if kept.size < self.min_training_windows:
                return refit_fold_scores(self, X, X_background, folds)  # raises what a refit raises
            mean = features[kept].mean(axis=0)
            spread = _positive_spread(np.abs(features[kept] - mean).mean(axis=0), mean)
            scores[held_out] = (np.abs(features[held_out] - mean) / spread).sum(axis=1)
        return scores

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self._distance(self._score_input(X))


@register("manhattan_log")
class LogManhattanDetector(ManhattanScaledDetector):
    """Scaled Manhattan on sign-preserving log1p features: timings are right-skewed, logs are less so."""

    def __init__(self, log_transform: bool = True):
        super().__init__(log_transform=log_transform)


@register("zscore_count")
class ZScoreCountDetector(BaseDetector):
    """Outlier count (Killourhy & Maxion 2009): how many features lie beyond |z| > `z_limit`."""

    def __init__(self, z_limit: float = 1.96, log_transform: bool = False):
        self.z_limit = z_limit
        self.log_transform = log_transform

    def fit(self, X: np.ndarray) -> ZScoreCountDetector:
        features = self._fit_input(X, log_transform=self.log_transform)
        self.mean_ = features.mean(axis=0)
        self.std_ = _positive_spread(features.std(axis=0), self.mean_)
        self.training_scores_ = self._count(features)
        return self

    def _count(self, features: np.ndarray) -> np.ndarray:
        return (np.abs((features - self.mean_) / self.std_) > self.z_limit).sum(axis=1).astype(float)

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """`refit_fold_scores` computed directly: each contiguous block's z-scores against the mean and SD
        of the other blocks. Same numbers without building `folds` detectors."""
        features = self._score_input(X)
        scores = np.empty(features.shape[0])
        for kept, held_out in cross_fitting_splits(features.shape[0], folds):
            if kept.size < self.min_training_windows:
                return refit_fold_scores(self, X, X_background, folds)  # raises what a refit raises
            mean = features[kept].mean(axis=0)
            spread = _positive_spread(features[kept].std(axis=0), mean)
            scores[held_out] = (np.abs((features[held_out] - mean) / spread) > self.z_limit).sum(axis=1)
        return scores

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self._count(self._score_input(X))


# ------------------------------------------------------------------------------ background, ensemble

BACKGROUND_CLASSIFIERS = ("extra_trees", "logistic")


@register("background")
class BackgroundClassifierDetector(BaseDetector):
    """This user against everyone else: a classifier trained on the user's windows (genuine) and other
    users' windows (`X_background`), the universal-background-model idea from speaker verification.

    Score = predicted probability that a window is *not* this user. `classifier` is "extra_trees"
    (extremely randomised trees, bootstrapped, `max_features` sqrt, grown until pure, in one compiled call
    by `detectors.forests`) or "logistic" (L2 logistic regression on scaled features); classes are weighted
    so the few genuine windows count as much as the many background ones (per bootstrap sample for the
    trees).
    Training scores are out of sample, because in-sample probabilities of a flexible classifier are all
    near 0: for the trees, tree t never sees block t % `oob_folds` of the user's windows (contiguous, in
    enrolment order) and a window is scored by its block's trees; for the logistic model, `cv_folds`-fold
    predictions. They are also the calibration scores (no extra fit). Plain out-of-bag votes would not
    do: a window's neighbours in time train the trees that score it, so thresholds on them reject more
    later genuine windows than their target.
    The model keeps no background windows, only what the classifier learned from them.
    """

    requires_background = True

    def __init__(self, classifier: str = "extra_trees", n_estimators: int = 200, C: float = 0.1,
                 cv_folds: int = 5, oob_folds: int = 5, scaling: str = "standard", log_transform: bool = True,
                 random_state: int | None = 0):
        self.classifier = classifier
        self.n_estimators = n_estimators
        self.C = C
        self.cv_folds = cv_folds
        self.oob_folds = oob_folds
        self.scaling = scaling
        self.log_transform = log_transform
        self.random_state = random_state

    def _make_classifier(self) -> Any:
        if self.classifier == "logistic":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        raise ValueError(f"classifier must be one of {BACKGROUND_CLASSIFIERS}; got {self.classifier!r}")

    folds_at_fit = True

    def fit(self, X: np.ndarray, X_background: np.ndarray | None = None, *,
            folds: np.ndarray | None = None) -> BackgroundClassifierDetector:
        """`folds`: the calibration fold of each of the user's windows (`calibration_folds`); default
        `oob_folds` blocks."""
        if X_background is None or len(X_background) == 0:
            raise ValueError(
                "the background detector needs other users' windows: call fit(X, X_background=...) with "
                "windows of the same feature schema from users other than this one (or use another detector)")
        genuine = check_features(X, min_rows=self.min_training_windows)
        others = check_features(X_background, n_features=genuine.shape[1], what="X_background")
        both = self._fit_input(np.vstack([genuine, others]), scaling=self.scaling, log_transform=self.log_transform)
        labels = np.r_[np.zeros(len(genuine)), np.ones(len(others))]  # 1 = not this user
        self.n_background_ = len(others)
        if self.classifier == "extra_trees":
            from detectors.forests import block_out_of_bag_mean, grow_extra_trees, leaf_values

            own_folds = _tree_folds(len(genuine), self.oob_folds, folds)
            fold_of = np.r_[own_folds, np.full(len(others), -1)]  # others: any tree
            self.model_ = grow_extra_trees(both, labels, n_trees=self.n_estimators,
                                           max_features=max(1, int(math.sqrt(both.shape[1]))),
                                           seed=_seed(self.random_state), fold_of=fold_of)
            votes = leaf_values(self.model_, both[:len(genuine)])
            out_of_bag = block_out_of_bag_mean(votes, own_folds)
            # NaN without folds or for a block without trees (n_estimators < oob_folds): in-sample instead
            self.training_scores_ = np.where(np.isfinite(out_of_bag), out_of_bag, votes.mean(axis=1))
            return self
        self.model_ = self._make_classifier().fit(both, labels)
        self.training_scores_ = self._out_of_sample_scores(both, labels, len(genuine))
        return self

    def _out_of_sample_scores(self, both: np.ndarray, labels: np.ndarray, n_genuine: int) -> np.ndarray:
        """Scores of the user's own training windows from logistic models that did not see them."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        folds = max(2, min(self.cv_folds, n_genuine))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        predicted = cross_val_predict(self._make_classifier(), both, labels, cv=splitter, method="predict_proba")
        return predicted[:n_genuine, 1]

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """The out-of-sample `training_scores_` (block out-of-bag votes or cross-validated probabilities);
        refits on `folds` blocks when the trees have no blocks (`oob_folds` 1)."""
        if self.classifier == "extra_trees" and not (
                min(self.oob_folds, len(self.training_scores_)) >= 2 and self.n_estimators >= self.oob_folds):
            return refit_fold_scores(self, X, X_background, folds)
        return np.array(self.training_scores_)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        if self.classifier == "extra_trees":
            from detectors.forests import mean_leaf_value

            return mean_leaf_value(self.model_, features)
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
    needs a background gets the `X_background` passed to `fit`, and is left out when there is none (the
    first user of a store has no one to be told apart from); `random_state` goes to members that take one.
    The default pairs the user-against-everyone classifier (it tells enrolled users apart) with scaled
    Manhattan distance (it sees input unlike any user's, such as a script's).
    """

    def __init__(self, members: Sequence[MemberSpec] = ("background", "manhattan_scaled"),
                 normalisation: str = "robust_z", random_state: int | None = 0):
        self.members = members
        self.normalisation = normalisation
        self.random_state = random_state

    @property
    def uses_background(self) -> bool:
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

    folds_at_fit = True

    def fit(self, X: np.ndarray, X_background: np.ndarray | None = None, *,
            folds: np.ndarray | None = None) -> EnsembleDetector:
        self._fit_input(X)
        members = self._new_members()
        if X_background is None or len(X_background) < 2:
            members = [member for member in members if not requires_background(member)]
            if not members:
                raise ValueError("every member of this ensemble needs other users' windows (X_background)")
        self.members_ = [fit_detector(member, X, X_background, folds=folds) for member in members]
        member_training = [training_scores(member, X) for member in self.members_]
        self.normalisers_ = [self._member_normaliser(scores) for scores in member_training]
        self.training_scores_ = np.mean(
            [self._normalised(s, n) for s, n in zip(member_training, self.normalisers_, strict=True)], axis=0)
        self.member_names_ = [detector_name(member) for member in self.members_]
        return self

    def out_of_fold_scores(self, X: np.ndarray, X_background: np.ndarray | None = None,
                           folds: Folds = 5) -> np.ndarray:
        """Each member's own out-of-sample scores (`cross_fitted_scores`: closed-form fold refits, fold
        out-of-bag trees, fold networks or refits) through that member's normaliser, averaged as
        `decision_function` averages new windows'.

        The members fitted once by `fit` are reused: no ensemble refits (that would refit every member
        again per fold). The member normalisers are the fitted ones, learned on all n windows; a
        normaliser (median and IQR, or the sorted training scores) is one fixed map per member, which one
        window barely moves.
        """
        return np.mean([self._normalised(cross_fitted_scores(member, X, X_background, folds), normaliser)
                        for member, normaliser in zip(self.members_, self.normalisers_, strict=True)], axis=0)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.mean([self._normalised(member.decision_function(features), normaliser)
                        for member, normaliser in zip(self.members_, self.normalisers_, strict=True)], axis=0)


# ------------------------------------------------------------------- PyOD's own, beside the reimplementations


@register("pyod_iforest")
class PyODIForestDetector(BaseDetector):
    """PyOD's `IForest` (scikit-learn's isolation forest) as it comes: the reference `iforest` is measured
    against (docs/detectors.md, "PyOD's detectors and ours").

    Score = PyOD's `decision_function` (higher = more anomalous). Training scores are in-sample, so
    calibration refits the forest once per fold (`refit_fold_scores`).
    """

    reference_for = "iforest"  # `python -m app bench detectors` times it beside that detector

    def __init__(self, n_estimators: int = 100, max_samples: int | float | str = "auto", log_transform: bool = False,
                 random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.log_transform = log_transform
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> PyODIForestDetector:
        from pyod.models.iforest import IForest

        features = self._fit_input(X, log_transform=self.log_transform)
        self.model_ = IForest(n_estimators=self.n_estimators, max_samples=self.max_samples, n_jobs=1,
                              random_state=self.random_state).fit(features)
        self.training_scores_ = np.asarray(self.model_.decision_scores_, dtype=float)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.decision_function(features), dtype=float)


@register("pyod_autoencoder")
class PyODAutoEncoderDetector(_AutoEncoderParameters):
    """PyOD's `AutoEncoder` with the recipe `autoencoder` trains (same parameters, batch norm off, scaling
    done here), one network per fit: the reference `autoencoder` is measured against.

    Score = reconstruction error (Euclidean, in scaled units). Training scores are in-sample, so
    calibration refits the network once per fold. The batch size is capped at the number of training
    windows (PyOD drops an incomplete last batch); torch runs on one thread, and the global random states
    PyOD seeds are put back after fit.
    """

    reference_for = "autoencoder"

    def fit(self, X: np.ndarray) -> PyODAutoEncoderDetector:
        _torch_single_thread()
        from pyod.models.auto_encoder import AutoEncoder

        features = self._fit_input(X, scaling=self.scaling, log_transform=self.log_transform)
        seed = _seed(self.random_state)
        with _seeded_torch(seed):
            self.model_ = AutoEncoder(
                hidden_neuron_list=list(self.hidden_neurons), epoch_num=self.epochs,
                batch_size=max(2, min(self.batch_size, features.shape[0])), lr=self.learning_rate,
                optimizer_params={"weight_decay": self.weight_decay}, dropout_rate=self.dropout_rate,
                batch_norm=False, preprocessing=False, device="cpu", verbose=0, random_state=seed,
            ).fit(features)
        self.training_scores_ = np.asarray(self.model_.decision_scores_, dtype=float)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        features = self._score_input(X)
        return np.asarray(self.model_.decision_function(features), dtype=float)
