"""One bad session never stops work on the others: a session that cannot be built or scored is set
aside with its error (shown on the Data page), the job's run names it, and every other session is
windowed, scored and decided."""

from __future__ import annotations

import polars as pl
import pytest

from app.engine import pipeline
from app.engine.jobs import JOBS, Worker
from store import Store
from store.session_progress import clear_session_failures, session_failures
from tests.conftest import run_cli, store_a_genuine_login


def a_poisoned_session(store: Store, name: str = "poisoned") -> str:
    """A session whose times no window can be built from (a store written before the bounds held)."""
    with store.transaction() as cursor:
        cursor.execute("INSERT INTO sessions VALUES (?, 'u001', now(), 'csv')", [name])
        cursor.execute("""INSERT INTO events (session_id, user_id, seq, t_ms, type, key_class, press_id, source)
                          VALUES (?, 'u001', 0, 0, 'key_down', 'letter', 1, 'csv'),
                                 (?, 'u001', 1, 1e300, 'key_up', 'letter', 1, 'csv')""", [name, name])
    return name


def test_a_session_that_cannot_be_windowed_is_set_aside_and_the_others_are_decided(
        trained_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_SESSION_IDLE_SECONDS", "0")
    store = trained_store
    bad, good = a_poisoned_session(store), store_a_genuine_login(store, "good-one")

    report = pipeline.process_pending(store)
    pipeline.process_pending(store)  # the idle session is finalized on the next run

    assert list(report.failed) == [bad] and "t_ms" in report.failed[bad]
    assert store.scalar("SELECT count(*) FROM decisions WHERE session_id = ?", [good]) > 0
    failures = session_failures(store)
    assert failures.select("session_id", "stage").rows() == [(bad, "featurize")]
    # not tried again on every run: the same events would fail the same way
    assert pipeline.featurize_pending(store, idle_seconds=0).failed == {}


def test_the_score_jobs_run_names_the_sessions_it_set_aside(trained_store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_SESSION_IDLE_SECONDS", "0")
    store = trained_store
    bad = a_poisoned_session(store)
    worker = Worker(store, jobs=tuple(job for job in JOBS if job.job_id == "score"), nightly=None)

    worker.run_job("score")

    rows, error = store.rows("SELECT rows, error FROM job_runs WHERE job_id = 'score'")[-1]
    assert rows is not None and error.startswith(f"1 session set aside: {bad} (InvalidOperationError")


def test_a_session_whose_windows_cannot_be_scored_leaves_the_queue_and_the_others_are_scored(
        trained_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = trained_store
    broken, fine = store_a_genuine_login(store, "broken"), store_a_genuine_login(store, "fine")
    pipeline.featurize_sessions(store, [broken, fine], final=True)
    score = pipeline.score_windows

    def failing_for_broken(store_: Store, windows: pl.DataFrame):
        if broken in windows["session_id"].to_list():
            raise ValueError("a model refused these windows")
        return score(store_, windows)

    monkeypatch.setattr(pipeline, "score_windows", failing_for_broken)
    failed: dict[str, str] = {}
    verdicts = pipeline.score_pending(store, failed=failed)

    assert {v.session_id for v in verdicts} == {fine}
    assert failed == {broken: "ValueError: a model refused these windows"}
    assert session_failures(store).select("session_id", "stage").rows() == [(broken, "score")]
    assert pipeline.score_pending(store) == []  # set aside: not retried on every run

    monkeypatch.setattr(pipeline, "score_windows", score)
    assert clear_session_failures(store) == 1
    pipeline.featurize_pending(store, idle_seconds=0)
    assert {v.session_id for v in pipeline.score_pending(store)} == {broken}
    assert session_failures(store).height == 0


def test_train_from_the_command_line_sets_a_bad_session_aside_instead_of_failing(trained_store: Store) -> None:
    a_poisoned_session(trained_store)
    path = trained_store.path
    trained_store.close()

    done = run_cli("train", "--db", path, "--json", env={"TELLTALE_SESSION_IDLE_SECONDS": "0",
                                                         "TELLTALE_DETECTORS": "manhattan_log"})

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "1 session set aside: poisoned" in done.stderr
