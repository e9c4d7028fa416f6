"""How well scores separate a user from impostors, and the CMU benchmark protocol (Killourhy & Maxion 2009).

Conventions everywhere: higher score = more anomalous; a window is flagged when its score is strictly
above the threshold. FRR (false rejection rate) = share of genuine windows flagged; FAR (false acceptance
rate) = share of impostor windows not flagged. The ROC curve treats impostors as the positive class, so
its false-positive rate is the FRR and its true-positive rate 1 - FAR. Rates are fractions in [0, 1]. The
curves and the AUC are scikit-learn's (`sklearn.metrics`); Polars reads the windows frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from detectors.base import (
    DETECTORS,
    cross_fitted_scores,
    fit_detector,
    make_detector,
    parameter_names,
    training_scores,
    uses_background,
)
from detectors.thresholds import calibrate_threshold, finite_scores, fit_normaliser, normalise

#: Published mean EERs on the CMU benchmark (Killourhy & Maxion 2009, 200 training / 5 impostor reps).
CMU_REFERENCE_EER: dict[str, float] = {"manhattan_scaled": 0.0962, "zscore_count": 0.1022, "autoencoder": 0.1614}
#: Scaled Manhattan on MEU-Mobile KSD H/DD/UD columns with 25 training / 5 impostor repetitions (about).
MEU_REFERENCE_EER: dict[str, float] = {"manhattan_scaled": 0.14}
#: The published CMU protocol: train on 200 of each subject's 400 repetitions; impostors are every
#: other subject's first 5.
PUBLISHED_TRAIN_REPS, PUBLISHED_IMPOSTOR_REPS = 200, 5
#: Fewest repetitions per subject the derived sizes can use: half (2) to train on, the first of them also
#: an impostor attempt against the others (impostor_reps must stay below train_reps), the rest to test.
FEWEST_REPS = 4


def far_frr_at(threshold: float, genuine_scores: Any, impostor_scores: Any) -> tuple[float, float]:
    """(FAR, FRR) when windows scoring above `threshold` are flagged."""
    genuine = finite_scores(genuine_scores, "genuine_scores")
    impostor = finite_scores(impostor_scores, "impostor_scores")
    return float(np.mean(impostor <= threshold)), float(np.mean(genuine > threshold))


def _labelled(genuine_scores: Any, impostor_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) for scikit-learn's metrics: impostors are the positive class (1)."""
    genuine = finite_scores(genuine_scores, "genuine_scores")
    impostor = finite_scores(impostor_scores, "impostor_scores")
    return np.r_[np.zeros(genuine.size), np.ones(impostor.size)], np.r_[genuine, impostor]


def roc_curve(genuine_scores: Any, impostor_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate = FRR, true-positive rate = 1 - FAR, thresholds): `sklearn.metrics.roc_curve` with
    impostors positive and every distinct score kept, thresholds descending.

    Point k counts windows scoring >= thresholds[k]; the first threshold is +inf (nothing flagged).
    """
    labels, scores = _labelled(genuine_scores, impostor_scores)
    fpr, tpr, thresholds = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, thresholds


def det_curve(genuine_scores: Any, impostor_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, FRR, thresholds) at every distinct score, thresholds ascending: the DET trade-off with a window
    flagged when its score is strictly above the threshold (as `far_frr_at`).

    FAR rises and FRR falls along the arrays; plot them on normal-deviate (probit) axes, clipping 0 and 1.
    `sklearn.metrics.det_curve` flags scores >= the threshold and trims the flat ends of the curve, so the
    points come from `roc_curve` one threshold along: what is flagged above a score is what is flagged at
    or above the next higher one.
    """
    fpr, tpr, thresholds = roc_curve(genuine_scores, impostor_scores)
    return (1.0 - tpr[:-1])[::-1], fpr[:-1][::-1], thresholds[1:][::-1]


def roc_auc(genuine_scores: Any, impostor_scores: Any) -> float:
    """Probability that an impostor window outscores a genuine one (ties count half): the area under ROC
    (`sklearn.metrics.roc_auc_score`, impostors positive)."""
    return float(roc_auc_score(*_labelled(genuine_scores, impostor_scores)))


def eer(genuine_scores: Any, impostor_scores: Any) -> tuple[float, float]:
    """(equal error rate, threshold) where FAR and FRR cross, linearly interpolated between distinct scores.

    FRR and FAR are step functions of the threshold; between the last threshold where FRR > FAR and the
    first where FRR <= FAR both are interpolated linearly and the EER is their common value there.
    Perfectly separated scores give 0, identical ones 0.5.
    """
    far, frr, thresholds = det_curve(genuine_scores, impostor_scores)
    below_everything = thresholds[0] - max(1.0, float(thresholds[-1] - thresholds[0]))
    far, frr, thresholds = np.r_[0.0, far], np.r_[1.0, frr], np.r_[below_everything, thresholds]
    gap = frr - far  # starts at 1, ends <= 0, never increases
    k = int(np.argmax(gap <= 0))
    share = gap[k - 1] / (gap[k - 1] - gap[k])
    rate = far[k - 1] + share * (far[k] - far[k - 1])
    return float(rate), float(thresholds[k - 1] + share * (thresholds[k] - thresholds[k - 1]))


