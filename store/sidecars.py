"""Files written beside an events CSV by `python -m app simulate --out sim.csv`.

`sim.sessions.csv` gives each session's wall-clock start (the events only carry milliseconds since
it), `sim.labels.csv` the ground truth the Threshold lab measures against (never read by a
detector), `sim.system_metrics.csv` a CPU and memory trace. An import of `sim.csv` that asks for them
reads whichever exist, checks them as strictly as the events (file, row, column, reason) and stores
them in the events' transaction: all of it or none of it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from store.errors import Problem, ValidationError

SIDECARS: dict[str, str] = {"sessions": ".sessions.csv", "labels": ".labels.csv",
                            "system_metrics": ".system_metrics.csv"}
#: Columns of each sidecar: name -> (kind of value, required). A required column must be present and
#: never empty; an optional one may be left out or left empty. Timestamps are UTC wall clock, no zone.
COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "sessions": {"session_id": ("text", True), "user_id": ("text", True), "started_at": ("timestamp", True)},
    "labels": {"session_id": ("text", True), "label": ("text", True), "actor_id": ("text", False),
               "takeover_ms": ("number", False)},
    "system_metrics": {"at": ("timestamp", True), "cpu_percent": ("number", True), "mem_percent": ("number", True),
                       "rss_mb": ("number", False)},
}
#: The column a sidecar row is about: it appears once per file.
KEYS: dict[str, str] = {"sessions": "session_id", "labels": "session_id", "system_metrics": "at"}
#: ISO 8601 with a T or a space, seconds with or without a fraction (as Polars and the simulator write them).
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
TIMESTAMP = pl.Datetime("us")
MAX_PROBLEMS = 10
ROW = "_row"  # 1-based data row (the header is not counted), as in every other error message


def sidecar_path(events_csv: Path, kind: str) -> Path:
    """`sim.csv` -> `sim.sessions.csv` (and so on)."""
    return events_csv.with_name(events_csv.name.removesuffix(".csv") + SIDECARS[kind])


@dataclass(frozen=True)
class Sidecars:
    """The sidecars found beside one events CSV, checked and typed; each frame keeps its `_row`."""

    events_csv: Path
    paths: dict[str, Path]
    frames: dict[str, pl.DataFrame]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(path.name for path in self.paths.values())

    def table(self, kind: str) -> pl.DataFrame | None:
        """The rows of one sidecar as the store takes them (no `_row`), None when it is absent."""
        frame = self.frames.get(kind)
        return None if frame is None else frame.drop(ROW)

    def check_against_events(self, cursor, staging: str) -> None:
        """Refuse a session start or label for a session that is not in the events file, and a session
        start naming another user than the events do: such a sidecar belongs to another file.

        `staging` is the table (or registered frame) holding the import's validated events.
        """
        checks = {
            "sessions": ("user_id", f"""
                SELECT x.{ROW}, x.session_id, x.user_id, e.user_id
                FROM sidecar x LEFT JOIN (SELECT session_id, any_value(user_id) AS user_id FROM {staging}
                                          GROUP BY session_id) e USING (session_id)
                WHERE e.user_id IS NULL OR e.user_id <> x.user_id"""),
            "labels": ("session_id", f"""
                SELECT x.{ROW}, x.session_id, NULL, NULL FROM sidecar x
                WHERE NOT EXISTS (SELECT 1 FROM {staging} e WHERE e.session_id = x.session_id)"""),
        }
        for kind, (column, query) in checks.items():
            if kind not in self.frames:
                continue
            keys = (ROW, "session_id", "user_id") if kind == "sessions" else (ROW, "session_id")
            cursor.register("sidecar", self.frames[kind].select(keys).to_arrow())
            try:
                found = cursor.execute(f"SELECT *, count(*) OVER () FROM ({query}) ORDER BY 1 LIMIT {MAX_PROBLEMS}"
                                       ).fetchall()
            finally:
                cursor.unregister("sidecar")
            if found:
                events = self.events_csv.name
                problems = [
                    Problem(f"session '{session}' is not in {events}" if stored_user is None else
                            f"session '{session}' belongs to user '{stored_user}' in {events}, not '{user}'",
                            row=row, column="session_id" if stored_user is None else column)
                    for row, session, user, stored_user, _ in found]
                raise ValidationError(problems, str(self.paths[kind]), total=found[0][4])


def read_sidecars(events_csv: Path) -> Sidecars:
    """Every sidecar that exists beside `events_csv`, checked and typed (see COLUMNS), or a refusal."""
    paths = {kind: sidecar_path(events_csv, kind) for kind in SIDECARS}
    paths = {kind: path for kind, path in paths.items() if path.is_file()}
    return Sidecars(events_csv, paths, {kind: read_sidecar(path, kind) for kind, path in paths.items()})


def read_sidecar(path: Path, kind: str) -> pl.DataFrame:
    """One sidecar file as typed columns (COLUMNS[kind], absent optional ones null) plus `_row`."""
    columns = COLUMNS[kind]
    text = _read_text(path)
    header = [name.strip() for name in next(csv.reader([text.splitlines()[0]]))]
    problems = []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        problems.append(Problem(f"column(s) repeated in the header: {', '.join(repeated)}"))
    missing = [name for name, (_, required) in columns.items() if required and name not in header]
    if missing:
        problems.append(Problem(f"missing column(s): {', '.join(missing)} (required: "
                                f"{', '.join(n for n, (_, r) in columns.items() if r)})"))
    unknown = [name for name in header if name not in columns]
    if unknown:
        problems.append(Problem(f"unknown column(s): {', '.join(unknown)} (allowed: {', '.join(columns)}); "
                                f"is this the {kind} file of a simulation?"))
    if problems:
        raise ValidationError(problems, str(path))
    try:
        raw = pl.read_csv(io.StringIO(text), infer_schema=False, null_values=[""], new_columns=header)
    except pl.exceptions.PolarsError as error:
        raise ValidationError([Problem(f"cannot be read as CSV ({str(error).splitlines()[0]}); every row needs "
                                       f"{len(header)} comma-separated values")], str(path)) from None
    raw = raw.with_columns(pl.col(pl.String).str.strip_chars()).with_row_index(ROW, offset=1)
    typed = raw.select(ROW, *[_typed(name, kind_of_value) if name in header
                              else pl.lit(None, _dtype(kind_of_value)).alias(name)
                              for name, (kind_of_value, _) in columns.items()])
    _refuse_bad_values(path, raw, typed, columns, KEYS[kind])
    return typed


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ValidationError([Problem("empty file: expected a header line and rows")], str(path))
    if b"\x00" in data:
        raise ValidationError([Problem("binary file (it contains NUL bytes); expected UTF-8 CSV text")], str(path))
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValidationError([Problem(f"not UTF-8: byte 0x{data[error.start]:02x} on line {line} cannot be "
                                       "decoded; save the file as UTF-8")], str(path)) from None


def _dtype(kind_of_value: str) -> pl.DataType:
    return {"text": pl.String(), "number": pl.Float64(), "timestamp": TIMESTAMP}[kind_of_value]


def _typed(name: str, kind_of_value: str) -> pl.Expr:
    column = pl.col(name)
    if kind_of_value == "number":
        return column.cast(pl.Float64, strict=False)
    if kind_of_value == "timestamp":
        return pl.coalesce([column.str.to_datetime(fmt, time_unit="us", strict=False) for fmt in TIMESTAMP_FORMATS])
    return column


def _refuse_bad_values(path: Path, raw: pl.DataFrame, typed: pl.DataFrame,
                       columns: dict[str, tuple[str, bool]], key: str) -> None:
    """Raise with the first problems by row: empty required cells, unreadable numbers and timestamps,
    non-finite numbers, and a key value seen on an earlier row."""
    checks: list[tuple[str, pl.Series, pl.Series]] = []  # column, is bad, reason
    for name, (kind_of_value, required) in columns.items():
        if name not in raw.columns:
            continue
        text, value = raw[name], typed[name]
        if required:
            checks.append((name, text.is_null(), pl.repeat("missing value (the column is required)", raw.height,
                                                           eager=True)))
        unreadable = text.is_not_null() & value.is_null()
        if kind_of_value == "number":
            checks.append((name, unreadable, "'" + text + "' is not a number"))
            checks.append((name, value.is_not_null() & ~value.is_finite(), "'" + text + "' is not a finite number"))
        elif kind_of_value == "timestamp":
            checks.append((name, unreadable, "'" + text + "' is not a date and time (expected "
                                                          "YYYY-MM-DDTHH:MM:SS[.ffffff], UTC)"))
    repeated = typed[key].is_not_null() & ~typed.select(pl.col(key).is_first_distinct()).to_series()
    first_row = typed.select(pl.col(ROW).first().over(key)).to_series()
    checks.append((key, repeated, "'" + raw[key] + "' appears again (first on row " + first_row.cast(pl.String)
                   + "); one row per value"))
    found: list[tuple[int, int, str, str]] = []
    total = 0
    rows = raw[ROW]
    for order, (name, bad, reason) in enumerate(checks):
        bad = bad.fill_null(False)
        total += int(bad.sum())
        found += [(row, order, name, text) for row, text in
                  zip(rows.filter(bad).head(MAX_PROBLEMS), reason.filter(bad).head(MAX_PROBLEMS), strict=True)]
    if found:
        found.sort()
        raise ValidationError([Problem(text, row=row, column=name) for row, _, name, text in found[:MAX_PROBLEMS]],
                              str(path), total=total)
