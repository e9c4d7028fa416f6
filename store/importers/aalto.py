"""Aalto "136M Keystrokes" logs: `<participant>_keystrokes.txt`, one tab-separated row per keystroke.

Header: PARTICIPANT_ID TEST_SECTION_ID SENTENCE USER_INPUT KEYSTROKE_ID PRESS_TIME RELEASE_TIME LETTER KEYCODE
(times in ms since the Unix epoch). One test section (one typed sentence) becomes one session:
session_id "aalto-<participant>-<section>", user_id "aalto-<participant>".

Each keystroke becomes a key_down at PRESS_TIME and a key_up at RELEASE_TIME sharing a press_id (1, 2, ...
in press order within the session); pos = press_id - 1; field = "sentence"; key_class comes from the JS
keyCode. t_ms is relative to the session's first press. SENTENCE, USER_INPUT, LETTER and KEYCODE never
leave this module: only the key class survives.

Quirks handled: numbers in scientific notation ("2e+05"); quotes anywhere (quoting is off); tabs inside
the text columns (the numeric columns are then found from the right); rows with fewer than nine fields
("ragged row"), keystrokes repeated exactly ("duplicate keystroke") and keystrokes released before they
were pressed ("release before press") are dropped and counted.
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
    raise_number_problems,
    read_first_line,
    refuse,
    report,
)
from store.schema import conform

LAYOUT = "Aalto keystrokes"
FILE_PATTERN = "*_keystrokes.txt"
HEADER: tuple[str, ...] = (
    "PARTICIPANT_ID",
    "TEST_SECTION_ID",
    "SENTENCE",
    "USER_INPUT",
    "KEYSTROKE_ID",
    "PRESS_TIME",
    "RELEASE_TIME",
    "LETTER",
    "KEYCODE",
)
#: The columns read; SENTENCE, USER_INPUT and LETTER are never extracted.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "PARTICIPANT_ID",
    "TEST_SECTION_ID",
    "KEYSTROKE_ID",
    "PRESS_TIME",
    "RELEASE_TIME",
    "KEYCODE",
)
WHOLE_NUMBER_COLUMNS: tuple[str, ...] = ("PARTICIPANT_ID", "TEST_SECTION_ID", "KEYSTROKE_ID", "KEYCODE")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
#: For rows with extra tabs (inside SENTENCE, USER_INPUT or LETTER): the rightmost three numbers followed
#: by a LETTER and a numeric KEYCODE. The greedy `.*` makes the match the rightmost one.
_ROW_WITH_EXTRA_TABS = (
    rf"^[^\t]*\t[^\t]*\t.*\t(?P<KEYSTROKE_ID>{_NUMBER})\t(?P<PRESS_TIME>{_NUMBER})"
    rf"\t(?P<RELEASE_TIME>{_NUMBER})\t.*\t(?P<KEYCODE>\d+)$"
)
_FIELD_INDEX = {"KEYSTROKE_ID": 4, "PRESS_TIME": 5, "RELEASE_TIME": 6, "KEYCODE": 8}

RAGGED_ROW = "ragged row"
DUPLICATE_KEYSTROKE = "duplicate keystroke"
RELEASE_BEFORE_PRESS = "release before press"
FIELD = "sentence"


def _key_class_of_code() -> dict[int, str]:
    """JS keyCode -> canonical key class; codes not listed are "other"."""
    classes: dict[int, str] = {}
    classes.update({code: "letter" for code in range(65, 91)})
    classes.update({code: "digit" for code in [*range(48, 58), *range(96, 106)]})
    classes.update({code: "punct" for code in [*range(186, 193), *range(219, 223), *range(106, 112)]})
    classes.update({code: "arrow" for code in range(37, 41)})
    classes.update({code: "meta" for code in (91, 92, 93)})
    classes.update(
        {32: "space", 8: "backspace", 46: "delete", 13: "enter", 9: "tab", 16: "shift", 17: "ctrl", 18: "alt"}
    )
    return classes


KEY_CLASS_OF_CODE: dict[int, str] = _key_class_of_code()


def read_aalto(path_or_folder: Path | str, progress: Progress | None = None) -> ImportResult:
    """Read one `*_keystrokes.txt` file, or every one under a folder (recursively), into key events.

    Every session is labelled genuine (each participant typed their own sentences); `started_at` is the
    session's first press as a naive UTC datetime.
    """
    files = find_keystroke_files(Path(path_or_folder))
    texts = []
    for file_index, path in enumerate(files):
        texts.append(read_lines(path).with_columns(file_index=pl.lit(file_index, dtype=pl.Int64)))
        report(progress, file_index + 1, len(files))
    lines = pl.concat(texts)
    cells = split_fields(lines)
    well_formed = cells.filter(~pl.col("ragged")).drop("ragged")
    keystrokes = parse_numbers(well_formed, files)

    unique = keystrokes.filter(
        pl.struct(
            "PARTICIPANT_ID", "TEST_SECTION_ID", "KEYSTROKE_ID", "PRESS_TIME", "RELEASE_TIME", "KEYCODE"
        ).is_first_distinct()
    )
    kept = unique.filter(pl.col("RELEASE_TIME") >= pl.col("PRESS_TIME"))
    dropped = {
        RAGGED_ROW: cells.height - well_formed.height,
        DUPLICATE_KEYSTROKE: keystrokes.height - unique.height,
        RELEASE_BEFORE_PRESS: unique.height - kept.height,
    }

    presses = number_presses(kept)
    events = conform(to_events(presses), source="dataset").sort("session_id", "seq")
    sessions = (
        presses.group_by("session_id")
        .agg(pl.col("user_id").first(), pl.col("first_press_ms").first())
        .select(
            "session_id",
            "user_id",
            started_at=(pl.col("first_press_ms") * 1000)
            .round()
            .cast(pl.Int64)
            .cast(SESSION_SCHEMA["started_at"]),
        )
        .sort("session_id")
    )
    labels = sessions.select(
        "session_id", label=pl.lit("genuine"), actor_id=pl.lit(None, dtype=LABEL_SCHEMA["actor_id"])
    )
    return ImportResult(
        events=events, sessions=sessions, labels=labels, dropped=dropped, source_rows=cells.height
    )


def find_keystroke_files(path: Path) -> list[Path]:
    """The file itself, or every *_keystrokes.txt under a folder, sorted by path."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise refuse(path, "no such file or folder. Pass an Aalto *_keystrokes.txt file or a folder of them.")
    files = sorted(found for found in path.rglob(FILE_PATTERN) if found.is_file())
    if not files:
        raise refuse(
            path, f"no {FILE_PATTERN} files under this folder. Pass the folder of Aalto keystroke logs."
        )
    return files


