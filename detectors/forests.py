"""Random-split tree ensembles compiled with numba: isolation forests and extremely randomised trees.

Why not scikit-learn's (or PyOD's IForest, which wraps it): they spend milliseconds per tree on Python
bookkeeping (parameter validation, random-state plumbing, per-tree class weights), more than growing a
tree on a user's few hundred windows takes, and the scheduler's retrain grows forests for every user and
detector. Here one compiled call grows every tree of a forest. The algorithms are the published ones
(Liu, Ting & Zhou 2008; Geurts, Ernst & Wehenkel 2006) with scikit-learn's conventions: a threshold
uniform in [min, max) of a random non-constant feature, `x <= threshold` goes left.

Deterministic for a given `seed`: tree t draws from numba's own generator seeded with seed + t (NumPy's
global one is left alone), so a tree depends only on its seed and the rows it may draw from. Fitted
forests are plain NumPy arrays (`Forest`), so they pickle without numba. The first fit in a process
compiles (about 12 s) unless `cache=True` finds the machine code in `__pycache__` from an earlier run
(then under 2 s, most of it importing numba); the cache is written when the directory is writable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from detectors.base import cross_fitting_splits, fold_rows

_EULER_GAMMA = 0.5772156649015329
#: Features whose range in a node is below this are constant there (scikit-learn's FEATURE_THRESHOLD).
_CONSTANT = 1e-7


@dataclass(frozen=True)
class Forest:
    """Trees as flat node arrays: node k sends a window with x[feature[k]] <= threshold[k] to `left[k]`, else
    to `left[k] + 1`; a leaf holds `value[k]` and is its own child (threshold +inf). Tree t starts at node
    `roots[t]`, and `depths[t]` steps from there reach a leaf from anywhere. 20 bytes a node.

    The model holds no training windows.
    """

    feature: np.ndarray  # int32
    threshold: np.ndarray  # float64
    left: np.ndarray  # int32; the right child is the next node
    value: np.ndarray  # float32: relative path length (isolation) or P(class 1) (classification) at leaves
    roots: np.ndarray  # int32, one per tree
    depths: np.ndarray  # int32, one per tree

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])


@njit(cache=True)
def _average_path_length(n: float) -> float:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points."""
    if n <= 1.0:
        return 0.0
    if n <= 2.0:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + _EULER_GAMMA) - 2.0 * (n - 1.0) / n


@njit(cache=True)
def _random_feature_range(XT, samples, start, end, order, constant):
    """First feature in a random order that is not constant on samples[start:end]; (-1, 0, 0) if none.

    `XT` is features x windows: a feature's values are contiguous, so the gathers stay in cache."""
    d = order.shape[0]
    for i in range(d):  # features in a random order (Fisher-Yates, drawn as needed)
        j = i + np.random.randint(d - i)
        order[i], order[j] = order[j], order[i]
        f = order[i]
        low = np.inf
        high = -np.inf
        for k in range(start, end):
            v = XT[f, samples[k]]
            low = min(low, v)
            high = max(high, v)
        if high > low + constant:
            return f, low, high
    return -1, 0.0, 0.0


@njit(cache=True)
def _partition(XT, samples, start, end, f, threshold):
    """Reorder samples[start:end] so those with XT[f, .] <= threshold come first; returns the split point."""
    i = start
    j = end - 1
    while i <= j:
        if XT[f, samples[i]] <= threshold:
            i += 1
        else:
            samples[i], samples[j] = samples[j], samples[i]
            j -= 1
    return i