# ------------------------------------------------------------------------------------- CMU protocol


@dataclass(frozen=True)
class SubjectSplit:
    """What one subject's model sees and is tested on in the CMU protocol (rows are windows)."""

    subject: str
    train: np.ndarray  # the subject's first train_reps repetitions
    genuine_test: np.ndarray  # the subject's remaining repetitions
    impostors: np.ndarray  # the first impostor_reps repetitions of every other subject
    impostor_subjects: np.ndarray  # which subject typed each impostor row
    background: np.ndarray  # other subjects' repetitions impostor_reps+1 .. train_reps (never impostor rows)
    background_subjects: np.ndarray  # which subject typed each background row


def _natural_key(text: str) -> list[Any]:
    """Sort key treating digit runs as numbers, so session "s-10" comes after "s-9"."""
    parts = re.split(r"(\d+)", text)
    return [int(part) if index % 2 else part for index, part in enumerate(parts)]


def _check_columns(windows: pl.DataFrame, feature_names: Sequence[str]) -> None:
    missing = [c for c in ("user_id", "session_id", "rep", *feature_names) if c not in windows.columns]
    if missing:
        raise ValueError(f"windows lack column(s) {missing}; expected user_id, session_id, rep and the features")


def cmu_splits(windows: pl.DataFrame, feature_names: Sequence[str], train_reps: int,
               impostor_reps: int) -> tuple[list[SubjectSplit], list[str]]:
    """Per-subject train / genuine test / impostor / background matrices, and the subjects skipped.

    Each subject's windows are ordered by session_id (numbers in it compared as numbers) then rep. A
    subject with no repetition beyond `train_reps` cannot be tested and is skipped.
    """
    _check_columns(windows, feature_names)
    if not 0 < impostor_reps < train_reps:
        raise ValueError(f"need 0 < impostor_reps < train_reps; got impostor_reps={impostor_reps}, "
                         f"train_reps={train_reps} (the background uses repetitions between the two)")
    sessions = sorted(windows["session_id"].unique().to_list(), key=_natural_key)
    ordered = (windows.with_columns(pl.col("session_id").replace_strict(sessions, list(range(len(sessions))),
                                                                        return_dtype=pl.Int64).alias("_session"))
               .sort("user_id", "_session", "rep"))
    by_subject = {str(key[0]): frame.select(feature_names).to_numpy().astype(float)
                  for key, frame in ordered.group_by("user_id", maintain_order=True)}
    subjects = sorted(by_subject, key=_natural_key)
    skipped = [s for s in subjects if by_subject[s].shape[0] <= train_reps]
    tested = [s for s in subjects if s not in skipped]

    impostor_rows = {s: by_subject[s][:impostor_reps] for s in subjects}
    background_rows = {s: by_subject[s][impostor_reps:train_reps] for s in subjects}
    splits = []
    for subject in tested:
        others = [s for s in subjects if s != subject]
        splits.append(SubjectSplit(
            subject=subject,
            train=by_subject[subject][:train_reps],
            genuine_test=by_subject[subject][train_reps:],
            impostors=np.vstack([impostor_rows[s] for s in others]),
            impostor_subjects=np.concatenate([[s] * len(impostor_rows[s]) for s in others]),
            background=np.vstack([background_rows[s] for s in others]),
            background_subjects=np.concatenate([[s] * len(background_rows[s]) for s in others]),
        ))
    return splits, skipped


