"""Detector benchmark: per-user fit time, scoring rate and a full retrain, beside the cheapest possible model.

Data: synthetic fixed-text windows (the 38 features of `feature_names("fixed_text")`: hold, down-down and
up-down times of the 12 keystrokes of the phrase, then 4 context features), each genuine user around their
own means, seeded numpy; no simulator, no store. For every registered detector (or the ones asked for):

- fit time: `fit_user_model` for one user alone (so the default cross-fitted calibration is included) on
  a user's first 25 and first 200 windows, median over `fit_users` users. Detectors that need other users'
  windows get a background of up to `background_limit` of them, drawn as `app.engine.training.train` draws it.
- scoring rate: windows/s of `UserModel.score` (schema check + detector) on `score_windows` windows of all
  users, with the model fitted on user 0's 200 windows; the faster of two runs.
- full retrain: what `app.engine.training.train` does, `fit_user_models` (all users of one detector together, in
  `n_jobs` processes), for `users` users on `windows_per_user` windows, per detector and in total; in
  chunks (the first of `fit_users` users, then `retrain_chunk`). A detector whose retrain has taken
  `retrain_budget_s` seconds stops after that chunk and its seconds for all users are extrapolated
  linearly from the users measured (users are independent and of the same size); `extrapolated_from_users`
  names those detectors and how many users each was measured on.

PyOD beside ours, same run, same users and windows: each registered reference (`pyod_iforest`,
`pyod_autoencoder`: PyOD's own detectors as they come) is measured the same way as the detector it is a
reference for, when that detector is measured, plus the bare `fit` of one model (no calibration) at each
size. Its retrain runs in chunks of `reference_chunk` users (it batches nothing) under the same budget.
References are kept out of the retrain total: the app does not offer them.

Baseline, same run, same users and windows: `StandardScaler().fit(X)` plus per-feature mean and median
absolute deviation with numpy for every user, the fastest of three runs. Only fitting and scoring calls
are timed, never the data generation or the background draw. Every detector is warmed up first (imports
of PyOD / torch and first-call costs do not count).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.base import DETECTORS, fit_detector, make_detector, reference_for, uses_background
from detectors.features import feature_names
from detectors.persistence import fit_user_model, fit_user_models
from store.windows import schema_id as stored_schema_id

SEED = 7
BACKGROUND_SEED = 0  # as app.engine.training.SEED: the draw of other users' windows
BACKGROUND_LIMIT = 2_000  # as app.engine.training.BACKGROUND_LIMIT
KEYS = 12
TARGET_RETRAIN_S = 60.0
#: Users fitted per timed call of the retrain after the first chunk (the autoencoder batches a chunk).
RETRAIN_CHUNK = 50
#: The same for PyOD's references, which fit user by user: smaller chunks stop closer to the budget.
REFERENCE_CHUNK = 10


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def simulated_windows(users: int, per_user: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, user index of each row, feature names): `per_user` fixed-text windows of each of `users` users.

    Each user has their own mean hold (60-140 ms) and down-down (120-350 ms) time per keystroke, varied
    log-normally from window to window; up-down = down-down - hold (negative when keys overlap). Context:
    Tab share (user habit), time per field, time to submit (the typing time plus a pause) and focus switches.
    """

    names = feature_names("fixed_text")
    rng = np.random.default_rng(seed)
    population_hold = rng.uniform(60, 140, KEYS)
    population_dd = rng.uniform(120, 350, KEYS - 1)
    blocks = []
    for _ in range(users):
        hold_mean = population_hold * np.exp(rng.normal(0, 0.2, KEYS))
        dd_mean = population_dd * np.exp(rng.normal(0, 0.25, KEYS - 1))
        tab_p, switch_rate, pause = rng.uniform(0, 1), rng.uniform(0.05, 1.0), rng.uniform(200, 1500)
        hold = hold_mean * np.exp(rng.normal(0, 0.15, (per_user, KEYS)))
        dd = dd_mean * np.exp(rng.normal(0, 0.25, (per_user, KEYS - 1)))
        ud = dd - hold[:, :-1]
        typing = dd.sum(axis=1) + hold[:, -1]
        submit = typing + pause * np.exp(rng.normal(0, 0.3, per_user))
        columns = {"tab_navigation_share": rng.binomial(2, tab_p, per_user) / 2,
                   "time_per_field_mean": submit / 2, "time_to_submit": submit,
                   "focus_switches": rng.poisson(switch_rate, per_user).astype(float)}
        for i in range(KEYS):
            columns[f"H.p{i:02d}"] = hold[:, i]
            if i + 1 < KEYS:
                columns[f"DD.p{i:02d}.p{i + 1:02d}"] = dd[:, i]
                columns[f"UD.p{i:02d}.p{i + 1:02d}"] = ud[:, i]
        blocks.append(np.column_stack([columns[name] for name in names]))
    return np.vstack(blocks), np.repeat(np.arange(users), per_user), names