@njit(cache=True)
def _grow_isolation_forest(XT, allowed, n_allowed, max_samples, n_trees, seed):
    """Isolation trees; tree t subsamples (without replacement) from the rows allowed[t, :n_allowed[t]]."""
    d = XT.shape[0]
    capacity = 2 * max(max_samples, 2)
    feature = np.full((n_trees, capacity), -1, np.int32)
    threshold = np.zeros((n_trees, capacity))
    left = np.full((n_trees, capacity), -1, np.int32)
    value = np.zeros((n_trees, capacity))
    counts = np.zeros(n_trees, np.int32)
    order = np.arange(d)
    stack = np.zeros((capacity, 4), np.int64)  # node, start, end, depth
    for t in range(n_trees):
        np.random.seed(seed + t)  # a tree depends only on its seed and the rows it may draw
        order[:] = np.arange(d)
        pool = allowed[t, :n_allowed[t]].copy()
        m = min(max_samples, n_allowed[t])
        for i in range(m):  # partial Fisher-Yates: m windows without replacement
            j = i + np.random.randint(n_allowed[t] - i)
            pool[i], pool[j] = pool[j], pool[i]
        samples = pool[:m].copy()
        depth_limit = math.ceil(math.log2(max(m, 2)))
        norm = _average_path_length(m)
        if norm <= 0.0:
            norm = 1.0
        count = 1
        top = 0
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, 0, m, 0
        top = 1
        while top > 0:
            top -= 1
            node, start, end, depth = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            f = -1
            if end - start > 1 and depth < depth_limit:
                f, low, high = _random_feature_range(XT, samples, start, end, order, _CONSTANT)
            if f < 0:
                value[t, node] = (depth + _average_path_length(end - start)) / norm
                continue
            cut = low + np.random.random() * (high - low)
            if cut >= high:
                cut = low
            middle = _partition(XT, samples, start, end, f, cut)
            feature[t, node] = f
            threshold[t, node] = cut
            left[t, node] = count  # and the right child is count + 1
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = count + 1, middle, end, depth + 1
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2], stack[top + 1, 3] = count, start, middle, depth + 1
            top += 2
            count += 2
        counts[t] = count
    return feature, threshold, left, value, counts


@njit(cache=True)
def _grow_extra_trees(XT, y, pool, pool_size, n_trees, max_features, seed):
    """Bootstrapped extremely randomised trees for labels 0/1, classes balanced within each bootstrap;
    tree t draws its bootstrap (pool_size[t] draws) from the rows pool[t, :pool_size[t]]."""
    d, n = XT.shape
    capacity = 2 * n
    feature = np.empty((n_trees, capacity), np.int32)  # only the first counts[t] nodes are written
    threshold = np.empty((n_trees, capacity))
    left = np.empty((n_trees, capacity), np.int32)
    value = np.empty((n_trees, capacity))
    counts = np.zeros(n_trees, np.int32)
    order = np.arange(d)
    stack = np.empty((capacity, 3), np.int64)  # node, start, end
    drawn = np.zeros(n, np.int64)
    samples = np.empty(n, np.int64)
    weights = np.empty(n)  # weight of the window at each position of `samples`
    positives = np.empty(n)  # its weight when its label is 1, else 0
    values = np.empty(n)
    for t in range(n_trees):
        np.random.seed(seed + t)  # a tree depends only on its seed and the rows it may draw
        order[:] = np.arange(d)
        drawn[:] = 0
        size = pool_size[t]
        for _ in range(size):
            drawn[pool[t, np.random.randint(size)]] += 1
        per_class = np.zeros(2)
        for i in range(n):
            per_class[y[i]] += drawn[i]
        m = 0
        for i in range(n):
            if drawn[i] > 0:
                samples[m] = i
                weights[m] = drawn[i] * size / (2.0 * per_class[y[i]])  # "balanced_subsample"
                positives[m] = weights[m] if y[i] == 1 else 0.0
                m += 1
        count = 1
        stack[0, 0], stack[0, 1], stack[0, 2] = 0, 0, m
        top = 1
        while top > 0:
            top -= 1
            node, start, end = stack[top, 0], stack[top, 1], stack[top, 2]
            total = 0.0
            total1 = 0.0
            for k in range(start, end):
                total += weights[k]
                total1 += positives[k]
            best_f = -1
            best_cut = 0.0
            best_score = -1.0
            if end - start >= 2 and 0.0 < total1 < total:
                tried = 0
                for i in range(d):  # features in a random order (Fisher-Yates, drawn as needed)
                    if tried >= max_features:
                        break
                    j = i + np.random.randint(d - i)
                    order[i], order[j] = order[j], order[i]
                    f = order[i]
                    low = np.inf
                    high = -np.inf
                    for k in range(start, end):  # branch-free loops: the comparisons are coin flips
                        v = XT[f, samples[k]]
                        values[k] = v
                        low = min(low, v)
                        high = max(high, v)
                    if high <= low + _CONSTANT:
                        continue
                    tried += 1
                    cut = low + np.random.random() * (high - low)
                    if cut >= high:
                        cut = low
                    w_left = 0.0
                    w1_left = 0.0
                    for k in range(start, end):
                        goes_left = values[k] <= cut
                        w_left += weights[k] * goes_left
                        w1_left += positives[k] * goes_left
                    w0_left = w_left - w1_left
                    w_right = total - w_left
                    w1_right = total1 - w1_left
                    w0_right = w_right - w1_right
                    # Gini: maximising the sum over children of (sum_c w_c^2) / w minimises weighted impurity
                    score = ((w0_left * w0_left + w1_left * w1_left) / w_left
                             + (w0_right * w0_right + w1_right * w1_right) / w_right)
                    if score > best_score:
                        best_score, best_f, best_cut = score, f, cut
            if best_f < 0:
                feature[t, node] = -1
                left[t, node] = -1
                threshold[t, node] = 0.0
                value[t, node] = total1 / total
                continue
            i = start
            j = end - 1
            while i <= j:  # partition: windows at or below the cut first
                if XT[best_f, samples[i]] <= best_cut:
                    i += 1
                else:
                    samples[i], samples[j] = samples[j], samples[i]
                    weights[i], weights[j] = weights[j], weights[i]
                    positives[i], positives[j] = positives[j], positives[i]
                    j -= 1
            feature[t, node] = best_f
            threshold[t, node] = best_cut
            left[t, node] = count  # and the right child is count + 1
            value[t, node] = total1 / total
            stack[top, 0], stack[top, 1], stack[top, 2] = count + 1, i, end
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = count, start, i
            top += 2
            count += 2
        counts[t] = count
    return feature, threshold, left, value, counts


