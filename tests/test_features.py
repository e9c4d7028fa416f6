"""Feature pipeline on hand-built event frames whose answers were worked out by hand (STYLE §6).

Each test builds a few canonical events, runs one pipeline step (or `build_windows`), and compares
with numbers computed in the comments. Times are ms, distances px, speeds px/s, angles radians.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detectors.features import (
    ACTION_GAP_MS,
    CONTEXT_FEATURES,
    FEATURE_DICTIONARY,
    KEYSTROKE_FEATURES,
    MOUSE_FEATURES,
    WINDOW_COLUMNS,
    WINDOW_KINDS,
    WindowSettings,
    build_windows,
    context_features,
    feature_names,
    key_presses,
    mouse_actions,
    pointer_samples,
    with_flights,
)
from store.schema import conform
from store.windows import schema_id

ROOT = Path(__file__).resolve().parents[1]


# --- helpers -----------------------------------------------------------------------------------------
def events(*rows: dict[str, Any], session: str = "s1", user: str = "u1") -> pl.DataFrame:
    """Canonical events of one session; rows are ordered by t_ms (stable) and numbered as seq."""
    ordered = sorted(rows, key=lambda row: row["t_ms"])
    data = [{"session_id": session, "user_id": user, "seq": i, **row} for i, row in enumerate(ordered)]
    return conform(pl.DataFrame(data, infer_schema_length=None), source="browser")


def press(press_id: int, down: float, up: float, key_class: str = "letter", **extra: Any) -> list[dict[str, Any]]:
    """A key_down and its key_up sharing `press_id` (extra columns such as field/pos on both)."""
    common = {"press_id": press_id, "key_class": key_class, **extra}
    return [{"t_ms": down, "type": "key_down", **common}, {"t_ms": up, "type": "key_up", **common}]


def pointer(t: float, x: float, y: float, kind: str = "mouse_move") -> dict[str, Any]:
    button = None if kind == "mouse_move" else "left"
    return {"t_ms": t, "type": kind, "x": x, "y": y, "button": button}


def other(t: float, kind: str, **extra: Any) -> dict[str, Any]:
    return {"t_ms": t, "type": kind, **extra}


def actions_of(frame: pl.DataFrame) -> pl.DataFrame:
    return mouse_actions(pointer_samples(frame.lazy())).collect()


def assert_values(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected key matches: strings and ints exactly, floats to 1e-12 relative."""
    for name, value in expected.items():
        if isinstance(value, float):
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        else:
            assert row[name] == value, name


def assert_finite(windows: pl.DataFrame, names: list[str]) -> None:
    """No feature is null, NaN or infinite (the dictionary's `when_undefined` fills them)."""
    assert windows.columns == [*WINDOW_COLUMNS, *names]
    bad = windows.select(pl.col(names).is_finite().not_().fill_null(True).sum()).row(0, named=True)
    assert {n: c for n, c in bad.items() if c} == {}


def undocumented(names: list[str]) -> list[str]:
    """Names without a dictionary entry, or whose entry lacks family, unit or meaning."""
    return [n for n in names if n not in FEATURE_DICTIONARY
            or not all(getattr(FEATURE_DICTIONARY[n], a).strip() for a in ("family", "unit", "meaning"))]


# --- keystrokes ----------------------------------------------------------------------------------------
#: Five free-text presses (times in ms). Press 3 starts before press 2 is released (overlap);
#: press 4 follows a pause longer than TYPING_PAUSE_MS; press 5 is a backspace.
#:   press  class      down   up    dwell | DD    UD     UU   (from the previous press)
#:   1      letter     0      100   100   |
#:   2      letter     150    230   80    | 150   50     130
#:   3      space      200    260   60    | 50    -30    30
#:   4      letter     1400   1490  90    | 1200  1140   1230
#:   5      backspace  1600   1650  50    | 200   110    160
FIVE_PRESSES = [(1, 0, 100, "letter"), (2, 150, 230, "letter"), (3, 200, 260, "space"),
                (4, 1400, 1490, "letter"), (5, 1600, 1650, "backspace")]


