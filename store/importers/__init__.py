"""Parsers that turn public behavioural-biometrics dataset layouts into Polars frames.

- `store.importers.balabit.read_balabit(folder)` -> `ImportResult` (Balabit mouse sessions)
- `store.importers.aalto.read_aalto(path_or_folder)` -> `ImportResult` (Aalto keystroke logs)
- `store.importers.cmu.read_cmu(path)` -> `CmuResult` (fixed-text H/DD/UD feature vectors)

No database code lives here: `store.ingest` validates and writes what these return. Event frames are
canonical (`store.schema.conform(..., source="dataset")`) and carry no typed characters or key codes.
Refused input raises `store.errors.ValidationError` naming the file, the 1-based data row and column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from store.errors import Problem, ValidationError

#: progress(files_done, files_total), called after each source file.
Progress = Callable[[int, int], None]

SESSION_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "user_id": pl.String(),
    "started_at": pl.Datetime("us"),  # wall clock of the first event, UTC (naive); null when unknown
}
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "label": pl.String(),  # "genuine" or "impostor"
    "actor_id": pl.String(),  # who really produced the session, when known
}

#: How many problems a ValidationError lists before summarising the rest.
MAX_PROBLEMS = 5


@dataclass(frozen=True)
class ImportResult:
    """Events of one dataset import, plus what was dropped on the way and why."""

    events: pl.DataFrame  # canonical events, sorted by session_id, seq; t_ms non-decreasing per session
    sessions: pl.DataFrame  # SESSION_SCHEMA, one row per session, sorted by session_id
    labels: pl.DataFrame  # LABEL_SCHEMA; may be empty
    dropped: dict[str, int]  # reason -> source rows dropped for it (zero counts kept: they were checked)
    source_rows: int  # data rows read from the source files (headers and blank lines excluded)


def refuse(
    source: Path | str, reason: str, row: int | None = None, column: str | None = None
) -> ValidationError:
    """A ValidationError with one problem, ready to raise."""
    return ValidationError([Problem(reason, row=row, column=column)], source=str(source))


def read_first_line(path: Path) -> str:
    """The first line of a text file without BOM or line ending; refuses an empty file."""
    with path.open("rb") as handle:
        first = handle.readline()
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        raise refuse(path, "empty file: no header line. Re-export the file from the original dataset.")
    return text


def check_header(path: Path, found: Sequence[str], expected: Sequence[str], layout: str) -> None:
    """Refuse a file whose header is not exactly `expected` (names and order)."""
    if list(found) == list(expected):
        return
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if unexpected:
        detail.append(f"unexpected {unexpected}")
    if not detail:
        detail.append("columns in a different order")
    raise refuse(
        path,
        f"not a {layout} file: header has {', '.join(detail)}; expected exactly {list(expected)}. "
        "Check that this is the right file and that it was not re-saved with other columns.",
    )


def number_problems(
    text: pl.DataFrame, columns: Sequence[str], integral: Sequence[str] = ()
) -> tuple[list[Problem], int]:
    """Cells of `columns` that are not finite numbers (or not whole numbers, for `integral` ones).

    `text` holds the raw cell text plus a 1-based `row` column. Returns the first MAX_PROBLEMS problems
    in row order and the total number found.
    """
    found: list[Problem] = []
    total = 0
    for column in columns:
        parsed = pl.col(column).cast(pl.Float64, strict=False)
        bad = parsed.is_null() | ~parsed.is_finite()
        if column in integral:
            bad = bad | (parsed != parsed.round())
        offenders = text.filter(bad).select("row", column)
        total += offenders.height
        kind = "a whole number" if column in integral else "a finite number"
        for row, value in offenders.head(MAX_PROBLEMS).iter_rows():
            shown = "an empty value" if value is None or value == "" else f"'{value[:24]}'"
            found.append(Problem(f"{shown} is not {kind}", row=row, column=column))
    found.sort(key=lambda problem: (problem.row or 0, problem.column or ""))
    return found[:MAX_PROBLEMS], total


def raise_number_problems(
    path: Path, text: pl.DataFrame, columns: Sequence[str], integral: Sequence[str] = ()
) -> None:
    """Raise a ValidationError listing non-numeric cells, if there are any."""
    problems, total = number_problems(text, columns, integral)
    if problems:
        problems[0] = Problem(
            problems[0].reason + ". Fix or remove the row(s) in the source file and import again.",
            row=problems[0].row,
            column=problems[0].column,
        )
        raise ValidationError(problems, source=str(path), total=total)


def report(progress: Progress | None, done: int, total: int) -> None:
    """Call the progress callback, if any."""
    if progress is not None:
        progress(done, total)


def empty_labels() -> pl.DataFrame:
    return pl.DataFrame(schema=LABEL_SCHEMA)