@njit(cache=True)
def _compact(feature, threshold, left, value, counts):
    """Used nodes of every tree into flat arrays, and each tree's depth. A leaf becomes its own child
    (feature 0, threshold +inf, left = itself), so every walk can take exactly its tree's depth in steps."""
    total = 0
    for t in range(counts.shape[0]):
        total += counts[t]
    out_feature = np.empty(total, np.int32)
    out_threshold = np.empty(total)
    out_left = np.empty(total, np.int32)
    out_value = np.empty(total, np.float32)
    roots = np.empty(counts.shape[0], np.int32)
    depths = np.zeros(counts.shape[0], np.int32)
    node_depth = np.zeros(feature.shape[1], np.int32)
    at = 0
    for t in range(counts.shape[0]):
        roots[t] = at
        node_depth[0] = 0
        for k in range(counts[t]):  # children are numbered after their parent
            out_value[at + k] = value[t, k]
            if left[t, k] >= 0:
                out_feature[at + k] = feature[t, k]
                out_threshold[at + k] = threshold[t, k]
                out_left[at + k] = left[t, k] + at
                node_depth[left[t, k]] = node_depth[k] + 1
                node_depth[left[t, k] + 1] = node_depth[k] + 1
            else:
                out_feature[at + k] = 0
                out_threshold[at + k] = np.inf
                out_left[at + k] = at + k
                depths[t] = max(depths[t], node_depth[k])
        at += counts[t]
    return out_feature, out_threshold, out_left, out_value, roots, depths


def _flatten(grown: tuple[np.ndarray, ...]) -> Forest:
    """Per-tree node buffers -> one flat array per attribute, child indices shifted to global positions."""
    *nodes, counts = grown
    feature, threshold, left, value, roots, depths = _compact(*nodes, counts)
    return Forest(feature=feature, threshold=threshold, left=left, value=value, roots=roots, depths=depths)


@njit(cache=True)
def _leaf_values(X, feature, threshold, left, value, roots, depths, average):
    """Value of the leaf each window reaches in each tree (windows x trees), or its mean over the trees
    (windows x 1) when `average`. Tree by tree, so one tree's nodes stay in cache for every window; a
    fixed number of branch-free steps per tree, so walks of consecutive windows overlap in the CPU."""
    n = X.shape[0]
    n_trees = roots.shape[0]
    out = np.zeros((n, 1)) if average else np.empty((n, n_trees))
    for t in range(n_trees):
        for i in range(0, n - 3, 4):  # four independent walks at a time keep the CPU's pipelines busy
            a = b = c = d = roots[t]
            for _ in range(depths[t]):
                a = left[a] + (X[i, feature[a]] > threshold[a])
                b = left[b] + (X[i + 1, feature[b]] > threshold[b])
                c = left[c] + (X[i + 2, feature[c]] > threshold[c])
                d = left[d] + (X[i + 3, feature[d]] > threshold[d])
            if average:
                out[i, 0] += value[a]
                out[i + 1, 0] += value[b]
                out[i + 2, 0] += value[c]
                out[i + 3, 0] += value[d]
            else:
                out[i, t] = value[a]
                out[i + 1, t] = value[b]
                out[i + 2, t] = value[c]
                out[i + 3, t] = value[d]
        for i in range(n - n % 4, n):
            node = roots[t]
            for _ in range(depths[t]):
                node = left[node] + (X[i, feature[node]] > threshold[node])
            if average:
                out[i, 0] += value[node]
            else:
                out[i, t] = value[node]
    if average:
        out /= n_trees
    return out


