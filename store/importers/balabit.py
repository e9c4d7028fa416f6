"""Balabit Mouse Dynamics Challenge: one CSV of raw mouse events per remote-desktop session.

Layout: `training_files/<user>/session_*` (genuine sessions) and optionally `test_files/<user>/session_*`
(sessions claimed by <user>) with `public_labels.csv` (`filename,is_illegal`). Each session file has
`record timestamp,client timestamp,button,state,x,y`; timestamps are seconds since the session start.

Mapping to the canonical schema:
- state Move -> mouse_move (button null); Drag -> mouse_move with the held button (see below);
  Pressed -> mouse_down; Released -> mouse_up; Up/Down (button Scroll) -> wheel (button null, x/y kept;
  the scroll direction has no canonical column and is not kept).
- button Left/Right/Middle -> left/right/middle, NoButton/Scroll -> null, anything else (XButton) -> other.
- Drag rows in the real data say NoButton, so their button is the one of the latest Pressed row in the
  session (the button being held); a Drag before any Pressed gets "other".
- t_ms = client timestamp * 1000; user_id = the user folder; session_id = "balabit-" + file name.
- Dropped and counted, in this order: exact duplicate rows, x = y = 65535 placeholders, rows whose client
  time is below the running maximum (clock went backwards). Hour-long gaps are kept.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from store.importers import (
    LABEL_SCHEMA,
    SESSION_SCHEMA,
    ImportResult,
    Progress,
    check_header,
    empty_labels,
    raise_number_problems,
    read_first_line,
    refuse,
    report,
)
from store.schema import conform

LAYOUT = "Balabit session"
SESSION_COLUMNS: tuple[str, ...] = ("record timestamp", "client timestamp", "button", "state", "x", "y")
SESSION_READ_SCHEMA: dict[str, pl.DataType] = {
    "record timestamp": pl.Float64(),
    "client timestamp": pl.Float64(),
    "button": pl.String(),
    "state": pl.String(),
    "x": pl.Float64(),
    "y": pl.Float64(),
}
NUMERIC_COLUMNS: tuple[str, ...] = ("record timestamp", "client timestamp", "x", "y")
LABEL_FILE = "public_labels.csv"
LABEL_COLUMNS: tuple[str, ...] = ("filename", "is_illegal")
PARTS: tuple[str, ...] = ("training_files", "test_files")

EVENT_TYPE_OF_STATE: dict[str, str] = {
    "Move": "mouse_move",
    "Drag": "mouse_move",
    "Pressed": "mouse_down",
    "Released": "mouse_up",
    "Up": "wheel",
    "Down": "wheel",
}
BUTTON_OF_NAME: dict[str, str | None] = {
    "Left": "left",
    "Right": "right",
    "Middle": "middle",
    "NoButton": None,
    "Scroll": None,
}
PLACEHOLDER_POSITION = 65535.0

DUPLICATE_ROW = "duplicate row"
PLACEHOLDER_ROW = "placeholder position 65535"
CLOCK_BACKWARDS = "clock went backwards"


def read_balabit(folder: Path | str, progress: Progress | None = None) -> ImportResult:
    """Read a Balabit folder (training part, optionally test part with public labels) into events.

    Training sessions are labelled genuine; labelled test sessions genuine or impostor (is_illegal 1);
    test sessions missing from public_labels.csv get no label. `started_at` is null: the files carry
    no wall clock.
    """
    root = Path(folder)
    session_files = find_session_files(root)
    frames = []
    for done, (part, user_id, path) in enumerate(session_files, start=1):
        frames.append(
            read_session_file(path).with_columns(
                session_id=pl.lit(f"balabit-{path.name}"),
                user_id=pl.lit(user_id),
                part=pl.lit(part),
            )
        )
        report(progress, done, len(session_files))
    raw = pl.concat(frames, how="vertical")
    kept, dropped = drop_quirks(raw)
    events = conform(to_events(kept), source="dataset").sort("session_id", "seq")

    sessions = pl.DataFrame(
        {
            "session_id": [f"balabit-{path.name}" for _, _, path in session_files],
            "user_id": [user_id for _, user_id, _ in session_files],
            "part": [part for part, _, _ in session_files],
        }
    )
    labels = session_labels(root, sessions)
    sessions = sessions.select(
        "session_id", "user_id", started_at=pl.lit(None, dtype=SESSION_SCHEMA["started_at"])
    ).sort("session_id")
    return ImportResult(
        events=events, sessions=sessions, labels=labels, dropped=dropped, source_rows=raw.height
    )


def find_session_files(root: Path) -> list[tuple[str, str, Path]]:
    """(part, user, path) of every session file, sorted by file name; refuses a folder of another layout."""
    if not root.is_dir():
        raise refuse(root, "not a folder. Pass the Balabit folder that contains training_files/.")
    found = [
        (part, user_dir.name, path)
        for part in PARTS
        if (root / part).is_dir()
        for user_dir in sorted((root / part).iterdir())
        if user_dir.is_dir()
        for path in sorted(user_dir.glob("session_*"))
        if path.is_file()
    ]
    if not found:
        raise refuse(
            root,
            "not a Balabit folder: no training_files/<user>/session_* or test_files/<user>/session_* "
            "files found. Pass the folder that contains training_files/ "
            "(and test_files/, public_labels.csv).",
        )
    names = [path.name for _, _, path in found]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise refuse(
            root,
            f"session file names occur more than once ({repeated[:3]}); session ids would collide. "
            "Keep each session file in one place only.",
        )
    return sorted(found, key=lambda part_user_path: part_user_path[2].name)  # session_id order


def read_session_file(path: Path) -> pl.DataFrame:
    """One session CSV with its 1-based `row` numbers; refuses a wrong header or unreadable values."""
    check_header(path, read_first_line(path).split(","), SESSION_COLUMNS, LAYOUT)
    try:
        frame = pl.read_csv(path, schema=SESSION_READ_SCHEMA, has_header=True)
    except pl.exceptions.PolarsError as error:
        locate_unreadable_value(path, error)
    frame = frame.with_row_index("row", offset=1)
    bad_numbers = pl.any_horizontal(
        pl.col(column).is_null() | ~pl.col(column).is_finite() for column in NUMERIC_COLUMNS
    )
    if frame.select(bad_numbers.any()).item():
        raise_number_problems(
            path, frame.with_columns(pl.col(NUMERIC_COLUMNS).cast(pl.String)), NUMERIC_COLUMNS
        )
    unknown_state = frame.filter(
        ~pl.col("state").is_in(list(EVENT_TYPE_OF_STATE)) | pl.col("state").is_null()
    )
    if unknown_state.height:
        row, state = unknown_state.select("row", "state").row(0)
        raise refuse(
            path,
            f"unknown state {state!r} ({unknown_state.height} row(s)); expected one of "
            f"{list(EVENT_TYPE_OF_STATE)}. Check that this is a Balabit session file.",
            row=row,
            column="state",
        )
    return frame


def locate_unreadable_value(path: Path, error: Exception) -> None:
    """Turn a Polars parse error into a ValidationError naming the row and column when possible."""
    try:
        text = pl.read_csv(path, infer_schema=False, has_header=True).with_row_index("row", offset=1)
    except pl.exceptions.PolarsError:
        text = None
    if text is not None and set(NUMERIC_COLUMNS) <= set(text.columns):
        raise_number_problems(path, text, NUMERIC_COLUMNS)
    first_line = str(error).splitlines()[0]
    raise refuse(
        path,
        f"cannot be read as a Balabit session CSV ({first_line}). Every row needs exactly six "
        "comma-separated values: record timestamp,client timestamp,button,state,x,y.",
    ) from error


def drop_quirks(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Drop duplicate rows, placeholder positions and backwards-clock rows; count each reason."""
    # Scroll rows repeat legitimately: several wheel ticks fall within one ~15.6 ms clock tick.
    duplicate = ~pl.struct(SESSION_COLUMNS).is_first_distinct().over("session_id") & (pl.col("button") != "Scroll")
    placeholder = (pl.col("x") == PLACEHOLDER_POSITION) & (pl.col("y") == PLACEHOLDER_POSITION)
    after_duplicates = raw.filter(~duplicate)
    after_placeholders = after_duplicates.filter(~placeholder)
    t_ms = pl.col("client timestamp") * 1000.0
    backwards = t_ms < t_ms.cum_max().over("session_id")
    kept = after_placeholders.filter(~backwards)
    dropped = {
        DUPLICATE_ROW: raw.height - after_duplicates.height,
        PLACEHOLDER_ROW: after_duplicates.height - after_placeholders.height,
        CLOCK_BACKWARDS: after_placeholders.height - kept.height,
    }
    return kept, dropped