def five_presses(session: str = "s1") -> pl.DataFrame:
    return events(*(e for p, d, u, c in FIVE_PRESSES for e in press(p, d, u, c, field="pad")), session=session)


def test_key_presses_pair_down_and_up_by_press_id_and_drop_unfinished_presses() -> None:
    frame = events(*press(7, 10, 95.5, field="pad"), *press(8, 50, 60, "digit", field="pad"),
                   {"t_ms": 200, "type": "key_down", "press_id": 9, "key_class": "letter"})  # never released
    expected = pl.DataFrame({
        "session_id": ["s1", "s1"], "press_id": [7, 8], "user_id": ["u1", "u1"], "key_class": ["letter", "digit"],
        "pos": pl.Series([None, None], dtype=pl.Int32), "field": ["pad", "pad"],
        "t_down": [10.0, 50.0], "t_up": [95.5, 60.0], "dwell": [85.5, 10.0],
    })
    assert_frame_equal(key_presses(frame.lazy()).collect(), expected)


def test_flights_dd_ud_uu_between_consecutive_presses_with_negative_ud_for_overlap() -> None:
    presses = key_presses(pl.concat([five_presses("s1"), five_presses("s2").head(5)]).lazy())
    got = with_flights(presses, over=["session_id"]).collect()
    assert_frame_equal(got.select("session_id", "flight_dd", "flight_ud", "flight_uu", "previous_class"), pl.DataFrame({
        "session_id": ["s1"] * 5 + ["s2"] * 2,
        # each session starts without a flight; s2's first five events complete presses 1 and 2 only
        "flight_dd": [None, 150.0, 50.0, 1200.0, 200.0, None, 150.0],
        "flight_ud": [None, 50.0, -30.0, 1140.0, 110.0, None, 50.0],
        "flight_uu": [None, 130.0, 30.0, 1230.0, 160.0, None, 130.0],
        "previous_class": [None, "letter", "letter", "space", "letter", None, "letter"],
    }))


def test_free_text_window_features_by_hand() -> None:
    windows = build_windows(five_presses(), ("free_text",), WindowSettings(free_text_keys=5))["free_text"]
    assert_finite(windows, feature_names("free_text"))
    assert windows.height == 1
    dwell = [100, 80, 60, 90, 50]  # mean 76
    dd = [150, 50, 1200, 200]  # mean 400
    assert_values(windows.row(0, named=True), {
        "window_id": "s1:free_text:0", "session_id": "s1", "user_id": "u1", "kind": "free_text",
        "start_ms": 0.0, "end_ms": 1650.0, "n_events": 10,
        "key_count": 5.0,
        "typing_speed": 4 / 1.6,  # 4 intervals between the first (0) and last (1600) keydown
        "dwell_mean": 76.0,
        "dwell_std": math.sqrt(sum((d - 76) ** 2 for d in dwell) / 4),  # sample std: sqrt(1720 / 4)
        "dwell_median": 80.0,
        "flight_dd_mean": 400.0, "flight_dd_median": (150 + 200) / 2,
        "flight_ud_mean": (50 - 30 + 1140 + 110) / 4, "flight_ud_median": (50 + 110) / 2,
        "flight_uu_mean": (130 + 30 + 1230 + 160) / 4,
        "flight_dd_ll": 150.0, "flight_dd_ls": 50.0, "flight_dd_sl": 1200.0,  # letter->backspace is no pair
        "flight_ud_ll": 50.0, "flight_ud_ls": -30.0, "flight_ud_sl": 1140.0,
        "backspace_ratio": 1 / 5,
        "rhythm_cv": math.sqrt(sum((d - 400) ** 2 for d in dd) / 3) / 400,
        "overlap_rate": 1 / 4,  # one negative UD among four flights
        "pause_rate": 1 / 4,  # one DD (1200) above 1000 ms
    })


