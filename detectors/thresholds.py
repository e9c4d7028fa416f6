"""From raw scores to how rare they are for the user: pure functions, kept apart from the detectors (River style).

A detector's raw score has no common unit (a distance, a reconstruction error, a probability).
`ScoreCalibration` keeps a user's genuine scores from held-out sessions and says how rarely a genuine
window scores this high (`surprise`, in (0, 1)); `evidence` puts that on a standard normal scale for a
session to accumulate (`app.engine.evidence`). Thresholds live outside the detectors (`UserModel.target_frr`, the
policy's bands), so stored scores can be judged again without refitting anything.

The CMU protocol and the ensemble also use `fit_normaliser` / `normalise` (a raw score as a risk in [0, 1]
against a user's genuine scores) and `calibrate_threshold` (a threshold for a target false-reject rate).

Conventions: higher score = less like the enrolled user; a window is flagged when its score (or risk) is
strictly above a threshold; FRR = share of genuine windows flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: robust_logistic: 1 / (1 + exp(-(score - median) / s)), s chosen so the genuine quartiles map to 0.25 and
#: 0.75; strictly increasing, never saturates before the float limits. ecdf: mid-rank share of genuine
#: training scores below the score; saturates at 0 and 1 outside the training range.
NORMALISERS = ("robust_logistic", "ecdf")
#: The logit of 0.75: a quartile sits this many scale units from the median.
_LOGIT_QUARTILE = math.log(3.0)


def finite_scores(values: Any, what: str) -> np.ndarray:
    """Scores as a 1-D float array of finite values, at least one."""
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty; at least one score is needed")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite scores; a detector must return finite scores")
    return array


def robust_center_scale(scores: Any) -> tuple[float, float]:
    """Median and a positive spread of scores: IQR, else mean absolute deviation, else a tiny fallback.

    The fallbacks keep a user whose training scores are (nearly) all equal usable: anything above them is
    far away in scale units, which is what a counting detector means when every training window scores 0.
    """
    values = finite_scores(scores, "scores")
    center = float(np.median(values))
    q25, q75 = np.percentile(values, [25, 75])
    spread = float(q75 - q25)
    if not spread > 0:
        spread = float(np.mean(np.abs(values - center)))
    if not spread > 0:
        spread = max(abs(center), 1.0) * 1e-6
    return center, spread


@dataclass(frozen=True)
class ScoreNormaliser:
    """How one user's raw scores become risks (`normalise`)."""

    method: str
    center: float  # median of the genuine training scores (robust_logistic)
    scale: float  # raw-score units per logit unit (robust_logistic)
    reference: tuple[float, ...] = ()  # sorted genuine training scores (ecdf)


def fit_normaliser(genuine_scores: Any, method: str = "robust_logistic") -> ScoreNormaliser:
    """Learn a user's normaliser from raw scores of their genuine (training) windows."""
    if method not in NORMALISERS:
        raise ValueError(f"normaliser method must be one of {NORMALISERS}; got {method!r}")
    values = finite_scores(genuine_scores, "genuine_scores")
    center, spread = robust_center_scale(values)
    reference = tuple(np.sort(values).tolist()) if method == "ecdf" else ()
    return ScoreNormaliser(method=method, center=center, scale=spread / (2 * _LOGIT_QUARTILE), reference=reference)


def normalise(scores: Any, normaliser: ScoreNormaliser) -> np.ndarray:
    """Risks in [0, 1] for raw scores; never lower for a higher score (monotone non-decreasing)."""
    values = finite_scores(scores, "scores")
    if normaliser.method == "ecdf":
        reference = np.asarray(normaliser.reference, dtype=float)
        below = np.searchsorted(reference, values, side="left")
        at_or_below = np.searchsorted(reference, values, side="right")
        return (below + at_or_below) / (2.0 * reference.size)
    if normaliser.method == "robust_logistic":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-(values - normaliser.center) / normaliser.scale))
    raise ValueError(f"unknown normaliser method {normaliser.method!r}; expected one of {NORMALISERS}")


#: Evidence of one window, in standard normal units (`evidence`), is clipped to this range: a window can
#: neither prove an attacker alone nor erase what earlier windows showed. With the evidence a session
#: accumulates (`app.engine.evidence`, shift 1), one window adds at most 1.5 nats: a risk of 0.78, enough to ask
#: for a one-time code and never to deny on its own.
EVIDENCE_RANGE = (-2.0, 2.0)
#: The smallest surprise reported (beyond every float the fitted tail can resolve).
MIN_SURPRISE = 1e-12