def to_events(kept: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns from cleaned session rows (still in file order within each session)."""
    named_button = (
        pl.when(pl.col("button").is_in(list(BUTTON_OF_NAME)))
        .then(pl.col("button").replace_strict(BUTTON_OF_NAME, default=None, return_dtype=pl.String))
        .when(pl.col("button").is_null())
        .then(None)
        .otherwise(pl.lit("other"))
    )
    held_button = (
        pl.when(pl.col("state") == "Pressed").then(pl.col("named_button")).forward_fill().over("session_id")
    )
    button = (
        pl.when(pl.col("state").is_in(["Move", "Up", "Down"]))
        .then(None)
        .when(pl.col("state") == "Drag")
        .then(pl.coalesce("named_button", "held_button", pl.lit("other")))
        .otherwise(pl.col("named_button"))
    )
    return (
        kept.with_columns(named_button=named_button)
        .with_columns(held_button=held_button)
        .select(
            "session_id",
            "user_id",
            seq=pl.int_range(pl.len(), dtype=pl.Int64).over("session_id"),
            t_ms=pl.col("client timestamp") * 1000.0,
            type=pl.col("state").replace_strict(EVENT_TYPE_OF_STATE, return_dtype=pl.String),
            x=pl.col("x"),
            y=pl.col("y"),
            button=button,
        )
    )


def session_labels(root: Path, sessions: pl.DataFrame) -> pl.DataFrame:
    """Training sessions genuine; test sessions from public_labels.csv (is_illegal 1 -> impostor)."""
    training = sessions.filter(pl.col("part") == "training_files").select(
        "session_id", label=pl.lit("genuine")
    )
    test_sessions = sessions.filter(pl.col("part") == "test_files").select("session_id")
    labels_path = root / LABEL_FILE
    if test_sessions.height and labels_path.is_file():
        public = read_public_labels(labels_path)
        test = test_sessions.join(public, on="session_id", how="inner")
    else:
        test = empty_labels().select("session_id", "label")
    return (
        pl.concat([training, test])
        .with_columns(actor_id=pl.lit(None, dtype=pl.String))
        .select(pl.col(name).cast(dtype) for name, dtype in LABEL_SCHEMA.items())
        .sort("session_id")
    )


def read_public_labels(path: Path) -> pl.DataFrame:
    """`filename,is_illegal` -> session_id, label; refuses values other than 0 and 1."""
    check_header(path, read_first_line(path).split(","), LABEL_COLUMNS, "Balabit public_labels.csv")
    text = pl.read_csv(path, infer_schema=False).with_row_index("row", offset=1)
    bad = text.filter(
        ~pl.col("is_illegal").str.strip_chars().is_in(["0", "1"]) | pl.col("filename").is_null()
    )
    if bad.height:
        row, value = bad.select("row", "is_illegal").row(0)
        raise refuse(
            path,
            f"is_illegal is {value!r} ({bad.height} row(s)); it must be 0 (genuine) or 1 (impostor) "
            "next to a file name. Fix the labels file.",
            row=row,
            column="is_illegal",
        )
    return text.select(
        session_id=pl.lit("balabit-") + pl.col("filename").str.strip_chars(),
        label=pl.when(pl.col("is_illegal").str.strip_chars() == "1")
        .then(pl.lit("impostor"))
        .otherwise(pl.lit("genuine")),
    ).unique("session_id", keep="first")