def test_free_text_windows_are_consecutive_runs_outside_the_phrase() -> None:
    # 7 free presses (1 in the username field, 6 with a pos in another field, as the Aalto importer
    # writes them) around 2 fixed-phrase presses: with 3 keys per window, 7 -> 2 windows, 1 left over.
    rows = [*press(1, 0, 50, field="username"),
            *press(2, 100, 150, field="password", pos=0), *press(3, 200, 250, field="password", pos=1)]
    rows += [e for i in range(6) for e in press(4 + i, 300 + 100 * i, 350 + 100 * i, field="sentence", pos=i)]
    windows = build_windows(events(*rows), ("free_text",), WindowSettings(free_text_keys=3))["free_text"]
    assert_frame_equal(windows.select(*WINDOW_COLUMNS, "key_count", "flight_dd_mean"), pl.DataFrame({
        "window_id": ["s1:free_text:0", "s1:free_text:1"], "session_id": ["s1", "s1"], "user_id": ["u1", "u1"],
        "kind": ["free_text", "free_text"], "start_ms": [0.0, 500.0], "end_ms": [450.0, 750.0],
        "n_events": [6, 6], "key_count": [3.0, 3.0],
        "flight_dd_mean": [(300 + 100) / 2, 100.0],  # the password presses between 0 and 300 are skipped
    }))


def test_typing_speed_and_flights_of_a_single_press_are_filled_not_null() -> None:
    windows = build_windows(events(*press(1, 0, 80)), ("free_text",), WindowSettings(free_text_keys=1))["free_text"]
    assert_finite(windows, feature_names("free_text"))
    row = windows.row(0, named=True)
    assert_values(row, {"key_count": 1.0, "dwell_mean": 80.0, "dwell_median": 80.0})
    undefined = [n for n in KEYSTROKE_FEATURES if n not in ("key_count", "dwell_mean", "dwell_median")]
    assert {n: row[n] for n in undefined} == {n: FEATURE_DICTIONARY[n].when_undefined for n in undefined}


# --- fixed text ----------------------------------------------------------------------------------------
THREE_KEYS = WindowSettings(fixed_text_keys=3)


def login(*keys: tuple[int, float, float, str, int | None], session: str = "s1") -> pl.DataFrame:
    """Enter the password field at 0, type `keys` (press_id, down, up, class, pos), leave, submit."""
    rows = [other(0, "field_enter", field="password"), other(500, "field_leave", field="password"),
            other(520, "submit")]
    rows += [e for p, d, u, c, pos in keys for e in press(p, d, u, c, field="password", pos=pos)]
    return events(*rows, session=session)


def test_fixed_text_repetition_by_hand() -> None:
    # pos 0: 100-180; pos 1 (shift): 250-400; pos 2: 300-350, pressed while shift is still down.
    frame = login((1, 100, 180, "letter", 0), (2, 250, 400, "shift", 1), (3, 300, 350, "letter", 2))
    windows = build_windows(frame, ("fixed_text",), THREE_KEYS)["fixed_text"]
    names = feature_names("fixed_text", THREE_KEYS)
    assert names == ["H.p00", "DD.p00.p01", "UD.p00.p01", "H.p01", "DD.p01.p02", "UD.p01.p02", "H.p02",
                     *CONTEXT_FEATURES]
    assert_finite(windows, names)
    assert windows.rows(named=True) == [{
        "window_id": "s1:fixed_text:0", "session_id": "s1", "user_id": "u1", "kind": "fixed_text",
        "start_ms": 100.0, "end_ms": 400.0, "n_events": 6,
        "H.p00": 80.0, "DD.p00.p01": 150.0, "UD.p00.p01": 70.0,
        "H.p01": 150.0, "DD.p01.p02": 50.0, "UD.p01.p02": -100.0, "H.p02": 50.0,
        "tab_navigation_share": 0.0,  # one field entered: no field change to attribute
        "time_per_field_mean": 500.0, "time_to_submit": 520.0, "focus_switches": 0.0,
    }]


