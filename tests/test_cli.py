"""`python -m app` as a user runs it: a subprocess from the repository root (each call costs
about a second of imports, so the calls are few and each checks several things)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from store import Store, ingest_events, ingest_events_csv
from store.schema import EVENT_COLUMNS, conform

SUBCOMMANDS = ["ingest", "stats", "export", "init", "simulate", "bench"]
DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"
MEU = DATASETS / "meu-mobile-ksd" / "meu-mobile-ksd.csv"
AALTO_SAMPLE = DATASETS / "aalto-keystrokes" / "keystroke-sample"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/datasets/{path.relative_to(DATASETS)} not found: {path}")
    return path


def counts_of(db: Path) -> dict[str, int]:
    with Store(db) as s:
        return s.table_counts()


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help_works_for_every_command(run_cli, command: str | None) -> None:
    done = run_cli(*([command] if command else []), "--help")

    assert done.returncode == 0, done.stderr
    if command is None:
        assert done.stdout.startswith("usage: python -m app")
        for name in SUBCOMMANDS:
            assert name in done.stdout
    else:
        assert done.stdout.startswith(f"usage: python -m app {command}")


def test_no_command_prints_usage_and_exits_2(run_cli) -> None:
    done = run_cli()

    assert done.returncode == 2
    assert "usage: python -m app" in done.stderr
    assert done.stdout == ""


def test_ingest_prints_what_it_stored(run_cli, good_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"

    done = run_cli("ingest", good_csv, "--db", db)

    assert done.returncode == 0, done.stderr
    assert f"{good_csv}: read 5 rows; stored 5 new events (0 already stored), 2 new sessions, 2 new users" \
        in done.stdout
    counts = counts_of(db)
    assert (counts["events"], counts["sessions"], counts["users"], counts["audit_log"]) == (5, 2, 2, 1)


def test_ingest_json_dry_run_and_idempotency(run_cli, good_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"

    dry = run_cli("ingest", good_csv, "--db", db, "--json", "--dry-run")
    first = run_cli("ingest", good_csv, "--db", db, "--json")
    second = run_cli("ingest", good_csv, "--db", db, "--json")

    for done in (dry, first, second):
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.strip().splitlines()) == 1  # exactly one JSON object, nothing else
    assert json.loads(dry.stdout)["events_added"] == 5
    assert json.loads(first.stdout) == json.loads(dry.stdout)
    assert json.loads(second.stdout) == {
        "source": str(good_csv), "rows_read": 5, "events_added": 0, "already_stored": 5, "sessions_added": 0,
        "users_added": 0, "labels_added": 0, "samples_added": 0, "sidecars": []}
    counts = counts_of(db)
    assert (counts["events"], counts["audit_log"]) == (5, 2)  # the dry run stored and audited nothing


def test_bad_input_exits_2_with_the_reason_and_stores_nothing(run_cli, good_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    assert run_cli("ingest", good_csv, "--db", db).returncode == 0
    before = counts_of(db)
    bad = tmp_path / "bad.csv"
    bad.write_text("session_id,user_id,seq,t_ms,type\ns3,u1,0,0,focus\ns3,u1,x1,5,blur\n")

    done = run_cli("ingest", bad, "--db", db)

    assert done.returncode == 2
    assert f"error: {bad}: refused, nothing stored." in done.stderr
    assert "row 2, column 'seq': 'x1' is not a whole number" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert counts_of(db) == before


def test_stats_json_prints_one_object_with_the_counts(run_cli, good_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    with Store(db) as s:
        ingest_events_csv(s, good_csv)
        expected = s.table_counts()

    done = run_cli("stats", "--db", db, "--json")

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    assert json.loads(done.stdout) == {"db": str(db), "tables": expected}
    assert expected["events"] == 5


def test_cli_uses_telltale_db_when_no_flag_is_given(run_cli, good_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "from-env.duckdb"

    ingested = run_cli("ingest", good_csv, env={"TELLTALE_DB": str(db)})
    done = run_cli("stats", "--json", env={"TELLTALE_DB": str(db)})

    assert ingested.returncode == 0, ingested.stderr
    assert db.is_file()  # a command that writes creates the store
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"db": str(db), "tables": counts_of(db)}
    assert json.loads(done.stdout)["tables"]["events"] == 5


@pytest.mark.parametrize("command", [["stats", "--json"], ["export", "--to", "{tmp}/out"]])
def test_read_only_commands_refuse_a_missing_store_and_create_nothing(run_cli, tmp_path: Path,
                                                                       command: list[str]) -> None:
    command = [part.format(tmp=tmp_path) for part in command]
    flagged = tmp_path / "flag" / "missing.duckdb"
    from_env = tmp_path / "env" / "missing.duckdb"

    by_flag = run_cli(*command, "--db", flagged)
    by_env = run_cli(*command, env={"TELLTALE_DB": str(from_env)})

    for done, db in ((by_flag, flagged), (by_env, from_env)):
        assert done.returncode == 2, done.stderr
        assert f"no store at {db}" in done.stderr
        assert "python -m app init" in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no folder for one, no export


def test_a_fresh_clone_says_how_to_create_the_default_store(tmp_path: Path, monkeypatch, capsys) -> None:
    """No --db, no TELLTALE_DB: the default var/telltale.duckdb, here under a stand-in clone."""
    from app import settings
    from app.cli import commands as cli

    monkeypatch.delenv("TELLTALE_DB", raising=False)
    monkeypatch.setitem(settings._BY_NAME, "db", replace(settings._BY_NAME["db"],
                                                         default=str(tmp_path / "var" / "telltale.duckdb")))
    monkeypatch.chdir(tmp_path)

    status = cli.main(["stats"])

    assert status == 2
    assert capsys.readouterr().err == ("error: no store at var/telltale.duckdb yet: run `make run` or "
                                       "`python -m app init`, or give --db\n")
    assert list(tmp_path.iterdir()) == []


# -- export ---------------------------------------------------------------------------------------------
def test_export_writes_hive_partitioned_parquet_of_exactly_the_events(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    # Session a starts 100 ms before midnight, so its events fall on two dates.
    events = conform(pl.DataFrame({
        "session_id": ["a", "a", "a", "b"],
        "user_id": ["u1", "u1", "u1", "u2"],
        "seq": [0, 1, 2, 0],
        "t_ms": [0.0, 50.0, 250.5, 10.0],
        "type": ["key_down", "key_up", "mouse_move", "focus"],
        "key_class": ["letter", "letter", None, None],
        "press_id": [1, 1, None, None],
        "x": [None, None, 3.5, None],
        "y": [None, None, 4.0, None],
    }), source="simulator")
    starts = pl.DataFrame({"session_id": ["a", "b"],
                           "started_at": [datetime(2024, 3, 1, 23, 59, 59, 900_000), datetime(2024, 3, 2, 12)]})
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    with Store(db) as s:
        ingest_events(s, events, sessions=starts)
        s.execute("INSERT INTO otp_enrolments (user_id, secret) VALUES ('u1', ?)", [secret])
        stored = s.frame("SELECT * FROM events ORDER BY session_id, seq")
        audit_before = s.table_counts()["audit_log"]
    out = tmp_path / "export"

    done = run_cli("export", "--to", out, "--db", db, "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == 4
    files = sorted(out.rglob("*.parquet"))
    assert {f.parent.relative_to(out).as_posix() for f in files} == {
        "date=2024-03-01/user_id=u1", "date=2024-03-02/user_id=u1", "date=2024-03-02/user_id=u2"}
    for f in files:  # each file holds event columns only (the partition keys live in the path)
        assert list(pl.read_parquet_schema(f)) == [c for c in EVENT_COLUMNS if c != "user_id"]
        assert secret.encode() not in f.read_bytes()
    back = pl.read_parquet(out / "**/*.parquet", hive_partitioning=True)
    assert_frame_equal(back.select(EVENT_COLUMNS).sort("session_id", "seq"), stored)
    assert back.filter(pl.col("session_id") == "a").sort("seq")["date"].to_list() == [
        datetime(2024, 3, 1).date(), datetime(2024, 3, 1).date(), datetime(2024, 3, 2).date()]
    with Store(db) as s:
        assert s.table_counts()["audit_log"] == audit_before + 1
        assert s.rows("SELECT action, subject FROM audit_log ORDER BY audit_id DESC LIMIT 1") == [
            ("export", str(out.resolve()))]


# -- ingest of a simulation's CSVs ---------------------------------------------------------------------
def test_ingest_of_a_simulation_file_imports_its_sidecars(run_cli, tmp_path: Path) -> None:
    from app.engine.samples import write_simulation
    from store.sidecars import sidecar_path as sidecar

    events_csv = tmp_path / "sim.csv"
    write_simulation(events_csv, users=2, sessions=3, seed=4, load_seconds=30)  # what `simulate --out` writes
    db = tmp_path / "cli.duckdb"

    first = run_cli("ingest", events_csv, "--db", db, "--json")
    after_first = counts_of(db)
    again = run_cli("ingest", events_csv, "--db", db)

    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    names = ["sim.sessions.csv", "sim.labels.csv", "sim.system_metrics.csv"]
    assert report["sidecars"] == names
    sessions = pl.read_csv(sidecar(events_csv, "sessions"), try_parse_dates=True)
    labels = pl.read_csv(sidecar(events_csv, "labels"), schema_overrides={"takeover_ms": pl.Float64})
    metrics = pl.read_csv(sidecar(events_csv, "system_metrics"), try_parse_dates=True)
    assert (report["labels_added"], report["samples_added"]) == (labels.height, metrics.height)
    with Store(db) as s:
        assert_frame_equal(s.frame("SELECT session_id, user_id, started_at FROM sessions ORDER BY session_id"),
                           sessions.sort("session_id"))
        assert_frame_equal(s.frame("SELECT * FROM session_labels ORDER BY session_id"), labels.sort("session_id"))
        assert_frame_equal(s.frame("SELECT sampled_at AS at, cpu_percent, mem_percent FROM system_metrics "
                                   "ORDER BY sampled_at"), metrics.sort("at"))
    assert again.returncode == 0, again.stderr
    assert "stored 0 new events" in again.stdout and all(name in again.stdout for name in names)
    assert "0 new labels" in again.stdout and "0 new CPU samples" in again.stdout
    assert counts_of(db) == after_first | {"audit_log": after_first["audit_log"] + 1}  # a second import adds nothing


def test_ingest_refuses_a_malformed_sidecar_and_stores_nothing(run_cli, tmp_path: Path) -> None:
    from app.engine.samples import write_simulation
    from store.sidecars import sidecar_path as sidecar

    events_csv = tmp_path / "sim.csv"
    write_simulation(events_csv, users=2, sessions=2, seed=4, load_seconds=5)
    labels_csv = sidecar(events_csv, "labels")
    lines = labels_csv.read_text().splitlines()
    session_id = lines[2].split(",")[0]
    lines[2] = f"{session_id},hijack,u9,soon"  # the second data row
    labels_csv.write_text("\n".join(lines) + "\n")
    db = tmp_path / "cli.duckdb"

    done = run_cli("ingest", events_csv, "--db", db)

    assert done.returncode == 2
    assert f"error: {labels_csv}: refused, nothing stored." in done.stderr
    assert "row 2, column 'takeover_ms': 'soon' is not a number" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    counts = counts_of(db)
    assert {t: counts[t] for t in ("events", "sessions", "users", "session_labels", "system_metrics", "audit_log")} \
        == dict.fromkeys(("events", "sessions", "users", "session_labels", "system_metrics", "audit_log"), 0)


# -- evaluate ------------------------------------------------------------------------------------------
@pytest.mark.datasets
def test_evaluate_meu_with_its_defaults_derives_the_protocol_and_says_so(run_cli) -> None:
    path = require(MEU)  # 56 subjects x 51 repetitions

    derived = run_cli("evaluate", path, "--format", "cmu", "--detectors", "manhattan_scaled", "--json")
    given = run_cli("evaluate", path, "--format", "cmu", "--detectors", "manhattan_scaled", "--train-reps", "20",
                    "--impostor-reps", "4", "--json")
    impossible = run_cli("evaluate", path, "--format", "cmu", "--train-reps", "51")

    assert derived.returncode == 0, derived.stderr
    protocol = json.loads(derived.stdout)["protocol"]
    assert (protocol["train_reps"], protocol["impostor_reps"], protocol["subjects"]) == (25, 5, 56)
    assert set(protocol["derived"]) == {"train_reps", "impostor_reps"}
    assert "train_reps=25" in derived.stderr and "impostor_reps=5" in derived.stderr and "51" in derived.stderr
    assert given.returncode == 0, given.stderr
    protocol = json.loads(given.stdout)["protocol"]
    assert (protocol["train_reps"], protocol["impostor_reps"], protocol["derived"]) == (20, 4, {})
    assert "derived" not in given.stderr
    assert impossible.returncode == 2
    assert "train_reps=51" in impossible.stderr and "51" in impossible.stderr
    assert "Traceback" not in impossible.stderr and impossible.stdout == ""


@pytest.mark.datasets
def test_evaluate_aalto_with_its_defaults_derives_the_protocol(run_cli) -> None:
    path = require(AALTO_SAMPLE)  # 149 users x 15 sentences, 13 to 15 of them with a 20-keystroke window

    done = run_cli("evaluate", path, "--format", "aalto", "--detectors", "manhattan_scaled", "--json")
    impossible = run_cli("evaluate", path, "--format", "aalto", "--detectors", "manhattan_scaled",
                         "--train-reps", "15")

    assert done.returncode == 0, done.stderr
    protocol = json.loads(done.stdout)["protocol"]
    assert (protocol["train_sentences"], protocol["impostor_sentences"], protocol["users"]) == (6, 3, 149)
    assert "train_sentences=6" in done.stderr
    assert impossible.returncode == 2
    assert "15" in impossible.stderr and "Traceback" not in impossible.stderr


def write_partial_cmu(path: Path, families: tuple[str, ...], subjects: int = 4, reps: int = 12) -> list[str]:
    """A CMU-layout file with only the timing families named (H., DD., UD.), seconds, seeded; returns its
    timing columns. Each subject types around their own mean, so the detectors have something to learn."""
    keys = ["t", "i", "e", "five"]
    columns = [f"H.{k}" for k in keys] + [f"{f}{a}.{b}" for f in ("DD.", "UD.")
                                         for a, b in itertools.pairwise(keys)]
    timing = [c for c in columns if c.startswith(families)]
    rng = np.random.default_rng(7)
    rows = []
    for subject in range(subjects):
        mean = rng.uniform(0.05, 0.3, len(timing))
        rows += [[f"s{subject:03d}", 1 + rep // 6, 1 + rep % 6, *rng.normal(mean, mean * 0.05).round(4)]
                 for rep in range(reps)]
    lines = [",".join(["subject", "sessionIndex", "rep", *timing])] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return timing


@pytest.mark.parametrize("families", [("DD.",), ("H.", "UD."), ("UD.",)])
def test_cmu_file_with_some_timing_families_imports_and_evaluates(run_cli, tmp_path: Path,
                                                                 families: tuple[str, ...]) -> None:
    path = tmp_path / "partial.csv"
    timing = write_partial_cmu(path, families)

    ingested = run_cli("ingest", path, "--format", "cmu", "--db", tmp_path / "cli.duckdb", "--json")
    evaluated = run_cli("evaluate", path, "--format", "cmu", "--json")

    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert (report["windows_added"], report["users_added"]) == (48, 4)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["protocol"] | {"features": len(timing), "subjects": 4, "train_reps": 6, "impostor_reps": 3} \
        == result["protocol"]
    assert result["detectors"]["manhattan_scaled"]["auc"] > 0.8


def test_the_package_metadata_installs_the_pinned_requirements_and_the_telltale_command() -> None:
    """`pip install -e .` reads pyproject.toml: its dependencies are requirements.txt (one list), and the
    `telltale` command is the same main as `python -m app`."""
    import importlib
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["dependencies"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    pins = [line for line in (root / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert "torch==2.13.0" in pins and all("==" in pin for pin in pins)
    module, _, function = project["project"]["scripts"]["telltale"].partition(":")
    from app.cli.commands import main

    assert getattr(importlib.import_module(module), function) is main
    assert (root / project["project"]["license-files"][0]).is_file()
