"""Training per-user models from stored windows, and loading them for scoring.

For every window kind and feature schema: each user with at least `min_enrolment_windows` training
windows gets one model per configured detector; a global model (all users' training windows pooled)
scores the windows of users below that minimum, and their decisions say so. Training windows come
from `store.windows.training_windows` (enrolment sessions, never ground-truth labels).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from app import settings
from detectors.base import make_detector, requires_background, uses_background
from detectors.features import model_columns
from detectors.persistence import UserModel, fit_user_model, fit_user_models
from store import Store
from store.stored_models import active_models, has_global_model, model_blobs, save_model
from store.text import plural
from store.windows import feature_windows, schema_names, training_window_counts, training_windows, window_kinds

Progress = Callable[[int, int], None]
#: At most this many other users' windows form a background set (keeps fits fast).
BACKGROUND_LIMIT = 2_000
GLOBAL_LIMIT = 3_000
SEED = 0


@dataclass
class TrainingReport:
    models: int = 0
    users: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # "user/kind" -> windows, below the minimum
    seconds: float = 0.0

    def summary(self) -> str:
        below = (f"; {plural(len(self.skipped), 'user/kind pair')} below the enrolment minimum" if self.skipped
                 else "")
        return (f"trained {plural(self.models, 'model')} for {plural(self.users, 'user')} in {self.seconds:.1f} s"
                f"{below}")


def detector_names() -> list[str]:
    return settings.get("detectors").split(",")


def window_matrix(windows: pl.DataFrame) -> np.ndarray:
    """The `features` list column as a 2-D float array (rows = windows)."""
    if windows.height == 0:
        return np.empty((0, 0))
    width = windows["features"].list.len().max()
    return windows["features"].list.to_array(width).to_numpy().astype(float)


def _baseline(X: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and standard deviation of the training windows (for z-scores of decisions)."""
    return {"mean": X.mean(axis=0).tolist(), "std": X.std(axis=0).tolist()}


def _save(store: Store, model: UserModel, *, user_id: str | None, kind: str, detector: str, actor: str) -> None:
    """Store the model (active from the commit on) and keep it unpickled: scoring needs it next."""
    model.metadata["baseline"] = model.metadata.get("baseline") or {}
    model_id = f"{kind}-{detector}-{user_id or 'global'}-{uuid.uuid4().hex[:8]}"
    save_model(store, model_id=model_id, user_id=user_id, kind=kind, detector=detector, schema_id=model.schema_id,
               trained_at=datetime.now(UTC).replace(tzinfo=None), n_samples=int(model.metadata["n_samples"]),
               seed=SEED, metadata=model.metadata, blob=model.to_bytes(), actor=actor)
    _MODEL_CACHE.put(store, model_id, model)


def train(store: Store, *, users: list[str] | None = None, kinds: tuple[str, ...] | None = None,
          progress: Progress | None = None, actor: str = "system", n_jobs: int = 1) -> TrainingReport:
    """(Re)train the models of `users` (all when None) for every window kind with stored windows.

    Per kind and schema, each detector is fitted for all eligible users in one `fit_user_models` call
    (the autoencoder trains every user's networks in one batched loop; `n_jobs` > 1 splits the users
    over that many worker processes). Models are seeded, so a retrain on the same windows gives the
    same models.
    """
    started = datetime.now(UTC)
    report = TrainingReport()
    names = schema_names(store)
    detectors = detector_names()
    enrolment_sessions = settings.get("enrolment_sessions")
    every_kind = training_windows(store, None, enrolment_sessions)  # one query for every kind
    kinds = kinds or tuple(sorted(every_kind["kind"].unique().to_list()))
    plans: list[tuple[str, str, pl.DataFrame]] = []
    for kind in kinds:
        windows = every_kind.filter(pl.col("kind") == kind)
        for (schema_id,), of_schema in windows.group_by("schema_id", maintain_order=True):
            plans.append((kind, str(schema_id), of_schema))
    fitted: list[Fitted] = []
    _train_plans(store, plans, names, detectors, users, report, progress, n_jobs, fitted)
    with store.transaction():  # fitted first, stored together: every new model becomes active at once
        for model, user_id, kind, detector in fitted:
            _save(store, model, user_id=user_id, kind=kind, detector=detector, actor=actor)
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    return report


#: A model fitted by `train`, waiting to be stored: (model, user or None for global, kind, detector).
Fitted = tuple[UserModel, str | None, str, str]