@pytest.mark.parametrize("keys", [
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "backspace", 1), (3, 320, 350, "letter", 2)],
                 id="backspace"),
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "letter", 1), (3, 320, 350, "letter", 3)],
                 id="missing-position"),
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "letter", 1)], id="too-short"),
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "letter", 1), (3, 320, 350, "letter", 2),
                  (4, 360, 380, "enter", 3)], id="too-long"),
])
def test_fixed_text_repetition_that_is_not_clean_is_no_window(keys: list) -> None:
    clean = login((1, 100, 180, "letter", 0), (2, 250, 300, "letter", 1), (3, 320, 350, "letter", 2), session="ok")
    windows = build_windows(pl.concat([clean, login(*keys, session="bad")]), ("fixed_text",), THREE_KEYS)
    assert windows["fixed_text"]["session_id"].to_list() == ["ok"]


@pytest.mark.parametrize("keys", [
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "letter", 1), (3, 320, 350, "letter", 2)], id="clean"),
    pytest.param([(1, 100, 180, "letter", 0), (2, 250, 300, "backspace", 1), (3, 320, 350, "letter", 2)],
                 id="typo"),
])
def test_a_login_alone_gets_the_windows_it_gets_beside_other_sessions(keys: list) -> None:
    """A lone session inside one time slot skips planning its time slice when the phrase makes a
    window (the slice overlaps it and is dropped): the windows are those built with company."""
    alone = build_windows(login(*keys, session="s1"), settings=THREE_KEYS)
    beside = build_windows(pl.concat([login(*keys, session="s1"), login(*keys, session="s2")]), settings=THREE_KEYS)
    for kind in WINDOW_KINDS:
        assert_frame_equal(alone[kind], beside[kind].filter(pl.col("session_id") == "s1"))
    clean = keys[1][3] != "backspace"
    assert alone["fixed_text"].height == int(clean) and alone["time"].height == int(not clean)


# --- mouse ---------------------------------------------------------------------------------------------
ONE_ACTION = WindowSettings(mouse_actions=1)


def test_straight_horizontal_move_at_constant_speed() -> None:
    # 6 samples every 10 ms, 10 px apart: 1000 px/s throughout, one action heading right.
    frame = events(*(pointer(10 * i, 10 * i, 100) for i in range(6)))
    windows = build_windows(frame, ("mouse",), ONE_ACTION)["mouse"]
    assert_finite(windows, feature_names("mouse"))
    assert windows.rows(named=True) == [{
        "window_id": "s1:mouse:0", "session_id": "s1", "user_id": "u1", "kind": "mouse",
        "start_ms": 0.0, "end_ms": 50.0, "n_events": 6,
        "action_count": 1.0, "share_move": 1.0, "share_click": 0.0, "drag_share": 0.0,
        "distance_mean": 50.0, "duration_mean": 50.0,
        "log_speed_median": math.log1p(1000.0), "log_speed_max": math.log1p(1000.0),
        "log_acceleration": 0.0, "log_jerk": 0.0,  # constant speed
        "curvature_mean": 0.0, "angle_change_mean": 0.0, "straightness_mean": 1.0,
        "pause_ratio": 0.0,
        "click_dwell_mean": 0.0,  # no click: undefined, filled with the dictionary's 0
        "direction_0": 1.0, **{f"direction_{i}": 0.0 for i in range(1, 8)},
        "scroll_rate": 0.0,
    }]


def test_right_angle_path_curvature_and_angle_change() -> None:
    # right 20 px, then down 20 px, 10 px per 10 ms: headings 0, 0, pi/2, pi/2 -> turns 0, pi/2, 0.
    frame = events(*(pointer(10 * i, x, y) for i, (x, y) in enumerate([(0, 0), (10, 0), (20, 0), (20, 10), (20, 20)])))
    action = actions_of(frame).row(0, named=True)
    assert_values(action, {
        "action_kind": "move", "n_events": 5, "distance": 40.0, "duration": 40.0,
        "displacement": math.hypot(20, 20), "straightness": math.hypot(20, 20) / 40,
        "curvature": (math.pi / 2) / 40, "angle_change": (math.pi / 2) / 3,
        "heading": math.pi / 4, "direction": 1,  # 45° (right and down, y grows downwards)
        "speed_median": 1000.0, "acceleration": 0.0,
    })


