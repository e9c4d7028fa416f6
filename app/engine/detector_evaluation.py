"""`python -m app evaluate`: detectors measured on public datasets, straight from the files.

No database is involved: each dataset is parsed, turned into windows and evaluated in memory.
Reference figures are the published ones named in ../shared/datasets/README.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from detectors.evaluation import evaluate_cmu, protocol_sizes
from detectors.features import WindowSettings, build_windows, feature_names
from detectors.session_protocols import SessionSplit, chunk_sessions, evaluate_sessions, split_by_session_order
from store.importers.aalto import read_aalto
from store.importers.balabit import read_balabit
from store.importers.cmu import read_cmu
from store.text import plural

REFERENCES: dict[str, dict[str, float]] = {
    "cmu": {"manhattan_scaled": 0.0962, "zscore_count": 0.1022, "autoencoder": 0.1614},
    "balabit": {},
    "aalto": {},
}
REFERENCE_NOTES = {
    "cmu": "Killourhy & Maxion 2009 (CMU data, 200 training repetitions): scaled Manhattan EER 0.0962, "
           "z-score outlier count 0.1022, auto-associative network 0.1614; on MEU-Mobile KSD with 25/5, "
           "scaled Manhattan is about 0.14.",
    "balabit": "Antal & Egyed-Zsigmond 2019: global session ROC AUC 0.92 on the labelled test sessions.",
    "aalto": "No published verification figure for this subset; compare detectors with each other.",
}
DEFAULT_DETECTORS = {
    "cmu": ["manhattan_scaled", "zscore_count", "iforest", "lof", "ensemble"],
    "balabit": ["manhattan_scaled", "iforest", "lof", "background"],
    "aalto": ["manhattan_scaled", "iforest", "lof", "background"],
}
#: Balabit test units: pseudo-sessions of this many mouse windows (5 actions each), about the length
#: of a challenge test session.
BALABIT_CHUNK_WINDOWS = 10


def evaluate(path: Path, fmt: str, *, detectors: Sequence[str] | None = None, train_reps: int | None = None,
             impostor_reps: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the protocol of `fmt` on `path`; returns {"protocol": {...}, "detectors": {...}}.

    `train_reps` / `impostor_reps` (cmu: repetitions per subject; aalto: sentences per user) left as
    None are derived from the data (`detectors.evaluation.protocol_sizes`); the protocol's `derived`
    names each derived size and where it came from.
    """
    started = time.perf_counter()
    names = list(detectors or DEFAULT_DETECTORS[fmt])
    if fmt == "cmu":
        result = _cmu(path, names, train_reps, impostor_reps, progress)
    elif fmt == "balabit":
        result = _balabit(path, names, progress)
    elif fmt == "aalto":
        result = _aalto(path, names, train_reps, impostor_reps, progress)
    else:
        raise ValueError(f"unknown format {fmt!r} (cmu, balabit, aalto)")
    result["protocol"]["seconds"] = round(time.perf_counter() - started, 1)
    for figures in result["detectors"].values():
        figures.pop("eer_per_subject", None)  # kept out of the JSON: one line per subject is noise here
    result["protocol"]["reference"] = REFERENCE_NOTES[fmt]
    return result


def _cmu(path: Path, detectors: list[str], train_reps: int | None, impostor_reps: int | None,
         progress) -> dict[str, Any]:

    parsed = read_cmu(path)
    return evaluate_cmu(parsed.windows, parsed.feature_names, detectors, train_reps=train_reps,
                        impostor_reps=impostor_reps, progress=progress)


