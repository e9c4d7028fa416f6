"""Live replay: simulated sessions streamed into the store at wall-clock pace (times `speed`).

The stream runs in a background thread of whichever process delivers: the app itself (Data page:
straight into its store) or the CLI (`simulate --live`: into the app's inbox when the app holds
the database, else straight into the file). Sessions get fresh ids and start now; the people are
those of the population seed, so a stream of the sample population (seed 2026) continues its users.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from simulators import live_batches, simulate

#: deliver(events_batch, sessions_of_batch) -> events stored (or posted)
Deliver = Callable[[pl.DataFrame, pl.DataFrame], int]


@dataclass
class LiveStatus:
    running: bool = False
    batches: int = 0
    events: int = 0
    total_events: int = 0
    started_at: datetime | None = None
    error: str | None = None
    sessions: list[str] = field(default_factory=list)


def live_simulation(users: int, sessions: int, seed: int, attack_share: float, *, stamp: int | None = None):
    """The simulation to stream: fresh session ids (`live-<stamp>-...`) starting now."""
    sim = simulate(users, sessions, seed, attack_share=attack_share)
    stamp = stamp if stamp is not None else time.time_ns() // 1_000_000
    renamed = pl.col("session_id").str.replace(r"^s-", f"live-{stamp}-")
    now = datetime.now(UTC).replace(tzinfo=None)
    events = sim.events.with_columns(renamed)
    starts = sim.sessions.with_columns(renamed, started_at=pl.lit(now))
    labels = sim.labels.with_columns(renamed)
    return events, starts, labels


class LiveStream:
    """One background replay; `stop()` ends it at the next batch boundary."""

    def __init__(self, deliver: Deliver, *, users: int = 8, sessions: int = 1, seed: int = 2026,
                 speed: float = 1.0, attack_share: float = 0.25, batch_ms: float = 1000.0):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.deliver = deliver
        self.users, self.sessions, self.seed = users, sessions, seed
        self.speed, self.attack_share, self.batch_ms = speed, attack_share, batch_ms
        self.status = LiveStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveStream:
        events, starts, labels = live_simulation(self.users, self.sessions, self.seed, self.attack_share)
        self.labels = labels
        self.status = LiveStatus(running=True, total_events=events.height,
                                 started_at=datetime.now(UTC).replace(tzinfo=None),
                                 sessions=starts["session_id"].to_list())
        self._thread = threading.Thread(target=self._run, args=(events, starts), name="telltale-live", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the stream ends; True when it did."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.status.running

    def _run(self, events: pl.DataFrame, starts: pl.DataFrame) -> None:
        began = time.monotonic()
        try:
            for offset_s, batch in live_batches(events, speed=self.speed, batch_ms=self.batch_ms):
                if self._stop.wait(max(0.0, began + offset_s - time.monotonic())):
                    break
                batch_sessions = starts.filter(pl.col("session_id").is_in(batch["session_id"].unique().implode()))
                self.status.events += self.deliver(batch, batch_sessions)
                self.status.batches += 1
        except Exception as error:
            self.status.error = f"{type(error).__name__}: {error}"
        finally:
            self.status.running = False