def test_speed_acceleration_and_jerk_by_hand() -> None:
    # x = 0, 10, 30, 70, 150 every 10 ms: speeds 1000, 2000, 4000, 8000 px/s;
    # accelerations (px/s²) 1e5, 2e5, 4e5; jerks (px/s³) 1e7, 2e7.
    frame = events(*(pointer(10 * i, x, 0) for i, x in enumerate([0, 10, 30, 70, 150])))
    action = actions_of(frame).row(0, named=True)
    assert_values(action, {
        "speed_median": (2000 + 4000) / 2, "speed_p95": 8000.0,
        "acceleration": (1e5 + 2e5 + 4e5) / 3, "jerk": (1e7 + 2e7) / 2, "straightness": 1.0,
    })


def test_click_without_motion_has_exact_dwell_and_undefined_shape_filled() -> None:
    frame = events(pointer(0, 5, 5, "mouse_down"), pointer(120, 5, 5, "mouse_up"))
    assert_values(actions_of(frame).row(0, named=True),
                  {"action_kind": "click", "click_dwell": 120.0, "distance": 0.0, "n_events": 2})
    row = build_windows(frame, ("mouse",), ONE_ACTION)["mouse"].row(0, named=True)
    assert_values(row, {"share_click": 1.0, "click_dwell_mean": 120.0, "distance_mean": 0.0,
                        "straightness_mean": 1.0,  # no path: the dictionary's 1 (straight)
                        "curvature_mean": 0.0, "angle_change_mean": 0.0})


def test_movement_while_held_is_a_drag() -> None:
    frame = events(pointer(0, 0, 0, "mouse_down"), pointer(10, 10, 0), pointer(20, 20, 0),
                   pointer(30, 20, 0, "mouse_up"))
    assert_values(actions_of(frame).row(0, named=True),
                  {"action_kind": "drag", "click_dwell": 30.0, "distance": 20.0})
    row = build_windows(frame, ("mouse",), ONE_ACTION)["mouse"].row(0, named=True)
    assert_values(row, {"drag_share": 1.0, "share_click": 0.0, "click_dwell_mean": 30.0})


def test_moving_to_the_press_point_then_clicking_is_a_click_not_a_drag() -> None:
    # The last move sample is at x=10, the press at x=12: those 2 px were moved before the button went
    # down (sampling), and nothing moves while it is held (Balabit has ~160 such clicks).
    frame = events(pointer(0, 0, 0), pointer(10, 10, 0), pointer(20, 12, 0, "mouse_down"),
                   pointer(100, 12, 0, "mouse_up"))
    assert_values(actions_of(frame).row(0, named=True),
                  {"action_kind": "click", "click_dwell": 80.0, "distance": 12.0, "n_events": 4})


