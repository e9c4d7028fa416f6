"""Fitted models as bytes with readable metadata, and the per-user model the scoring job uses.

A saved model is one blob: a magic line, a format version, JSON metadata (plain text before the pickle, so
the checksum and library versions are read before anything is unpickled) and the pickled fitted detector,
checked with SHA-256 on load. Unpickling runs code: load only blobs this application wrote (the store's
`models` table), never a file someone hands you.

`UserModel` bundles a detector with the feature schema it was trained on and the calibration of its
scores (`detectors.thresholds.ScoreCalibration`); it refuses vectors of another schema.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np

from detectors.base import (
    detector_name,
    fit_calibrated,
    get_params,
    make_detector,
)
from detectors.thresholds import ScoreCalibration

MAGIC = b"TELLTALE-MODEL\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">BQ")  # format version, length of the JSON metadata in bytes
#: Libraries whose version changes can change a loaded model's scores.
TRACKED_LIBRARIES = ("numpy", "scikit-learn", "pyod", "torch")


class ModelFormatError(ValueError):
    """The bytes are not a Telltale model, or are damaged."""


class SchemaMismatch(ValueError):
    """Feature vectors of another schema than the model was trained on."""


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a fitted model depends on (and Python's)."""
    return dict(_installed_versions())


@lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: the lookup takes milliseconds, which every saved model would pay."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def _json_safe(value: Any, where: str) -> Any:
    """Plain JSON values (tuples become lists, numpy scalars Python numbers), or a TypeError naming the key."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"model metadata {where} = {value!r} is not JSON-serialisable; pass plain values")


def save_model(detector: Any, metadata: dict[str, Any] | None = None) -> bytes:
    """Serialise a fitted detector with metadata (yours plus: detector, params, libraries, n_samples, seed,
    trained_at / saved_at in UTC ISO 8601, payload_sha256).

    Put the feature `schema_id`, `feature_names` and threshold information in `metadata`; keys you pass win
    over the automatic ones except `libraries`, `saved_at`, `payload_sha256` and `format_version`, which
    always describe this save.
    """
    if not hasattr(detector, "n_features_in_") and not hasattr(detector, "training_scores_"):
        raise ValueError(f"{detector_name(detector)} is not fitted; fit it before saving")
    payload = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    params = get_params(detector)
    scores = getattr(detector, "training_scores_", None)
    automatic = {
        "detector": detector_name(detector),
        "params": params,
        "n_samples": None if scores is None else len(scores),
        "n_features": getattr(detector, "n_features_in_", None),
        "seed": params.get("random_state"),
        "trained_at": now,
    }
    merged = _json_safe({**automatic, **(metadata or {})}, "metadata")
    merged.update(libraries=library_versions(), saved_at=now, format_version=FORMAT_VERSION,
                  payload_sha256=hashlib.sha256(payload).hexdigest())
    header = json.dumps(merged, sort_keys=True).encode()
    return MAGIC + _HEADER.pack(FORMAT_VERSION, len(header)) + header + payload


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise ModelFormatError(f"a model is bytes; got {type(blob).__name__}")
    blob = bytes(blob)
    if not blob.startswith(MAGIC):
        raise ModelFormatError("not a Telltale model (the bytes do not start with the TELLTALE-MODEL marker)")
    start = len(MAGIC) + _HEADER.size
    if len(blob) < start:
        raise ModelFormatError("model bytes are truncated inside the header")
    version, header_length = _HEADER.unpack_from(blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"model format version {version}; this Telltale reads version {FORMAT_VERSION}. "
                               "Retrain the model.")
    try:
        metadata = json.loads(blob[start:start + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"model metadata is damaged ({error})") from error
    return metadata, blob[start + header_length:]


def load_model(blob: bytes) -> tuple[Any, dict[str, Any]]:
    """(fitted detector, metadata) from `save_model` bytes; warns when library versions differ from now."""
    metadata, payload = _split(blob)
    if hashlib.sha256(payload).hexdigest() != metadata.get("payload_sha256"):
        raise ModelFormatError("model payload does not match its checksum: the bytes are damaged or truncated")
    saved_with, running = metadata.get("libraries", {}), library_versions()
    changed = [f"{name} {saved_with[name]} -> {running[name]}" for name in TRACKED_LIBRARIES
               if name in saved_with and saved_with[name] != running[name]]
    if changed:
        warnings.warn(f"model {metadata.get('detector')} was saved with other library versions ({', '.join(changed)}); "
                      "its scores may differ. Retrain it to be sure.", UserWarning, stacklevel=2)
    return pickle.loads(payload), metadata


@dataclass
class UserModel:
    """A user's fitted detector plus how rare its scores are for that user, tied to one feature schema."""

    detector: Any
    schema_id: str
    feature_names: list[str]
    calibration: ScoreCalibration
    target_frr: float = 0.05  # a window is flagged on its own when its surprise is below this
    metadata: dict[str, Any] = field(default_factory=dict)
    #: positions in the schema of the features the detector learned from (None: all of them)
    columns: list[int] | None = None

    def check_schema(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        """X as a 2-D array, or SchemaMismatch when the vectors are of another schema than the model's."""
        if schema_id != self.schema_id:
            owner = self.metadata.get("user_id")
            raise SchemaMismatch(
                f"model{f' of user {owner!r}' if owner else ''} was trained on feature schema {self.schema_id} "
                f"({len(self.feature_names)} features) but got vectors of schema {schema_id}; compute the features "
                "with the model's schema or retrain the model on the new one")
        array = np.asarray(X, dtype=float)
        array = array.reshape(1, -1) if array.ndim == 1 else array
        if array.ndim != 2 or array.shape[1] != len(self.feature_names):
            raise SchemaMismatch(f"schema {schema_id} has {len(self.feature_names)} features but the vectors have "
                                 f"shape {array.shape}")
        return array

    def score(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        """Raw scores (detector units, higher = less like the user): what the store keeps."""
        array = self.check_schema(X, schema_id)
        if self.columns is not None:
            array = array[:, self.columns]
        return np.asarray(self.detector.decision_function(array), dtype=float)

    @property
    def used_features(self) -> list[int]:
        """Positions of the features that can move this model's score."""
        return list(range(len(self.feature_names))) if self.columns is None else list(self.columns)

    def surprise(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        """How rarely a genuine window of this user scores this high (`ScoreCalibration.surprise`)."""
        return self.calibration.surprise(self.score(X, schema_id))

    def risk(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        """1 - surprise: the share of the user's genuine windows that score lower, in (0, 1)."""
        return 1.0 - self.surprise(X, schema_id)

    def flagged(self, X: np.ndarray, schema_id: str) -> np.ndarray:
        """True where a window on its own is rarer than the target false-reject rate allows."""
        return self.surprise(X, schema_id) < self.target_frr

    def to_bytes(self) -> bytes:
        return save_model(self.detector, {
            **self.metadata,
            "schema_id": self.schema_id,
            "feature_names": list(self.feature_names),
            "columns": self.columns,
            "calibration": self.calibration.to_dict(),
            "target_frr": self.target_frr,
        })

    @classmethod
    def from_bytes(cls, blob: bytes) -> UserModel:
        detector, metadata = load_model(blob)
        for key in ("schema_id", "feature_names"):
            if key not in metadata:
                raise ModelFormatError(f"saved model has no {key!r}: it was saved with save_model, not as a UserModel")
        if "calibration" not in metadata:
            raise ModelFormatError("the model was saved before scores were calibrated on held-out sessions: "
                                   "retrain it (`python -m app train`)")
        return cls(detector=detector, schema_id=metadata["schema_id"], feature_names=list(metadata["feature_names"]),
                   calibration=ScoreCalibration.from_dict(metadata["calibration"]),
                   target_frr=float(metadata["target_frr"]), metadata=metadata,
                   columns=metadata.get("columns"))


def fit_user_model(name: str, X: np.ndarray, *, schema_id: str, feature_names: list[str],
                   params: dict[str, Any] | None = None, X_background: np.ndarray | None = None,
                   target_frr: float = 0.05, user_id: str | None = None, folds: int = 5,
                   columns: Sequence[int] | None = None, groups: Sequence[Any] | None = None) -> UserModel:
    """Fit a registered detector on one user's windows and calibrate how rare its scores are for them.

    The calibration scores are out of fold (`detectors.base.cross_fitted_scores`): with `groups` (each
    window's session) every window is scored by a model that never saw its session, in at most `folds`
    folds; without, by `folds` contiguous blocks. In-sample scores are optimistic: a threshold set on
    them rejects more of the user's later genuine windows than its target (docs/detectors.md).
    """
    [model] = fit_user_models(name, [X], schema_id=schema_id, feature_names=feature_names, params=params,
                              X_backgrounds=[X_background], target_frr=target_frr, user_ids=[user_id],
                              folds=folds, columns=columns, groups=[groups])
    return model


def fit_user_models(name: str, Xs: Sequence[np.ndarray], *, schema_id: str, feature_names: list[str],
                    params: dict[str, Any] | None = None,
                    X_backgrounds: Sequence[np.ndarray | None] | None = None, target_frr: float = 0.05,
                    user_ids: Sequence[str | None] | None = None, folds: int = 5,
                    n_jobs: int = 1, columns: Sequence[int] | None = None,
                    groups: Sequence[Sequence[Any] | None] | None = None) -> list[UserModel]:
    """`fit_user_model` for many users at once (one detector kind), models in the order of `Xs`.

    `Xs` hold every feature of the schema; with `columns` the detectors learn from those positions only
    (the models still take and check whole vectors of the schema). `groups[i]` gives the session of each
    of user i's windows (calibration folds of whole sessions).

    Fitting them together lets a detector share work across users (`detectors.base.fit_calibrated`: the
    autoencoder trains all users' networks in one batched loop). With `n_jobs` > 1 the users are split
    into `n_jobs` contiguous groups fitted in worker processes. Every model is seeded by its own
    parameters, so the models do not depend on `n_jobs` or on which users are fitted together (up to
    float rounding of the autoencoder's batched arithmetic).
    """
    count = len(Xs)
    backgrounds = list(X_backgrounds) if X_backgrounds is not None else [None] * count
    owners = list(user_ids) if user_ids is not None else [None] * count
    sessions = list(groups) if groups is not None else [None] * count
    if not len(backgrounds) == len(owners) == len(sessions) == count:
        raise ValueError(f"got {count} training sets, {len(backgrounds)} backgrounds, {len(owners)} user ids and "
                         f"{len(sessions)} session labellings")
    settings = {"schema_id": schema_id, "feature_names": feature_names, "params": params, "target_frr": target_frr,
                "folds": folds, "columns": None if columns is None else [int(c) for c in columns]}
    if n_jobs > 1 and count > 1:
        from joblib import Parallel, delayed

        parts_of = np.array_split(np.arange(count), min(n_jobs, count))
        parts = Parallel(n_jobs=len(parts_of), backend="loky")(
            delayed(fit_user_models)(name, [Xs[i] for i in part], X_backgrounds=[backgrounds[i] for i in part],
                                     user_ids=[owners[i] for i in part], groups=[sessions[i] for i in part],
                                     **settings)
            for part in parts_of)
        return [model for part in parts for model in part]
    with _native_threads().limit(limits=1):
        return _fit_user_models(name, Xs, backgrounds, owners, sessions, **settings)


@lru_cache(maxsize=1)
def _native_threads() -> Any:
    """The process's OpenMP / BLAS pools, found once (a lookup costs milliseconds).

    Fits run on one native thread (parallelism is across users, `n_jobs`): a user's fits are small, so a
    larger pool only makes its threads contend for the cores (scikit-learn's neighbour search, BLAS).
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _fit_user_models(name: str, Xs: Sequence[np.ndarray], backgrounds: list[np.ndarray | None],
                     owners: list[str | None], sessions: list[Sequence[Any] | None], *, schema_id: str,
                     feature_names: list[str], params: dict[str, Any] | None, target_frr: float, folds: int,
                     columns: list[int] | None) -> list[UserModel]:
    arrays = []
    for X in Xs:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise SchemaMismatch(f"X has shape {X.shape} but feature_names lists {len(feature_names)} features")
        arrays.append(X if columns is None else X[:, columns])
    if columns is not None:
        backgrounds = [None if b is None else np.asarray(b, dtype=float)[:, columns] for b in backgrounds]
    detectors = [make_detector(name, **(params or {})) for _ in arrays]
    held_out = fit_calibrated(detectors, arrays, backgrounds, folds=folds, groups=sessions)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return [UserModel(detector, schema_id, list(feature_names),
                      ScoreCalibration.of(scores, sessions=0 if labels is None else len(set(labels))),
                      target_frr, {"user_id": owner, "trained_at": now, "n_samples": int(X.shape[0]),
                                   "n_background": None if background is None else len(background)}, columns)
            for detector, scores, X, background, owner, labels in zip(detectors, held_out, arrays, backgrounds,
                                                                      owners, sessions, strict=True)]
