"""AppTest of the Models page: empty store, training with data, and an evaluation run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.samples import simulate_into
from store import Store

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _app(db: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("TELLTALE_DB", str(db))
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    from app.resources import get_store

    get_store.clear()
    app = AppTest.from_file(ENTRY, default_timeout=120).run()
    return app.switch_page("../pages/models.py").run()


def test_models_page_on_an_empty_store_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "empty.duckdb", monkeypatch)
    assert not app.exception
    assert any("No feature windows yet" in i.value for i in app.info)


def test_train_now_trains_every_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "data.duckdb"
    with Store(db) as store:
        simulate_into(store, users=3, sessions=5, seed=3, enrolment_days=4, load_seconds=10)
        from app.pipeline import featurize_pending

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