def test_actions_split_at_a_gap_longer_than_action_gap_and_after_a_release() -> None:
    assert ACTION_GAP_MS == 500
    frame = pl.concat([
        events(pointer(0, 0, 0), pointer(10, 1, 0), pointer(510, 2, 0),  # gap of exactly 500: same action
               pointer(1011, 3, 0),  # gap of 501: a new action, which ends at the release
               pointer(1020, 3, 0, "mouse_down"), pointer(1100, 3, 0, "mouse_up"),
               pointer(1110, 4, 0)),  # after a release: a new action
        events(pointer(1115, 5, 0), session="s2"),  # another session: a new action
    ])
    actions = actions_of(frame)
    assert_frame_equal(actions.select("session_id", "start_ms", "end_ms", "n_events", "action_kind", "pause_ms"),
                       pl.DataFrame({
                           "session_id": ["s1", "s1", "s1", "s2"],
                           "start_ms": [0.0, 1011.0, 1110.0, 1115.0], "end_ms": [510.0, 1100.0, 1110.0, 1115.0],
                           "n_events": pl.Series([3, 3, 1, 1], dtype=pl.UInt32),
                           "action_kind": ["move", "click", "move", "move"],
                           # gaps above POINTER_PAUSE_MS (100): the 500 ms wait; nothing in the others
                           "pause_ms": [500.0, 0.0, 0.0, 0.0],
                       }))
    row = build_windows(frame, ("mouse",), WindowSettings(mouse_actions=3))["mouse"].row(0, named=True)
    assert_values(row, {"action_count": 3.0, "share_move": 2 / 3, "share_click": 1 / 3,
                        "pause_ratio": 500 / (510 + 89 + 0), "click_dwell_mean": 80.0})


def test_scroll_rate_counts_wheel_events_inside_a_window_span() -> None:
    move_a = [pointer(100 * i, i, 0) for i in range(11)]  # one action from 0 to 1000 ms
    move_b = [pointer(3000 + 100 * i, i, 0) for i in range(6)]  # one action from 3000 to 3500 ms
    wheels = [other(t, "wheel", x=0.0, y=0.0) for t in (200, 400, 600, 1000, 2000, 3100)]
    windows = build_windows(events(*move_a, *move_b, *wheels), ("mouse",), ONE_ACTION)["mouse"]
    # window 0 holds 4 wheel events in 1 s; the one at 2000 ms lies between windows and counts nowhere;
    # window 1 holds 1 in 0.5 s.
    assert windows["scroll_rate"].to_list() == [4.0, 2.0]
    assert windows["n_events"].to_list() == [11, 6]  # pointer samples only


# --- context -------------------------------------------------------------------------------------------
def test_context_tab_vs_mouse_navigation_time_per_field_and_submit() -> None:
    frame = events(
        other(0, "field_enter", field="username"), *press(1, 100, 150, field="username"),
        *press(2, 1000, 1080, "tab", field="username"),  # Tab moves to the password field
        other(1010, "field_leave", field="username"), other(1020, "field_enter", field="password"),
        pointer(1500, 40, 40, "mouse_down"),  # a click moves to the "remember" box
        other(1505, "field_leave", field="password"), other(1510, "field_enter", field="remember"),
        pointer(1600, 40, 40, "mouse_up"), other(2510, "field_leave", field="remember"),
        other(2600, "blur"), other(2900, "focus"), other(3000, "submit"),
    )
    got = context_features(frame.lazy(), by=["session_id"]).collect()
    assert_frame_equal(got, pl.DataFrame({
        "session_id": ["s1"],
        "time_to_submit": [3000.0],  # from the first field_enter (0)
        "focus_switches": [2.0],
        "tab_navigation_share": [0.5],  # 2 field changes, 1 by Tab
        "time_per_field_mean": [(1010 + 485 + 1000) / 3],
    }), check_column_order=False)


def test_context_without_fields_or_submit_is_filled_in_fixed_text_windows() -> None:
    frame = events(*(e for p, pos in ((1, 0), (2, 1), (3, 2))
                     for e in press(p, 100 * p, 100 * p + 50, field="password", pos=pos)))
    row = build_windows(frame, ("fixed_text",), THREE_KEYS)["fixed_text"].row(0, named=True)
    assert {n: row[n] for n in CONTEXT_FEATURES} == {n: 0.0 for n in CONTEXT_FEATURES}


# --- time windows --------------------------------------------------------------------------------------
ONE_SECOND = WindowSettings(time_seconds=1.0)


