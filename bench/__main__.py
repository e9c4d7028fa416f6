"""`python -m bench WHAT` (also `python -m app bench WHAT`): run one benchmark and print its figures,
ours beside the baseline measured in the same run (`--json`: one JSON object on stdout)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import run_benchmark

BENCHMARKS = ("ingest", "import", "features", "detectors", "evaluate", "replay", "latency", "pages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app bench",
        description="Benchmarks: print our rate beside a baseline measured in the same run.")
    parser.add_argument("what", choices=BENCHMARKS,
                        help="ingest: 1M-event CSV; import: Balabit folder; features: window pipeline; "
                             "detectors: fit and scoring times; evaluate: `evaluate --format balabit` on a "
                             "full-challenge-size layout; replay: `evaluate --format events` on a simulated "
                             "population beside bulk processing; latency: batch to stored decision; pages: first "
                             "render of every page on ~1M events and the app's memory with the Live monitor open")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the generated CSV (ingest)")
    parser.add_argument("--path", type=Path, help="Balabit folder (import, evaluate; default "
                                                  "../shared/datasets/balabit-mouse); "
                                                  "pages: an already prepared store to copy instead of building one")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="pages: minutes of memory sampling with the Live monitor open (default 60)")
    parser.add_argument("--stream", choices=["data-page", "heavy"], default="data-page",
                        help="pages: the live stream during the memory soak: data-page (the Data page's default, "
                             "8 people at once, ~100 events/s) or heavy (60 sessions at once, ~1,000 events/s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run_benchmark(args.what, rows=args.rows, path=args.path, minutes=args.minutes, stream=args.stream)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print("\n".join(f"{k}: {v:,.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
