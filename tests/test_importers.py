"""Dataset importers: counts against the real shared datasets, quirks on hand-made files, bad input.

The shared datasets live in ../shared/datasets next to the repository and are never copied into it;
tests that need them skip with the path they looked for.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from store.errors import ValidationError
from store.importers import LABEL_SCHEMA, SESSION_SCHEMA, ImportResult
from store.importers.aalto import HEADER as AALTO_HEADER
from store.importers.aalto import read_aalto
from store.importers.balabit import read_balabit
from store.importers.cmu import read_cmu
from store.schema import EVENT_SCHEMA, KEY_CLASSES

DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"
BALABIT = DATASETS / "balabit-mouse"
AALTO = DATASETS / "aalto-keystrokes"
MEU = DATASETS / "meu-mobile-ksd" / "meu-mobile-ksd.csv"

BALABIT_HEADER = "record timestamp,client timestamp,button,state,x,y"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/datasets/{path.relative_to(DATASETS)} not found: {path}")
    return path


def assert_canonical(result: ImportResult) -> None:
    """Shape contract shared by every event importer."""
    events = result.events
    assert dict(events.schema) == EVENT_SCHEMA
    assert dict(result.sessions.schema) == SESSION_SCHEMA
    assert dict(result.labels.schema) == LABEL_SCHEMA
    assert events["source"].unique().to_list() in ([], ["dataset"])
    assert events.equals(events.sort("session_id", "seq"))
    per_session = events.group_by("session_id").agg(
        seq_ok=(pl.col("seq") == pl.int_range(pl.len())).all(),
        t_ok=(pl.col("t_ms").diff().fill_null(0) >= 0).all(),
    )
    assert per_session["seq_ok"].all() and per_session["t_ok"].all()
    assert set(events["session_id"].unique()) <= set(result.sessions["session_id"])
    assert result.sessions["session_id"].is_unique().all()


# ---------------------------------------------------------------- Balabit


def write_session(folder: Path, name: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([BALABIT_HEADER, *rows]) + "\n")
    return path


@pytest.mark.datasets
def test_balabit_training_part_counts_match_the_source() -> None:
    root = require(BALABIT / "training_files").parent
    session_files = sorted(root.glob("training_files/*/session_*"))
    source_rows = 0
    repeated_non_scroll = 0  # counted independently of the importer: exact repeats within a session
    for path in session_files:
        seen: set[str] = set()
        with path.open() as handle:
            next(handle)
            for line in handle:
                source_rows += 1
                if line in seen and ",Scroll," not in line:
                    repeated_non_scroll += 1
                seen.add(line)
    calls: list[tuple[int, int]] = []

    result = read_balabit(root, progress=lambda done, total: calls.append((done, total)))

    assert source_rows == 2_253_816
    assert result.source_rows == source_rows
    assert len(result.events) + sum(result.dropped.values()) == result.source_rows
    assert result.dropped == {
        "duplicate row": repeated_non_scroll,
        "placeholder position 65535": 80,
        "clock went backwards": 0,
    }
    assert result.sessions.height == 65 and result.sessions["user_id"].n_unique() == 10
    assert result.events["session_id"].n_unique() == 65
    assert result.labels["label"].to_list() == ["genuine"] * 65
    assert result.sessions["started_at"].null_count() == 65
    assert calls[-1] == (65, 65) and len(calls) == 65
    assert_canonical(result)
    assert set(result.events["type"].unique()) == {"mouse_move", "mouse_down", "mouse_up", "wheel"}
    assert result.events.filter(pl.col("x") == 65535).height == 0
    first = result.events.row(0, named=True)
    assert first["session_id"] == "balabit-session_0041905381" and first["user_id"] == "user7"


def test_balabit_quirks_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [
        "0.0,0.000,NoButton,Move,10,20",
        "0.1,0.016,NoButton,Move,11,20",
        "0.1,0.016,NoButton,Move,11,20",  # exact duplicate
        "0.2,0.031,Left,Pressed,11,20",
        "0.2,0.047,NoButton,Drag,15,22",  # drag: button comes from the Pressed row
        "0.3,0.047,NoButton,Drag,15,22",  # same client time, other record time: kept
        "0.3,0.062,Left,Released,15,22",
        "0.4,0.090,NoButton,Move,65535,65535",  # placeholder (must not raise the running max)
        "0.4,0.090,NoButton,Move,65535,65535",  # duplicate of a placeholder: counted as duplicate
        "0.5,0.060,NoButton,Move,16,22",  # clock went backwards
        "0.5,0.055,NoButton,Move,16,23",  # still backwards
        "0.6,0.078,Scroll,Down,16,23",
        "0.6,0.078,Scroll,Down,16,23",  # a second wheel tick in the same clock tick: kept
        "0.7,0.094,XButton,Pressed,16,23",
        "0.7,0.100,NoButton,Drag,17,23",
        "0.8,0.110,XButton,Released,17,23",
        "3600.0,3600.5,NoButton,Move,20,30",  # an hour-long gap is kept
    ]
    write_session(tmp_path / "training_files" / "user1", "session_0000", rows)
    write_session(
        tmp_path / "training_files" / "user2",
        "session_0001",
        ["0.0,0.0,NoButton,Drag,1,1", "0.0,0.5,Scroll,Up,1,1"],
    )

    result = read_balabit(tmp_path)

    assert result.source_rows == 19
    assert result.dropped == {"duplicate row": 2, "placeholder position 65535": 1, "clock went backwards": 2}
    assert len(result.events) == 14
    assert_canonical(result)
    first = result.events.filter(pl.col("session_id") == "balabit-session_0000")
    assert first.select("t_ms", "type", "button").rows() == [
        (0.0, "mouse_move", None),
        (16.0, "mouse_move", None),
        (31.0, "mouse_down", "left"),
        (47.0, "mouse_move", "left"),
        (47.0, "mouse_move", "left"),
        (62.0, "mouse_up", "left"),
        (78.0, "wheel", None),
        (78.0, "wheel", None),
        (94.0, "mouse_down", "other"),
        (100.0, "mouse_move", "other"),
        (110.0, "mouse_up", "other"),
        (3_600_500.0, "mouse_move", None),
    ]
    assert first["user_id"].unique().to_list() == ["user1"]
    second = result.events.filter(pl.col("session_id") == "balabit-session_0001")
    assert second.select("seq", "type", "button", "x").rows() == [
        (0, "mouse_move", "other", 1.0),  # a drag with no Pressed before it
        (1, "wheel", None, 1.0),
    ]


def test_balabit_full_layout_labels_test_sessions(tmp_path: Path) -> None:
    one_move = BALABIT_HEADER + "\n0.0,0.0,NoButton,Move,1,1\n"
    for part, name in [("training_files", "session_a"), *[("test_files", f"session_{x}") for x in "bcd"]]:
        (tmp_path / part / "user1").mkdir(parents=True, exist_ok=True)
        (tmp_path / part / "user1" / name).write_text(one_move)
    (tmp_path / "public_labels.csv").write_text(
        "filename,is_illegal\nsession_b,0\nsession_c,1\nsession_z,1\n"
    )

    result = read_balabit(tmp_path)

    assert result.sessions.select("session_id", "user_id").rows() == [
        ("balabit-session_a", "user1"),
        ("balabit-session_b", "user1"),
        ("balabit-session_c", "user1"),
        ("balabit-session_d", "user1"),
    ]
    assert result.labels.rows() == [
        ("balabit-session_a", "genuine", None),
        ("balabit-session_b", "genuine", None),
        ("balabit-session_c", "impostor", None),
    ]
    assert_canonical(result)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("time,x,y\n0,1,1\n", "not a Balabit session file"),
        ("", "empty file"),
        (
            BALABIT_HEADER + "\n0.0,0.0,NoButton,Move,1,1\n0.1,abc,NoButton,Move,1,1\n",
            "row 2, column 'client timestamp'",
        ),
        (BALABIT_HEADER + "\n0.0,0.0,NoButton,Move,1,\n", "row 1, column 'y'"),
        (BALABIT_HEADER + "\n0.0,0.0,NoButton,Hover,1,1\n", "row 1, column 'state'"),
        (BALABIT_HEADER + "\n0.0,0.0,NoButton,Move,1,1,7\n", "exactly six"),
    ],
)
def test_balabit_refuses_bad_session_files(tmp_path: Path, content: str, expected: str) -> None:
    folder = tmp_path / "training_files" / "user1"
    folder.mkdir(parents=True)
    (folder / "session_1").write_text(content)
    with pytest.raises(ValidationError) as refused:
        read_balabit(tmp_path)
    assert expected in str(refused.value)
    assert refused.value.source == str(folder / "session_1")


def test_balabit_refuses_a_folder_of_another_layout(tmp_path: Path) -> None:
    (tmp_path / "session_1").write_text(BALABIT_HEADER + "\n")
    with pytest.raises(ValidationError, match="not a Balabit folder"):
        read_balabit(tmp_path)


def test_balabit_refuses_bad_public_labels(tmp_path: Path) -> None:
    for part, name in [("training_files", "session_a"), ("test_files", "session_t")]:
        write_session(tmp_path / part / "user1", name, ["0.0,0.0,NoButton,Move,1,1"])
    (tmp_path / "public_labels.csv").write_text("filename,is_illegal\nsession_t,yes\n")
    with pytest.raises(ValidationError, match="row 1, column 'is_illegal'"):
        read_balabit(tmp_path)


# ---------------------------------------------------------------- Aalto


def independent_aalto_count(files: list[Path]) -> dict[str, object]:
    """Count the source with the csv module: well-formed rows, keystrokes kept, sessions, text values."""
    rows = ragged = negative = 0
    sessions: set[tuple[str, str]] = set()
    typed_text: set[str] = set()
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            for fields in reader:
                if not fields:
                    continue
                rows += 1
                if len(fields) != len(AALTO_HEADER):
                    ragged += 1
                    continue
                typed_text.update(value for value in (fields[2], fields[3], fields[7]) if value)
                if float(fields[6]) < float(fields[5]):
                    negative += 1
                    continue
                sessions.add((fields[0], fields[1]))
    kept = rows - ragged - negative
    return {
        "rows": rows,
        "ragged": ragged,
        "negative": negative,
        "kept": kept,
        "sessions": sessions,
        "typed_text": typed_text,
    }


@pytest.mark.datasets
@pytest.mark.parametrize("subset", ["keystroke-sample", "train-dev-test"])
def test_aalto_counts_match_the_source(subset: str) -> None:
    folder = require(AALTO / subset)
    files = sorted(folder.glob("*_keystrokes.txt"))
    expected = independent_aalto_count(files)
    calls: list[tuple[int, int]] = []

    result = read_aalto(folder, progress=lambda done, total: calls.append((done, total)))

    assert len(files) == {"keystroke-sample": 149, "train-dev-test": 70}[subset]
    assert calls[-1] == (len(files), len(files))
    assert result.source_rows == expected["rows"]
    assert result.dropped["ragged row"] == expected["ragged"]
    assert result.dropped["release before press"] == expected["negative"]
    assert result.dropped["duplicate keystroke"] == 0
    assert len(result.events) == 2 * expected["kept"]
    assert result.source_rows == expected["kept"] + sum(result.dropped.values())
    assert set(result.sessions["session_id"]) == {f"aalto-{p}-{s}" for p, s in expected["sessions"]}
    assert_canonical(result)
    assert result.events["field"].unique().to_list() == ["sentence"]
    presses = result.events.group_by("session_id", "press_id").agg(
        types=pl.col("type").sort(),
        pos=pl.col("pos").first(),
        dwell=pl.col("t_ms").max() - pl.col("t_ms").min(),
    )
    assert (presses["types"].list.join(",") == "key_down,key_up").all()
    assert (presses["pos"] == presses["press_id"] - 1).all()
    starts = result.events.group_by("session_id").agg(pl.col("t_ms").min())
    assert (starts["t_ms"] == 0).all()
    assert result.sessions["started_at"].null_count() == 0


@pytest.mark.datasets
def test_aalto_events_carry_no_typed_text() -> None:
    folder = require(AALTO)
    files = sorted(folder.rglob("*_keystrokes.txt"))
    typed_text = independent_aalto_count(files)["typed_text"]
    result = read_aalto(folder)

    assert set(result.events.columns) == set(EVENT_SCHEMA)
    for frame in (result.events, result.sessions, result.labels):
        for name, dtype in frame.schema.items():
            if dtype == pl.String:
                leaked = set(frame[name].drop_nulls().unique()) & typed_text
                assert not leaked, f"column {name} carries typed text: {sorted(leaked)[:3]}"
    assert set(result.events["key_class"].unique()) <= set(KEY_CLASSES)
    assert result.events["key_class"].null_count() == 0


def aalto_line(
    participant: object,
    section: object,
    keystroke: object,
    press: object,
    release: object,
    keycode: int,
    sentence: str = 'Hi "there".',
    typed: str = 'Hi "there".',
    letter: str = "h",
) -> str:
    return "\t".join(
        str(value)
        for value in (participant, section, sentence, typed, keystroke, press, release, letter, keycode)
    )


def write_aalto(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["\t".join(AALTO_HEADER), *lines]) + "\n")
    return path


def test_aalto_quirks_are_parsed_dropped_and_counted(tmp_path: Path) -> None:
    epoch_ms = 1_471_935_809_000
    write_aalto(
        tmp_path / "1_keystrokes.txt",
        [
            aalto_line(1, 10, 100, epoch_ms, epoch_ms + 80, 72, letter="H"),
            aalto_line(1, 10, "2e+05", epoch_ms + 50, epoch_ms + 100, 73, letter="i"),
            aalto_line(1, 10, 102, epoch_ms + 1200, epoch_ms + 1150, 88),  # released before pressed
            "1\t10\tHi",  # ragged: too few fields
            "1\t10\tHi\tHi\tx\ty\tz\th\t72\textra",  # ragged: extra field and no numeric tail
            aalto_line(1, 10, 103, epoch_ms + 100, epoch_ms + 130, 32, sentence="Hi\tthere", letter=" "),
            aalto_line(1, 10, 100, epoch_ms, epoch_ms + 80, 72, letter="H"),  # exact repeat
        ],
    )
    (tmp_path / "sub").mkdir()
    write_aalto(
        tmp_path / "sub" / "2_keystrokes.txt",
        [aalto_line(2, 20, 104, "1.4719358e+12", "1.4719358e+12", 9, letter="\t")],  # tab as the letter
    )
    (tmp_path / "notes.txt").write_text("not a keystroke file")

    result = read_aalto(tmp_path)

    assert result.source_rows == 8
    assert result.dropped == {"ragged row": 2, "duplicate keystroke": 1, "release before press": 1}
    assert_canonical(result)
    session = result.events.filter(pl.col("session_id") == "aalto-1-10")
    assert session.select("seq", "t_ms", "type", "press_id", "pos", "key_class").rows() == [
        (0, 0.0, "key_down", 1, 0, "letter"),
        (1, 50.0, "key_down", 2, 1, "letter"),
        (2, 80.0, "key_up", 1, 0, "letter"),
        (3, 100.0, "key_down", 3, 2, "space"),  # tie at 100 ms: key_down before key_up
        (4, 100.0, "key_up", 2, 1, "letter"),
        (5, 130.0, "key_up", 3, 2, "space"),
    ]
    assert session["user_id"].unique().to_list() == ["aalto-1"]
    tab = result.events.filter(pl.col("session_id") == "aalto-2-20")
    assert tab.select("t_ms", "type", "key_class").rows() == [
        (0.0, "key_down", "tab"),
        (0.0, "key_up", "tab"),
    ]
    started = dict(result.sessions.select("session_id", "started_at").rows())
    assert started["aalto-1-10"] == pl.Series([epoch_ms * 1000]).cast(pl.Datetime("us")).item()
    assert result.labels["label"].to_list() == ["genuine", "genuine"]


def test_aalto_reads_a_single_file(tmp_path: Path) -> None:
    path = write_aalto(tmp_path / "5_keystrokes.txt", [aalto_line(5, 1, 1, 1000, 1100, 65)])
    result = read_aalto(path)
    assert result.events["type"].to_list() == ["key_down", "key_up"]
    assert result.events["t_ms"].to_list() == [0.0, 100.0]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["PARTICIPANT_ID\tPRESS_TIME", "1\t2"], "not a Aalto keystrokes file"),
        ([], "empty file"),
        (
            [
                "\t".join(AALTO_HEADER),
                aalto_line(1, 1, 1, 1000, 1100, 65),
                aalto_line(1, 1, 2, "soon", 1200, 66),
            ],
            "row 2, column 'PRESS_TIME'",
        ),
        (["\t".join(AALTO_HEADER), aalto_line(1, 1, 1, 1000, 1100, "A")], "row 1, column 'KEYCODE'"),
    ],
)
def test_aalto_refuses_bad_files(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = tmp_path / "9_keystrokes.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(ValidationError) as refused:
        read_aalto(tmp_path)
    assert expected in str(refused.value)
    assert refused.value.source == str(path)


def test_aalto_refuses_a_folder_without_keystroke_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no \*_keystrokes.txt files"):
        read_aalto(tmp_path)


# ---------------------------------------------------------------- CMU layout

CMU_KEYS = ["period", "t", "i", "e", "five", "Shift.r", "o", "a", "n", "l", "Return"]


def cmu_header() -> list[str]:
    """The header of DSL-StrongPasswordData.csv: 11 H, 10 DD and 10 UD columns, interleaved."""
    columns = ["subject", "sessionIndex", "rep"]
    for key, following in itertools.pairwise(CMU_KEYS):
        columns += [f"H.{key}", f"DD.{key}.{following}", f"UD.{key}.{following}"]
    return [*columns, "H.Return"]


def write_cmu(path: Path, rows: list[list[object]], header: list[str] | None = None) -> Path:
    lines = [",".join(header or cmu_header())] + [",".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cmu_original_layout(tmp_path: Path) -> None:
    timings = [0.1491, 0.3979, -0.0121, 0.1069, 0.1674, 0.0605] + [0.1] * 25
    path = write_cmu(
        tmp_path / "DSL.csv", [["s002", 1, rep, *timings] for rep in (1, 2, 3)] + [["s003", 2, 1, *timings]]
    )

    result = read_cmu(path)

    assert len(result.timing_columns) == 31 and result.timing_columns == result.feature_names
    assert result.windows.columns == ["user_id", "session_id", "rep", *cmu_header()[3:]]
    assert result.source_rows == 4
    assert result.windows["session_id"].to_list() == ["cmu-s002-1"] * 3 + ["cmu-s003-2"]
    assert result.windows["rep"].dtype == pl.Int64 and result.windows["rep"].to_list() == [1, 2, 3, 1]
    first = result.windows.row(0, named=True)
    assert first["H.period"] == pytest.approx(149.1)
    assert first["UD.period.t"] == pytest.approx(-12.1)  # overlapping keys stay negative
    assert first["UD.t.i"] == pytest.approx(60.5)


@pytest.mark.parametrize("families", [("DD.",), ("UD.",), ("H.",), ("H.", "UD."), ("DD.", "UD."), ("H.", "DD.")])
def test_cmu_file_with_only_some_timing_families_is_read(tmp_path: Path, families: tuple[str, ...]) -> None:
    """Many published keystroke datasets record only latencies (DD, UD) or only some families."""
    header = [*cmu_header()[:3], *[c for c in cmu_header()[3:] if c.startswith(families)], "AvP"]
    timings = len(header) - 4
    rows = [[subject, 1, rep, *[round(0.05 + 0.01 * i + 0.001 * rep, 4) for i in range(timings)], 0.5]
            for subject in ("s1", "s2") for rep in (1, 2)]
    path = write_cmu(tmp_path / "partial.csv", rows, header)

    result = read_cmu(path)

    assert result.feature_names == header[3:]
    assert result.timing_columns == header[3:-1] and all(c.startswith(families) for c in result.timing_columns)
    assert result.windows.columns == ["user_id", "session_id", "rep", *header[3:]]
    first = result.windows.row(0, named=True)
    assert first[header[3]] == pytest.approx((0.05 + 0.001) * 1000)  # seconds became milliseconds
    assert first["AvP"] == 0.5  # other columns stay as they are


@pytest.mark.datasets
def test_cmu_layout_meu_mobile_matches_the_source() -> None:
    path = require(MEU)
    with path.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    source = np.array([[float(value) for value in row[3:]] for row in rows])

    result = read_cmu(path)

    assert result.source_rows == len(rows) == 2_856
    assert result.windows["user_id"].n_unique() == 56
    assert result.windows.group_by("user_id").len()["len"].unique().to_list() == [51]
    assert result.feature_names == header[3:]
    assert len(result.timing_columns) == 40
    extras = [name for name in result.feature_names if name not in result.timing_columns]
    assert extras[-3:] == ["AvH", "AvP", "AvA"] and len(extras) == 31
    scale = np.array([1000.0 if name in result.timing_columns else 1.0 for name in result.feature_names])
    assert np.allclose(result.windows.select(result.feature_names).to_numpy(), source * scale)
    assert result.windows.select(pl.all().exclude("user_id", "session_id").is_nan().any()).row(0) == tuple(
        [False] * (len(result.feature_names) + 1)
    )


@pytest.mark.datasets
@pytest.mark.parametrize("families", [("DD.",), ("H.", "UD.")])
def test_cmu_files_derived_from_meu_with_some_timing_families_import_and_evaluate(
        store, tmp_path: Path, families: tuple[str, ...]) -> None:
    from app.engine.detector_evaluation import evaluate
    from store.datasets import import_dataset

    source = pl.read_csv(require(MEU), infer_schema=False)
    timing = [c for c in source.columns if c.startswith(families)]
    path = tmp_path / "meu-partial.csv"
    source.select("subject", "sessionIndex", "rep", *timing).write_csv(path)

    stored = import_dataset(store, "cmu", path)
    result = evaluate(path, "cmu", detectors=["manhattan_scaled"])

    assert (stored.stored.windows_added, stored.stored.users_added) == (2_856, 56)
    assert store.scalar("SELECT names FROM feature_schemas") == timing
    protocol = result["protocol"]
    assert (protocol["subjects"], protocol["features"], protocol["train_reps"]) == (56, len(timing), 25)
    assert 0.0 < result["detectors"]["manhattan_scaled"]["eer_mean"] < 0.25  # all timings: about 0.14


@pytest.mark.parametrize(
    ("header", "rows", "expected"),
    [
        (["subject", "sessionIndex", "rep", "P.a", "AvP"], [["s1", 1, 1, 0.1, 0.2]], "no timing column"),
        (["subject", "rep", "H.a"], [["s1", 1, 0.1]], "lacks ['sessionIndex']"),
        (None, [["s1", 1, 1, *[0.1] * 30, "fast"]], "row 1, column 'H.Return'"),
        (None, [["s1", 1, 1, *[0.1] * 31], ["s1", 1, 2, "inf", *[0.1] * 30]], "row 2, column 'H.period'"),
        (None, [["s1", 1, 1.5, *[0.1] * 31]], "row 1, column 'rep'"),
        (None, [["s1", 1, 1, *[0.1] * 31], ["s1", 1, 1, *[0.2] * 31]], "row 2, column 'rep': subject 's1'"),
    ],
)
def test_cmu_refuses_bad_files(
    tmp_path: Path, header: list[str] | None, rows: list[list[object]], expected: str
) -> None:
    path = write_cmu(tmp_path / "bad.csv", rows, header)
    with pytest.raises(ValidationError) as refused:
        read_cmu(path)
    assert expected in str(refused.value)
    assert refused.value.source == str(path)


def test_cmu_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValidationError, match="empty file"):
        read_cmu(path)


def test_problem_rows_are_one_based_data_rows(tmp_path: Path) -> None:
    rows = [["s1", 1, rep, *[0.1] * 31] for rep in range(1, 5)]
    rows[2][3] = "oops"
    with pytest.raises(ValidationError) as refused:
        read_cmu(write_cmu(tmp_path / "bad.csv", rows))
    problem = refused.value.problems[0]
    assert (problem.row, problem.column) == (3, "H.period")