def read_lines(path: Path) -> pl.DataFrame:
    """The non-blank data lines of one file as text, with their 1-based `row`; refuses a wrong header."""
    check_header(path, [name.strip() for name in read_first_line(path).split("\t")], HEADER, LAYOUT)
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")[1:]
    return (
        pl.DataFrame({"line": lines}, schema={"line": pl.String})
        .with_row_index("row", offset=1)
        .with_columns(pl.col("line").str.strip_suffix("\r"))
        .filter(pl.col("line").str.strip_chars() != "")
    )


def split_fields(lines: pl.DataFrame) -> pl.DataFrame:
    """The text of the numeric cells of each line (no text columns), and whether the line is ragged.

    Nine fields: cells by position. More (tabs inside the text): the numbers are found from the right.
    Fewer, or more without a recognisable numeric tail: ragged.
    """
    fields = pl.col("line").str.split("\t")
    by_position = lines.filter(fields.list.len() >= len(HEADER)).select(
        "file_index",
        "row",
        PARTICIPANT_ID=fields.list.get(0),
        TEST_SECTION_ID=fields.list.get(1),
        extra_tabs=fields.list.len() > len(HEADER),
        **{column: fields.list.get(index) for column, index in _FIELD_INDEX.items()},
    )
    extra_tabs = lines.join(
        by_position.filter("extra_tabs").select("file_index", "row"), on=["file_index", "row"]
    )
    from_right = extra_tabs.select(
        "file_index", "row", pl.col("line").str.extract_groups(_ROW_WITH_EXTRA_TABS).alias("tail")
    ).unnest("tail")
    cells = by_position.update(from_right, on=["file_index", "row"], how="left", include_nulls=True)
    ragged_tail = pl.col("extra_tabs") & pl.col("PRESS_TIME").is_null()
    short = lines.filter(fields.list.len() < len(HEADER)).select("file_index", "row", ragged=pl.lit(True))
    return pl.concat(
        [cells.select("file_index", "row", *NUMERIC_COLUMNS, ragged=ragged_tail), short], how="diagonal"
    ).sort("file_index", "row")