def _train_plans(store: Store, plans: list[tuple[str, str, pl.DataFrame]], names: dict[str, list[str]],
                 detectors: list[str], users: list[str] | None, report: TrainingReport, progress: Progress | None,
                 n_jobs: int, fitted: list[Fitted]) -> None:
    minimum = settings.get("min_enrolment_windows")
    steps = sum(of_schema["user_id"].n_unique() + 1 for _, _, of_schema in plans) or 1
    done = 0
    trained_users: set[str] = set()
    for kind, schema_id, of_schema in plans:
        features = names[schema_id]
        columns = model_columns(kind, features)
        X_all = window_matrix(of_schema)
        user_of_row = of_schema["user_id"].to_numpy()
        session_of_row = of_schema["session_id"].to_numpy()
        in_plan = of_schema["user_id"].unique(maintain_order=True).to_list()
        any_background = any(uses_background(make_detector(name)) for name in detectors)
        # user, their windows, the session of each, a background
        eligible: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
        for user_id in in_plan:
            if users is not None and user_id not in users:
                continue
            mine = user_of_row == user_id
            X = X_all[mine]
            if X.shape[0] < minimum:
                report.skipped[f"{user_id}/{kind}"] = int(X.shape[0])
                continue
            others = X_all[~mine] if any_background else None
            if others is not None and others.shape[0] > BACKGROUND_LIMIT:
                others = others[np.random.default_rng(SEED).choice(others.shape[0], BACKGROUND_LIMIT, replace=False)]
            eligible.append((user_id, X, session_of_row[mine], others))
        for position, name in enumerate(detectors):
            detector = make_detector(name)
            needs, uses = requires_background(detector), uses_background(detector)
            # other users' windows when there are enough of them; a detector that needs them waits until then
            batch = [(u, X, sessions, others if uses and enough else None)
                     for u, X, sessions, others in eligible
                     for enough in [others is not None and others.shape[0] >= minimum]
                     if enough or not needs]
            if batch:
                models = fit_user_models(name, [X for _, X, _, _ in batch], schema_id=schema_id,
                                         feature_names=features, X_backgrounds=[b for _, _, _, b in batch],
                                         target_frr=settings.get("target_frr"), user_ids=[u for u, _, _, _ in batch],
                                         n_jobs=n_jobs, columns=columns, groups=[g for _, _, g, _ in batch])
                for (user_id, X, _, _), model in zip(batch, models, strict=True):
                    model.metadata["baseline"] = _baseline(X)
                    fitted.append((model, user_id, kind, name))
                    report.models += 1
            if progress:
                progress(done + len(in_plan) * (position + 1) // len(detectors), steps)
        trained_users.update(u for u, _, _, _ in eligible)
        done += len(in_plan) + 1
        if (users is None or not has_global_model(store, kind, schema_id)) and X_all.shape[0] >= minimum:
            fitted.append(_fit_global(kind, schema_id, features, X_all, session_of_row, detectors, columns))
            report.models += 1
        if progress:
            progress(done, steps)
    report.users = len(trained_users)


def _fit_global(kind: str, schema_id: str, features: list[str], X: np.ndarray, sessions: np.ndarray,
                detectors: list[str], columns: list[int] | None = None) -> Fitted:
    """One pooled model per kind and schema for users below the enrolment minimum (the first configured
    detector that takes no background: everyone's windows are its own)."""
    if X.shape[0] > GLOBAL_LIMIT:
        keep = np.sort(np.random.default_rng(SEED).choice(X.shape[0], GLOBAL_LIMIT, replace=False))
        X, sessions = X[keep], sessions[keep]
    name = next((d for d in detectors if not uses_background(make_detector(d))), "manhattan_scaled")
    model = fit_user_model(name, X, schema_id=schema_id, feature_names=features,
                           target_frr=settings.get("target_frr"), user_id=None, columns=columns, groups=sessions)
    model.metadata["baseline"] = _baseline(X)
    return model, None, kind, name


class _ModelCache:
    """Unpickled models by (database, model id); the database is the store's cache scope (its resolved
    file, or one in-memory database). A stored model never changes under its id, so a cached one is
    never stale, and scoring a login reads no blob it has read before."""

    def __init__(self, size: int = 512):
        self.size = size
        self._models: OrderedDict[tuple[str, str], UserModel] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, store: Store, model_id: str, model: UserModel) -> None:
        """Keep a model just trained (a rolled-back training leaves an id no active row names: harmless)."""
        with self._lock:
            self._keep(store.caches.scope, {model_id: model})

    def get_many(self, store: Store, model_ids: list[str]) -> dict[str, UserModel]:
        """The stored models of `model_ids` (ids not stored are left out), unpickling only new ones."""
        scope = store.caches.scope
        with self._lock:
            found = {mid: self._models[(scope, mid)] for mid in model_ids if (scope, mid) in self._models}
        missing = [mid for mid in model_ids if mid not in found]
        if missing:
            for mid, blob in model_blobs(store, missing).items():
                found[mid] = UserModel.from_bytes(blob)
        with self._lock:
            self._keep(scope, found)
        return found

    def _keep(self, scope: str, models: dict[str, UserModel]) -> None:
        """Add or refresh `models` as the most recently used; drop the least recently used beyond `size`."""
        for mid, model in models.items():
            self._models[(scope, mid)] = model
            self._models.move_to_end((scope, mid))
        while len(self._models) > self.size:
            self._models.popitem(last=False)


