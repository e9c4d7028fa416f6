"""Sample data and simulations into the store: what `make run` loads and the Data page offers.

`sample_data/` holds CSVs made by the simulator (see sample_data/README.md for the command and
seed); they load into an empty store on first start and never into one that already has data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.engine.replay import ReplayOptions, read_population, replay
from simulators import simulate, system_load
from store import Store, contents, ingest_events
from store.errors import Problem, ValidationError
from store.ingest import IngestReport, store_labels
from store.metrics import insert_system_metrics
from store.sidecars import read_sidecar, sidecar_path
from store.text import plural

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SimulationReport:
    events: IngestReport
    labels: int
    system_metrics: int

    def as_dict(self) -> dict[str, object]:
        return {**self.events.as_dict(), "labels": self.labels, "system_metrics": self.system_metrics}

    def summary(self) -> str:
        return (f"{self.events.summary()}; {plural(self.labels, 'labelled session')}, "
                f"{plural(self.system_metrics, 'CPU sample')}")


def write_simulation(out: Path, *, users: int, sessions: int, seed: int, attack_share: float = 0.2,
                     enrolment_days: int = 0, load_seconds: int = 600) -> dict[str, int]:
    """Write a simulation as CSVs (events + sidecars); byte-identical for the same arguments."""

    sim = simulate(users, sessions, seed, attack_share=attack_share, enrolment_days=enrolment_days)
    start = sim.sessions["started_at"].min()
    out.parent.mkdir(parents=True, exist_ok=True)
    sim.events.write_csv(out)
    sim.sessions.write_csv(sidecar_path(out, "sessions"))
    sim.labels.write_csv(sidecar_path(out, "labels"))
    system_load(load_seconds, seed, start=start).write_csv(sidecar_path(out, "system_metrics"))
    return {"events": sim.events.height, "sessions": sim.sessions.height, "labels": sim.labels.height}


def simulate_into(store: Store, *, users: int, sessions: int, seed: int, attack_share: float = 0.2,
                  enrolment_days: int = 0, load_seconds: int = 600, actor: str = "cli") -> SimulationReport:
    """Simulate and store events, sessions, ground-truth labels and a CPU trace."""

    sim = simulate(users, sessions, seed, attack_share=attack_share, enrolment_days=enrolment_days)
    report = ingest_events(store, sim.events, source_name=f"simulate --users {users} --sessions {sessions} "
                           f"--seed {seed}", sessions=sim.sessions, labels=sim.labels, actor=actor)
    load = system_load(load_seconds, seed, start=sim.sessions["started_at"].min())
    written = insert_system_metrics(store, load.rename({"at": "sampled_at"}), source="simulator")
    return SimulationReport(report, sim.labels.height, written)


def load_sample_data(store: Store, folder: Path, progress: Progress | None = None) -> dict[str, object] | None:
    """Load `folder/events.csv` into an empty store the way it would have happened live (None when the
    store was not empty): its sessions in start order through the app's own path (`app.engine.replay`: stored,
    windowed, decided as the score job decides them, models retrained as the retrain job retrains them,
    every user holding an authenticator), then the ground-truth labels (for the Threshold lab) and the
    CPU trace beside it. So the pages open on a history over the sample's days."""

    if not contents.is_empty(store):
        return None
    events_csv = folder / "events.csv"
    if not events_csv.exists():
        raise ValidationError([Problem(f"no events.csv in {folder}; set TELLTALE_SAMPLE_DATA or run "
                                       "`python -m app simulate ... --out sample_data/events.csv`")], str(folder))
    events, sessions, labels = read_population(events_csv)
    replay(store, events, sessions, labels, options=ReplayOptions(), progress=progress)
    labelled = store_labels(store, labels)
    metrics_csv = sidecar_path(events_csv, "system_metrics")
    samples = 0
    if metrics_csv.exists():
        trace = read_sidecar(metrics_csv, "system_metrics").drop("_row")
        samples = insert_system_metrics(store, trace.rename({"at": "sampled_at"}), source="simulator")
    counts = store.table_counts()
    return {"source": str(events_csv), "events_added": counts["events"], "sessions_added": counts["sessions"],
            "users_added": counts["users"], "labels_added": labelled, "samples_added": samples,
            "windows": counts["feature_windows"], "models": counts["models"], "decisions": counts["decisions"]}
