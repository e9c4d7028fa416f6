"""The live pipeline on a real store: a finished session is windowed, scored and decided once, in one
transaction; models are read from the store once per id and process."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from app import pipeline
from app.models import load_active, train
from app.samples import simulate_into
from simulators import simulate
from store import Store, ingest_events


@pytest.fixture
def trained_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    store = Store(tmp_path / "pipeline.duckdb")
    simulate_into(store, users=3, sessions=6, seed=11, enrolment_days=4, load_seconds=5)
    pipeline.prepare_store(store)
    yield store
    store.close()


def a_new_login(store: Store, name: str) -> str:
    """A genuine simulated session of a trained user, stored under a new session id; returns the id."""
    sim = simulate(3, 6, seed=99, enrolment_days=4)
    source = sim.events["session_id"][0]
    events = sim.events.filter(pl.col("session_id") == source).with_columns(session_id=pl.lit(name))
    ingest_events(store, events, audit=False)
    return name


def test_a_finished_session_is_decided_window_by_window_and_only_once(trained_store: Store) -> None:
    store = trained_store
    session = a_new_login(store, "login-1")

    verdict = pipeline.score_session(store, session)

    windows = store.scalar("SELECT count(*) FROM feature_windows WHERE session_id = ?", [session])
    decided = store.rows("SELECT window_id, decision_id FROM decisions WHERE session_id = ?", [session])
    assert verdict is not None and windows > 0
    assert len(decided) == windows  # one decision per window
    assert verdict.decision_id in {d for _, d in decided}
    audited = store.scalar("SELECT count(*) FROM audit_log WHERE action = 'decision' AND list_contains(?, subject)",
                           [[d for _, d in decided]])
    assert audited == windows
    scored = store.scalar("SELECT count(DISTINCT window_id) FROM scores WHERE window_id LIKE ?", [f"{session}:%"])
    assert scored == windows

    assert pipeline.score_session(store, session) is None  # nothing new: no second decision
    assert store.scalar("SELECT count(*) FROM decisions WHERE session_id = ?", [session]) == windows


def test_windows_built_while_the_session_was_open_are_decided_with_the_rest(trained_store: Store) -> None:
    """The scheduler may store a session's first windows before the login's own scoring call: those
    are not new to that call, and must be read back and decided like the ones it adds."""
    store = trained_store
    session = a_new_login(store, "login-open")
    assert pipeline.featurize_sessions(store, [session], final=False) > 0  # e.g. the fixed-text window
    earlier = {w for (w,) in store.rows("SELECT window_id FROM feature_windows WHERE session_id = ?", [session])}

    verdict = pipeline.score_session(store, session)

    decided = {w for (w,) in store.rows("SELECT window_id FROM decisions WHERE session_id = ?", [session])}
    windows = {w for (w,) in store.rows("SELECT window_id FROM feature_windows WHERE session_id = ?", [session])}
    assert verdict is not None
    assert earlier < windows  # the final build added windows ...
    assert decided == windows  # ... and every window, earlier or new, got its one decision


def test_scoring_that_fails_half_way_stores_no_decision_audit_row_or_score(
        trained_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import store.models

    store_ = trained_store
    session = a_new_login(store_, "login-2")
    pipeline.featurize_sessions(store_, [session], final=True)
    before = store_.table_counts()

    def disk_full(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store.models, "record_scores", disk_full)  # the last write of score_windows
    with pytest.raises(OSError, match="disk full"):
        pipeline.score_session(store_, session)

    assert store_.table_counts() == before
    monkeypatch.undo()
    assert pipeline.score_session(store_, session) is not None  # the windows are still there to score


def test_models_are_unpickled_once_per_id_and_a_retrain_is_picked_up(trained_store: Store) -> None:
    store = trained_store
    first = load_active(store)
    again = load_active(store)
    assert first.rows["model_id"].to_list() == again.rows["model_id"].to_list() == list(first.by_id)
    assert all(first.by_id[m] is again.by_id[m] for m in first.by_id)  # cached, not re-read
    assert pl.Object not in first.rows.dtypes  # no Python objects inside a Polars frame (see ActiveModels)

    train(store, users=["u001"])

    after = load_active(store)
    retrained = set(after.by_id) - set(first.by_id)
    assert retrained and all("u001" in model_id for model_id in retrained)
    assert all(after.by_id[m] is first.by_id[m] for m in set(after.by_id) & set(first.by_id))
    assert all(after.by_id[m] is not first.by_id.get(m) for m in retrained)


# -- enrolled on the Capture page, then logging in through the form ---------------------------------
PHRASE_CLASSES = ["punct", "letter", "letter", "letter", "digit", "letter", "letter", "letter", "letter", "letter",
                  "enter"]  # . t i e 5 R o a n l Enter (Shift is held around R)


def phrase_rhythm(repetition: int) -> list[tuple[float, float]]:
    """(hold, gap) ms per key of one person, a little different each repetition (the browser test's typist)."""
    wobble = [((7 * repetition + 3 * i) % 11) - 5 for i in range(len(PHRASE_CLASSES))]
    return [(95 + 7 * (i % 4) + w, 140 + 23 * (i % 5) + 3 * w) for i, w in enumerate(wobble)]


def capture_session(session_id: str, rhythm: list[tuple[float, float]], *, form: bool) -> pl.DataFrame:
    """Events as the capture component sends them: the phrase in the password field (positions 0-11,
    Shift at 5), after a user name typed in its own field when `form` (a login), then submit."""
    rows: list[dict[str, object]] = []
    t, press = 1_000.0, 0

    def add(kind: str, **values: object) -> None:
        rows.append({"type": kind, "t_ms": t, **values})

    if form:
        add("field_enter", field="username")
        for _ in range(5):
            press += 1
            add("key_down", key_class="letter", press_id=press, field="username")
            t += 80
            add("key_up", key_class="letter", press_id=press, field="username")
            t += 20
        t += 400
        add("field_leave", field="username")
        add("field_enter", field="password")
        t += 90
    for pos, (key_class, (hold, gap)) in enumerate(zip(PHRASE_CLASSES, rhythm, strict=True)):
        at = pos if pos < 5 else pos + 1
        if key_class == "letter" and pos == 5:  # Shift down, R, R up, Shift up
            press += 1
            shift = press
            add("key_down", key_class="shift", press_id=shift, pos=5, field="password")
            t += 30
        press += 1
        add("key_down", key_class=key_class, press_id=press, pos=at, field="password")
        t += hold
        add("key_up", key_class=key_class, press_id=press, pos=at, field="password")
        if key_class == "letter" and pos == 5:
            t += 5
            add("key_up", key_class="shift", press_id=shift, pos=5, field="password")
        if pos < len(PHRASE_CLASSES) - 1:
            t += gap
    add("submit")
    return pl.DataFrame(rows).with_columns(
        session_id=pl.lit(session_id), user_id=pl.lit("alice"), seq=pl.int_range(pl.len()), source=pl.lit("browser"))


def test_a_user_enrolled_on_the_phrase_alone_is_allowed_through_the_login_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELLTALE_DETECTORS", "manhattan_log,lof")
    store = Store(tmp_path / "capture.duckdb")
    for repetition in range(1, 7):
        session = f"enrol-alice-rep{repetition}"
        ingest_events(store, capture_session(session, phrase_rhythm(repetition), form=False))
        pipeline.featurize_sessions(store, [session], final=True)
    pipeline.train_user(store, "alice")

    ingest_events(store, capture_session("login-alice-1", phrase_rhythm(7), form=True))
    genuine = pipeline.score_session(store, "login-alice-1")
    ingest_events(store, capture_session("login-alice-2", [(10.0, 10.0)] * len(PHRASE_CLASSES), form=True))
    bot = pipeline.score_session(store, "login-alice-2")

    assert genuine is not None and bot is not None
    assert (genuine.kind, genuine.verdict) == ("fixed_text", "SAFE"), genuine
    assert all(f["feature"] not in ("time_to_submit", "time_per_field_mean") for f in genuine.top_features)
    assert (bot.verdict, bot.action) == ("UNSAFE", "DENY")
    kinds = store.rows("SELECT DISTINCT w.kind FROM decisions d JOIN feature_windows w USING (window_id)")
    assert kinds == [("fixed_text",)]  # the logins' time slices hold nothing but the phrase: not scored again
    store.close()
