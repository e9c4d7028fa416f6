"""Session evidence: what a session has shown so far, window by window, as one number with a meaning.

Every window is first put on one scale for every user and kind: its detectors' calibrated surprise
(how rarely a genuine window of this user scores this high, from sessions the model did not see,
`detectors.thresholds.ScoreCalibration`) becomes evidence z in standard normal units (0 for a typical
window, 1.64 for one rarer than 95% of the user's genuine ones). A session then accumulates the
windows' log-likelihood ratios of "an attacker, whose windows sit `shift` units higher" against "the
user", resetting at zero (Page's CUSUM):

    S_t = max(0, S_(t-1) + weight_kind * (shift * z_t - shift^2 / 2))

A genuine session drifts back to 0 (each typical window subtracts shift^2 / 2), one mildly unusual
window moves it a little, consistent deviation escalates, and a takeover in the middle of a session
starts from 0, not from the evidence of the user's genuine part, so it is seen within a few windows.
S is in nats: e^S is the likelihood ratio the session has built up, and the risk 1 - e^(-S) is the
share of that ratio that speaks against the user (0 for nothing unusual, 0.95 for a ratio of 20).

Machine-like input (sub-human holds, no variance, perfectly straight pointer paths, `machine_like`) and
replayed input (a window's timings equal to an earlier window's, `replayed`) are recognised by fixed
rules, which no per-user model needs to learn.

Pure functions of arrays: the live pipeline and the Threshold lab compute evidence with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy.special import ndtr, ndtri

from detectors.thresholds import MIN_SURPRISE, evidence

#: A window kind's default weight in a session's evidence. Time slices re-count the keystrokes and
#: pointer actions that free-text and mouse windows already judge, so they count half.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"fixed_text": 1.0, "free_text": 1.0, "mouse": 1.0, "time": 0.5})


@dataclass(frozen=True)
class EvidenceSettings:
    """`shift`: how far above a genuine window (standard normal units) the accumulation expects an
    attacker's windows; larger reacts harder to strong windows and forgives mild ones faster.
    `weights`: per window kind (missing kinds count 1). `sensitivity` in [-1, 1] scales how much each
    window wears the evidence down (shift^2 / 2 at 0): +1 never (every unusual window stays counted),
    -1 twice as much."""

    shift: float = 1.0
    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_KIND_WEIGHTS)
    sensitivity: float = 0.0

    def __post_init__(self) -> None:
        if not -1.0 <= self.sensitivity <= 1.0:
            raise ValueError(f"sensitivity must be in [-1, 1]; got {self.sensitivity}")

    def weight(self, kind: str) -> float:
        return float(self.weights.get(kind, 1.0))


def window_evidence(surprises: Sequence[np.ndarray]) -> np.ndarray:
    """Evidence z of each window from its detectors' surprises (one array per detector): their mean,
    each clipped (`detectors.thresholds.evidence`), so two detectors that agree count as one."""
    return np.mean([evidence(s) for s in surprises], axis=0)


def window_surprise(surprises: Sequence[np.ndarray]) -> np.ndarray:
    """How rare each window is on its own, all its detectors together: the surprise of the mean of their
    normal quantiles, unclipped (one detector: its own surprise). The mean assumes the detectors agree,
    so two that disagree flag fewer genuine windows together than either alone."""
    quantiles = [-ndtri(np.clip(np.asarray(s, dtype=float), MIN_SURPRISE, 1.0)) for s in surprises]
    return surprise_of(np.mean(quantiles, axis=0))


def surprise_of(z: np.ndarray | float) -> np.ndarray:
    """The surprise a window's evidence stands for: the upper-tail normal probability of z."""
    return np.asarray(ndtr(-np.asarray(z, dtype=float)), dtype=float)


def increments(z: np.ndarray, kinds: Sequence[str], settings: EvidenceSettings) -> np.ndarray:
    """Each window's log-likelihood ratio, attacker against user, weighted by its kind (nats)."""
    shift = settings.shift
    weights = np.array([settings.weight(kind) for kind in kinds], dtype=float)
    return weights * (shift * np.asarray(z, dtype=float) - (1 - settings.sensitivity) * shift * shift / 2)


def accumulate(previous: float, steps: np.ndarray) -> np.ndarray:
    """The session's evidence after each of `steps` (in order), starting from `previous`, never below 0."""
    out = np.empty(len(steps))
    level = max(0.0, float(previous))
    for i, step in enumerate(steps):
        level = max(0.0, level + float(step))
        out[i] = level
    return out


def risk_of(evidence_nats: np.ndarray | float) -> np.ndarray:
    """1 - e^(-S): the risk the policy's bands read, in [0, 1)."""
    return 1.0 - np.exp(-np.maximum(np.asarray(evidence_nats, dtype=float), 0.0))


