"""`evaluate --format balabit` at the size of the full challenge (about 4.6M events with its test part).

Only the training part of the Balabit challenge is in ../shared, so this builds a stand-in of the full
layout in a temporary folder, for timing only: `training_files/` links to the real training sessions,
and `test_files/<user>/session_*` are consecutive 2,000-row slices of the same real sessions (so the
stand-in holds twice the training events), every other slice claimed by another user and labelled
illegal in `public_labels.csv`. Its genuine test slices repeat training data, so the detectors' figures
on it mean nothing and are not reported; what is measured is that the labelled-test path of
`app.engine.detector_evaluation.evaluate` (parse every file, build windows, fit each user's models, score every test
session against the claimed user) finishes within 10 minutes.

Baseline in the same run: parsing the same files (`store.importers.balabit.read_balabit`), the floor
of any evaluation of them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from app.engine.detector_evaluation import DEFAULT_DETECTORS, evaluate
from store.importers.balabit import read_balabit

SLICE_ROWS = 2_000
TARGET_S = 600.0


def build_full_layout(training: Path, target: Path, slice_rows: int = SLICE_ROWS) -> dict[str, int]:
    """Write the stand-in layout under `target` from a real `training_files/` folder; returns its counts."""
    sessions = sorted(p for p in training.glob("*/session_*") if p.is_file())
    if not sessions:
        raise SystemExit(f"{training} has no <user>/session_* files: give --path to a Balabit folder")
    users = sorted({p.parent.name for p in sessions})
    (target / "training_files").mkdir(parents=True)
    for user in users:
        (target / "training_files" / user).symlink_to((training / user).resolve(), target_is_directory=True)
    labels, rows = [], 0
    for path in sessions:
        frame = pl.read_csv(path, infer_schema=False)
        rows += frame.height
        for k, start in enumerate(range(0, frame.height, slice_rows)):
            owner = path.parent.name
            claimed = users[(users.index(owner) + 1) % len(users)] if k % 2 else owner
            name = f"session_{path.name.split('_')[-1]}{k:03d}"
            folder = target / "test_files" / claimed
            folder.mkdir(parents=True, exist_ok=True)
            frame.slice(start, slice_rows).write_csv(folder / name)
            labels.append({"filename": name, "is_illegal": int(claimed != owner)})
            rows += min(slice_rows, frame.height - start)
    pl.DataFrame(labels).write_csv(target / "public_labels.csv")
    return {"users": len(users), "training_sessions": len(sessions), "test_sessions": len(labels),
            "illegal_test_sessions": sum(label["is_illegal"] for label in labels), "rows": rows}


def bench_evaluate_balabit(folder: Path) -> dict[str, Any]:
    """Seconds of `evaluate --format balabit` on the full-size stand-in, beside parsing it alone."""

    training = folder / "training_files"
    if not training.exists():
        raise SystemExit(f"{training} not found: give --path to a Balabit folder (training_files/...)")
    with tempfile.TemporaryDirectory() as scratch:
        layout = Path(scratch) / "balabit-full"
        print(f"building the full-size layout from {training} ...", file=sys.stderr)
        built = build_full_layout(training, layout)
        print(f"layout: {built}; parsing (baseline) ...", file=sys.stderr)
        started = time.perf_counter()
        parsed = read_balabit(layout)
        parse_s = time.perf_counter() - started
        print(f"evaluating {', '.join(DEFAULT_DETECTORS['balabit'])} ...", file=sys.stderr)
        started = time.perf_counter()
        result = evaluate(layout, "balabit")
        evaluate_s = time.perf_counter() - started
    return {"layout": built, "events": parsed.events.height, "split": result["protocol"]["split"],
            "detectors": list(result["detectors"]), "evaluate_s": round(evaluate_s, 1),
            "baseline": "parsing the same files (read_balabit)", "baseline_s": round(parse_s, 1),
            "target_s": TARGET_S, "within_target": evaluate_s < TARGET_S}
