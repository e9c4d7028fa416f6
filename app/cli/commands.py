"""The `python -m app` command line.

Every command that reports figures takes `--json` and then prints exactly one JSON object on
stdout; messages and progress go to stderr. Bad input exits with status 2 and a message that
names the row, column and reason; nothing of it is stored.

Each command imports the engine modules it runs inside its handler: `--help` and a quick command
then start without loading what another command needs (detectors, the scheduler, tqdm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app import settings
from app.engine.imports import IMPORT_FORMATS
from store.text import plural

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # every argument, --help included, belongs to `python -m bench`
        return run_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    from store.errors import StoreError

    try:
        return args.handler(args)
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; nothing of the current import was stored", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    invoked = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog=invoked if invoked == "telltale" else "python -m app",
        description="Telltale: behavioral-biometrics workbench (event store, simulators, detectors).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
                *, db: bool = True, json_flag: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if db:
            sub.add_argument("--db", help="DuckDB file (default: $TELLTALE_DB or var/telltale.duckdb)")
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return sub

    ingest = command("ingest", cmd_ingest, "Import a file or dataset folder into the store.")
    ingest.add_argument("path", type=Path, help="CSV file, or dataset folder for balabit/aalto")
    ingest.add_argument("--format", default="events", choices=list(IMPORT_FORMATS),
                        help="events: canonical CSV (default); cmu: CMU-layout feature vectors; "
                             "balabit: Balabit mouse challenge folder; aalto: Aalto keystroke logs")
    ingest.add_argument("--dry-run", action="store_true", help="check everything, store nothing")

    command("stats", cmd_stats, "Rows per table.")

    export = command("export", cmd_export, "Write events as hive-partitioned Parquet (date, user).")
    export.add_argument("--to", required=True, type=Path, help="output folder")

    command("init", cmd_init, "Create or upgrade the store; load sample_data/ when it is empty.")

    simulate = command("simulate", cmd_simulate, "Generate seeded synthetic users, impostors and bots.")
    simulate.add_argument("--users", type=int, default=10, help="genuine users (default 10)")
    simulate.add_argument("--sessions", type=int, default=5, help="genuine sessions per user (default 5)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.add_argument("--attack-share", type=float, default=0.2,
                          help="attack sessions as a share of genuine ones (default 0.2)")
    simulate.add_argument("--enrolment-days", type=int, default=0,
                          help="no attack in each account's first N days: its first N sessions are clean enrolment")
    simulate.add_argument("--out", type=Path,
                          help="write events to this CSV (+ .sessions.csv, .labels.csv, .system_metrics.csv)")
    simulate.add_argument("--live", action="store_true",
                          help="stream at wall-clock pace into the store (via the app's inbox when the app runs)")
    simulate.add_argument("--speed", type=float, default=1.0, help="live: times real time (default 1.0)")

    evaluate = command("evaluate", cmd_evaluate,
                       "Evaluate detectors on a public dataset, straight from the files (no database); or, with "
                       "--format events, the app's decisions on a labelled population replayed through its own "
                       "path into a temporary store.", db=False)
    evaluate.add_argument("path", type=Path, help="CMU-layout CSV, Balabit folder, Aalto file/folder, or an "
                                                  "events CSV with .sessions.csv and .labels.csv beside it")
    evaluate.add_argument("--format", required=True, choices=["events", "cmu", "balabit", "aalto"])
    evaluate.add_argument("--detectors", help="comma-separated registry names (default: per format)")
    evaluate.add_argument("--train-reps", type=int,
                          help="cmu: training repetitions per subject (default: the published 200 when every "
                               "subject has 400, else half the smallest subject's); aalto: training sentences "
                               "per user (default: half the smallest user's)")
    evaluate.add_argument("--tick-seconds", type=float, default=10.0,
                          help="events: seconds of session time between runs of the score job (default 10)")
    evaluate.add_argument("--keep", type=Path, help="events: keep the replayed store in this DuckDB file, labels added "
                               "(open it in the app: TELLTALE_DB=FILE make run)")
    evaluate.add_argument("--impostor-reps", type=int,
                          help="repetitions (cmu) or sentences (aalto) of every other subject used as impostors "
                               "(default: 5, at most half the training ones)")

    train = command("train", cmd_train, "Train every user's models from the stored windows.")
    train.add_argument("--users", help="comma-separated user ids (default: everyone, plus the global models)")

    shown = command("settings", cmd_settings, "Every setting's value here (TELLTALE_* variables or the default).",
                    db=False)
    shown.add_argument("--markdown", action="store_true", help="print the documented table (docs/settings.md)")
    features = command("features", cmd_features, "The feature dictionary (name, family, unit, meaning).", db=False)
    features.add_argument("--markdown", action="store_true", help="print Markdown (docs/features.md)")

    command("worker", cmd_worker, "Run the scheduled jobs headless (sampling, inbox, scoring) until Ctrl+C.",
            json_flag=False)

    bench = commands.add_parser(
        "bench", add_help=False,
        help="Benchmarks: print our rate beside a baseline measured in the same run (python -m app bench --help).")
    bench.add_argument("arguments", nargs=argparse.REMAINDER, help="arguments of `python -m bench`")
    return parser


# -- helpers ---------------------------------------------------------------------------------------
def _open_store(args: argparse.Namespace, *, create: bool = True):
    """The store of --db, else $TELLTALE_DB, else the default. With `create=False` (commands that
    only read it) a missing file is refused instead of created: an empty store would hide the mistake."""
    from store import MEMORY, Store
    from store.errors import StoreError

    path = args.db or settings.get("db")
    if not create and path != MEMORY and not Path(path).exists():
        shown = _shown_path(path)
        if args.db or os.environ.get("TELLTALE_DB"):
            given = "--db" if args.db else "TELLTALE_DB"
            raise StoreError(f"no store at {shown} ({given}): check the path, or create it with "
                             f"`python -m app init --db {shown}` or `python -m app ingest FILE --db {shown}`")
        raise StoreError(f"no store at {shown} yet: run `make run` or `python -m app init`, or give --db")
    return Store(path)


def _shown_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (var/telltale.duckdb), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, default=str))
    else:
        print(human)


def progress_bar(description: str, unit: str = "rows") -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (callback, close) pair drawing a tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(desc=description, unit=unit, unit_scale=True, file=sys.stderr, disable=None, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


# -- commands --------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    importer = IMPORT_FORMATS[args.format]
    with _open_store(args) as store:
        update, close = progress_bar(f"importing {args.path.name}")
        try:
            report = importer(store, args.path, progress=update, dry_run=args.dry_run)
        finally:
            close()
    prefix = "dry run, nothing stored: " if args.dry_run else ""
    _emit(args, report.as_dict(), prefix + report.summary())
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        counts = store.table_counts()
        path = store.path
    width = max(map(len, counts))
    human = "\n".join([f"store: {path}"] + [f"  {name:<{width}}  {n:>12,}" for name, n in counts.items()])
    _emit(args, {"db": path, "tables": counts}, human)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from store.export import export_events_parquet

    with _open_store(args, create=False) as store:
        report = export_events_parquet(store, args.to)
    _emit(args, report.as_dict(), f"exported {plural(report.events, 'event')} to {report.folder} "
                                  f"({plural(report.files, 'file')}, {plural(report.partitions, 'partition')})")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from app.engine.samples import load_sample_data

    with _open_store(args) as store:
        if store.table_counts()["events"] == 0:
            print("first start: replaying the sample sessions through the app in time order (stored, windowed, "
                  "decided, models retrained as they come)", file=sys.stderr)
        update, close = progress_bar("sample sessions", unit="sessions")
        try:
            loaded = load_sample_data(store, Path(settings.get("sample_data")), progress=update)
        finally:
            close()
        counts = store.table_counts()
    human = (f"loaded sample data: {plural(loaded['events_added'], 'event')} of "
             f"{plural(loaded['sessions_added'], 'session')}; {plural(loaded['windows'], 'window')}, "
             f"{plural(loaded['models'], 'model')} trained, {plural(loaded['decisions'], 'decision')}"
             if loaded else "store already has data; sample data not loaded")
    _emit(args, {"db": args.db or settings.get("db"), "loaded": loaded, "tables": counts}, human)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from app.engine.samples import simulate_into

    if args.users < 1 or args.sessions < 1:
        print("error: --users and --sessions must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.live:
        return _simulate_live(args)
    if args.out:
        from app.engine.samples import write_simulation

        written = write_simulation(args.out, users=args.users, sessions=args.sessions, seed=args.seed,
                                   attack_share=args.attack_share, enrolment_days=args.enrolment_days)
        _emit(args, written, f"wrote {plural(written['events'], 'event')} of "
                             f"{plural(written['sessions'], 'session')} to {args.out}")
        return EXIT_OK
    with _open_store(args) as store:
        report = simulate_into(store, users=args.users, sessions=args.sessions, seed=args.seed,
                               attack_share=args.attack_share, enrolment_days=args.enrolment_days)
    _emit(args, report.as_dict(), report.summary())
    return EXIT_OK


def _simulate_live(args: argparse.Namespace) -> int:
    from app.engine.inbox import inbox_folder, post_batch
    from app.engine.stream import LiveStream
    from store import DatabaseLockedError, Store, ingest_events

    if args.speed <= 0:
        print("error: --speed must be greater than 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    db = args.db or settings.get("db")
    try:
        store = Store(db)
    except DatabaseLockedError:
        store = None
        folder = inbox_folder(db)
        print(f"the app holds {db}; streaming through its inbox {folder}", file=sys.stderr)

        def deliver(events, sessions) -> int:
            post_batch(folder, events, sessions)
            return events.height
    else:
        def deliver(events, sessions) -> int:
            return ingest_events(store, events, source_name="live stream", sessions=sessions, actor="cli",
                                 audit=False).events_added

    stream = LiveStream(deliver, users=args.users, sessions=args.sessions, seed=args.seed, speed=args.speed,
                        attack_share=args.attack_share).start()
    print(f"streaming {plural(stream.status.total_events, 'event')} of "
          f"{plural(len(stream.status.sessions), 'session')} at {args.speed:g}x; Ctrl+C to stop", file=sys.stderr)
    try:
        while not stream.wait(1.0):
            print(f"\r{stream.status.events:,} / {plural(stream.status.total_events, 'event')}", end="",
                  file=sys.stderr)
    except KeyboardInterrupt:
        stream.stop()
    finally:
        if store is not None:
            store.close()
    print(file=sys.stderr)
    status = stream.status
    payload = {"events": status.events, "batches": status.batches, "sessions": status.sessions, "error": status.error}
    _emit(args, payload, f"streamed {plural(status.events, 'event')} in {plural(status.batches, 'batch', 'batches')}"
                         + (f"; error: {status.error}" if status.error else ""))
    return EXIT_OK if status.error is None else EXIT_BAD_INPUT


def cmd_evaluate(args: argparse.Namespace) -> int:
    from app.engine.detector_evaluation import evaluate, markdown

    if not args.path.exists():
        print(f"error: {args.path} not found", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "events":
        return _evaluate_decisions(args)
    detectors = args.detectors.split(",") if args.detectors else None
    update, close = progress_bar(f"evaluating {args.path.name}", unit="fits")
    try:
        result = evaluate(args.path, args.format, detectors=detectors, train_reps=args.train_reps,
                          impostor_reps=args.impostor_reps, progress=update)
    except (KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        close()
    protocol = result["protocol"]
    if protocol.get("derived"):
        print("derived from the data: " + "; ".join(f"{name}={protocol[name]} ({why})"
                                                   for name, why in protocol["derived"].items())
              + "; --train-reps / --impostor-reps to choose", file=sys.stderr)
    _emit(args, result, markdown(result, args.format))
    return EXIT_OK


def _evaluate_decisions(args: argparse.Namespace) -> int:
    from app.engine.replay import ReplayOptions, evaluate_events, summary_text

    if not args.tick_seconds > 0:
        print("error: --tick-seconds must be greater than 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.keep is not None and args.keep.exists():
        print(f"error: {args.keep} exists; --keep writes a new store", file=sys.stderr)
        return EXIT_BAD_INPUT
    update, close = progress_bar(f"replaying {args.path.name}", unit="sessions")
    try:
        result = evaluate_events(args.path, options=ReplayOptions(tick_seconds=args.tick_seconds), progress=update,
                                 keep=args.keep)
    finally:
        close()
    _emit(args, result, summary_text(result))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from app.engine.jobs import failures_summary
    from app.engine.pipeline import featurize_pending
    from app.engine.training import train

    with _open_store(args) as store:
        built = featurize_pending(store)
        if built.failed:
            print(f"warning: {failures_summary(built.failed)}", file=sys.stderr)
        update, close = progress_bar("training", unit="users")
        try:
            report = train(store, users=args.users.split(",") if args.users else None, progress=update, actor="cli")
        finally:
            close()
    _emit(args, {"models": report.models, "users": report.users, "seconds": round(report.seconds, 1),
                 "below_enrolment_minimum": report.skipped, "sessions_set_aside": built.failed}, report.summary())
    return EXIT_OK


def cmd_features(args: argparse.Namespace) -> int:
    from detectors.features import FEATURE_DICTIONARY, WINDOW_KINDS, feature_names

    if args.markdown:
        print(FEATURE_DICTIONARY.markdown())
        return EXIT_OK
    kinds = {kind: feature_names(kind) for kind in WINDOW_KINDS}
    payload = {"kinds": kinds, "features": {n: {"family": i.family, "unit": i.unit, "meaning": i.meaning}
                                            for n, i in FEATURE_DICTIONARY.entries.items()}}
    _emit(args, payload, "\n".join(f"{kind}: {plural(len(names), 'feature')}: {', '.join(names)}"
                                    for kind, names in kinds.items()))
    return EXIT_OK


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(settings.markdown_table())
        return EXIT_OK
    rows = settings.current()
    width = max(len(row["variable"]) for row in rows)
    _emit(args, {row["variable"]: {"value": row["value"], "source": row["source"]} for row in rows},
          "\n".join(f"{row['variable']:<{width}}  {row['value']}" + ("  (from the environment)"
                                                                      if row["source"] == "environment" else "")
                    for row in rows))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from app.engine.jobs import run_worker

    run_worker(args.db or settings.get("db"))
    return EXIT_OK


def run_bench(arguments: Sequence[str]) -> int:
    """Run `python -m bench` with these arguments: the benchmarks import the app, so they run in a
    process of their own instead of being imported by it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "bench", *arguments], cwd=root, check=False).returncode