def evidence_for_risk(risk: float) -> float:
    """The evidence (nats) at which the risk reaches `risk` (the inverse of `risk_of`)."""
    return -math.log(1.0 - min(max(risk, 0.0), 1.0 - 1e-12))


def accumulate_sessions(session_ids: Sequence[str], steps: np.ndarray,
                        starting: Mapping[str, float] | None = None) -> np.ndarray:
    """`accumulate` over many sessions at once: rows grouped by session, in each session's order (sort by
    session and time first); each session starts from `starting[session]` (default 0)."""
    steps = np.asarray(steps, dtype=float)
    out = np.empty(steps.size)
    ids = list(session_ids)
    start = 0
    while start < len(ids):
        end = start
        while end < len(ids) and ids[end] == ids[start]:
            end += 1
        out[start:end] = accumulate((starting or {}).get(ids[start], 0.0), steps[start:end])
        start = end
    return out


# -- machine-like input ---------------------------------------------------------------------------
#: Holds below this (ms) are not a finger on a key (people's median hold is 50-150 ms; MEU-Mobile's
#: shortest single hold is 5 ms, its shortest median over a repetition 54 ms).
MIN_HUMAN_MEDIAN_HOLD_MS = 20.0
#: Hold times that vary by less than this (ms standard deviation) over a window are scripted.
MIN_HUMAN_HOLD_SPREAD_MS = 3.0
#: Mean curvature of pointer paths below this is a ruler, not a hand (people's lowest is 0.007).
MIN_HUMAN_CURVATURE = 0.002
MIN_KEYS, MIN_ACTIONS = 8, 3


def machine_like(kind: str, names: Sequence[str], X: np.ndarray) -> list[str | None]:
    """Per window, why its input is not a person's (a short reason), or None."""
    index = {name: i for i, name in enumerate(names)}
    X = np.asarray(X, dtype=float).reshape(-1, len(names))
    reasons: list[str | None] = [None] * X.shape[0]

    def mark(rows: np.ndarray, reason: str) -> None:
        for row in np.flatnonzero(rows):
            reasons[row] = reasons[row] or reason

    holds = [i for name, i in index.items() if name.startswith("H.")]
    if holds:
        values = X[:, holds]
        mark(np.median(values, axis=1) < MIN_HUMAN_MEDIAN_HOLD_MS,
             f"sub-human key holds (median under {MIN_HUMAN_MEDIAN_HOLD_MS:g} ms)")
        mark(values.std(axis=1) < MIN_HUMAN_HOLD_SPREAD_MS,
             f"key holds without human variance (spread under {MIN_HUMAN_HOLD_SPREAD_MS:g} ms)")
    if {"key_count", "dwell_median", "dwell_std"} <= index.keys():
        typed = X[:, index["key_count"]] >= MIN_KEYS
        mark(typed & (X[:, index["dwell_median"]] < MIN_HUMAN_MEDIAN_HOLD_MS),
             f"sub-human key holds (median under {MIN_HUMAN_MEDIAN_HOLD_MS:g} ms)")
        mark(typed & (X[:, index["dwell_std"]] < MIN_HUMAN_HOLD_SPREAD_MS),
             f"key holds without human variance (spread under {MIN_HUMAN_HOLD_SPREAD_MS:g} ms)")
    if {"action_count", "share_move", "curvature_mean"} <= index.keys():
        moved = (X[:, index["action_count"]] >= MIN_ACTIONS) & (X[:, index["share_move"]] > 0.5)
        mark(moved & (X[:, index["curvature_mean"]] < MIN_HUMAN_CURVATURE),
             "perfectly straight pointer paths")
    return reasons


# -- replayed input -------------------------------------------------------------------------------
#: Two timing vectors closer than this (Euclidean, ms) are the same pattern: a replay re-plays recorded
#: timings exactly, up to the rounding of re-based timestamps; two human repetitions never come this close.
REPLAY_TOLERANCE_MS = 0.05


def replayed(X: np.ndarray, earlier: np.ndarray, before: Sequence[int], compare_first: int) -> np.ndarray:
    """Per window (row of `X`), whether its first `compare_first` features lie within
    REPLAY_TOLERANCE_MS (Euclidean) of those of one of the first `before[i]` rows of `earlier`: the
    windows of the same user, kind and schema stored before it (`store.windows.earlier_window_vectors`).
    A replayed pattern; for fixed text `compare_first` covers the timings, not the context around them."""
    found = np.zeros(len(before), dtype=bool)
    if earlier.size == 0:
        return found
    k = min(compare_first, earlier.shape[1])
    for i, (vector, count) in enumerate(zip(np.asarray(X, dtype=float), before, strict=True)):
        distances = np.sqrt(((earlier[:count, :k] - vector[:k]) ** 2).sum(axis=1))
        found[i] = bool((distances < REPLAY_TOLERANCE_MS).any())
    return found