def _balabit(path: Path, detectors: list[str], progress) -> dict[str, Any]:
    imported = read_balabit(path)
    names = feature_names("mouse")
    windows = build_windows(imported.events, kinds=("mouse",))["mouse"]
    test_labels = imported.labels.filter(pl.col("session_id").is_in(
        windows["session_id"].unique().implode())) if imported.labels.height else imported.labels
    has_test_part = (path / "test_files").exists() and test_labels.filter(pl.col("label") == "impostor").height > 0
    if has_test_part:
        test_ids = set(_test_session_ids(path))
        train = windows.filter(~pl.col("session_id").is_in(list(test_ids)))
        tests = windows.filter(pl.col("session_id").is_in(list(test_ids)))
        label_of = dict(test_labels.select("session_id", "label").iter_rows())
        owner = dict(tests.select("session_id", "user_id").unique().iter_rows())
        users = sorted(train["user_id"].unique())
        split = SessionSplit(
            train={u: sorted(train.filter(pl.col("user_id") == u)["session_id"].unique()) for u in users},
            genuine={u: [s for s, o in owner.items() if o == u and label_of.get(s) == "genuine"] for u in users},
            impostor={u: [s for s, o in owner.items() if o == u and label_of.get(s) == "impostor"] for u in users})
        protocol = {"name": "balabit", "split": "challenge test sessions scored against the claimed user"}
        data = windows
    else:
        split_sessions = split_by_session_order(windows, test_sessions=2, impostor_sessions=2)
        data = chunk_sessions(windows, BALABIT_CHUNK_WINDOWS)
        chunks = data.select("session_id").unique()["session_id"].to_list()
        of_session: dict[str, list[str]] = {}
        for chunk in chunks:
            of_session.setdefault(chunk.split("#")[0], []).append(chunk)

        def expand(ids: list[str]) -> list[str]:
            return sorted(c for s in ids for c in of_session.get(s, []))

        split = SessionSplit(
            train={u: expand(s) for u, s in split_sessions.train.items()},
            genuine={u: expand(s) for u, s in split_sessions.genuine.items()},
            impostor={u: expand(s) for u, s in split_sessions.impostor.items()})
        protocol = {"name": "balabit", "split": (
            "training part only: per user, the last 2 sessions (by file name) are genuine tests, the rest "
            f"train; tests cut into pseudo-sessions of {BALABIT_CHUNK_WINDOWS} mouse windows "
            f"({BALABIT_CHUNK_WINDOWS * 5} actions); impostors: the other users' test pseudo-sessions claimed "
            "as this user")}
    protocol.update({"users": len(split.train), "windows": data.height, "features": len(names),
                     "events": imported.events.height})
    return {"protocol": protocol, "detectors": evaluate_sessions(data, names, detectors, split, progress=progress)}


def _test_session_ids(path: Path) -> list[str]:
    return [f"balabit-{p.name}" for p in sorted((path / "test_files").glob("*/session_*"))]


def _aalto(path: Path, detectors: list[str], train_reps: int | None, impostor_reps: int | None,
           progress) -> dict[str, Any]:

    imported = read_aalto(path)
    settings = WindowSettings(free_text_keys=20)
    names = feature_names("free_text", settings)
    windows = build_windows(imported.events, kinds=("free_text",), settings=settings)["free_text"]
    per_user = (windows.select("user_id", "session_id").unique().sort("user_id", "session_id")
                .group_by("user_id", maintain_order=True).agg(pl.col("session_id")))
    counts = [len(s) for _, s in per_user.iter_rows()]
    train_reps, impostor_reps, why = protocol_sizes(counts, train_reps, impostor_reps, unit="sentences",
                                                    who="user", published=False)
    sessions = {u: list(s) for u, s in per_user.iter_rows() if len(s) > train_reps}
    if not sessions:
        raise ValueError(f"no user has more than {train_reps} sentences with a {settings.free_text_keys}-keystroke "
                         f"window (the most any user has is {max(counts, default=0)}); nothing to test: choose "
                         "fewer training sentences")
    train = {u: s[:train_reps] for u, s in sessions.items()}
    genuine = {u: s[train_reps:] for u, s in sessions.items()}
    impostor = {u: [x for o, s in sessions.items() if o != u for x in s[:impostor_reps]] for u in sessions}
    protocol = {"name": "aalto", "users": len(sessions), "train_sentences": train_reps,
                "impostor_sentences": impostor_reps, "windows": windows.height, "features": len(names),
                "window": "the 20-keystroke free-text windows of each sentence, averaged per sentence",
                "derived": {name.replace("_reps", "_sentences"): text for name, text in why.items()}}
    return {"protocol": protocol,
            "detectors": evaluate_sessions(windows, names, detectors, SessionSplit(train, genuine, impostor),
                                           progress=progress)}