def test_time_windows_split_at_t_seconds() -> None:
    frame = events(*press(1, 100, 180), *press(2, 300, 350), other(900, "focus"),
                   pointer(1500, 0, 0), pointer(1510, 10, 0), other(3200, "blur"))
    windows = build_windows(frame, ("time",), ONE_SECOND)["time"]
    assert_finite(windows, feature_names("time"))
    assert_frame_equal(windows.select(*WINDOW_COLUMNS), pl.DataFrame({
        "window_id": ["s1:time:0", "s1:time:1", "s1:time:3"],  # nothing happened in [2 s, 3 s)
        "session_id": ["s1"] * 3, "user_id": ["u1"] * 3, "kind": ["time"] * 3,
        "start_ms": [100.0, 1500.0, 3200.0], "end_ms": [900.0, 1510.0, 3200.0], "n_events": [5, 2, 1],
    }))
    first, second, last = windows.rows(named=True)
    assert_values(first, {"key_count": 2.0, "dwell_mean": 65.0, "flight_dd_mean": 200.0, "flight_ud_mean": 120.0,
                          "typing_speed": 1 / 0.2, "focus_switches": 1.0,
                          # no mouse action in this slot: the dictionary's fill values
                          "action_count": 0.0, "straightness_mean": 1.0, "distance_mean": 0.0})
    assert_values(second, {"key_count": 0.0, "action_count": 1.0, "distance_mean": 10.0,
                           "log_speed_median": math.log1p(1000.0), "focus_switches": 0.0})
    assert_values(last, {"key_count": 0.0, "action_count": 0.0, "focus_switches": 1.0})


def test_open_sessions_leave_out_windows_that_may_still_grow() -> None:
    frame = events(*(pointer(100 * i, i, 0) for i in range(5)), pointer(2000, 9, 0), pointer(2300, 9, 5))
    closed = build_windows(frame, ("mouse", "time"), WindowSettings(mouse_actions=1, time_seconds=1.0))
    live = build_windows(frame, ("mouse", "time"), WindowSettings(mouse_actions=1, time_seconds=1.0),
                         open_sessions=True)
    assert closed["mouse"]["start_ms"].to_list() == [0.0, 2000.0]
    assert live["mouse"]["start_ms"].to_list() == [0.0]  # ends at 2300, the last event: may gain samples
    assert closed["time"]["window_id"].to_list() == ["s1:time:0", "s1:time:2"]
    assert live["time"]["window_id"].to_list() == ["s1:time:0"]  # slot 2 holds the last event


# --- schema and dictionary -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated_windows() -> dict[str, pl.DataFrame]:
    from simulators import simulate

    return build_windows(simulate(users=2, sessions=2, seed=5).events)


@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_built_windows_have_the_schema_and_finite_values(kind: str, simulated_windows) -> None:
    windows = simulated_windows[kind]
    assert windows.height > 0
    assert_finite(windows, feature_names(kind))
    assert all(windows.schema[n] == pl.Float64 for n in feature_names(kind))
    assert windows.select(pl.col(WINDOW_COLUMNS).null_count().sum()).row(0) == (0,) * len(WINDOW_COLUMNS)
    assert windows["window_id"].is_unique().all()


@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_every_feature_of_every_kind_has_a_dictionary_entry(kind: str, simulated_windows) -> None:
    assert undocumented(feature_names(kind)) == []
    assert undocumented(simulated_windows[kind].columns[len(WINDOW_COLUMNS):]) == []


@pytest.mark.parametrize("keys", [1, 3, 12, 31])
def test_fixed_text_features_of_any_size_have_dictionary_entries(keys: int) -> None:
    names = feature_names("fixed_text", WindowSettings(fixed_text_keys=keys))
    assert len(names) == keys + 2 * (keys - 1) + len(CONTEXT_FEATURES)
    assert len(set(names)) == len(names)
    assert undocumented(names) == []


def test_dictionary_check_fails_for_a_feature_without_an_entry() -> None:
    assert undocumented(["dwell_mean", "no_such_feature"]) == ["no_such_feature"]