_MODEL_CACHE = _ModelCache()


@dataclass(frozen=True)
class ActiveModels:
    """Active model rows and their unpickled models, kept apart on purpose.

    The models are not a Polars Object column: a Polars worker thread that copies a Python object
    needs the GIL; if the scoring job filtered such a frame while a page thread converting a frame for
    `st.dataframe` holds the GIL waiting on the same worker pool, both would hang for good.
    """

    rows: pl.DataFrame  # model_id, user_id, kind, detector, schema_id, trained_at, n_samples, seed, metadata
    by_id: dict[str, UserModel]


def load_models(store: Store, model_ids: list[str]) -> dict[str, UserModel]:
    """Stored models by id, active or not (Investigation explains past decisions with the models that
    made them), each unpickled once per id and process; ids that are not stored are left out."""
    return _MODEL_CACHE.get_many(store, model_ids)


def load_active(store: Store, kind: str | None = None, users: list[str] | None = None) -> ActiveModels:
    """Active models, each unpickled once per model id and process.

    With `users`, only those users' models and the global ones are read (a login needs two or three
    blobs, not every user's).
    """
    rows = active_models(store, kind)
    if users is not None:
        rows = rows.filter(pl.col("user_id").is_null() | pl.col("user_id").is_in(users))
    ids = rows["model_id"].to_list()
    return ActiveModels(rows, _MODEL_CACHE.get_many(store, ids) if ids else {})


def users_due_for_retraining(store: Store, new_windows: int) -> list[str]:
    """Users with at least `new_windows` training windows (all kinds together) newer than their newest
    models, or with a kind that has no model yet but enough windows for one."""
    counts = training_window_counts(store, settings.get("enrolment_sessions"))
    first_model = (~pl.col("has_model")) & (pl.col("windows") >= settings.get("min_enrolment_windows"))
    per_user = counts.group_by("user_id").agg(fresh=pl.col("fresh").sum(), first=first_model.any())
    return sorted(per_user.filter((pl.col("fresh") >= new_windows) | pl.col("first"))["user_id"].to_list())


def drift_check(store: Store, recent: int = 20, limit: float = 2.0) -> pl.DataFrame:
    """Per user and kind: the largest shift of a feature's mean between the training windows and the
    `recent` newest windows, in training standard deviations; drifted when above `limit`."""

    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, object]] = []
    names = schema_names(store)
    for kind in window_kinds(store):
        train_windows = training_windows(store, kind, settings.get("enrolment_sessions"))
        latest, _ = feature_windows(store, kind)
        for (user_id, schema_id), mine in train_windows.group_by("user_id", "schema_id"):
            newest = latest.filter((pl.col("user_id") == user_id) & (pl.col("schema_id") == schema_id)
                                   & ~pl.col("window_id").is_in(mine["window_id"].implode()))
            newest = newest.sort("created_at").tail(recent)
            if mine.height < 2 or newest.height < 2:
                continue
            X_train, X_new = window_matrix(mine), window_matrix(newest)
            spread = X_train.std(axis=0)
            shift = np.abs(X_new.mean(axis=0) - X_train.mean(axis=0)) / np.where(spread > 1e-9, spread, np.inf)
            worst = int(np.argmax(shift))
            rows.append({"user_id": user_id, "kind": kind, "checked_at": now, "recent": newest.height,
                         "statistic": float(shift[worst]), "feature": names[schema_id][worst],
                         "drifted": bool(shift[worst] > limit)})
    return pl.DataFrame(rows, schema={"user_id": pl.String, "kind": pl.String, "checked_at": pl.Datetime("us"),
                                      "recent": pl.Int64, "statistic": pl.Float64, "feature": pl.String,
                                      "drifted": pl.Boolean})