PROTOCOL_NAMES = {"cmu": "CMU", "balabit": "Balabit", "aalto": "Aalto"}
#: Protocol entries `protocol_text` words itself; any other entry is shown as "key: value".
_WORDED = {"name", "subjects", "users", "features", "windows", "events", "window", "train_reps", "impostor_reps",
           "train_sentences", "impostor_sentences", "target_frr", "calibration", "open_set_folds",
           "skipped_subjects", "split", "seed", "seconds", "reference", "derived"}


def protocol_text(protocol: Mapping[str, Any]) -> str:
    """An evaluation's protocol in a sentence, for a page: the data, who trained on how much, who
    played the impostors, how thresholds were set, and how long it took (s). The published reference
    is left out: `markdown` shows it under the table."""
    get = protocol.get
    sizes = [plural(get(key), noun) + (f" ({get('window')})" if key == "windows" and get("window") else "")
             for key, noun in (("subjects", "subject"), ("users", "user"), ("features", "feature"),
                               ("windows", "window"), ("events", "event")) if get(key) is not None]
    parts = [f"{PROTOCOL_NAMES.get(get('name'), get('name'))} protocol: {', '.join(sizes)}"]
    if get("train_reps") is not None:
        parts.append(f"train {plural(get('train_reps'), 'rep')}, impostors {plural(get('impostor_reps'), 'rep')} "
                     "each of every other subject")
    if get("train_sentences") is not None:
        parts.append(f"train {plural(get('train_sentences'), 'sentence')}, impostors "
                     f"{plural(get('impostor_sentences'), 'sentence')} each of every other user")
    if get("split"):
        parts.append(get("split"))
    if get("target_frr") is not None:
        parts.append(f"thresholds for a {get('target_frr'):.0%} false-reject rate on {get('calibration')} scores")
    if (get("open_set_folds") or 0) >= 2:
        parts.append(f"open set: impostor subjects kept out of the background ({get('open_set_folds')} folds)")
    if get("derived"):
        parts.append("sizes from the data: " + ", ".join(f"{key.replace('_', ' ')} {why}"
                                                          for key, why in get("derived").items()))
    if get("skipped_subjects"):
        parts.append(f"skipped (too few repetitions): {', '.join(map(str, get('skipped_subjects')))}")
    parts += [f"{key}: {value}" for key, value in protocol.items() if key not in _WORDED]
    if get("seed") is not None:
        parts.append(f"seed {get('seed')}")
    if get("seconds") is not None:
        parts.append(f"{get('seconds'):g} s")
    return "; ".join(parts) + "."


def markdown(result: dict[str, Any], fmt: str) -> str:
    """Our figures per detector beside the published reference, as a Markdown table."""
    reference = REFERENCES.get(fmt, {})
    lines = ["| detector | mean EER (sd) | ROC AUC | FAR | FRR | published EER |", "|---|---|---|---|---|---|"]
    for name, figures in result["detectors"].items():
        published = f"{reference[name]:.3f}" if name in reference else ""
        lines.append(f"| {name} | {figures['eer_mean']:.3f} ({figures['eer_sd']:.3f}) | {figures['auc']:.3f} | "
                     f"{figures['far']:.3f} | {figures['frr']:.3f} | {published} |")
    return "\n".join(lines) + f"\n\n{result['protocol'].get('reference', '')}"
