"""Scheduled work in the process that owns the database (APScheduler 3.x BackgroundScheduler).

Fixed job ids, `max_instances=1`, `coalesce=True`: a slow run is never stacked or doubled. Every run
is recorded in `job_runs` (job, start, duration, rows, error); a failing run is logged and simply
tried again at the next interval, it never takes the app down.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psutil
from apscheduler.schedulers.background import BackgroundScheduler

from app import settings
from app.engine.inbox import drain_inbox, inbox_folder
from app.engine.pipeline import process_pending
from app.engine.stepup import expire_overdue
from app.engine.training import drift_check, train, users_due_for_retraining
from store import Store
from store.metrics import insert_system_metrics, record_drift, record_job_run

log = logging.getLogger("telltale.jobs")


@dataclass(frozen=True)
class JobOutcome:
    """A run that did `rows` and also had failures it set aside (`error`, recorded with the run)."""

    rows: int
    error: str | None = None


@dataclass(frozen=True)
class Job:
    job_id: str
    interval_setting: str
    run: Callable[[Store], int | JobOutcome]
    help: str


#: The shortest span a CPU sample is measured over, in seconds per core. The kernel counts CPU time
#: in ticks of 10 ms, so over a shorter span the figure is that rounding (0 % or 100 %), not the load.
MIN_CPU_SPAN_SECONDS = 0.2


class CpuMeter:
    """System-wide CPU use between this meter's own readings of `psutil.cpu_times()`.

    `psutil.cpu_percent(interval=None)` measures since the previous call *on the calling thread*
    and over an empty interval (0.0) on a thread that never called it. The scheduler runs jobs on a
    pool of threads, so a sample taken on a new pool thread, or just after any other caller, read
    exactly 0 % between 99 % neighbours. The meter keeps its previous reading itself, whoever calls
    (one at a time: the sampler job runs with `max_instances=1`).
    """

    def __init__(self) -> None:
        self._previous = psutil.cpu_times()

    def percent(self) -> float | None:
        """Busy share of all cores since the previous reading, in % (0-100).

        None when less than `MIN_CPU_SPAN_SECONDS` per core passed: the previous reading is kept, so
        the next call measures over the whole span. None too when the counters went back (a reset):
        the meter measures from this reading on.
        """
        now, before = psutil.cpu_times(), self._previous
        span = _cpu_total(now) - _cpu_total(before)
        if span < 0:
            self._previous = now
            return None
        if span < MIN_CPU_SPAN_SECONDS * (psutil.cpu_count() or 1):
            return None
        self._previous = now
        idle = _cpu_idle(now) - _cpu_idle(before)
        return min(max(100.0 * (span - idle) / span, 0.0), 100.0)


def _cpu_total(times) -> float:
    """CPU seconds of all cores, idle included; guest time is already counted in user time (Linux)."""
    return sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _cpu_idle(times) -> float:
    """CPU seconds of all cores doing nothing: idle, and waiting for I/O (Linux counts it apart)."""
    return times.idle + getattr(times, "iowait", 0.0)


_CPU_METER = CpuMeter()


def sample_system(store: Store) -> int:
    """CPU (% of all cores since the sampler's previous sample) and memory (% used, app RSS in MB).

    Returns the rows written: 0 when too little time passed since the previous sample to measure
    the CPU over (a late run followed by one on time); the next sample then covers the whole span.
    """
    cpu_percent = _CPU_METER.percent()
    if cpu_percent is None:
        return 0
    memory = psutil.virtual_memory()
    rss_mb = psutil.Process(os.getpid()).memory_info().rss / 2**20
    sample = pl.DataFrame({
        "sampled_at": [datetime.now(UTC).replace(tzinfo=None)],
        "cpu_percent": [cpu_percent],
        "mem_percent": [float(memory.percent)],
        "rss_mb": [rss_mb],
    })
    return insert_system_metrics(store, sample, source="psutil")


def ingest_inbox(store: Store) -> int:
    """Store the batches other processes left in the inbox (see app/inbox.py)."""
    return drain_inbox(store, inbox_folder(store.path)).events_added


def score_new(store: Store) -> JobOutcome:
    """Windows from new events, scored and decided (see app/engine/pipeline.py); a session that fails is
    set aside with its error and named in the run's record, the others are decided."""

    report = process_pending(store)
    return JobOutcome(report.decisions, failures_summary(report.failed))


def failures_summary(failed: dict[str, str], shown: int = 3) -> str | None:
    """"2 sessions set aside: s-1 (ValueError: ...), ..." for a job run's record; None when none failed."""
    if not failed:
        return None
    named = "; ".join(f"{session_id} ({error})" for session_id, error in list(failed.items())[:shown])
    more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
    return f"{len(failed)} session{'s' if len(failed) != 1 else ''} set aside: {named}{more}"


def retrain_due(store: Store) -> int:
    """Retrain users with enough new training windows since their last model."""

    users = users_due_for_retraining(store, settings.get("retrain_after_windows"))
    return train(store, users=users, actor="scheduler").models if users else 0


def retrain_all(store: Store) -> int:
    """The nightly full retrain (every user and the global models)."""

    return train(store, actor="scheduler").models


def check_drift(store: Store) -> int:
    """Feature drift per user and kind between training windows and recent ones."""

    return record_drift(store, drift_check(store, limit=settings.get("drift_limit")))


def expire_challenges(store: Store) -> int:
    """Mark one-time-code challenges past their expiry as expired (one event and audit row each).

    Until then a challenge is stored as open: Investigation shows that status, and a session with an
    open challenge is issued no other when its evidence asks for a code again."""
    return expire_overdue(store, datetime.now(UTC))


def release_store_memory(store: Store) -> int:
    """Free what DuckDB keeps for the temporary blocks of past queries (see `Store.release_memory`)."""
    return store.release_memory()


JOBS: tuple[Job, ...] = (
    Job("sample_system", "sample_seconds", sample_system, "CPU and memory sample"),
    Job("inbox", "inbox_seconds", ingest_inbox, "ingest batches posted by other processes"),
    Job("score", "score_seconds", score_new, "build windows from new events, score and decide"),
    Job("retrain", "retrain_check_seconds", retrain_due, "retrain users with enough new genuine windows"),
    Job("drift", "drift_seconds", check_drift, "feature drift between training and recent windows"),
    Job("expire_challenges", "expire_challenges_seconds", expire_challenges,
        "mark one-time-code challenges past their expiry as expired"),
    Job("release_memory", "release_memory_seconds", release_store_memory,
        "free the memory DuckDB keeps for the temporary blocks of past queries"),
)
#: The nightly full retrain runs on a cron trigger (hour in UTC from TELLTALE_NIGHTLY_HOUR).
NIGHTLY = Job("nightly_retrain", "nightly_hour", retrain_all, "nightly full retrain")


class _SkippedRuns(logging.Filter):
    """Counts the runs APScheduler skips because the job's previous run is still going.

    With `max_instances=1` and `coalesce=True` that is the intended behaviour (a slow scoring run is
    never stacked), not a fault, yet APScheduler warns on each one: a busy machine filled the log.
    """

    MESSAGE = "maximum number of running instances reached"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._counted = threading.Condition()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MESSAGE in record.getMessage():
            with self._counted:
                self.count += 1
                self._counted.notify_all()
            return False
        return True

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least `count` runs were skipped (True) or `timeout` seconds pass (False): a
        caller can wait for the scheduler's ticks themselves instead of guessing how long they take."""
        with self._counted:
            return self._counted.wait_for(lambda: self.count >= count, timeout)


def at_interpreter_exit(callback: Callable[[], None]) -> None:
    """Run `callback` as soon as the interpreter begins to shut down.

    `atexit` is too late for a scheduler: by then the thread pools it submits jobs to refuse new work,
    and each tick in between printed "cannot schedule new futures after shutdown". Threading's exit
    hooks run first (concurrent.futures registers its own there; the newest runs first).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # not CPython
        atexit.register(callback)
    else:
        register(callback)


class Worker:
    """Owns the BackgroundScheduler; `start()` once per process; it shuts down when the interpreter
    begins to exit (or on `shutdown()`)."""

    def __init__(self, store: Store, jobs: tuple[Job, ...] = JOBS, nightly: Job | None = NIGHTLY):
        self.store = store
        self.jobs = {job.job_id: job for job in jobs}
        self.nightly = nightly
        if nightly is not None:
            self.jobs[nightly.job_id] = nightly
        self.scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
        self.skipped = _SkippedRuns()

    def start(self) -> Worker:
        psutil.cpu_percent(interval=None)  # prime: the first call has no earlier sample to compare
        for job in self.jobs.values():
            if job is self.nightly:
                trigger: dict = {"trigger": "cron", "hour": int(settings.get(job.interval_setting)), "minute": 0}
            else:
                trigger = {"trigger": "interval", "seconds": float(settings.get(job.interval_setting))}
            self.scheduler.add_job(self.run_job, args=[job.job_id], id=job.job_id, name=job.help, max_instances=1,
                                   coalesce=True, replace_existing=True, **trigger)
        logging.getLogger("apscheduler.scheduler").addFilter(self.skipped)
        self.scheduler.start()
        at_interpreter_exit(self.shutdown)
        return self

    def run_job(self, job_id: str) -> int | None:
        """Run one job now and record it; errors are logged and recorded, never raised."""
        job = self.jobs[job_id]
        started = datetime.now(UTC).replace(tzinfo=None)
        clock = time.perf_counter()
        rows: int | None = None
        error: str | None = None
        try:
            outcome = job.run(self.store)
            rows, error = (outcome.rows, outcome.error) if isinstance(outcome, JobOutcome) else (outcome, None)
            if error:
                log.warning("job %s: %s", job_id, error)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
            log.exception("job %s failed; it runs again at its next interval", job_id)
        try:
            record_job_run(self.store, job_id, started, (time.perf_counter() - clock) * 1000, rows, error)
        except Exception:
            log.warning("could not record run of job %s", job_id)
        return rows

    def shutdown(self) -> None:
        """Stop the scheduler, then store whatever is still waiting in the inbox: a batch another
        process posted just before the app stopped is not left behind."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
            logging.getLogger("apscheduler.scheduler").removeFilter(self.skipped)
            if "inbox" in self.jobs:
                self.run_job("inbox")


def run_worker(db: str | Path) -> None:
    """`python -m app worker`: the same jobs, headless, until Ctrl+C."""
    store = Store(db)
    worker = Worker(store).start()
    print(f"worker: running {', '.join(worker.jobs)} on {store.path}; Ctrl+C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        worker.shutdown()
        store.close()