def test_every_dictionary_entry_is_complete_and_its_fill_value_finite() -> None:
    entries = FEATURE_DICTIONARY.entries
    assert undocumented(list(entries)) == []
    assert all(math.isfinite(info.when_undefined) and info.name == name for name, info in entries.items())
    assert set(KEYSTROKE_FEATURES + MOUSE_FEATURES + CONTEXT_FEATURES) <= set(entries)


def test_time_windows_hold_keystroke_mouse_and_focus_features_in_order() -> None:
    assert feature_names("time") == [*KEYSTROKE_FEATURES, *MOUSE_FEATURES, "focus_switches"]
    with pytest.raises(ValueError, match="unknown window kind 'bogus'"):
        feature_names("bogus")


def test_docs_feature_dictionary_matches_the_code() -> None:
    docs = ROOT / "docs" / "features.md"
    assert docs.read_text().rstrip("\n") == FEATURE_DICTIONARY.markdown().rstrip("\n"), \
        "docs/features.md is stale: regenerate it with `python -m app features --markdown > docs/features.md`"


def test_schema_ids_of_the_kinds_differ() -> None:
    ids = {schema_id(feature_names(kind)) for kind in WINDOW_KINDS}
    assert len(ids) == len(WINDOW_KINDS)
    assert schema_id(["a", "b"]) != schema_id(["b", "a"])


def test_bench_features_reports_the_ingest_shape_and_skips_a_missing_balabit(tmp_path: Path) -> None:
    """Shape only (timings belong to `python -m app bench features`, never to assertions)."""
    from bench import run_benchmark

    result = run_benchmark("features", rows=3_000, path=tmp_path / "no-balabit")
    assert {"rows", "ours_s", "baseline_s", "ours_per_s", "baseline_per_s", "ratio"} <= set(result)
    assert result["rows"] == 3_000
    assert set(result["windows"]) == set(WINDOW_KINDS)
    assert set(result["stages_s"]) == {"session_parts", *WINDOW_KINDS}
    assert result["balabit"] == {"skipped": f"{tmp_path / 'no-balabit'} not found"}


def test_a_session_too_small_for_a_kind_gets_it_empty_with_the_usual_columns(simulated_windows) -> None:
    """Kinds that cannot have a window are not planned (a live-login shortcut), yet look the same."""
    small = five_presses()  # 5 presses, no pointer: neither a 30-key free-text nor a 5-action mouse window
    built = build_windows(small)
    for kind in ("free_text", "mouse"):
        assert built[kind].height == 0
        assert built[kind].schema == simulated_windows[kind].schema, kind
    assert build_windows(small, settings=WindowSettings(free_text_keys=5))["free_text"].height == 1


def test_building_windows_of_sessions_together_or_one_by_one_gives_the_same_windows(simulated_windows) -> None:
    """The shortcut counts presses and actions over all sessions given, never per session."""
    from simulators import simulate

    events = simulate(users=2, sessions=2, seed=5).events
    one_by_one = [build_windows(part) for part in events.partition_by("session_id")]
    for kind in WINDOW_KINDS:
        together = pl.concat([b[kind] for b in one_by_one]).sort("session_id", "start_ms")
        assert_frame_equal(together, simulated_windows[kind].sort("session_id", "start_ms"))


@pytest.mark.parametrize("small", [True, False])
def test_the_in_memory_engine_gives_what_the_default_engine_gives(small: bool) -> None:
    """`collect_all` picks Polars' in-memory engine (and no optimisation passes for small inputs)
    for speed; the windows must not change."""
    from detectors.features import SMALL_INPUT_EVENTS, collect_all, session_parts, window_features
    from simulators import simulate

    events = simulate(users=2, sessions=3, seed=8).events
    parts = session_parts(events)
    plans = [window_features(parts, kind) for kind in WINDOW_KINDS]
    ours = collect_all(plans, 1 if small else SMALL_INPUT_EVENTS)
    for kind, mine, theirs in zip(WINDOW_KINDS, ours, pl.collect_all(plans, engine="streaming"), strict=True):
        assert mine.height > 0, kind
        assert_frame_equal(mine, theirs)
