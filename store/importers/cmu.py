"""Fixed-text keystroke feature vectors in the CMU Keystroke Benchmark layout.

One row per typed repetition: `subject,sessionIndex,rep,H.<key>,DD.<a>.<b>,UD.<a>.<b>,...` with hold (H),
keydown-to-keydown (DD) and keyup-to-keydown (UD) times in seconds (Killourhy & Maxion 2009). Any
non-empty set of those families will do: many published keystroke datasets record only latencies.
Files converted to this layout may add other numeric columns (MEU-Mobile KSD: P.* pressure, A.* finger
area, AvH, AvP, AvA); they are kept as they are. These rows are feature windows already, not events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from store.errors import Problem, ValidationError
from store.importers import MAX_PROBLEMS, raise_number_problems, read_first_line, refuse

LAYOUT = "CMU keystroke"
KEY_COLUMNS: tuple[str, ...] = ("subject", "sessionIndex", "rep")
TIMING_PREFIXES: tuple[str, ...] = ("H.", "DD.", "UD.")
MS_PER_SECOND = 1000.0


@dataclass(frozen=True)
class CmuResult:
    """Feature windows of a CMU-layout file."""

    windows: pl.DataFrame  # user_id, session_id, rep (Int64), then every feature (Float64) in file order
    feature_names: list[str]  # every feature column, in file order
    timing_columns: list[str]  # the H./DD./UD. columns, converted from seconds to milliseconds
    source_rows: int  # data rows in the file


def read_cmu(path: Path | str) -> CmuResult:
    """Read a CMU-layout CSV; H/DD/UD times become milliseconds, other feature columns stay as they are.

    user_id = subject; session_id = f"cmu-{subject}-{sessionIndex}". Refuses missing key columns, a file
    without any H./DD./UD. column, non-numeric or non-finite feature values, and repeated
    (subject, sessionIndex, rep).
    """
    path = Path(path)
    if not path.is_file():
        raise refuse(
            path, "no such file. Pass a CSV in the CMU layout (subject,sessionIndex,rep,H.*,DD.*,UD.*)."
        )
    header = [name.strip() for name in read_first_line(path).split(",")]
    check_cmu_header(path, header)
    feature_names = [name for name in header if name not in KEY_COLUMNS]
    timing_columns = [name for name in feature_names if name.startswith(TIMING_PREFIXES)]

    try:
        text = pl.read_csv(path, infer_schema=False, new_columns=header)
    except pl.exceptions.PolarsError as error:
        raise refuse(
            path,
            f"cannot be read as CSV ({str(error).splitlines()[0]}). Every row needs {len(header)} "
            "comma-separated values, one per header column.",
        ) from error
    text = text.with_row_index("row", offset=1)
    missing_subject = text.filter(pl.col("subject").is_null() | (pl.col("subject").str.strip_chars() == ""))
    if missing_subject.height:
        raise refuse(
            path, "subject is empty. Every row needs a subject id.", missing_subject["row"][0], "subject"
        )
    raise_number_problems(
        path, text, ["sessionIndex", "rep", *feature_names], integral=["sessionIndex", "rep"]
    )

    parsed = text.with_columns(
        pl.col("subject").str.strip_chars(),
        pl.col("sessionIndex", "rep").cast(pl.Float64).cast(pl.Int64),
        pl.col(feature_names).cast(pl.Float64),
    )
    refuse_repeated_keys(path, parsed)
    windows = parsed.select(
        pl.col("subject").alias("user_id"),
        pl.format("cmu-{}-{}", "subject", "sessionIndex").alias("session_id"),
        pl.col("rep"),
        *[pl.col(name) * MS_PER_SECOND if name in timing_columns else pl.col(name) for name in feature_names],
    )
    return CmuResult(
        windows=windows, feature_names=feature_names, timing_columns=timing_columns, source_rows=text.height
    )


def check_cmu_header(path: Path, header: list[str]) -> None:
    """Refuse a header without the key columns, without any timing column, or with repeated names."""
    missing = [name for name in KEY_COLUMNS if name not in header]
    if missing:
        raise refuse(
            path,
            f"not a {LAYOUT} file: header lacks {missing}; it needs subject,sessionIndex,rep followed by "
            "H.<key>, DD.<a>.<b> and/or UD.<a>.<b> columns. Check that this is the right file.",
        )
    if not any(name.startswith(TIMING_PREFIXES) for name in header):
        raise refuse(
            path,
            f"not a {LAYOUT} file: no timing column in the header. A CMU-layout file needs at least one "
            "H.<key> (hold), DD.<a>.<b> (keydown to keydown) or UD.<a>.<b> (keyup to keydown) column next "
            "to subject,sessionIndex,rep.",
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise refuse(
            path, f"column names repeated in the header: {repeated}. Each column must be named once."
        )
    empty = [index + 1 for index, name in enumerate(header) if not name]
    if empty:
        raise refuse(path, f"header column(s) {empty} have no name. Name every column.")


def refuse_repeated_keys(path: Path, parsed: pl.DataFrame) -> None:
    """Refuse rows whose (subject, sessionIndex, rep) already appeared earlier in the file."""
    repeated = parsed.filter(~pl.struct(KEY_COLUMNS).is_first_distinct()).select("row", *KEY_COLUMNS)
    if not repeated.height:
        return
    problems = [
        Problem(
            f"subject {subject!r}, sessionIndex {session}, rep {rep} appears more than once; "
            "each repetition must be one row. Remove the repeated row.",
            row=row,
            column="rep",
        )
        for row, subject, session, rep in repeated.head(MAX_PROBLEMS).iter_rows()
    ]
    raise ValidationError(problems, source=str(path), total=repeated.height)
