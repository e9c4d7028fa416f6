"""AppTest: the Live monitor, Investigation and Threshold lab pages on an empty store, on unscored sample
data and on scored sample data; the lab re-decides stored decisions without touching the models."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from app.engine.evidence import evidence_for_risk
from app.engine.policy import DEFAULT_POLICY
from app.engine.samples import simulate_into
from store import Store

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "web" / "main.py")
LIVE, INVESTIGATION, LAB = "../../pages/live.py", "../../pages/investigation.py", "../../pages/threshold_lab.py"
PAGES = [LIVE, INVESTIGATION, LAB]
#: Enrolment sessions for training and for the lab's "leave out enrolment windows" (the simulation's
#: first 4 days are free of attacks).
ENROLMENT_SESSIONS = "4"


@pytest.fixture(scope="module")
def scored_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated users with windows, one fast detector's models, scores and decisions (built once)."""
    path = tmp_path_factory.mktemp("scored") / "scored.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TELLTALE_DETECTORS", "manhattan_log")
        patch.setenv("TELLTALE_ENROLMENT_SESSIONS", ENROLMENT_SESSIONS)
        from app.engine.pipeline import featurize_pending, score_pending
        from app.engine.training import train

        with Store(path) as store:
            simulate_into(store, users=3, sessions=6, seed=5, enrolment_days=4)
            featurize_pending(store)
            train(store)
            assert score_pending(store), "the fixture needs decisions"
    return path


@pytest.fixture
def scored(scored_db: Path, tmp_path: Path) -> Path:
    """A private copy of the scored store (tests may write to it)."""
    return Path(shutil.copy(scored_db, tmp_path / "scored.duckdb"))


