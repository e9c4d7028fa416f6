"""The labelled-test path of `evaluate --format balabit` and the full-size stand-in its benchmark builds,
on a small Balabit-format layout written from simulated mouse sessions (timings: `bench evaluate`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from app.engine.detector_evaluation import evaluate
from bench.evaluate import build_full_layout
from simulators import simulate
from store.importers.balabit import read_balabit

HEADER = "record timestamp,client timestamp,button,state,x,y"
STATES = {"mouse_move": "Move", "mouse_down": "Pressed", "mouse_up": "Released"}


def balabit_rows(events: pl.DataFrame) -> str:
    """One simulated session's mouse events in the challenge's CSV format (seconds, Move/Pressed/...)."""
    mouse = events.filter(pl.col("type").is_in(list(STATES))).sort("seq")
    lines = [HEADER]
    for t_ms, kind, x, y, button in mouse.select("t_ms", "type", "x", "y", "button").iter_rows():
        held = button is not None and kind == "mouse_move"
        state = "Drag" if held else STATES[kind]
        name = "NoButton" if kind == "mouse_move" and not held else "Left"
        lines.append(f"{t_ms / 1000:.3f},{t_ms / 1000:.3f},{name},{state},{round(x)},{round(y)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def simulated_sessions() -> list[tuple[str, str, str]]:
    """(user, session id, Balabit CSV text) of the genuine sessions of 3 simulated users, 4 each."""
    sim = simulate(3, 4, seed=5, enrolment_days=0)
    genuine = sim.labels.filter(pl.col("label") == "genuine").join(sim.sessions, on="session_id")
    by_session = sim.events.partition_by("session_id", as_dict=True)
    return [(user, session, balabit_rows(by_session[(session,)]))
            for session, user in genuine.sort("session_id").select("session_id", "user_id").iter_rows()]


def write_challenge(folder: Path, sessions: list[tuple[str, str, str]]) -> dict[str, str]:
    """Per user the first 2 sessions train; the others are test files claimed by their user (legal) or,
    for each user's last one, claimed by the next user (illegal). Returns test file -> label."""
    users = sorted({user for user, _, _ in sessions})
    labels: dict[str, str] = {}
    seen: dict[str, int] = {}
    for user, session, text in sessions:
        seen[user] = seen.get(user, 0) + 1
        nth = seen[user]
        name = f"session_{session.replace('-', '')}"
        if nth <= 2:
            part, claimed = "training_files", user
        else:
            claimed = users[(users.index(user) + 1) % len(users)] if nth == 4 else user
            part = "test_files"
            labels[name] = "impostor" if claimed != user else "genuine"
        (folder / part / claimed).mkdir(parents=True, exist_ok=True)
        (folder / part / claimed / name).write_text(text)
    (folder / "public_labels.csv").write_text(
        "filename,is_illegal\n" + "".join(f"{n},{int(label == 'impostor')}\n" for n, label in labels.items()))
    return labels


def test_labelled_test_sessions_are_scored_against_the_claimed_user(tmp_path: Path, simulated_sessions) -> None:
    labels = write_challenge(tmp_path, simulated_sessions)

    result = evaluate(tmp_path, "balabit", detectors=["manhattan_scaled"])

    assert result["protocol"]["split"] == "challenge test sessions scored against the claimed user"
    assert result["protocol"]["users"] == 3
    figures = result["detectors"]["manhattan_scaled"]
    assert figures["genuine_sessions"] == sum(label == "genuine" for label in labels.values())
    assert figures["impostor_sessions"] == sum(label == "impostor" for label in labels.values())
    assert all(np.isfinite(figures[k]) for k in ("eer_mean", "auc", "far", "frr"))


def test_the_full_size_stand_in_doubles_the_events_and_labels_every_other_slice(
    tmp_path: Path, simulated_sessions,
) -> None:
    training = tmp_path / "source" / "training_files"
    for user, session, text in simulated_sessions:
        (training / user).mkdir(parents=True, exist_ok=True)
        (training / user / f"session_{session.replace('-', '')}").write_text(text)
    per_session = [text.count("\n") - 1 for _, _, text in simulated_sessions]
    slices = [-(-rows // 100) for rows in per_session]  # 100-row slices, the last one shorter

    built = build_full_layout(training, tmp_path / "full", slice_rows=100)
    parsed = read_balabit(tmp_path / "full")

    assert built["rows"] == 2 * sum(per_session)
    assert built["training_sessions"] == len(simulated_sessions)
    assert built["test_sessions"] == sum(slices)
    assert built["illegal_test_sessions"] == sum(n // 2 for n in slices)  # every second slice of a session
    tests = [f"balabit-{p.name}" for p in (tmp_path / "full" / "test_files").glob("*/session_*")]
    labelled = parsed.labels.filter(pl.col("session_id").is_in(tests))
    assert labelled.group_by("label").len().sort("label").rows() == [
        ("genuine", built["test_sessions"] - built["illegal_test_sessions"]),
        ("impostor", built["illegal_test_sessions"])]