def parse_numbers(well_formed: pl.DataFrame, files: list[Path]) -> pl.DataFrame:
    """Numeric columns parsed (scientific notation allowed); refuses the first file with a bad cell."""
    parsed = pl.col(NUMERIC_COLUMNS).cast(pl.Float64, strict=False)
    bad = pl.any_horizontal(parsed.is_null() | ~parsed.is_finite() | pl.col(NUMERIC_COLUMNS).is_null())
    bad_whole = pl.any_horizontal(
        pl.col(WHOLE_NUMBER_COLUMNS).cast(pl.Float64, strict=False)
        != pl.col(WHOLE_NUMBER_COLUMNS).cast(pl.Float64, strict=False).round()
    )
    offenders = well_formed.filter(bad | bad_whole.fill_null(False))
    if offenders.height:
        file_index = offenders["file_index"][0]
        in_that_file = well_formed.filter(pl.col("file_index") == file_index)
        raise_number_problems(files[file_index], in_that_file, NUMERIC_COLUMNS, integral=WHOLE_NUMBER_COLUMNS)
    return well_formed.with_columns(pl.col(NUMERIC_COLUMNS).cast(pl.Float64)).with_columns(
        pl.col(WHOLE_NUMBER_COLUMNS).cast(pl.Int64)
    )


def number_presses(kept: pl.DataFrame) -> pl.DataFrame:
    """One row per keystroke with session ids, press_id (1.. in press order) and the session's first press."""
    return (
        kept.select(
            session_id=pl.format("aalto-{}-{}", "PARTICIPANT_ID", "TEST_SECTION_ID"),
            user_id=pl.format("aalto-{}", "PARTICIPANT_ID"),
            press_ms=pl.col("PRESS_TIME"),
            release_ms=pl.col("RELEASE_TIME"),
            key_class=pl.col("KEYCODE").replace_strict(
                KEY_CLASS_OF_CODE, default="other", return_dtype=pl.String
            ),
            file_index=pl.col("file_index"),
            row=pl.col("row"),
        )
        .sort("session_id", "press_ms", "file_index", "row")
        .with_columns(
            press_id=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("session_id"),
            first_press_ms=pl.col("press_ms").min().over("session_id"),
        )
    )


def to_events(presses: pl.DataFrame) -> pl.DataFrame:
    """A key_down and a key_up per keystroke, ordered by time (ties: down before up, then press_id)."""
    common = ["session_id", "user_id", "press_id", "key_class", pl.col("press_id").sub(1).alias("pos")]
    downs = presses.select(
        *common, t_ms=pl.col("press_ms") - pl.col("first_press_ms"), type=pl.lit("key_down"), up=pl.lit(0)
    )
    ups = presses.select(
        *common, t_ms=pl.col("release_ms") - pl.col("first_press_ms"), type=pl.lit("key_up"), up=pl.lit(1)
    )
    return (
        pl.concat([downs, ups])
        .sort("session_id", "t_ms", "up", "press_id")
        .with_columns(seq=pl.int_range(pl.len(), dtype=pl.Int64).over("session_id"), field=pl.lit(FIELD))
        .drop("up")
    )
