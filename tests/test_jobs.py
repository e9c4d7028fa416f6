"""The scheduler's life cycle: quiet while jobs overlap their interval, and a clean stop when the
process ends (Ctrl+C on `make run`)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time

from app.engine.jobs import Job, Worker
from store import Store
from tests.conftest import ROOT

#: A process whose scheduler ticks every 50 ms a job that holds until the app stops, and which ends while
#: another thread is still winding down, as Streamlit's server does after Ctrl+C. The app's stop
#: releases the job and stops the scheduler before the interpreter waits for that thread, which then
#: ends at once. Were the scheduler stopped too late, the thread would end the job itself and keep the
#: interpreter exiting while the scheduler ticks on (its bounds only keep that regression from hanging).
ENDING_WHILE_JOBS_RUN = textwrap.dedent("""
    import logging, os, threading
    os.environ["TELLTALE_SAMPLE_SECONDS"] = "0.05"
    logging.basicConfig(level=logging.WARNING)
    from app.engine.jobs import Job, Worker
    from store import Store

    released, stopped = threading.Event(), threading.Event()
    worker = Worker(Store(":memory:"), jobs=(Job("slow", "sample_seconds", lambda s: released.wait() and 1,
                                                "a slow job"),), nightly=None)
    stop = worker.shutdown
    worker.shutdown = lambda: (released.set(), stop(), stopped.set())  # the app stopping ends the held run
    worker.start()
    assert worker.skipped.wait_for(3, timeout=30)  # the held run is still going: ticks skip it
    print("skipped", worker.skipped.count, flush=True)

    def winding_down():
        if not stopped.wait(timeout=3):
            released.set()
            stopped.wait(timeout=2)

    threading.Thread(target=winding_down).start()
""")


def test_a_process_ending_while_jobs_run_stops_its_scheduler_without_tracebacks() -> None:
    done = subprocess.run([sys.executable, "-c", ENDING_WHILE_JOBS_RUN], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})

    assert done.returncode == 0, done.stderr
    assert "cannot schedule new futures" not in done.stderr
    assert "Traceback" not in done.stderr
    assert "maximum number of running instances" not in done.stderr
    assert int(done.stdout.split()[-1]) > 0  # runs were skipped while the slow one ran: counted, not logged


def test_runs_skipped_because_the_previous_one_still_runs_are_counted(monkeypatch) -> None:
    monkeypatch.setenv("TELLTALE_SAMPLE_SECONDS", "0.02")
    release = threading.Event()
    with Store(":memory:") as store:
        worker = Worker(store, jobs=(Job("held", "sample_seconds", lambda s: release.wait(10) and 1, "held"),),
                        nightly=None).start()
        try:
            assert worker.skipped.wait_for(3, timeout=10)
            assert worker.skipped.count >= 3
        finally:
            release.set()
            worker.shutdown()


def test_the_expire_job_marks_challenges_past_their_expiry_as_expired() -> None:
    from app.engine import stepup
    from app.engine.jobs import JOBS
    from store.otp import challenges

    with Store(":memory:") as store:
        stepup.enrol(store, "alice", actor="test")
        now = time.time()
        overdue = stepup.issue_challenge(store, "alice", now=now - 400, expiry_seconds=300, actor="test")
        still_open = stepup.issue_challenge(store, "alice", now=now, expiry_seconds=300, actor="test")
        worker = Worker(store, jobs=tuple(job for job in JOBS if job.job_id == "expire_challenges"), nightly=None)

        assert worker.run_job("expire_challenges") == 1
        assert worker.run_job("expire_challenges") == 0

        statuses = dict(challenges(store).select("challenge_id", "status").rows())
        assert statuses == {overdue.challenge_id: "expired", still_open.challenge_id: "issued"}
        assert sorted(store.rows("SELECT rows, error FROM job_runs WHERE job_id = 'expire_challenges'")) == [
            (0, None), (1, None)]


def test_waiting_for_skipped_runs_returns_once_they_are_counted_or_says_they_were_not() -> None:
    from app.engine.jobs import _SkippedRuns

    skipped = _SkippedRuns()
    assert skipped.wait_for(1, timeout=0) is False
    record = logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 1,
                               'Execution of job "x" skipped: maximum number of running instances reached (1)',
                               None, None)
    assert skipped.filter(record) is False  # counted, not logged
    assert skipped.wait_for(1, timeout=0) is True
