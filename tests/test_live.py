"""Live replay, the inbox between processes, and the scheduled jobs."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import psutil
import pytest

from app.engine.inbox import drain_inbox, inbox_folder, post_batch
from app.engine.jobs import Job, Worker, sample_system
from app.engine.stream import LiveStream, live_simulation
from store import Store


def test_live_stream_delivers_every_event_once_with_fresh_session_ids() -> None:
    delivered: list[pl.DataFrame] = []
    stream = LiveStream(lambda events, sessions: delivered.append(events) or events.height,
                        users=2, sessions=1, seed=4, speed=1000.0, attack_share=0.0).start()
    assert stream.wait(60)
    got = pl.concat(delivered)
    assert stream.status.error is None
    assert stream.status.events == got.height == stream.status.total_events
    assert got.select("session_id", "seq").is_unique().all()
    assert got["session_id"].str.starts_with("live-").all()


def test_live_stream_stops_at_the_next_batch() -> None:
    delivered: list[int] = []
    stream = LiveStream(lambda events, sessions: delivered.append(events.height) or events.height,
                        users=2, sessions=1, seed=4, speed=1.0, attack_share=0.0)
    stream.start()
    stream.stop()
    assert not stream.status.running
    assert sum(delivered) < stream.status.total_events


def test_same_population_seed_keeps_the_people_but_not_the_session_ids() -> None:
    first = live_simulation(2, 1, 9, 0.0, stamp=1)
    second = live_simulation(2, 1, 9, 0.0, stamp=2)
    assert first[0].drop("session_id").equals(second[0].drop("session_id"))
    assert set(first[0]["session_id"]).isdisjoint(second[0]["session_id"])


def test_inbox_batches_are_stored_and_a_bad_one_is_set_aside(tmp_path: Path) -> None:
    events, starts, _ = live_simulation(1, 1, 3, 0.0, stamp=7)
    with Store(tmp_path / "inbox.duckdb") as store:
        folder = inbox_folder(store.path)
        post_batch(folder, events.head(100), starts)
        bad = events.slice(100, 5).with_columns(type=pl.lit("teleport"))
        post_batch(folder, bad, starts)
        report = drain_inbox(store, folder)
        assert (report.files, report.events_added, report.rejected) == (2, 100, 1)
        assert store.table_counts()["events"] == 100
        reasons = list((folder / "rejected").glob("*.txt"))
        assert len(reasons) == 1 and "unknown value 'teleport'" in reasons[0].read_text()
        assert not list(folder.glob("*.parquet"))


def test_a_failing_job_is_recorded_and_does_not_raise(tmp_path: Path) -> None:
    def broken(store: Store) -> int:
        raise RuntimeError("disk on fire")

    with Store(tmp_path / "jobs.duckdb") as store:
        worker = Worker(store, jobs=(Job("broken", "sample_seconds", broken, "always fails"),
                                     Job("fine", "sample_seconds", lambda s: 3, "returns 3")))
        assert worker.run_job("broken") is None
        assert worker.run_job("fine") == 3
        runs = store.frame("SELECT job_id, rows, error FROM job_runs ORDER BY job_id")
        assert runs.rows() == [("broken", None, "RuntimeError: disk on fire"), ("fine", 3, None)]




def test_stopping_the_worker_stores_what_waits_in_the_inbox(tmp_path: Path) -> None:
    from app.engine.jobs import JOBS

    events, starts, _ = live_simulation(1, 1, 8, 0.0, stamp=9)
    with Store(tmp_path / "stop.duckdb") as store:
        worker = Worker(store, jobs=tuple(j for j in JOBS if j.job_id == "inbox"), nightly=None)
        worker.scheduler.start(paused=True)  # running, but no interval has fired: only shutdown can drain
        post_batch(inbox_folder(store.path), events, starts)
        worker.shutdown()
        assert store.table_counts()["events"] == events.height
        assert not list(inbox_folder(store.path).glob("*.parquet"))


class BusyMachine:
    """A stand-in for `psutil.cpu_times()`: every core busy `busy` of the time, and time passes only
    when the test says so (`advance`)."""

    def __init__(self, busy: float):
        self.busy, self.cores = busy, psutil.cpu_count() or 1
        real = psutil.cpu_times()
        self.times = real._replace(**dict.fromkeys(real._fields, 0.0))._replace(user=1e9, idle=1e9)

    def advance(self, seconds: float) -> None:
        spent = seconds * self.cores
        self.times = self.times._replace(user=self.times.user + spent * self.busy,
                                         idle=self.times.idle + spent * (1 - self.busy))

    def __call__(self, percpu: bool = False):
        assert not percpu
        return self.times


def test_cpu_samples_measure_the_load_since_the_samplers_own_previous_sample(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    machine = BusyMachine(busy=0.99)
    monkeypatch.setattr(psutil, "cpu_times", machine)

    def sample_on_a_new_thread(store: Store) -> None:  # as a scheduler pool thread that never sampled
        thread = threading.Thread(target=sample_system, args=(store,))
        thread.start()
        thread.join()

    with Store(tmp_path / "cpu.duckdb") as store:
        sample_system(store)  # the first reading of this fake machine: not asserted
        first = store.scalar("SELECT count(*) FROM system_metrics")
        machine.advance(1.0)
        sample_system(store)
        machine.advance(1.0)
        psutil.cpu_percent(interval=None)  # another reader of the CPU, just before the sampler
        sample_system(store)
        machine.advance(1.0)
        sample_on_a_new_thread(store)
        sample_system(store)  # again at once: no time passed to measure over
        machine.advance(1.0)
        sample_system(store)
        cpu = store.frame("SELECT cpu_percent FROM system_metrics ORDER BY rowid")["cpu_percent"]
    assert cpu[first:].to_list() == pytest.approx([99.0] * 4)
