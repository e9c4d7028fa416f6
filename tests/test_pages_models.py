"""AppTest of the Models page: empty store, training with data, and an evaluation run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.engine.samples import simulate_into
from store import Store

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "web" / "main.py")


def _app(db: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("TELLTALE_DB", str(db))
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    from app.web.resources import get_store

    get_store.clear()
    app = AppTest.from_file(ENTRY, default_timeout=120).run()
    return app.switch_page("../../pages/models.py").run()


def test_models_page_on_an_empty_store_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "empty.duckdb", monkeypatch)
    assert not app.exception
    assert any("No feature windows yet" in i.value for i in app.info)


def test_train_now_trains_every_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "data.duckdb"
    with Store(db) as store:
        simulate_into(store, users=3, sessions=5, seed=3, enrolment_days=4, load_seconds=10)
        from app.engine.pipeline import featurize_pending

        featurize_pending(store)
    app = _app(db, monkeypatch)
    assert not app.exception
    app.button[0].click().run()
    assert not app.exception
    assert any("trained" in s.value and "models" in s.value for s in app.success)
    users = app.dataframe[0].value
    assert sorted(users["user_id"]) == ["u001", "u002", "u003"]
    assert users["detectors"].notna().sum() == 3


def test_an_evaluation_shows_its_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    columns = ["H.a", "DD.a.b", "UD.a.b", "H.b"]
    lines = ["subject,sessionIndex,rep," + ",".join(columns)]
    for subject in range(3):
        centre = rng.uniform(0.05, 0.3, len(columns))
        for rep in range(1, 13):
            values = centre + rng.normal(0, 0.01, len(columns))
            lines.append(f"s{subject},1,{rep}," + ",".join(f"{v:.4f}" for v in values))
    cmu = tmp_path / "cmu.csv"
    cmu.write_text("\n".join(lines) + "\n")
    app = _app(tmp_path / "eval.duckdb", monkeypatch)
    app.text_input[0].set_value(str(cmu))
    app.multiselect[0].set_value(["manhattan_scaled"])
    app.number_input[0].set_value(6)
    app.number_input[1].set_value(2)
    app.button(key="FormSubmitter:evaluate-Evaluate").click().run()
    assert not app.exception
    table = "\n".join(m.value for m in app.markdown)
    assert "| manhattan_scaled |" in table and "mean EER" in table
    [protocol] = [c.value for c in app.caption if c.value.startswith("Protocol")]
    assert "{" not in protocol and "train 6 reps, impostors 2 reps each of every other subject" in protocol


def test_protocols_read_as_sentences() -> None:
    from app.engine.detector_evaluation import protocol_text

    cmu = {"name": "cmu", "train_reps": 25, "impostor_reps": 1, "subjects": 56, "features": 71, "seed": 0,
           "target_frr": 0.05, "calibration": "training", "open_set_folds": 0, "skipped_subjects": ["s9"],
           "seconds": 3.2, "reference": "Killourhy & Maxion 2009"}
    assert protocol_text(cmu) == (
        "CMU protocol: 56 subjects, 71 features; train 25 reps, impostors 1 rep each of every other subject; "
        "thresholds for a 5% false-reject rate on training scores; skipped (too few repetitions): s9; seed 0; 3.2 s.")
    aalto = {"name": "aalto", "users": 1, "train_sentences": 10, "impostor_sentences": 2, "windows": 900,
             "features": 30, "window": "the 20-keystroke free-text windows of each sentence", "seconds": 1.0}
    assert protocol_text(aalto) == (
        "Aalto protocol: 1 user, 30 features, 900 windows (the 20-keystroke free-text windows of each sentence); "
        "train 10 sentences, impostors 2 sentences each of every other user; 1 s.")
    balabit = {"name": "balabit", "split": "challenge test sessions scored against the claimed user", "users": 10,
               "windows": 5000, "features": 40, "events": 2_000_000, "seconds": 12.0, "surprise": {"a": 1}}
    assert protocol_text(balabit) == (
        "Balabit protocol: 10 users, 40 features, 5,000 windows, 2,000,000 events; challenge test sessions scored "
        "against the claimed user; surprise: {'a': 1}; 12 s.")


def test_sessions_set_aside_are_listed_with_their_error_and_can_be_tried_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store.session_progress import record_scoring_failures, session_failures

    db = tmp_path / "failed.duckdb"
    with Store(db) as store:
        simulate_into(store, users=2, sessions=2, seed=3, load_seconds=5)
        record_scoring_failures(store, {"s-3-000001": "ValueError: a model refused these windows"})
    app = _app(db, monkeypatch)
    assert not app.exception
    listed = next(frame.value for frame in app.dataframe if "error" in frame.value.columns)
    assert listed["session_id"].tolist() == ["s-3-000001"]
    assert listed["error"].tolist() == ["ValueError: a model refused these windows"]
    next(b for b in app.button if b.label == "Try these sessions again").click().run()
    assert not app.exception
    assert any("1 session queued" in s.value for s in app.success)
    with Store(db) as store:
        assert session_failures(store).height == 0