def _app(db: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("TELLTALE_DB", str(db))
    monkeypatch.setenv("TELLTALE_SCHEDULER", "off")  # no background writes while the page is checked
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", ENROLMENT_SESSIONS)
    from app.web.resources import get_live_control, get_store

    get_store.clear()  # a fresh Store for this test's database
    get_live_control.clear()
    return AppTest.from_file(ENTRY, default_timeout=60)


def _open(db: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    app = _app(db, monkeypatch).run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def _texts(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [i.value for i in app.info] + [c.value for c in app.caption]
    return "\n".join(str(p) for p in parts)


def _metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def _models_snapshot() -> list[tuple]:
    from app.web.resources import get_store

    return get_store().rows("SELECT model_id, active, trained_at, hash(blob), CAST(metadata AS VARCHAR) "
                            "FROM models ORDER BY model_id")


@pytest.mark.parametrize("page", PAGES)
def test_page_guides_on_an_empty_store(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(tmp_path / "empty.duckdb", page, monkeypatch)
    assert "**Data**" in _texts(app)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_unscored_sample_data(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "sample.duckdb"
    with Store(db) as store:
        simulate_into(store, users=2, sessions=2, seed=3, load_seconds=30)
    app = _open(db, page, monkeypatch)
    if page == LAB:
        assert "No window has a score yet" in _texts(app)
    else:
        assert "The store is empty" not in _texts(app)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_scored_data(page: str, scored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(scored, page, monkeypatch)
    assert "The store is empty" not in _texts(app)
    assert app.get("plotly_chart"), "the page draws charts"
    explained = len(app.info)
    app.toggle(key="teaching_mode").set_value(True).run()
    assert not app.exception, app.exception
    assert len(app.info) >= explained + 3, "teaching mode explains each chart"


def test_live_monitor_shows_latest_decisions_and_can_pause(scored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(scored, LIVE, monkeypatch)
    assert _metrics(app)["UNSAFE among the latest decisions"].endswith("of 25")
    assert any("-badge[SAFE]" in m.value or "-badge[UNSAFE]" in m.value for m in app.markdown)
    assert "showing the 5 min up to the newest stored event" in _texts(app)  # sample data is historic
    app.toggle(key="live_paused").set_value(True).run()
    assert not app.exception, app.exception
    assert "paused" in _texts(app)
    app.selectbox(key="live_minutes").set_value(60).run()
    assert not app.exception, app.exception


def _app_store():
    """The app's own Store (a second DuckDB connection to the file is refused while the app holds it)."""
    from app.web.resources import get_store

    return get_store()


def _session_seconds_ago(session_id: str, user_id: str, seconds: float) -> None:
    """A session of one key press whose events happened `seconds` before now (wall clock)."""
    from store import ingest_events

    now = datetime.now(UTC).replace(tzinfo=None)
    events = pl.DataFrame({"session_id": [session_id] * 2, "user_id": [user_id] * 2, "seq": [0, 1],
                           "t_ms": [0.0, 90.0], "type": ["key_down", "key_up"], "key_class": ["letter"] * 2,
                           "press_id": [1, 1], "source": ["simulator"] * 2})
    started = pl.DataFrame({"session_id": [session_id], "user_id": [user_id],
                            "started_at": [now - timedelta(seconds=seconds)]})
    ingest_events(_app_store(), events, sessions=started)


def _session_tables(app: AppTest) -> list:
    """The Live monitor's tables of sessions (a table without on_select has no key to find it by)."""
    return [frame.value for frame in app.dataframe if "session_id" in frame.value.columns]


def _rerun_uncached(app: AppTest) -> AppTest:
    """Run again with the panel's one-second snapshot cache emptied (the store changed under it)."""
    import streamlit as st

    st.cache_data.clear()
    app.run()
    assert not app.exception, app.exception
    return app


def test_live_monitor_calls_active_only_sessions_with_events_moments_ago(scored: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(scored, LIVE, monkeypatch)
    assert _metrics(app)["Active sessions"] == "0"  # the simulated sessions are from January
    assert "No session is active" in _texts(app)
    assert "(none of them active)" in _texts(app) and len(_session_tables(app)) == 1  # listed as what they are

    _session_seconds_ago("moments-ago", "u001", 5)
    _session_seconds_ago("ten-minutes-ago", "u002", 600)  # within the 15 min shown, but idle since
    app.selectbox(key="live_minutes").set_value(15)
    _rerun_uncached(app)
    assert _metrics(app)["Active sessions"] == "1"
    assert "No session is active" not in _texts(app)
    [active] = _session_tables(app)
    assert list(active["session_id"]) == ["moments-ago"]


def test_live_monitor_says_why_a_low_risk_decision_denies(scored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.engine.policies import latest_policy
    from app.engine.policy import DecisionContext, decide
    from store.decisions import DecisionRecord, record_decisions

    app = _open(scored, LIVE, monkeypatch)
    _session_seconds_ago("replayer", "u001", 5)
    replayed = decide(0.04, latest_policy(_app_store()), DecisionContext(enrolment_windows=50, replayed=True))
    assert replayed.action == "DENY"
    record_decisions(_app_store(), [DecisionRecord(replayed, user_id="u001", session_id="replayer")])
    _rerun_uncached(app)

    newest = next(m.value for m in app.markdown if "-badge[" in m.value)
    assert "DENY" in newest and "risk 0.04" in newest and "replayed pattern" in newest
    [active] = _session_tables(app)
    assert active["action"].tolist() == ["DENY"] and "replayed pattern" in active["reason"][0]


def test_investigation_shows_the_session_chosen_on_history(scored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(scored) as store:
        session_id, user_id, events = store.rows(
            "SELECT s.session_id, s.user_id, count(*) FROM sessions s JOIN session_labels l USING (session_id) "
            "JOIN events e USING (session_id) WHERE l.label = 'hijack' GROUP BY ALL")[0]
    app = _app(scored, monkeypatch).run()
    app.session_state["investigate_user"] = "someone else"  # the session's owner wins
    app.session_state["investigate_session"] = session_id
    app.switch_page(INVESTIGATION).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="inv_user").value == user_id
    assert app.selectbox(key="inv_session").value == session_id
    assert f"Session `{session_id}`" in _texts(app)
    assert _metrics(app)["Events"] == f"{events:,}"
    assert "Ground truth (simulation label, never used to decide): hijack" in _texts(app)
    decided = next(frame.value for frame in app.dataframe if "reasons" in frame.value.columns)
    assert len(decided) and decided["reasons"].str.startswith("risk ").all()  # words, not a JSON list
    stored = _app_store().rows("SELECT d.evidence, d.evidence_change FROM decisions d JOIN feature_windows w "
                               "USING (window_id) WHERE d.session_id = ? ORDER BY w.end_ms, d.window_id",
                               [session_id])
    assert list(decided.columns[:6]) == ["decided_at", "kind", "window_risk", "evidence_change", "evidence", "action"]
    assert list(zip(decided["evidence"], decided["evidence_change"], strict=True)) == stored  # in window order
    chain = _chart(app, "The session's evidence, window by window")
    bars, line = chain["data"][0], chain["data"][1]
    assert (bars["name"], line["name"]) == ("window change", "evidence")
    assert _values(line["y"]) == [evidence for evidence, _ in stored]
    assert _values(bars["y"]) == [change for _, change in stored]
    edges = [shape["y0"] for shape in chain["layout"]["shapes"] if shape["type"] == "line"]
    assert edges == pytest.approx([evidence_for_risk(b.lower) for b in DEFAULT_POLICY.bands[1:]])

    app.radio(key="inv_method").set_value("leave one feature out (model)").run()
    assert not app.exception, app.exception
    assert "The model is no longer stored" not in _texts(app)
    drivers = _chart(app, "What drove the risk")["data"]
    assert drivers and len(_values(drivers[0]["y"])) > 0  # contributions of the loaded models' risks
    app.button(key="inv_replay_button").click().run()
    assert not app.exception, app.exception

    replay = next(c for c in app.get("plotly_chart") if "frames" in json.loads(c.proto.spec))
    assert len(json.loads(replay.proto.spec)["frames"]) > 1


def _values(array: list | dict) -> list:
    """A data array of a chart spec as a list: Plotly sends numeric arrays as typed base64 ("bdata")."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def _chart(app: AppTest, title: str) -> dict:
    """The spec of the page's Plotly chart whose title starts with `title`."""
    specs = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return next(s for s in specs if s["layout"].get("title", {}).get("text", "").startswith(title))


def _session_dots(app: AppTest) -> dict[str, list[float]]:
    """The lab's session chart: label -> each session's highest risk."""
    return {trace["name"].split(" (")[0]: _values(trace["x"])
            for trace in _chart(app, "Each session's highest risk")["data"]}


def test_threshold_lab_sliders_redecide_stored_decisions_without_refitting(scored: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(scored, LAB, monkeypatch)
    models_before = _models_snapshot()
    before = _metrics(app)
    assert before["Would change verdict"] == "0"  # the stored setting re-decides every decision as it was
    assert before["Genuine denied"] and all(not m.proto.delta for m in app.metric if m.label == "Genuine denied")
    dots_before, windows_before = _session_dots(app), (before["FAR"], before["FRR"], before["AUC"])

    app.slider(key="lab_sensitivity").set_value(1.0).run()  # typical windows no longer wear the evidence down
    assert not app.exception, app.exception
    after = _metrics(app)
    assert int(after["SAFE → UNSAFE"]) > 0 and after["UNSAFE → SAFE"] == "0"
    dots_after = _session_dots(app)
    assert dots_after.keys() == dots_before.keys()
    assert all(a >= b for label in dots_before for a, b in zip(sorted(dots_after[label]), sorted(dots_before[label]),
                                                               strict=True))
    assert sum(dots_after["genuine"]) > sum(dots_before["genuine"])
    assert (after["FAR"], after["FRR"], after["AUC"]) == windows_before  # windows on their own do not move

    app.slider(key="lab_edge_1").set_value(0.8).run()  # flagging starts lower: more genuine sessions denied
    assert not app.exception, app.exception
    edges = [shape["x0"] for shape in _chart(app, "Each session's highest risk")["layout"]["shapes"]
             if shape["type"] == "line"]
    assert edges == [DEFAULT_POLICY.bands[1].lower, 0.8, DEFAULT_POLICY.bands[3].lower]
    lower_edge = _metrics(app)
    assert float(lower_edge["Genuine denied"].rstrip("%")) > float(before["Genuine denied"].rstrip("%"))
    [denied] = [m for m in app.metric if m.label == "Genuine denied"]
    assert denied.proto.delta.startswith("+") and denied.proto.delta.endswith(" pp")  # against the stored setting
    app.selectbox(key="lab_kind").set_value("mouse").run()
    assert not app.exception, app.exception
    assert "of kind mouse" in _texts(app)
    assert _models_snapshot() == models_before


def test_threshold_lab_refuses_bad_bands_and_saves_good_ones(scored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _open(scored, LAB, monkeypatch)
    assert app.button(key="lab_save").disabled  # nothing changed yet
    app.slider(key="lab_edge_0").set_value(0.95).run()  # above the next edge (0.9)
    assert not app.exception, app.exception
    assert any("not a valid policy" in e.value and "band 2" in e.value for e in app.error)
    assert app.button(key="lab_save").disabled

    app.slider(key="lab_edge_0").set_value(0.5).run()
    assert not app.error
    app.button(key="lab_save").click().run()
    assert not app.exception, app.exception
    assert any("revision 2" in s.value for s in app.success)
    from app.engine.policies import latest_policy
    from app.web.resources import get_store

    saved = latest_policy(get_store())
    assert (saved.revision, saved.bands[0].upper) == (2, 0.5)
    assert get_store().rows("SELECT actor FROM audit_log WHERE action = 'policy_change' ORDER BY audit_id DESC "
                            "LIMIT 1") == [("threshold-lab",)]
