"""AppTest: every page renders on an empty store (with guidance) and on sample data, without exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.engine.samples import simulate_into
from store import Store

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "web" / "main.py")
PAGES = ["../../pages/overview.py", "../../pages/data.py"]


def _app(db: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("TELLTALE_DB", str(db))
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")  # no background writes while the page is checked
    from app.web.resources import get_live_control, get_store

    get_store.clear()  # a fresh Store for this test's database
    get_live_control.clear()
    return AppTest.from_file(ENTRY, default_timeout=60)


def _texts(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [i.value for i in app.info] + [m.value for m in app.metric]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_an_empty_store(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "empty.duckdb", monkeypatch).run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert "The store is empty" in _texts(app)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_data(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "data.duckdb"
    with Store(db) as store:
        report = simulate_into(store, users=3, sessions=2, seed=5, load_seconds=30)
    app = _app(db, monkeypatch).run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert "The store is empty" not in _texts(app)
    if page.endswith("overview.py"):
        shown = {m.label: m.value for m in app.metric}
        assert shown["Events"] == f"{report.events.events_added:,}"
    else:
        tables = [frame.value for frame in app.dataframe]
        counts = dict(zip(tables[0]["table"], tables[0]["rows"], strict=True))
        assert counts["events"] == report.events.events_added


def test_data_page_simulate_form_stores_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "sim.duckdb", monkeypatch).run()
    app.switch_page("../../pages/data.py").run()
    app.number_input[0].set_value(2)
    app.number_input[1].set_value(1)
    app.button(key="FormSubmitter:simulate-Simulate").click().run()
    assert not app.exception, app.exception
    assert any("labelled sessions" in s.value for s in app.success)
    from app.web.resources import get_store

    assert get_store().table_counts()["sessions"] >= 2


#: Uploads refused by the file checks (a wrong delimiter) and by the row checks (a bad number).
REFUSED_UPLOADS = [b"session_id;user_id;seq;t_ms;type\ns1;alice;0;0;key_down\n",
                   b"session_id,user_id,seq,t_ms,type\ns1,alice,0,abc,key_down\n"]


@pytest.mark.parametrize("content", REFUSED_UPLOADS, ids=["file", "row"])
def test_a_refused_upload_is_named_as_the_user_uploaded_it(content: bytes, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "upload.duckdb", monkeypatch).run()
    app.switch_page("../../pages/data.py").run()
    app.file_uploader[0].set_value(("my events.csv", content, "text/csv"))
    app.run()
    assert not app.exception, app.exception
    [refused] = [e.value for e in app.error]
    assert "**my events.csv** was refused" in refused
    assert "uploads" not in refused and ".csv**" in refused


def test_an_imported_upload_counts_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "words.duckdb", monkeypatch).run()
    app.switch_page("../../pages/data.py").run()
    one = b"session_id,user_id,seq,t_ms,type\ns1,alice,0,0,focus\n"
    app.file_uploader[0].set_value(("one.csv", one, "text/csv"))
    app.run()
    assert "1 row passes every check: 1 new event, 0 already stored." in _texts_of(app, "success")
    [button] = [b for b in app.button if b.label == "Import one.csv"]
    button.click().run()
    assert not app.exception, app.exception
    assert ("one.csv: read 1 row; stored 1 new event (0 already stored), 1 new session, 1 new user"
            in _texts_of(app, "success"))


def test_capture_enrolment_shows_the_models_it_just_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.engine.pipeline import featurize_pending

    db = tmp_path / "enrol.duckdb"
    with Store(db) as store:
        simulate_into(store, users=2, sessions=6, seed=3, load_seconds=5)
        featurize_pending(store)
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_REPETITIONS", "2")
    app = _app(db, monkeypatch).run()
    app.switch_page("../../pages/capture.py").run()
    app.text_input[0].input("u001").run()
    assert "models: none yet" in _texts_of(app, "caption")

    app.session_state["capture:enrol:u001"].completed.extend(["rep-1", "rep-2"])  # what the browser's batches do
    app.run()
    assert not app.exception, app.exception
    assert "models: manhattan_log." in _texts_of(app, "caption")
    assert "Enrolment complete" in _texts_of(app, "success")
    assert "Enrolment complete" not in _texts_of(app, "error") + _texts_of(app, "warning")


def _texts_of(app: AppTest, kind: str) -> str:
    return "\n".join(str(element.value) for element in getattr(app, kind))


def test_overview_tells_what_happened_to_a_replayed_population(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A small population loaded as the sample data is (replayed in time order): the Overview shows the
    sessions decided SAFE and UNSAFE over its days, the attacks caught by type, the genuine friction,
    and opens a chosen attack on Investigation."""
    from app.engine.samples import load_sample_data, write_simulation

    folder = tmp_path / "sample"
    write_simulation(folder / "events.csv", users=6, sessions=5, seed=8, attack_share=0.4, enrolment_days=3,
                     load_seconds=5)
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "3")
    db = tmp_path / "replayed.duckdb"
    with Store(db) as store:
        assert load_sample_data(store, folder) is not None
        attack_sessions = {s for (s,) in store.rows(
            "SELECT session_id FROM session_labels WHERE label <> 'genuine'")}
    app = _app(db, monkeypatch).run()
    app.switch_page("../../pages/overview.py").run()
    assert not app.exception, app.exception
    text = _texts(app)
    assert "SAFE" in text and "UNSAFE" in text and "decided between 2026-01-0" in text
    shown = {m.label: m.value for m in app.metric}
    assert "Genuine users asked for more" in shown and any(label.endswith("s caught") for label in shown)
    attacks = next(frame for frame in app.dataframe if "label" in frame.value.columns
                   and set(frame.value["label"]) - {"genuine"})
    assert set(attacks.value["session_id"]) <= attack_sessions