def protocol_sizes(counts: Sequence[int], train_reps: int | None = None, impostor_reps: int | None = None, *,
                   unit: str = "repetitions", who: str = "subject",
                   published: bool = True) -> tuple[int, int, dict[str, str]]:
    """(train_reps, impostor_reps, why): the sizes given, else derived from `counts` (repetitions of each
    subject) so that the protocol fits the data and every subject is tested.

    Training: the published 200 when every subject has at least 400 (`published`: the CMU benchmark),
    else half the smallest subject's count, rounded down (25 of MEU-Mobile KSD's 51). Impostors: the
    published 5, at most half the training size, so detectors that learn from other subjects keep a
    background between the two. `why` says, for each derived size only, where it came from.
    """
    derived: dict[str, str] = {}
    if train_reps is None:
        if not counts:
            raise ValueError(f"no {who} has any {unit}; nothing to evaluate")
        smallest = min(counts)
        if smallest < FEWEST_REPS:
            raise ValueError(f"too few {unit} to evaluate: the smallest {who} has {smallest} {unit}, the protocol "
                             f"needs at least {FEWEST_REPS} each (half to train on, the rest to test); leave that "
                             f"{who} out of the file or give the training size")
        if published and smallest >= 2 * PUBLISHED_TRAIN_REPS:
            train_reps = PUBLISHED_TRAIN_REPS
            derived["train_reps"] = (f"the published protocol's {PUBLISHED_TRAIN_REPS}: every {who} has at least "
                                     f"{2 * PUBLISHED_TRAIN_REPS} {unit}")
        else:
            train_reps = smallest // 2
            derived["train_reps"] = f"half of the smallest {who}'s {smallest} {unit}"
    if impostor_reps is None:
        impostor_reps = min(PUBLISHED_IMPOSTOR_REPS, train_reps // 2)
        derived["impostor_reps"] = (f"the published protocol's {PUBLISHED_IMPOSTOR_REPS}"
                                    if impostor_reps == PUBLISHED_IMPOSTOR_REPS
                                    else f"half of the {train_reps} training {unit}")
    return train_reps, impostor_reps, derived


def _new_detector(name: str, params: Mapping[str, Any], seed: int) -> Any:
    params = dict(params)
    if "random_state" in parameter_names(DETECTORS[name]):
        params.setdefault("random_state", seed)
    return make_detector(name, **params)


CALIBRATIONS = ("training", "cross_fitted")


@dataclass(frozen=True)
class _Trial:
    """One fitted model of a subject and what it scored."""

    eer: float
    auc: float
    far: float
    frr: float
    genuine_risks: np.ndarray
    impostor_risks: np.ndarray


def _trial(detector: Any, train: np.ndarray, background: np.ndarray | None, genuine_test: np.ndarray,
           impostors: np.ndarray, calibration: str, target_frr: float) -> _Trial:
    fit_detector(detector, train, background)
    genuine = detector.decision_function(genuine_test)
    impostor = detector.decision_function(impostors)
    if calibration == "cross_fitted":
        enrolment = cross_fitted_scores(detector, train, background)
    else:
        enrolment = training_scores(detector, train)
    far, frr = far_frr_at(calibrate_threshold(enrolment, target_frr), genuine, impostor)
    normaliser = fit_normaliser(enrolment)
    return _Trial(eer(genuine, impostor)[0], roc_auc(genuine, impostor), far, frr,
                  normalise(genuine, normaliser), normalise(impostor, normaliser))


def _subject_trials(name: str, params: Mapping[str, Any], seed: int, split: SubjectSplit, calibration: str,
                    target_frr: float, open_set_folds: int) -> list[_Trial]:
    """One trial per subject, or with open_set_folds one per fold of impostor subjects held out of the background."""
    detector = _new_detector(name, params, seed)
    if not uses_background(detector):
        return [_trial(detector, split.train, None, split.genuine_test, split.impostors, calibration, target_frr)]
    if open_set_folds < 2:
        return [_trial(detector, split.train, split.background, split.genuine_test, split.impostors,
                       calibration, target_frr)]
    others = sorted(set(split.impostor_subjects.tolist()), key=_natural_key)
    trials = []
    for fold in range(min(open_set_folds, len(others))):
        held_out = others[fold::open_set_folds]
        background = split.background[~np.isin(split.background_subjects, held_out)]
        impostors = split.impostors[np.isin(split.impostor_subjects, held_out)]
        trials.append(_trial(_new_detector(name, params, seed), split.train, background, split.genuine_test,
                             impostors, calibration, target_frr))
    return trials


def evaluate_cmu(windows: pl.DataFrame, feature_names: Sequence[str], detectors: Sequence[str],
                 train_reps: int | None = None, impostor_reps: int | None = None, seed: int = 0, *,
                 target_frr: float = 0.05,
                 calibration: str = "training", open_set_folds: int = 0,
                 detector_params: Mapping[str, Mapping[str, Any]] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Killourhy & Maxion's protocol on feature windows in the CMU layout (`store.importers.cmu.read_cmu`).

    Per subject: fit on the first `train_reps` repetitions; score the rest (genuine) and the first
    `impostor_reps` repetitions of every other subject (impostors); EER and ROC AUC per subject, averaged.
    Sizes left as None are derived from the data (`protocol_sizes`) and named in the protocol's `derived`.
    FAR/FRR are measured at a per-subject threshold calibrated for `target_frr` on that subject's training
    scores ("training": the detector's `training_scores_`; "cross_fitted": 5-fold out-of-fold scores).

    Detectors that need a background get the other subjects' repetitions impostor_reps+1 .. train_reps,
    never the impostor rows. With `open_set_folds` = k >= 2 the impostor subjects are also kept out of
    the background: the other subjects are dealt into k folds, one model per fold is fitted without that
    fold's subjects and tested on their impostor rows, and the subject's figures average the k models
    (impostors the model never saw anything of, as for a stranger in production).

    `eer_pooled` is the EER of all subjects' risks pooled (one global threshold after per-user
    normalisation). `progress(done, total)` is called after each subject of each detector.
    """
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}; got {calibration!r}")
    unknown = [name for name in detectors if name not in DETECTORS]
    if unknown:
        raise KeyError(f"unknown detector(s) {unknown}; registered: {', '.join(sorted(DETECTORS))}")
    _check_columns(windows, feature_names)
    counts = windows.group_by("user_id").len()["len"].to_list()
    train_reps, impostor_reps, derived = protocol_sizes(counts, train_reps, impostor_reps)
    splits, skipped = cmu_splits(windows, feature_names, train_reps, impostor_reps)
    if not splits:
        raise ValueError(f"no subject has more than train_reps={train_reps} repetitions (the most any subject has "
                         f"is {max(counts, default=0)}); nothing to test: choose fewer training repetitions")
    detector_params = detector_params or {}
    total, done = len(detectors) * len(splits), 0
    results: dict[str, Any] = {}
    for name in detectors:
        per_subject: list[list[_Trial]] = []
        for split in splits:
            per_subject.append(_subject_trials(name, detector_params.get(name, {}), seed, split, calibration,
                                               target_frr, open_set_folds))
            done += 1
            if progress is not None:
                progress(done, total)

        def subject_means(field: str, trials_of: list[list[_Trial]] = per_subject) -> np.ndarray:
            return np.array([np.mean([getattr(t, field) for t in trials]) for trials in trials_of])

        eers = subject_means("eer")
        trials = [t for subject in per_subject for t in subject]
        results[name] = {
            "eer_mean": float(eers.mean()),
            "eer_sd": float(eers.std(ddof=1)) if eers.size > 1 else 0.0,
            "auc": float(subject_means("auc").mean()),
            "far": float(subject_means("far").mean()),
            "frr": float(subject_means("frr").mean()),
            "eer_pooled": eer(np.concatenate([t.genuine_risks for t in trials]),
                              np.concatenate([t.impostor_risks for t in trials]))[0],
            "det": det_points(np.concatenate([t.genuine_risks for t in trials]),
                              np.concatenate([t.impostor_risks for t in trials])),
            "eer_per_subject": {split.subject: float(e) for split, e in zip(splits, eers, strict=True)},
        }
    return {
        "protocol": {
            "name": "cmu", "train_reps": train_reps, "impostor_reps": impostor_reps, "subjects": len(splits),
            "features": len(feature_names), "seed": seed, "target_frr": target_frr, "calibration": calibration,
            "open_set_folds": open_set_folds, "skipped_subjects": skipped, "derived": derived,
        },
        "detectors": results,
    }


def det_points(genuine_scores: Any, impostor_scores: Any, points: int = 100) -> dict[str, list[float]]:
    """The pooled DET curve thinned to about `points` (FAR, FRR) pairs, small enough for JSON and pages."""
    far, frr, _ = det_curve(genuine_scores, impostor_scores)
    keep = np.unique(np.linspace(0, far.size - 1, min(points, far.size)).round().astype(int))
    return {"far": far[keep].round(5).tolist(), "frr": frr[keep].round(5).tolist()}


def markdown_table(result: Mapping[str, Any], reference: Mapping[str, float]) -> str:
    """A Markdown table of `evaluate_cmu` figures beside published mean EERs (`reference`: name -> EER)."""
    protocol = result["protocol"]
    lines = [
        f"CMU protocol: {protocol['subjects']} subjects, {protocol['features']} features, train on the first "
        f"{protocol['train_reps']} repetitions, impostors = first {protocol['impostor_reps']} of every other "
        f"subject; FAR/FRR at a threshold calibrated for FRR {protocol.get('target_frr', 0.05):.0%} on "
        f"{protocol.get('calibration', 'training')} scores."
        + (f" Open set: impostor subjects held out of the background ({protocol['open_set_folds']} folds)."
           if protocol.get("open_set_folds", 0) >= 2 else ""),
        "",
        "| detector | mean EER (SD) | published EER | pooled EER | AUC | FAR | FRR |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in result["detectors"].items():
        published = f"{reference[name]:.4f}" if name in reference else "—"
        pooled = f"{figures['eer_pooled']:.4f}" if "eer_pooled" in figures else "—"
        lines.append(f"| {name} | {figures['eer_mean']:.4f} ({figures['eer_sd']:.4f}) | {published} | {pooled} | "
                     f"{figures['auc']:.4f} | {figures['far']:.4f} | {figures['frr']:.4f} |")
    return "\n".join(lines) + "\n"
