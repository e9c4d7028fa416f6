"""Scheduled work in the process that owns the database (APScheduler 3.x BackgroundScheduler).

Fixed job ids, `max_instances=1`, `coalesce=True`: a slow run is never stacked or doubled. Every run
is recorded in `job_runs` (job, start, duration, rows, error); a failing run is logged and simply
tried again at the next interval, it never takes the app down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psutil
from apscheduler.schedulers.background import BackgroundScheduler

from app import settings
from app.inbox import drain_inbox, inbox_folder
from store import Store
from store.metrics import insert_system_metrics, record_job_run

log = logging.getLogger("telltale.jobs")


@dataclass(frozen=True)
class Job:
    job_id: str
    interval_setting: str
    run: Callable[[Store], int]
    help: str


def sample_system(store: Store) -> int:
    """CPU (% of all cores since the last sample) and memory (% used, app RSS in MB)."""
    memory = psutil.virtual_memory()
    rss_mb = psutil.Process(os.getpid()).memory_info().rss / 2**20
    sample = pl.DataFrame({
        "sampled_at": [datetime.now(UTC).replace(tzinfo=None)],
        "cpu_percent": [float(psutil.cpu_percent(interval=None))],
        "mem_percent": [float(memory.percent)],
        "rss_mb": [rss_mb],
    })
    return insert_system_metrics(store, sample, source="psutil")


def ingest_inbox(store: Store) -> int:
    """Store the batches other processes left in the inbox (see app/inbox.py)."""
    return drain_inbox(store, inbox_folder(store.path)).events_added


JOBS: tuple[Job, ...] = (
    Job("sample_system", "sample_seconds", sample_system, "CPU and memory sample"),
    Job("inbox", "inbox_seconds", ingest_inbox, "ingest batches posted by other processes"),
)


class Worker:
    """Owns the BackgroundScheduler; `start()` once per process, `shutdown()` at exit."""

    def __init__(self, store: Store, jobs: tuple[Job, ...] = JOBS):
        self.store = store
        self.jobs = {job.job_id: job for job in jobs}
        self.scheduler = BackgroundScheduler(daemon=True, timezone="UTC")

    def start(self) -> Worker:
        psutil.cpu_percent(interval=None)  # prime: the first call has no earlier sample to compare
        for job in self.jobs.values():
            self.scheduler.add_job(self.run_job, "interval", seconds=float(settings.get(job.interval_setting)),
                                   args=[job.job_id], id=job.job_id, name=job.help, max_instances=1,
                                   coalesce=True, replace_existing=True)
        self.scheduler.start()
        return self

    def run_job(self, job_id: str) -> int | None:
        """Run one job now and record it; errors are logged and recorded, never raised."""
        job = self.jobs[job_id]
        started = datetime.now(UTC).replace(tzinfo=None)
        clock = time.perf_counter()
        rows: int | None = None
        error: str | None = None
        try:
            rows = job.run(self.store)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
            log.exception("job %s failed; it runs again at its next interval", job_id)
        try:
            record_job_run(self.store, job_id, started, (time.perf_counter() - clock) * 1000, rows, error)
        except Exception:
            log.warning("could not record run of job %s", job_id)
        return rows

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)


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