class _Users:
    """A user's windows and (drawn once, untimed) background of other users' windows."""

    def __init__(self, X: np.ndarray, user: np.ndarray, background_limit: int) -> None:
        self.X, self.user, self.limit = X, user, background_limit
        self._backgrounds: dict[int, np.ndarray] = {}

    def windows(self, u: int, n: int | None = None) -> np.ndarray:
        mine = self.X[self.user == u]
        return mine if n is None else mine[:n]

    def background(self, u: int) -> np.ndarray:
        if u not in self._backgrounds:
            others = self.X[self.user != u]
            if others.shape[0] > self.limit:
                pick = np.random.default_rng(BACKGROUND_SEED).choice(others.shape[0], self.limit, replace=False)
                others = others[pick]
            self._backgrounds[u] = others
        return self._backgrounds[u]


def _timed_fit(name: str, X: np.ndarray, background: np.ndarray | None, names: list[str],
               schema_id: str) -> tuple[float, Any]:

    started = time.perf_counter()
    model = fit_user_model(name, X, schema_id=schema_id, feature_names=names, X_background=background)
    return time.perf_counter() - started, model


def _baseline_seconds(data: _Users, users: int) -> float:
    """Fastest of three runs: StandardScaler fit + per-feature mean and MAD for every user."""
    from sklearn.preprocessing import StandardScaler

    blocks = [data.windows(u) for u in range(users)]
    StandardScaler().fit(blocks[0])  # warm up
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        for X in blocks:
            StandardScaler().fit(X)
            X.mean(axis=0)
            median = np.median(X, axis=0)
            np.median(np.abs(X - median), axis=0)
        best = min(best, time.perf_counter() - started)
    return best


def _timed_retrain(name: str, Xs: list[np.ndarray], backgrounds: list[np.ndarray | None], names: list[str],
                   schema_id: str, n_jobs: int) -> float:

    started = time.perf_counter()
    fit_user_models(name, Xs, schema_id=schema_id, feature_names=names, X_backgrounds=backgrounds, n_jobs=n_jobs)
    return time.perf_counter() - started


def _bare_fit_seconds(name: str, X: np.ndarray, background: np.ndarray | None) -> float:
    started = time.perf_counter()
    fit_detector(make_detector(name), X, background)
    return time.perf_counter() - started


def _measure(name: str, data: _Users, feature_names: list[str], schema_id: str, *, users: int, sizes: Sequence[int],
             fit_users: int, X_score: np.ndarray, retrain_budget_s: float, retrain_chunk: int, n_jobs: int,
             bare_fit: bool) -> dict[str, Any]:
    """Fit seconds per size (median over `fit_users` users), retrain seconds for `users` users (extrapolated
    past the budget) and scoring windows/s of one detector."""

    needs_background = uses_background(make_detector(name))
    windows_per_user = data.windows(0).shape[0]

    def background(u: int) -> np.ndarray | None:
        return data.background(u) if needs_background else None

    _log(f"[{name}] warm-up ...")
    warm = [data.windows(u, 10) for u in range(2)]
    warm_background = [None if not needs_background else data.background(u)[:50] for u in range(2)]
    _timed_fit(name, warm[0], warm_background[0], feature_names, schema_id)
    _timed_retrain(name, warm, warm_background, feature_names, schema_id, n_jobs)  # starts worker processes

    figures: dict[str, Any] = {"fit_s": {}}
    if bare_fit:
        figures["bare_fit_s"] = {}
    first_model = None
    for size in sizes:
        timed = [_timed_fit(name, data.windows(u, size), background(u), feature_names, schema_id)
                 for u in range(fit_users)]
        figures["fit_s"][str(size)] = round(statistics.median(t for t, _ in timed), 4)
        if size == windows_per_user:
            first_model = timed[0][1]
        _log(f"[{name}] fit on {size} windows: {figures['fit_s'][str(size)]:.3f} s (median of {fit_users} users)")
        if bare_fit:
            bare = [_bare_fit_seconds(name, data.windows(u, size), background(u)) for u in range(fit_users)]
            figures["bare_fit_s"][str(size)] = round(statistics.median(bare), 4)
    if first_model is None:
        first_model = _timed_fit(name, data.windows(0), background(0), feature_names, schema_id)[1]

    chunks = [range(0, fit_users)] + [range(start, min(start + retrain_chunk, users))
                                      for start in range(fit_users, users, max(1, retrain_chunk))]
    seconds, measured = 0.0, 0
    for chunk in chunks:
        if not chunk:
            continue
        backgrounds = [background(u) for u in chunk]  # drawn before the clock starts
        seconds += _timed_retrain(name, [data.windows(u) for u in chunk], backgrounds, feature_names, schema_id,
                                  n_jobs)
        measured += len(chunk)
        if seconds >= retrain_budget_s and measured < users:
            break
    figures["retrain_s"] = round(seconds * users / measured, 2)
    figures["measured_users"] = measured
    if measured < users:
        _log(f"[{name}] retrain: {seconds:.1f} s for {measured} users -> {figures['retrain_s']:.1f} s for {users} "
             "(extrapolated)")
    else:
        _log(f"[{name}] retrain: {figures['retrain_s']:.1f} s for {users} users")

    first_model.score(X_score[:100], schema_id)  # warm up
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        first_model.score(X_score, schema_id)
        best = min(best, time.perf_counter() - started)
    figures["score_per_s"] = round(X_score.shape[0] / best)
    _log(f"[{name}] scoring: {figures['score_per_s']:,} windows/s")
    return figures


