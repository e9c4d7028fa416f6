"""The live pipeline on a real store: a finished session is windowed, scored and decided once, in one
transaction; models are read from the store once per id and process."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from app.engine import pipeline
from app.engine.evidence import REPLAY_TOLERANCE_MS, replayed
from app.engine.training import load_active, train, window_matrix
from detectors.features import build_windows, feature_names
from simulators import simulate
from store import Store, ingest_events
from store.contents import events_for_sessions
from store.decisions import session_states
from store.windows import earlier_window_vectors, window_rows
from tests.conftest import store_a_genuine_login


def test_a_finished_session_is_decided_window_by_window_and_only_once(trained_store: Store) -> None:
    store = trained_store
    session = store_a_genuine_login(store, "login-1")

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
    session = store_a_genuine_login(store, "login-open")
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
    store_ = trained_store
    session = store_a_genuine_login(store_, "login-2")
    pipeline.featurize_sessions(store_, [session], final=True)
    before = store_.table_counts()

    def disk_full(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "record_scores", disk_full)  # the last write of score_windows
    with pytest.raises(OSError, match="disk full"):
        pipeline.score_session(store_, session)

    assert store_.table_counts() == before
    monkeypatch.undo()
    assert pipeline.score_session(store_, session) is not None  # the windows are still there to score


def a_login_batch(name: str) -> pl.DataFrame:
    """The events of a genuine simulated session of a trained user under a new id (not stored)."""
    sim = simulate(3, 6, seed=99, enrolment_days=4)
    source = sim.events["session_id"][0]
    return sim.events.filter(pl.col("session_id") == source).with_columns(session_id=pl.lit(name))


def test_a_login_batch_is_stored_and_decided_in_one_go_from_memory(trained_store: Store) -> None:
    """`ingest_and_score` builds a new session's windows from the batch it holds: the same windows
    (ids and feature values) as building them from the stored rows."""
    store = trained_store
    batch = a_login_batch("login-at-once")

    scored = pipeline.ingest_and_score(store, batch, ["login-at-once"], source_name="test", actor="test")

    assert scored.report.events_added == batch.height
    assert scored.report.new_session_events is not None and scored.report.new_session_events.height == batch.height
    verdict = scored.verdicts["login-at-once"]
    assert verdict is not None
    stored = store.frame("SELECT window_id, features FROM feature_windows WHERE session_id = ? ORDER BY window_id",
                         ["login-at-once"])
    decided = {w for (w,) in store.rows("SELECT window_id FROM decisions WHERE session_id = ?", ["login-at-once"])}
    assert set(stored["window_id"]) == decided and verdict.window_id in decided
    settings = pipeline.window_settings()
    from_store = build_windows(events_for_sessions(store, ["login-at-once"]), settings=settings)
    rebuilt = pl.concat([window_rows(w, feature_names(kind, settings), kind=kind, source="pipeline")
                         .select("window_id", "features") for kind, w in from_store.items() if w.height])
    rebuilt = rebuilt.sort("window_id")
    assert rebuilt.equals(stored)


def test_a_session_new_in_the_transaction_starts_from_the_state_the_full_read_gives(trained_store: Store) -> None:
    store = trained_store
    ingest_events(store, a_login_batch("fresh-state"), source_name="test")
    assert session_states(store, ["fresh-state"], new=["fresh-state"]) == session_states(store, ["fresh-state"])
    assert session_states(store, ["fresh-state"])["fresh-state"].started_at is not None


def test_a_batch_adding_to_a_stored_session_is_featurized_from_the_store(trained_store: Store) -> None:
    store = trained_store
    batch = a_login_batch("login-in-two")
    half = batch.height // 2
    first = pipeline.ingest_and_score(store, batch.head(half), [], source_name="test", actor="test")
    assert first.report.new_session_events is not None and first.verdicts == {}

    second = pipeline.ingest_and_score(store, batch.tail(batch.height - half), ["login-in-two"],
                                       source_name="test", actor="test")

    assert second.report.new_session_events is None  # the batch is not the whole session
    assert second.verdicts["login-in-two"] is not None
    windows = store.scalar("SELECT count(*) FROM feature_windows WHERE session_id = ?", ["login-in-two"])
    whole = pipeline.ingest_and_score(store, a_login_batch("login-whole"), ["login-whole"], source_name="test",
                                      actor="test")
    assert whole.verdicts["login-whole"] is not None
    assert windows == store.scalar("SELECT count(*) FROM feature_windows WHERE session_id = ?", ["login-whole"])


def test_a_refused_batch_stores_nothing_and_a_scoring_failure_keeps_the_batch(
        trained_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from store import ValidationError

    store_ = trained_store
    before = store_.table_counts()
    broken = a_login_batch("login-broken").with_columns(t_ms=pl.when(pl.col("seq") == 3).then(float("nan"))
                                                        .otherwise(pl.col("t_ms")))
    with pytest.raises(ValidationError, match="t_ms"):
        pipeline.ingest_and_score(store_, broken, ["login-broken"], source_name="test", actor="test")
    assert store_.table_counts() == before

    def disk_full(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "record_scores", disk_full)
    batch = a_login_batch("login-kept")
    scored = pipeline.ingest_and_score(store_, batch, ["login-kept"], source_name="test", actor="test")

    assert scored.verdicts == {"login-kept": None}
    assert "scoring a finished session failed" in caplog.text and "disk full" in caplog.text
    after = store_.table_counts()
    assert after["events"] == before["events"] + batch.height  # the batch is kept ...
    assert after["decisions"] == before["decisions"] and after["scores"] == before["scores"]  # ... nothing half-scored
    assert after["feature_windows"] == before["feature_windows"]
    monkeypatch.undo()
    assert pipeline.score_session(store_, "login-kept") is not None  # the scheduler's later pass can decide it


def _replays_by_sql(store: Store, window_ids: list[str], compare_first: int) -> set[str]:
    """The replay rule as one SQL join (what `earlier_window_vectors` and `replayed` compute in memory)."""
    rows = store.rows("""
        SELECT DISTINCT w.window_id FROM feature_windows w
        JOIN feature_windows earlier
          ON earlier.user_id = w.user_id AND earlier.kind = w.kind AND earlier.schema_id = w.schema_id
         AND list_distance(list_slice(earlier.features, 1, ?), list_slice(w.features, 1, ?)) < ?
         AND earlier.window_id <> w.window_id
         AND (earlier.created_at < w.created_at
              OR (earlier.created_at = w.created_at AND earlier.window_id < w.window_id))
        WHERE list_contains(?, w.window_id)""", [compare_first, compare_first, REPLAY_TOLERANCE_MS, window_ids])
    return {w for (w,) in rows}


def test_a_replayed_login_is_denied_whether_replayed_later_or_in_the_same_batch(trained_store: Store) -> None:
    store = trained_store
    first = pipeline.ingest_and_score(store, a_login_batch("login-r1"), ["login-r1"], source_name="t", actor="t")
    assert first.verdicts["login-r1"] is not None
    assert not any("replayed" in r for r in first.verdicts["login-r1"].reasons)

    again = pipeline.ingest_and_score(store, a_login_batch("login-r2"), ["login-r2"], source_name="t", actor="t")
    assert again.verdicts["login-r2"].action == "DENY"
    assert any("replayed pattern" in r for r in again.verdicts["login-r2"].reasons)

    # two copies finishing in one batch: the second (larger id) replays the first, which replays login-r1
    both = pl.concat([a_login_batch("login-r3"), a_login_batch("login-r4")])
    together = pipeline.ingest_and_score(store, both, ["login-r3", "login-r4"], source_name="t", actor="t")
    assert {s: v.action for s, v in together.verdicts.items()} == {"login-r3": "DENY", "login-r4": "DENY"}


def test_the_replay_check_in_memory_agrees_with_the_sql_rule_on_every_stored_window(trained_store: Store) -> None:
    store = trained_store
    for name in ("login-s1", "login-s2"):  # a genuine login and its exact replay
        pipeline.ingest_and_score(store, a_login_batch(name), [name], source_name="t", actor="t")
    windows = store.frame("SELECT * FROM feature_windows ORDER BY window_id")
    compared, found = 0, set()
    for (_user, kind, _schema), group in windows.group_by("user_id", "kind", "schema_id"):
        compare_first = pipeline._compare_first(kind, len(group["features"][0]))
        expected = _replays_by_sql(store, group["window_id"].to_list(), compare_first)
        found_here = replayed(window_matrix(group), *earlier_window_vectors(store, group), compare_first)
        assert set(group["window_id"].filter(pl.Series(found_here))) == expected
        compared, found = compared + group.height, found | expected
    assert compared == windows.height
    assert any(w.startswith("login-s2") for w in found)  # the replay (and the simulator's replay attacks) ...
    assert not any(w.startswith("login-s1") for w in found)  # ... but not the login it replays


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


def test_a_new_users_first_logins_are_decided_by_the_global_models(trained_store: Store) -> None:
    """A user with no stored window yet: the replay check starts from nothing and keeps what commits."""
    store = trained_store
    first = a_login_batch("login-n1").with_columns(user_id=pl.lit("newcomer"))
    second = a_login_batch("login-n2").with_columns(user_id=pl.lit("newcomer"))

    one = pipeline.ingest_and_score(store, first, ["login-n1"], source_name="t", actor="t")
    two = pipeline.ingest_and_score(store, second, ["login-n2"], source_name="t", actor="t")

    assert one.verdicts["login-n1"] is not None and two.verdicts["login-n2"] is not None
    assert any("replayed pattern" in r for r in two.verdicts["login-n2"].reasons)  # the same timings again
    assert not any("replayed pattern" in r for r in one.verdicts["login-n1"].reasons)


def test_models_unpickled_for_one_spelling_of_a_file_serve_every_other(
        trained_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.engine import training

    ids = load_active(trained_store).rows["model_id"].to_list()
    other_spelling = tmp_path / "elsewhere" / ".." / Path(trained_store.path).name
    with Store(other_spelling) as same_file:
        read: list[list[str]] = []
        reading = training.model_blobs
        monkeypatch.setattr(training, "model_blobs", lambda store, ids: read.append(ids) or reading(store, ids))
        assert set(load_active(same_file).by_id) == set(ids)
        assert read == []  # every blob was unpickled once already, through the first spelling