@dataclass(frozen=True)
class ScoreCalibration:
    """How rarely a genuine window of one user (kind, detector) scores this high.

    `reference` holds the raw scores of the user's own training windows from models that never saw the
    session each window came from (`detectors.base.calibration_folds`), sorted: what later logins bring
    is mostly variation between sessions, so in-sample or within-session scores would understate it.
    `surprise` is the mid-rank upper-tail share of the reference at or above a score, an empirical p-value
    that is never 0 or 1. Beyond the largest reference score it continues along the tail of the
    references' predictive distribution (Student's t, on a log scale when they are all positive), so
    a user enrolled with ten repetitions of a phrase still tells "a little beyond" from "far beyond"; the
    empirical share alone could never be below 0.5 / (n + 1). What a single window can add to a session is
    capped all the same (`EVIDENCE_RANGE`): genuine tails can be heavier still. The same number means the
    same for every user and window kind.
    """

    reference: tuple[float, ...]
    sessions: int = 0  # sessions the reference windows came from

    def surprise(self, scores: Any) -> np.ndarray:
        """Per score, the share of genuine reference scores at or above it (ties count half), in (0, 1)."""
        values = finite_scores(scores, "scores")
        reference = np.asarray(self.reference, dtype=float)
        n = reference.size
        above = n - np.searchsorted(reference, values, side="right")
        tied = np.searchsorted(reference, values, side="right") - np.searchsorted(reference, values, side="left")
        surprise = (above + 0.5 * tied + 0.5) / (n + 1)
        beyond = values > reference[-1]
        if beyond.any() and n >= 3:
            surprise[beyond] *= self._tail(values[beyond], reference)
        return np.maximum(surprise, MIN_SURPRISE)

    @staticmethod
    def _tail(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """How much rarer than the largest reference score each larger score is, under the predictive
        distribution of one new draw from the references (log scale when all are positive): Student's t
        with n - 1 degrees of freedom and spread s * sqrt(1 + 1/n), whose tail is as heavy as a handful
        of references warrants. 1 at the largest reference score, falling smoothly beyond it."""
        from scipy.stats import t as student

        if (reference > 0).all():
            values, reference = np.log(values), np.log(reference)
        spread = float(np.std(reference, ddof=1)) * math.sqrt(1 + 1 / reference.size)
        if not spread > 0:
            return np.full(values.shape, 0.5)  # every reference score equal: anything above is rarer
        centre, freedom = float(np.mean(reference)), reference.size - 1
        at_largest = student.logsf((reference[-1] - centre) / spread, freedom)
        return np.exp(np.minimum(student.logsf((values - centre) / spread, freedom) - at_largest, 0.0))

    def risk(self, scores: Any) -> np.ndarray:
        """1 - surprise: the share of the user's genuine windows that score lower, in (0, 1)."""
        return 1.0 - self.surprise(scores)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": list(self.reference), "sessions": self.sessions}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreCalibration:
        return cls(reference=tuple(float(v) for v in data["reference"]), sessions=int(data["sessions"]))

    @classmethod
    def of(cls, genuine_scores: Any, sessions: int = 0) -> ScoreCalibration:
        return cls(reference=tuple(np.sort(finite_scores(genuine_scores, "genuine_scores")).tolist()),
                   sessions=sessions)


def evidence(surprise: Any) -> np.ndarray:
    """A window's evidence against the user: its surprise as a standard normal quantile (0 for a typical
    window, 1.64 for one rarer than 95% of genuine ones), clipped to `EVIDENCE_RANGE`."""
    from scipy.special import ndtri  # the normal quantile without scipy.stats' per-call overhead

    low, high = EVIDENCE_RANGE
    return np.clip(-ndtri(np.asarray(surprise, dtype=float)), low, high)


def calibrate_threshold(genuine_scores: Any, target_frr: float) -> float:
    """The lowest threshold (one of the scores) that flags at most `target_frr` of these genuine scores.

    Works in any unit (raw scores or risks). With verdict = score > threshold, the share of `genuine_scores`
    flagged is <= target_frr; on unseen windows it is usually higher when the scores are in-sample.
    """
    if not 0.0 <= target_frr <= 1.0:
        raise ValueError(f"target_frr must be in [0, 1]; got {target_frr}")
    ordered = np.sort(finite_scores(genuine_scores, "genuine_scores"))
    n = ordered.size
    allowed = math.floor(target_frr * n)
    if allowed < n and (allowed + 1) / n <= target_frr:  # floor() can fall one short through rounding
        allowed += 1
    allowed = min(allowed, n - 1)  # a threshold below every score would flag all of them; keep one in
    return float(ordered[n - 1 - allowed])