def bench_detectors(*, users: int = 100, windows_per_user: int = 200, sizes: Sequence[int] = (25, 200),
                    fit_users: int = 3, score_windows: int = 10_000, background_limit: int = BACKGROUND_LIMIT,
                    detectors: Sequence[str] | None = None, retrain_budget_s: float = 120.0,
                    retrain_chunk: int = RETRAIN_CHUNK, reference_chunk: int = REFERENCE_CHUNK,
                    references: bool = True, n_jobs: int = 1, seed: int = SEED) -> dict[str, Any]:
    """Fit seconds per size, scoring windows/s and retrain seconds of each detector, the baseline, and (with
    `references`) PyOD's own detectors beside the ones that reimplement them.

    `detectors` defaults to every registered detector the app offers (not the references)."""

    names_to_run = (list(detectors) if detectors is not None
                    else [name for name in DETECTORS if reference_for(name) is None])
    pyod_names = [name for name in DETECTORS if references and reference_for(name) in names_to_run]
    fit_users = max(1, min(fit_users, users))
    if max(sizes) > windows_per_user:
        raise ValueError(f"fit sizes {tuple(sizes)} exceed windows_per_user={windows_per_user}")
    _log(f"generating {users} users x {windows_per_user} fixed-text windows (seed {seed}) ...")
    X, user, feature_names = simulated_windows(users, windows_per_user, seed)
    schema_id = stored_schema_id(feature_names)
    data = _Users(X, user, background_limit)
    score_rows = np.random.default_rng(seed).choice(X.shape[0], score_windows, replace=score_windows > X.shape[0])
    X_score = X[score_rows]
    common = {"users": users, "sizes": sizes, "fit_users": fit_users, "X_score": X_score,
              "retrain_budget_s": retrain_budget_s, "n_jobs": n_jobs}

    measured = {name: _measure(name, data, feature_names, schema_id, retrain_chunk=retrain_chunk,
                               bare_fit=name in {reference_for(p) for p in pyod_names}, **common)
                for name in names_to_run}
    pyod = {name: _measure(name, data, feature_names, schema_id, retrain_chunk=reference_chunk, bare_fit=True,
                           **common)
            for name in pyod_names}
    fit_s = {name: m["fit_s"] for name, m in measured.items()}
    score_per_s = {name: m["score_per_s"] for name, m in measured.items()}
    retrain_s = {name: m["retrain_s"] for name, m in measured.items()}
    extrapolated = {name: m["measured_users"] for name, m in measured.items() if m["measured_users"] < users}
    beside = {}
    for name, figures in pyod.items():
        ours = measured[reference_for(name)]
        beside[reference_for(name)] = {
            "pyod": name,
            **{key: {"ours": ours[key], "pyod": figures[key]} for key in ("fit_s", "bare_fit_s", "score_per_s")},
            "retrain_s": {"ours": ours["retrain_s"], "pyod": figures["retrain_s"]},
            "retrain_ratio": round(figures["retrain_s"] / ours["retrain_s"], 1),
            "pyod_retrain_measured_users": figures["measured_users"],
        }

    _log(f"baseline: StandardScaler + mean/MAD for {users} users ...")
    baseline = _baseline_seconds(data, users)
    total = sum(retrain_s.values())
    return {
        "fit_s": fit_s,
        "score_per_s": score_per_s,
        "retrain_100_users_s": round(total, 2),
        "retrain_by_detector_s": retrain_s,
        "baseline_retrain_100_users_s": round(baseline, 4),
        "ratio": round(total / baseline, 1),
        "extrapolated_from_users": extrapolated,
        "pyod_beside_ours": beside,
        "retrain_target_s": TARGET_RETRAIN_S,
        "within_target": total < TARGET_RETRAIN_S,
        "users": users,
        "windows_per_user": windows_per_user,
        "fit_median_of_users": fit_users,
        "score_windows": score_windows,
        "background_rows": min(background_limit, (users - 1) * windows_per_user),
        "features": len(feature_names),
        "n_jobs": n_jobs,
        "calibration": ("cross_fitted (fit_user_model default): 5 contiguous blocks, each scored by a model that "
                        "never saw it; block refits in NumPy, block out-of-bag trees, fold networks batched"),
        "source": f"synthetic fixed_text windows, seed {seed}",
        "baseline": "sklearn StandardScaler().fit + numpy per-feature mean and MAD, per user, fastest of 3",
    }