def leaf_values(forest: Forest, X: np.ndarray) -> np.ndarray:
    """Leaf value of every window in every tree (windows x trees)."""
    return _leaf_values(np.ascontiguousarray(X, dtype=float), forest.feature, forest.threshold, forest.left,
                        forest.value, forest.roots, forest.depths, False)


def mean_leaf_value(forest: Forest, X: np.ndarray) -> np.ndarray:
    """Per window, the mean leaf value over all trees (what a forest scores), without the windows x trees
    array."""
    return _leaf_values(np.ascontiguousarray(X, dtype=float), forest.feature, forest.threshold, forest.left,
                        forest.value, forest.roots, forest.depths, True)[:, 0]


def _pools(fold_of: np.ndarray, n_trees: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows each tree may draw from: with k >= 2 folds, tree t belongs to fold t % k and never sees that
    fold's windows (rows of fold -1 are seen by every tree); with fewer, every tree sees every row."""
    n = fold_of.shape[0]
    folded = fold_of.max(initial=-1) >= 1
    outside = [kept for kept, _ in cross_fitting_splits(n, fold_of)] if folded else [np.arange(n)]
    pool = np.zeros((n_trees, n), np.int64)
    size = np.zeros(n_trees, np.int64)
    for t in range(n_trees):
        rows = outside[t % len(outside)]
        pool[t, :rows.size] = rows
        size[t] = rows.size
    return pool, size


def block_out_of_bag_mean(values: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """Per window (a row of `values`, windows x trees), the mean of its leaf values over its fold's trees
    (tree t belongs to fold t % k of the k folds in `fold_of`), which never saw that fold; NaN for
    windows without a fold (-1), a fold without trees, or fewer than two folds."""
    out = np.full(values.shape[0], np.nan)
    held = fold_rows(fold_of)
    if len(held) < 2:
        return out
    for k, rows in enumerate(held):
        trees = np.arange(k, values.shape[1], len(held))
        if trees.size and rows.size:
            out[rows] = values[np.ix_(rows, trees)].mean(axis=1)
    return out


def grow_isolation_forest(X: np.ndarray, *, n_trees: int, max_samples: int, fold_of: np.ndarray,
                          seed: int) -> Forest:
    """Isolation trees on `max_samples` windows each, drawn without replacement from the windows outside
    the tree's fold: with k folds (`fold_of`, from `detectors.base.calibration_folds`) tree t belongs to
    fold t % k.

    With k >= 2 the trees of a window's fold (1/k of the forest) never saw it nor its fold (a block of
    enrolment, or whole sessions): their mean path length (`block_out_of_bag_mean`) is a score out of
    sample and out of the user's time. Without folds (all -1) every tree may see every window.
    Leaf value = (depth + c(windows in the leaf)) / c(windows of the tree): the path length of Liu et al.
    (2008) in units of its expected value, so the anomaly score is 2 ** -mean(leaf values).
    """
    columns = np.ascontiguousarray(np.asarray(X, dtype=float).T)  # features x windows
    pool, size = _pools(np.asarray(fold_of, np.int64), n_trees)
    return _flatten(_grow_isolation_forest(columns, pool, size, int(max_samples), int(n_trees), int(seed)))


def grow_extra_trees(X: np.ndarray, y: np.ndarray, *, n_trees: int, max_features: int, seed: int,
                     fold_of: np.ndarray | None = None) -> Forest:
    """Bootstrapped extremely randomised trees (labels 0/1), grown until leaves are pure; each tree weighs
    the two classes equally within its bootstrap sample (scikit-learn's "balanced_subsample").

    With k >= 2 folds in `fold_of`, tree t belongs to fold t % k and bootstraps only from rows outside
    that fold (-1: any tree), so `block_out_of_bag_mean` gives scores of the folded rows from trees
    that never saw their fold. Leaf value = weighted share of class 1 in the leaf.
    """
    columns = np.ascontiguousarray(np.asarray(X, dtype=float).T)  # a feature's values contiguous: fewer cache misses
    labels = np.asarray(y, dtype=np.int64)
    fold_of = np.full(labels.shape[0], -1, np.int64) if fold_of is None else np.asarray(fold_of, np.int64)
    pool, size = _pools(fold_of, n_trees)
    return _flatten(_grow_extra_trees(columns, labels, pool, size, int(n_trees), int(max_features), int(seed)))

