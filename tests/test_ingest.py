"""Ingest of canonical events: what is accepted, what is refused (and that a refusal stores nothing)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from store import DatabaseLockedError, Store, ValidationError, ingest_events, ingest_events_csv
from store.schema import EVENT_COLUMNS, EVENT_SCHEMA, conform

HEADER = "session_id,user_id,seq,t_ms,type,key_class,press_id"
SHORT_HEADER = "session_id,user_id,seq,t_ms,type"
GOOD_ROWS = 5  # events in the `good_csv` fixture (conftest.GOOD_CSV)
CHECKSUM = "SELECT count(*), sum(hash(session_id, seq, t_ms)) FROM events"


def stored_events(store: Store) -> pl.DataFrame:
    return store.frame("SELECT * FROM events ORDER BY session_id, seq")


def canonical(rows: dict[str, list]) -> pl.DataFrame:
    """A frame with the canonical columns and dtypes, unspecified columns null."""
    frame = pl.DataFrame(rows, schema={c: EVENT_SCHEMA[c] for c in rows})
    return conform(frame)


# -- accepted ---------------------------------------------------------------------------------------
def test_good_file_is_stored_with_exact_values(store: Store, good_csv: Path) -> None:
    report = ingest_events_csv(store, good_csv)

    assert (report.rows_read, report.events_added, report.already_stored) == (5, 5, 0)
    assert (report.sessions_added, report.users_added) == (2, 2)
    expected = canonical({
        "session_id": ["s1", "s1", "s1", "s2", "s2"],
        "user_id": ["alice", "alice", "alice", "bob", "bob"],
        "seq": [0, 1, 2, 2, 5],
        "t_ms": [0.0, 100.0, 180.5, 0.0, 16.0],
        "type": ["focus", "key_down", "key_up", "mouse_move", "mouse_down"],
        "key_class": [None, "letter", "letter", None, None],
        "press_id": [None, 1, 1, None, None],
        "pos": [None, 0, 0, None, None],
        "field": ["login", "login", "login", None, None],
        "x": [None, None, None, 10.5, 10.5],
        "y": [None, None, None, 20.0, 20.0],
        "button": [None, None, None, None, "left"],
        "source": ["browser"] * 5,
    })
    assert_frame_equal(stored_events(store), expected)
    dwell = store.scalar("""
        SELECT u.t_ms - d.t_ms FROM events d JOIN events u USING (session_id, press_id)
        WHERE d.type = 'key_down' AND u.type = 'key_up'""")
    assert dwell == pytest.approx(80.5)
    assert store.rows("SELECT session_id, user_id, source FROM sessions ORDER BY session_id") == [
        ("s1", "alice", "browser"), ("s2", "bob", "browser")]
    assert store.rows("SELECT user_id FROM users ORDER BY user_id") == [("alice",), ("bob",)]


# One logical content (two events of session s1), written in the ways people's tools write CSV.
TOLERATED = {
    "utf8_bom": "\ufeffsession_id,user_id,seq,t_ms,type,field\ns1,u1,0,0,focus,\"login.first\"\ns1,u1,1,12.25,blur,\n",
    "crlf": "session_id,user_id,seq,t_ms,type,field\r\ns1,u1,0,0,focus,\"login.first\"\r\ns1,u1,1,12.25,blur,\r\n",
    # as csv.QUOTE_ALL and spreadsheet exports write it: an empty optional value is "" (null, not text)
    "all_fields_quoted": ('"session_id","user_id","seq","t_ms","type","field","press_id","x","source"\n'
                          '"s1","u1","0","0","focus","login.first","","",""\n'
                          '"s1","u1","1","12.25","blur","","","",""\n'),
    "columns_in_any_order": ("field,type,t_ms,seq,user_id,session_id\n"
                             "\"login.first\",focus,0,0,u1,s1\n,blur,12.25,1,u1,s1\n"),
    "bom_crlf_reordered": "\ufefftype,t_ms,seq,user_id,session_id,field\r\nfocus,0,0,u1,s1,\"login.first\"\r\n"
                          "blur,12.25,1,u1,s1,\r\n",
    "no_trailing_newline": ("session_id,user_id,seq,t_ms,type,field\n"
                            "s1,u1,0,0,focus,\"login.first\"\ns1,u1,1,12.25,blur,"),
}


@pytest.mark.parametrize("content", TOLERATED.values(), ids=TOLERATED.keys())
def test_tolerated_csv_variants_store_the_same_events(store: Store, write_csv, content: str) -> None:
    report = ingest_events_csv(store, write_csv(content))

    assert report.events_added == 2
    expected = canonical({
        "session_id": ["s1", "s1"], "user_id": ["u1", "u1"], "seq": [0, 1], "t_ms": [0.0, 12.25],
        "type": ["focus", "blur"], "field": ["login.first", None], "source": ["csv", "csv"],
    })
    assert_frame_equal(stored_events(store), expected)


def test_a_quoted_value_may_hold_the_delimiter(store: Store, write_csv) -> None:
    report = ingest_events_csv(store, write_csv('session_id,user_id,seq,t_ms,type\n"s1, first","Ann, B.",0,0,focus\n'))

    assert report.events_added == 1
    assert store.rows("SELECT session_id, user_id FROM events") == [("s1, first", "Ann, B.")]


def test_optional_columns_left_out_are_null_and_source_defaults_to_csv(store: Store, write_csv) -> None:
    ingest_events_csv(store, write_csv(f"{SHORT_HEADER}\ns9,u9,0,1.5,submit\n"))

    row = stored_events(store).row(0, named=True)
    assert row["source"] == "csv"
    assert [c for c in EVENT_COLUMNS if row[c] is None] == [
        "key_class", "press_id", "pos", "field", "x", "y", "button"]
    assert store.rows("SELECT source FROM sessions") == [("csv",)]


def test_importing_the_same_file_twice_adds_nothing(store: Store, good_csv: Path) -> None:
    ingest_events_csv(store, good_csv)
    counts = store.table_counts()
    checksum = store.rows(CHECKSUM)

    again = ingest_events_csv(store, good_csv)

    assert (again.rows_read, again.events_added, again.already_stored) == (GOOD_ROWS, 0, GOOD_ROWS)
    assert (again.sessions_added, again.users_added) == (0, 0)
    after = store.table_counts()
    assert after["audit_log"] == counts["audit_log"] + 1  # the second import is still audited
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in counts.items() if k != "audit_log"}
    assert store.rows(CHECKSUM) == checksum


def test_overlapping_file_adds_only_the_new_rows(loaded_store: Store, good_csv: Path, write_csv) -> None:
    overlap = good_csv.read_text() + "s1,alice,3,250,blur,,,,login,,,,browser\ns3,carol,0,0,focus,,,,,,,,browser\n"

    report = ingest_events_csv(loaded_store, write_csv(overlap, "more.csv"))

    assert (report.events_added, report.already_stored) == (2, GOOD_ROWS)
    assert (report.sessions_added, report.users_added) == (1, 1)
    assert loaded_store.table_counts()["events"] == GOOD_ROWS + 2


# -- refused: the message says where and why, and the store is exactly as before ---------------------
REFUSED = {
    "missing_required_column": (
        "session_id,user_id,seq,type\ns3,u1,0,focus\n", None, None, "missing required column(s): t_ms"),
    "unknown_extra_column": (
        f"{SHORT_HEADER},char\ns3,u1,0,0,focus,a\n", None, None, "unknown column(s): char"),
    "text_in_seq": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,abc,1,blur\n", 2, "seq", "'abc' is not a whole number"),
    "text_in_t_ms": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,1,soon,blur\n", 2, "t_ms", "'soon' is not a number"),
    "float_in_seq": (
        f"{SHORT_HEADER}\ns3,u1,1.5,0,focus\n", 1, "seq", "'1.5' is not a whole number"),
    "empty_file": ("", None, None, "empty file"),
    "blank_lines_only": ("\n\n\n", None, None, "empty file"),
    "header_only": (f"{HEADER}\n", None, None, "header only"),
    "unknown_event_type": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,1,1,keypress\n", 2, "type", "unknown value 'keypress'"),
    "unknown_key_class": (
        f"{HEADER}\ns3,u1,0,0,key_down,umlaut,1\n", 1, "key_class", "unknown value 'umlaut'"),
    "missing_required_value": (
        f"{SHORT_HEADER}\ns3,,0,0,focus\n", 1, "user_id", "missing value"),
    "negative_seq": (f"{SHORT_HEADER}\ns3,u1,-1,0,focus\n", 1, "seq", "negative"),
    "duplicate_key_in_file": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,1,5,blur\ns3,u1,1,6,focus\n", 3, "seq",
        "duplicate (session_id, seq) = ('s3', 1); first seen on row 2"),
    "t_ms_backwards_in_file": (
        f"{SHORT_HEADER}\ns3,u1,0,10,focus\ns3,u1,1,5,blur\n", 2, "t_ms",
        "t_ms 5 at seq 1 of session 's3' is earlier than 10 at seq 0 (row 1)"),
    "t_ms_backwards_after_stored": (
        f"{SHORT_HEADER}\ns1,alice,3,50,blur\n", 1, "t_ms",
        "t_ms 50 at seq 3 of session 's1' is earlier than 180.5 at seq 2 (already stored)"),
    "t_ms_later_than_a_stored_event_after_it": (
        f"{SHORT_HEADER}\ns2,bob,3,500,focus\n", 1, "t_ms", "is later than 16 at seq 5 (already stored)"),
    "t_ms_backwards_after_a_reimported_row": (
        # seq 2 is already stored (t 180.5) and keeps its stored value, so seq 3 at t 2 would go back.
        f"{SHORT_HEADER}\ns1,alice,2,1,blur\ns1,alice,3,2,blur\n", 2, "t_ms",
        "earlier than 180.5 at seq 2 (already stored)"),
    "session_of_another_user": (
        f"{SHORT_HEADER}\ns1,mallory,3,500,blur\n", 1, "user_id",
        "session 's1' belongs to user 'alice' (already stored), not 'mallory'"),
    "session_of_another_user_before_its_stored_rows": (
        f"{SHORT_HEADER}\ns2,mallory,0,0,focus\n", 1, "user_id", "belongs to user 'bob'"),
    "session_of_two_users_in_file": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u2,1,1,blur\n", 2, "user_id", "a session has exactly one user"),
    "nan_t_ms": (f"{SHORT_HEADER}\ns3,u1,0,NaN,focus\n", 1, "t_ms", "'NaN' is not a finite number"),
    "inf_t_ms": (f"{SHORT_HEADER}\ns3,u1,0,inf,focus\n", 1, "t_ms", "'inf' is not a finite number"),
    "nan_x": (f"{SHORT_HEADER},x,y\ns3,u1,0,0,mouse_move,nan,3\n", 1, "x", "'nan' is not a finite number"),
    "minus_inf_x": (f"{SHORT_HEADER},x,y\ns3,u1,0,0,wheel,-inf,3\n", 1, "x", "'-inf' is not a finite number"),
    "semicolons": (f"{SHORT_HEADER.replace(',', ';')}\ns3;u1;0;0;focus\n", None, None,
                   "wrong delimiter: the header is separated by semicolons"),
    "tabs": (f"{SHORT_HEADER.replace(',', chr(9))}\ns3\tu1\t0\t0\tfocus\n", None, None,
             "wrong delimiter: the header is separated by tabs"),
    "latin1_bytes": (f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,1,1,blur\nsé,u1,0,0,focus\n".encode("latin-1"),
                     None, None, "not UTF-8: byte 0xe9 on line 4"),
    "png_header": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", None, None, "binary file"),
    "random_bytes": (random.Random(7).randbytes(4096), None, None, "refused, nothing stored"),
    "key_down_without_press_id": (
        f"{HEADER}\ns3,u1,0,0,key_down,letter,\n", 1, "press_id", "a key_down event needs a value here"),
    "key_up_without_key_class": (
        f"{HEADER}\ns3,u1,0,0,key_up,,4\n", 1, "key_class", "a key_up event needs a value here"),
    "mouse_move_without_x": (
        f"{SHORT_HEADER},y\ns3,u1,0,0,mouse_move,4\n", 1, "x", "a mouse_move event needs a value here"),
    "more_fields_than_the_header": (
        f"{SHORT_HEADER}\ns3,u1,0,0,focus\ns3,u1,1,5,blur,extra\n", 2, None,
        "6 fields, but the header names 5 columns"),
    "t_ms_beyond_a_day": (f"{SHORT_HEADER}\ns3,u1,0,1e300,focus\n", 1, "t_ms", "'1e300' is above 86,400,000"),
    "press_id_beyond_its_column": (
        f"{HEADER}\ns3,u1,0,0,key_down,letter,1180591620717411303424\n", 1, "press_id",
        "is not a whole number from 0 to 2,147,483,647"),
    "pos_beyond_its_column": (
        f"{SHORT_HEADER},pos\ns3,u1,0,0,focus,1099511627776\n", 1, "pos", "is not a whole number from 0 to 10,000"),
    "x_far_off_the_screen": (f"{SHORT_HEADER},x,y\ns3,u1,0,0,mouse_move,1e9,3\n", 1, "x", "is above 100,000"),
    "field_that_is_not_a_name": (f"{SHORT_HEADER},field\ns3,u1,0,0,focus,<script>\n", 1, "field", "is not allowed"),
    "control_character_in_an_id": (
        f"{SHORT_HEADER}\n\"s3\x07\",u1,0,0,focus\n", 1, "session_id", "no control characters"),
    "a_megabyte_as_type": (
        f"{SHORT_HEADER}\ns3,u1,0,0,{'k' * 1_000_000}\n", 1, "type", "unknown value 'kkkkkkkkkk"),
}


@pytest.mark.parametrize(("content", "row", "column", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_input_is_refused_and_nothing_changes(
    loaded_store: Store, write_csv, snapshot, content: str | bytes, row: int | None, column: str | None,
    reason: str,
) -> None:
    path = write_csv(content, "bad.csv")
    before = snapshot(loaded_store)

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(loaded_store, path)

    message = str(refused.value)
    assert message.startswith(f"{path}: refused, nothing stored.")
    assert reason in message
    first = refused.value.problems[0]
    assert (first.row, first.column) == (row, column)
    if row is not None:
        assert f"row {row}, column '{column}'" in message if column else f"row {row}: " in message
    assert len(message) < 1_000  # a refused value is quoted by a short prefix only
    assert snapshot(loaded_store) == before


def test_random_bytes_used_above_are_binary() -> None:
    assert b"\x00" in REFUSED["random_bytes"][0]  # so the case really exercises the binary check


def test_many_bad_rows_list_the_first_ones_and_count_the_rest(store: Store, write_csv) -> None:
    rows = "".join(f"s3,u1,{i},x{i},focus\n" for i in range(25))

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(store, write_csv(f"{SHORT_HEADER}\n{rows}"))

    assert [p.row for p in refused.value.problems] == list(range(1, 11))
    assert refused.value.total == 25
    assert "and 15 more problem(s)" in str(refused.value)
    assert store.table_counts()["events"] == 0


def test_missing_file_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        ingest_events_csv(store, tmp_path / "nope.csv")


# -- large files --------------------------------------------------------------------------------------
def big_csv(rows: int) -> list[str]:
    """`rows` valid lines: 1,000 events per session, 10 sessions per user."""
    return [SHORT_HEADER] + [f"big{i // 1000},bu{i // 10_000},{i % 1000},{i % 1000},focus" for i in range(rows)]


def test_large_file_is_streamed_in_chunks(store: Store, write_csv) -> None:
    calls: list[tuple[int, int]] = []

    report = ingest_events_csv(store, write_csv("\n".join(big_csv(120_000)) + "\n"), chunk_rows=20_000,
                               progress=lambda done, total: calls.append((done, total)))

    done = [d for d, _ in calls]
    assert len(calls) >= 5
    assert done == sorted(set(done)) and done[-1] == 120_000
    assert all(total >= d for d, total in calls)
    assert report.events_added == 120_000
    assert store.rows("SELECT count(*), count(DISTINCT session_id), sum(seq) FROM events") == [
        (120_000, 120, 120 * sum(range(1000)))]


@pytest.mark.parametrize(("bad_line", "column", "reason"), [
    ("big119,bu11,995,later,focus", "t_ms", "'later' is not a number"),
    ("big119,bu11,995,3,focus", "t_ms", "t_ms must not go backwards"),
], ids=["row_check", "across_rows_check"])
def test_large_file_with_one_bad_row_near_the_end_stores_nothing(
    loaded_store: Store, write_csv, snapshot, bad_line: str, column: str, reason: str,
) -> None:
    lines = big_csv(120_000)
    lines[119_996] = bad_line  # data row 119,996 (line 0 is the header): in the last chunk
    path = write_csv("\n".join(lines) + "\n", "big.csv")
    before = snapshot(loaded_store)

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(loaded_store, path, chunk_rows=20_000)

    first = refused.value.problems[0]
    assert (first.row, first.column) == (119_996, column)
    assert reason in str(refused.value)
    assert snapshot(loaded_store) == before


@pytest.fixture(scope="module")
def large_frame() -> pl.DataFrame:
    """600,000 valid events: 1,200 sessions of 500 alternating focus/blur events, 60 users."""
    sessions, per_session = 1_200, 500
    index = np.arange(sessions * per_session)
    seq = index % per_session
    return conform(pl.DataFrame({
        "session_id": pl.Series(index // per_session).cast(pl.String).str.pad_start(5, "0"),
        "user_id": pl.Series(index // per_session % 60).cast(pl.String),
        "seq": seq,
        "t_ms": seq * 12.5,
        "type": np.where(seq % 2 == 0, "focus", "blur"),
    }), source="simulator")


@pytest.mark.parametrize("way", ["frame", "csv_in_chunks"])
def test_large_import_is_complete(store: Store, large_frame: pl.DataFrame, tmp_path: Path, way: str) -> None:
    """Regression guard: inside a transaction, DuckDB 2.0 silently loses large Arrow appends to a
    table created in the same transaction (no error: the rows are just not there), so ingest creates
    its staging table before the transaction. A CSV read in several chunks goes through that
    staging table; an in-memory frame is one batch."""
    expected = large_frame.select(pl.len(), pl.col("session_id").n_unique(), pl.col("seq").sum()).row(0)
    assert expected == (600_000, 1_200, 1_200 * sum(range(500)))

    if way == "frame":
        report = ingest_events(store, large_frame)
    else:
        path = tmp_path / "large.csv"
        large_frame.write_csv(path)
        report = ingest_events_csv(store, path, chunk_rows=200_000)

    assert report.events_added == 600_000
    assert store.rows("SELECT count(*), count(DISTINCT session_id), sum(seq) FROM events") == [expected]
    counts = store.table_counts()
    assert (counts["sessions"], counts["users"]) == (1_200, 60)


def test_frame_without_source_is_refused(store: Store) -> None:
    frame = conform(pl.DataFrame({"session_id": ["s1"], "user_id": ["u1"], "seq": [0], "t_ms": [0.0],
                                  "type": ["focus"]}))

    with pytest.raises(ValidationError, match="row 1, column 'source': missing value"):
        ingest_events(store, frame)
    assert store.table_counts()["events"] == 0


def test_frame_sessions_give_wall_clock_starts_and_labels_are_kept(store: Store) -> None:
    from datetime import datetime

    frame = conform(pl.DataFrame({"session_id": ["a", "b"], "user_id": ["u1", "u1"], "seq": [0, 0],
                                  "t_ms": [0.0, 0.0], "type": ["focus", "focus"]}), source="simulator")
    starts = pl.DataFrame({"session_id": ["a", "b"],
                           "started_at": [datetime(2024, 3, 1, 8), datetime(2024, 3, 2, 9)]})
    labels = pl.DataFrame({"session_id": ["b"], "label": ["impostor"], "actor_id": ["u7"]})

    ingest_events(store, frame, sessions=starts, labels=labels)

    assert store.rows("SELECT session_id, started_at FROM sessions ORDER BY session_id") == [
        ("a", datetime(2024, 3, 1, 8)), ("b", datetime(2024, 3, 2, 9))]
    assert store.rows("SELECT * FROM session_labels") == [("b", "impostor", "u7", None)]


# -- sidecars of a simulation (`simulate --out sim.csv` writes sim.sessions.csv and so on) -------------
@pytest.fixture
def simulation_csv(tmp_path: Path) -> Path:
    """A small seeded simulation as `simulate --out` writes it: sim.csv plus its three sidecars."""
    from app.engine.samples import write_simulation

    path = tmp_path / "sim.csv"
    write_simulation(path, users=2, sessions=3, seed=8, load_seconds=20)
    return path


def sidecar_frame(events_csv: Path, kind: str) -> pl.DataFrame:
    from store.sidecars import sidecar_path

    return pl.read_csv(sidecar_path(events_csv, kind), infer_schema=False)


def rewrite_sidecar(events_csv: Path, kind: str, edit) -> Path:
    """Apply `edit(frame of text cells) -> frame` to a sidecar and write it back; returns its path."""
    from store.sidecars import sidecar_path

    path = sidecar_path(events_csv, kind)
    edit(pl.read_csv(path, infer_schema=False)).write_csv(path)
    return path


def set_cell(row: int, column: str, value: str | None):
    """An edit putting `value` in the 1-based data `row` of `column`."""
    return lambda frame: frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row - 1).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


@pytest.mark.parametrize("chunk_rows", [1_000_000, 500])  # one batch, and streamed through a staging table
def test_sidecars_give_start_times_labels_and_samples(store: Store, simulation_csv: Path, chunk_rows: int) -> None:
    sessions = sidecar_frame(simulation_csv, "sessions").with_columns(pl.col("started_at").str.to_datetime())
    labels = sidecar_frame(simulation_csv, "labels").with_columns(pl.col("takeover_ms").cast(pl.Float64))
    metrics = sidecar_frame(simulation_csv, "system_metrics")

    report = ingest_events_csv(store, simulation_csv, sidecars=True, chunk_rows=chunk_rows)

    assert report.rows_read > chunk_rows or chunk_rows > 500
    assert report.sidecars == ("sim.sessions.csv", "sim.labels.csv", "sim.system_metrics.csv")
    assert (report.labels_added, report.samples_added) == (labels.height, metrics.height)
    assert_frame_equal(store.frame("SELECT session_id, user_id, started_at FROM sessions ORDER BY session_id"),
                       sessions.sort("session_id"))
    assert_frame_equal(store.frame("SELECT * FROM session_labels ORDER BY session_id"), labels.sort("session_id"))
    assert store.rows("SELECT count(*), count(DISTINCT sampled_at), min(source) FROM system_metrics") == [
        (metrics.height, metrics.height, "simulator")]


def test_sidecars_are_ignored_unless_asked_for_and_optional(store: Store, simulation_csv: Path) -> None:
    from store.sidecars import sidecar_path

    sidecar_path(simulation_csv, "system_metrics").unlink()

    report = ingest_events_csv(store, simulation_csv, sidecars=True, dry_run=True)
    plain = ingest_events_csv(store, simulation_csv)

    assert report.sidecars == ("sim.sessions.csv", "sim.labels.csv") and report.samples_added == 0
    assert plain.sidecars == () and plain.labels_added == 0
    assert store.table_counts()["session_labels"] == 0


def test_sidecar_dry_run_reports_but_stores_nothing(store: Store, simulation_csv: Path, snapshot) -> None:
    before = snapshot(store)

    report = ingest_events_csv(store, simulation_csv, sidecars=True, dry_run=True)

    assert report.labels_added > 0 and report.samples_added > 0
    assert snapshot(store) == before
    assert ingest_events_csv(store, simulation_csv, sidecars=True) == report


def duplicate_first_session(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(session_id=pl.when(pl.int_range(pl.len()) == 1).then(pl.col("session_id").first())
                              .otherwise(pl.col("session_id")))


@pytest.mark.parametrize(("kind", "edit", "expected"), [
    ("sessions", set_cell(2, "started_at", "yesterday"),
     "row 2, column 'started_at': 'yesterday' is not a date and time"),
    ("sessions", set_cell(1, "user_id", "mallory"), "row 1, column 'user_id': session"),
    ("sessions", lambda f: f.drop("started_at"), "missing column(s): started_at"),
    ("sessions", duplicate_first_session, "row 2, column 'session_id'"),
    ("labels", set_cell(1, "label", None), "row 1, column 'label': missing value"),
    ("labels", set_cell(3, "session_id", "nope"), "row 3, column 'session_id': session 'nope' is not in"),
    ("labels", set_cell(2, "takeover_ms", "inf"), "row 2, column 'takeover_ms': 'inf' is not a finite number"),
    ("system_metrics", set_cell(3, "cpu_percent", "high"), "row 3, column 'cpu_percent': 'high' is not a number"),
    ("system_metrics", lambda f: f.with_columns(disk=pl.lit("1")), "unknown column(s): disk"),
])
def test_a_malformed_sidecar_is_refused_with_file_row_column_and_nothing_is_stored(
        store: Store, simulation_csv: Path, snapshot, kind: str, edit, expected: str) -> None:
    path = rewrite_sidecar(simulation_csv, kind, edit)
    before = snapshot(store)

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(store, simulation_csv, sidecars=True)

    assert refused.value.source == str(path)
    assert expected in str(refused.value)
    assert snapshot(store) == before


def test_an_empty_sidecar_is_refused(store: Store, simulation_csv: Path) -> None:
    from store.sidecars import sidecar_path

    sidecar_path(simulation_csv, "labels").write_bytes(b"")
    with pytest.raises(ValidationError, match="empty file"):
        ingest_events_csv(store, simulation_csv, sidecars=True)


# -- dry run and audit ------------------------------------------------------------------------------
def test_dry_run_reports_but_stores_nothing(loaded_store: Store, good_csv: Path, write_csv, snapshot) -> None:
    path = write_csv(good_csv.read_text() + "s3,carol,0,0,focus,,,,,,,,browser\n", "more.csv")
    before = snapshot(loaded_store)

    report = ingest_events_csv(loaded_store, path, dry_run=True)

    assert (report.rows_read, report.events_added, report.already_stored) == (GOOD_ROWS + 1, 1, GOOD_ROWS)
    assert (report.sessions_added, report.users_added) == (1, 1)
    assert snapshot(loaded_store) == before
    real = ingest_events_csv(loaded_store, path)
    assert real == report  # the dry run predicted exactly what the real import did


def test_dry_run_still_refuses_bad_input(loaded_store: Store, write_csv) -> None:
    with pytest.raises(ValidationError, match="row 1, column 'user_id'"):
        ingest_events_csv(loaded_store, write_csv(f"{SHORT_HEADER}\ns1,mallory,9,900,blur\n"), dry_run=True)


def test_successful_import_appends_one_audit_row(store: Store, good_csv: Path) -> None:
    ingest_events_csv(store, good_csv, actor="tester")

    rows = store.rows("SELECT actor, action, subject, details FROM audit_log")
    assert len(rows) == 1
    actor, action, subject, details = rows[0]
    assert (actor, action, subject) == ("tester", "import", str(good_csv))
    assert json.loads(details)["events_added"] == GOOD_ROWS


def test_refused_import_appends_no_audit_row(loaded_store: Store, write_csv) -> None:
    assert loaded_store.scalar("SELECT count(*) FROM audit_log") == 1

    with pytest.raises(ValidationError):
        ingest_events_csv(loaded_store, write_csv(f"{SHORT_HEADER}\ns3,u1,0,NaN,focus\n"))

    assert loaded_store.scalar("SELECT count(*) FROM audit_log") == 1


# -- a database held by another process ----------------------------------------------------------------
def test_locked_database_is_refused_with_what_to_do(locked_db: Path) -> None:
    with pytest.raises(DatabaseLockedError) as refused:
        Store(locked_db)

    message = str(refused.value)
    assert str(locked_db) in message
    assert "in use by process" in message
    assert "--db / TELLTALE_DB" in message


def test_cli_ingest_into_a_locked_database_exits_2_without_traceback(locked_db: Path, good_csv: Path, run_cli) -> None:
    done = run_cli("ingest", good_csv, "--db", locked_db)

    assert done.returncode == 2
    assert f"error: the database {locked_db} is in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


ACROSS_ROWS = [key for key in REFUSED if key.startswith(("duplicate_", "t_ms_", "session_"))]


@pytest.mark.parametrize("chunk_rows", [1, 1_000_000], ids=["streamed-batches", "one-batch"])
@pytest.mark.parametrize("case", ACROSS_ROWS)
def test_rules_across_rows_give_the_same_problem_whether_streamed_or_in_one_batch(
    loaded_store: Store, write_csv, snapshot, case: str, chunk_rows: int,
) -> None:
    # One batch is checked in Polars, a streamed file in DuckDB over its staging table.
    content, row, column, reason = REFUSED[case]
    before = snapshot(loaded_store)

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(loaded_store, write_csv(content, "bad.csv"), chunk_rows=chunk_rows)

    first = refused.value.problems[0]
    assert (first.row, first.column) == (row, column)
    assert reason in str(refused.value)
    assert snapshot(loaded_store) == before


@pytest.mark.parametrize("chunk_rows", [7, 1_000_000], ids=["streamed-batches", "one-batch"])
def test_many_problems_across_rows_are_counted_alike_in_both_checks(store: Store, write_csv, chunk_rows: int) -> None:
    rows = "".join(f"s3,u1,{i // 2},{i},focus\n" for i in range(30))  # every seq twice: 15 duplicates

    with pytest.raises(ValidationError) as refused:
        ingest_events_csv(store, write_csv(f"{SHORT_HEADER}\n{rows}"), chunk_rows=chunk_rows)

    assert [p.row for p in refused.value.problems] == list(range(2, 21, 2))
    assert refused.value.total == 15
    assert store.table_counts()["events"] == 0


def test_a_live_batch_of_a_new_user_adds_the_user_and_the_session_once(store: Store) -> None:
    batch = pl.DataFrame({"session_id": ["live-1"] * 2, "user_id": ["newcomer"] * 2, "seq": [0, 1],
                          "t_ms": [0.0, 5.0], "type": ["focus", "blur"], "source": ["browser"] * 2})

    first = ingest_events(store, batch)
    again = ingest_events(store, batch.with_columns(seq=pl.col("seq") + 2, t_ms=pl.col("t_ms") + 10))

    assert (first.users_added, first.sessions_added, first.events_added) == (1, 1, 2)
    assert (again.users_added, again.sessions_added, again.events_added) == (0, 0, 2)
    assert store.rows("SELECT user_id FROM users") == [("newcomer",)]
    assert store.rows("SELECT session_id, user_id, source FROM sessions") == [("live-1", "newcomer", "browser")]


def _one_event(session: str, user: str, seq: int) -> pl.DataFrame:
    return conform(pl.DataFrame({"session_id": [session], "user_id": [user], "seq": [seq], "t_ms": [float(seq)],
                                 "type": ["focus"], "source": ["browser"]}))


def test_a_live_batch_knows_its_session_from_earlier_batches_and_forgets_a_rolled_back_one(store: Store) -> None:
    """A one-session batch finds its stored session (and user) in memory: kept across commits, never
    holding a session whose transaction rolled back."""
    ingest_events(store, _one_event("live-1", "alice", 0))
    with pytest.raises(ValidationError, match="belongs to user 'alice'"):
        ingest_events(store, _one_event("live-1", "mallory", 1))
    assert ingest_events(store, _one_event("live-1", "alice", 1)).sessions_added == 0

    with pytest.raises(RuntimeError, match="undone"), store.transaction():
        assert ingest_events(store, _one_event("live-2", "bob", 0)).sessions_added == 1
        with pytest.raises(ValidationError, match="belongs to user 'bob'"):  # seen inside its transaction
            ingest_events(store, _one_event("live-2", "eve", 1))
        raise RuntimeError("undone")
    report = ingest_events(store, _one_event("live-2", "eve", 0))  # the rolled-back session is not "stored"
    assert report.sessions_added == 1
    assert store.rows("SELECT user_id FROM sessions WHERE session_id = 'live-2'") == [("eve",)]
