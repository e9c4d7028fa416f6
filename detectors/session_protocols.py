"""Session-level evaluation protocols for event datasets (Balabit mouse, Aalto keystrokes).

The CMU protocol (fixed-text vectors) lives in `detectors.evaluation.evaluate_cmu`. Here a test
*session* gets one score: the mean of its windows' risks against the claimed user's model (risk =
raw score normalised against that user's genuine training scores, so users are comparable and the
global AUC pools them). Mouse windows are scored as groups of consecutive actions (shares of move /
click / drag plus their kinematics) and aggregated over the session: the action-type shares carry
the per-type information, and the session mean averages out the noise of single actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from detectors.base import fit_detector, make_detector, uses_background
from detectors.evaluation import det_points, eer, far_frr_at, roc_auc
from detectors.thresholds import calibrate_threshold, fit_normaliser, normalise

SEED = 0
BACKGROUND_LIMIT = 2_000


@dataclass(frozen=True)
class SessionSplit:
    """Per user: training sessions, genuine test sessions, and other users' sessions claimed as theirs."""

    train: dict[str, list[str]]
    genuine: dict[str, list[str]]
    impostor: dict[str, list[str]]


def chunk_sessions(windows: pl.DataFrame, windows_per_chunk: int) -> pl.DataFrame:
    """Cut long sessions into pseudo-sessions of `windows_per_chunk` consecutive windows (ids
    `<session>#<k>`), so test units are as short as a real login or a challenge's test session."""
    ordered = windows.sort("session_id", "start_ms")
    chunk = pl.int_range(pl.len()).over("session_id") // windows_per_chunk
    return ordered.with_columns(session_id=pl.format("{}#{}", pl.col("session_id"), chunk))


def split_by_session_order(windows: pl.DataFrame, test_sessions: int, impostor_sessions: int) -> SessionSplit:
    """Each user's last `test_sessions` sessions (by id order) are their genuine tests; the first
    `impostor_sessions` test sessions of every other user are impostor attempts on them."""
    per_user = (windows.select("user_id", "session_id").unique().sort("user_id", "session_id")
                .group_by("user_id", maintain_order=True).agg(pl.col("session_id")))
    sessions = {u: list(s) for u, s in per_user.iter_rows()}
    train = {u: s[:-test_sessions] for u, s in sessions.items() if len(s) > test_sessions}
    genuine = {u: sessions[u][-test_sessions:] for u in train}
    impostor = {u: [s for other in train if other != u for s in genuine[other][:impostor_sessions]] for u in train}
    return SessionSplit(train, genuine, impostor)


def evaluate_sessions(windows: pl.DataFrame, feature_names: Sequence[str], detectors: Sequence[str],
                      split: SessionSplit, *, target_frr: float = 0.05,
                      detector_params: dict[str, dict[str, Any]] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Per detector: per-user EER (mean, sd) over session scores, global session ROC AUC (pooled
    risks), and FAR/FRR at each user's threshold calibrated on their training windows."""
    X_all = windows.select(feature_names).to_numpy().astype(float)
    session_of = windows["session_id"].to_numpy()
    index = {s: np.flatnonzero(session_of == s) for s in np.unique(session_of)}
    users = sorted(split.train)
    total, done = len(detectors) * len(users), 0
    results: dict[str, Any] = {}
    for name in detectors:
        eers, fars, frrs = [], [], []
        pooled_genuine, pooled_impostor = [], []
        for user in users:
            train_rows = np.concatenate([index[s] for s in split.train[user]])
            X = X_all[train_rows]
            params = (detector_params or {}).get(name, {})
            detector = make_detector(name, **params)
            background = None
            if uses_background(detector):
                others = np.concatenate([index[s] for u, ss in split.train.items() if u != user for s in ss])
                if others.size > BACKGROUND_LIMIT:
                    others = np.random.default_rng(SEED).choice(others, BACKGROUND_LIMIT, replace=False)
                background = X_all[others]
            fit_detector(detector, X, background)
            enrolment = detector.decision_function(X)
            normaliser = fit_normaliser(enrolment)
            threshold = calibrate_threshold(normalise(enrolment, normaliser), target_frr)

            genuine = _session_risks(detector, normaliser, X_all, index, split.genuine[user])
            impostor = _session_risks(detector, normaliser, X_all, index, split.impostor[user])
            if genuine.size and impostor.size:
                eers.append(eer(genuine, impostor)[0])
                far, frr = far_frr_at(threshold, genuine, impostor)
                fars.append(far)
                frrs.append(frr)
                pooled_genuine.append(genuine)
                pooled_impostor.append(impostor)
            done += 1
            if progress:
                progress(done, total)
        g, i = np.concatenate(pooled_genuine), np.concatenate(pooled_impostor)
        results[name] = {"eer_mean": float(np.mean(eers)), "eer_sd": float(np.std(eers)), "auc": roc_auc(g, i),
                         "far": float(np.mean(fars)), "frr": float(np.mean(frrs)),
                         "genuine_sessions": int(g.size), "impostor_sessions": int(i.size),
                         "det": det_points(g, i)}
    return results


def _session_risks(detector: Any, normaliser: Any, X_all: np.ndarray, index: dict[str, np.ndarray],
                   sessions: list[str]) -> np.ndarray:
    """Mean window risk of each session, scoring all their windows in one call."""
    if not sessions:
        return np.empty(0)
    rows = [index[s] for s in sessions]
    owner = np.repeat(np.arange(len(rows)), [r.size for r in rows])
    risks = normalise(detector.decision_function(X_all[np.concatenate(rows)]), normaliser)
    sizes = np.maximum(np.bincount(owner, minlength=len(rows)), 1)
    return np.bincount(owner, weights=risks, minlength=len(rows)) / sizes
