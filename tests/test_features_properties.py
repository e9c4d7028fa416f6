"""Properties of the feature pipeline over generated sessions (Hypothesis, small sizes).

Sessions are built from a few kinds of steps (a key press, a stroke of mouse moves, a click, a wheel
tick, a focus change, a Tab between fields, a key never released), each starting after the previous
one, so `t_ms` is monotonic and every key_up pairs with its key_down through `press_id`. Key presses
may be held past the next step's start: overlaps and negative UD flights occur.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detectors.features import (
    ACTION_GAP_MS,
    WINDOW_COLUMNS,
    WINDOW_KINDS,
    WindowSettings,
    build_windows,
    feature_names,
    key_presses,
)
from store.schema import conform

#: Small windows so that a few dozen generated events already make several of each kind.
SMALL = WindowSettings(fixed_text_keys=3, free_text_keys=3, mouse_actions=2, time_seconds=1.0)
PROPERTY = settings(max_examples=25, deadline=None)

KEY_CLASSES = ["letter", "letter", "letter", "space", "digit", "backspace", "shift", "punct"]

step = st.one_of(
    st.tuples(st.just("key"), st.sampled_from(KEY_CLASSES), st.integers(0, 400)),
    st.tuples(st.just("moves"), st.integers(1, 6), st.integers(-30, 30), st.integers(-30, 30),
              st.integers(1, 700)),
    st.tuples(st.just("click"), st.integers(0, 300), st.booleans()),
    st.tuples(st.just("wheel"),),
    st.tuples(st.just("focus"), st.sampled_from(["focus", "blur"])),
    st.tuples(st.just("tab"),),
    st.tuples(st.just("unreleased"),),
)
steps = st.lists(st.tuples(step, st.integers(1, 1200)), min_size=1, max_size=25)
#: Whether a session starts with a clean typed repetition of the 3-key phrase (a fixed_text window).
phrase = st.booleans()


def session_rows(plan: list, with_phrase: bool, start: float = 0.0, first_press: int = 1) -> list[dict[str, Any]]:
    """Event rows (without session/user/seq) of one generated session, starting at `start` ms."""
    rows: list[dict[str, Any]] = []
    t, press_id, x, y = start, first_press, 500.0, 400.0

    def key(down: float, dwell: float, key_class: str, **extra: Any) -> None:
        nonlocal press_id
        common = {"press_id": press_id, "key_class": key_class, **extra}
        rows.extend([{"t_ms": down, "type": "key_down", **common}, {"t_ms": down + dwell, "type": "key_up", **common}])
        press_id += 1

    if with_phrase:
        rows.append({"t_ms": t, "type": "field_enter", "field": "password"})
        for pos in range(SMALL.fixed_text_keys):
            key(t + 1 + 150 * pos, 90 + 10 * pos, "letter", field="password", pos=pos)
        t += 150 * SMALL.fixed_text_keys + 200
        rows.extend([{"t_ms": t, "type": "field_leave", "field": "password"}, {"t_ms": t + 1, "type": "submit"}])
        t += 2
    for (kind, *args), gap in plan:
        t += gap
        if kind == "key":
            key_class, dwell = args
            key(t, dwell, key_class, field="pad")
        elif kind == "moves":
            n, dx, dy, every = args
            for i in range(n):
                x, y = x + dx, y + dy
                rows.append({"t_ms": t + every * i, "type": "mouse_move", "x": x, "y": y})
            t += every * (n - 1)
        elif kind == "click":
            hold, drag = args
            rows.append({"t_ms": t, "type": "mouse_down", "x": x, "y": y, "button": "left"})
            if drag:
                x += 15
                rows.append({"t_ms": t + hold / 2, "type": "mouse_move", "x": x, "y": y})
            rows.append({"t_ms": t + hold, "type": "mouse_up", "x": x, "y": y, "button": "left"})
            t += hold
        elif kind == "wheel":
            rows.append({"t_ms": t, "type": "wheel", "x": x, "y": y})
        elif kind == "focus":
            rows.append({"t_ms": t, "type": args[0]})
        elif kind == "tab":
            key(t, 60, "tab", field="pad")
            rows.extend([{"t_ms": t + 1, "type": "field_leave", "field": "pad"},
                         {"t_ms": t + 2, "type": "field_enter", "field": "pad"}])
            t += 2
        else:  # a key_down whose key_up never came (the capture lost it)
            rows.append({"t_ms": t, "type": "key_down", "press_id": press_id, "key_class": "letter", "field": "pad"})
            press_id += 1
    return rows


def to_events(sessions: dict[str, list[dict[str, Any]]]) -> pl.DataFrame:
    """Canonical frame: rows of each session ordered by time (ties in generation order), seq numbered."""
    data = []
    for session_id, rows in sessions.items():
        ordered = sorted(enumerate(rows), key=lambda item: (item[1]["t_ms"], item[0]))
        data += [{"session_id": session_id, "user_id": f"u-{session_id}", "seq": seq, **row}
                 for seq, (_, row) in enumerate(ordered)]
    return conform(pl.DataFrame(data, infer_schema_length=None), source="simulator")


def assert_same_windows(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for kind in left:
        assert_frame_equal(left[kind], right[kind], check_exact=True)


def assert_same_features(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """Equal to 1e-12 relative. Not bit-exact: Polars evaluates an aggregate divided by a literal
    (`span / 1000`) by true division when a frame has one group and by a multiplication with the
    reciprocal when it has several, so the same window's typing_speed can differ in the last bit
    (0x1.9961b4ac7c73cp+1 alone vs ...73bp+1 beside another slot)."""
    assert_frame_equal(left, right, rel_tol=1e-12, abs_tol=1e-12)


@PROPERTY
@given(plans=st.lists(st.tuples(steps, phrase), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_row_order_of_the_input_does_not_matter(plans: list, seed: int) -> None:
    events = to_events({f"s{i}": session_rows(plan, with_phrase) for i, (plan, with_phrase) in enumerate(plans)})
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=seed)
    assert_same_windows(build_windows(events, settings=SMALL), build_windows(shuffled, settings=SMALL))
    assert_same_windows(build_windows(events, settings=SMALL), build_windows(shuffled.lazy(), settings=SMALL))


@PROPERTY
@given(plan=steps, with_phrase=phrase)
def test_every_press_has_a_non_negative_dwell_and_unreleased_keys_are_dropped(plan: list, with_phrase: bool) -> None:
    events = to_events({"s": session_rows(plan, with_phrase)})
    presses = key_presses(events.lazy()).collect()
    assert (presses["dwell"] >= 0).all()
    released = events.filter(pl.col("type") == "key_up")["press_id"]
    assert sorted(presses["press_id"].to_list()) == sorted(released.to_list())


@PROPERTY
@given(plans=st.lists(st.tuples(steps, phrase), min_size=1, max_size=3))
def test_windows_have_the_schema_and_only_finite_values(plans: list) -> None:
    events = to_events({f"s{i}": session_rows(plan, with_phrase) for i, (plan, with_phrase) in enumerate(plans)})
    windows = build_windows(events, settings=SMALL)
    assert tuple(windows) == WINDOW_KINDS
    for kind, frame in windows.items():
        names = feature_names(kind, SMALL)
        assert frame.columns == [*WINDOW_COLUMNS, *names]
        assert all(frame.schema[n] == pl.Float64 for n in names)
        assert frame.select(pl.col(names).is_finite().all()).row(0) == (True,) * len(names)
        assert frame.select(pl.col(WINDOW_COLUMNS).is_null().any()).row(0) == (False,) * len(WINDOW_COLUMNS)
        assert frame["window_id"].is_unique().all()
        assert (frame["kind"] == kind).all()
        assert (frame["end_ms"] >= frame["start_ms"]).all()


@PROPERTY
@given(mine=steps, with_phrase=phrase, others=steps)
def test_a_window_depends_only_on_its_own_session(mine: list, with_phrase: bool, others: list) -> None:
    """Sessions sorted before and after "m" must not shift its windows (ids, runs, flights)."""
    alone = build_windows(to_events({"m": session_rows(mine, with_phrase)}), settings=SMALL)
    together = build_windows(to_events({"a": session_rows(others, True), "m": session_rows(mine, with_phrase),
                                        "z": session_rows(others, False)}), settings=SMALL)
    for kind in WINDOW_KINDS:
        assert_same_features(together[kind].filter(pl.col("session_id") == "m"), alone[kind])


@PROPERTY
@given(before=steps, with_phrase=phrase, after=steps)
def test_appending_later_activity_leaves_earlier_windows_unchanged(before: list, with_phrase: bool,
                                                                   after: list) -> None:
    """Activity appended after a pause (a new mouse action, a new time slot) may complete a trailing
    free-text or mouse run into a new window; every window that existed keeps its features. The
    appended steps hold no form events, so the fixed-text window's session context is unchanged too."""
    rows = session_rows(before, with_phrase)
    last = max(row["t_ms"] for row in rows)
    width = SMALL.time_seconds * 1000
    start = max(last + ACTION_GAP_MS + 1, (math.floor(last / width) + 1) * width)
    appended = [((kind, *args), gap) for (kind, *args), gap in after if kind not in ("tab", "focus")]
    later = session_rows(appended, False, start=start, first_press=10_000)
    earlier = build_windows(to_events({"s": rows}), settings=SMALL)
    grown = build_windows(to_events({"s": rows + later}), settings=SMALL)
    for kind in WINDOW_KINDS:
        kept = grown[kind].filter(pl.col("window_id").is_in(earlier[kind]["window_id"].implode()))
        assert_same_features(kept, earlier[kind])
        assert grown[kind].height >= earlier[kind].height


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), users=st.integers(1, 2), free_text_keys=st.integers(0, 80))
def test_simulated_sessions_give_finite_windows_in_any_row_order(seed: int, users: int, free_text_keys: int) -> None:
    from simulators import simulate

    events = simulate(users, 1, seed=seed, attack_share=0.0, free_text_keys=free_text_keys).events
    windows = build_windows(events)
    assert windows["fixed_text"].height == users  # every simulated login types the phrase cleanly
    for kind, frame in windows.items():
        assert frame.select(pl.col(feature_names(kind)).is_finite().all()).row(0) == (True,) * len(feature_names(kind))
    assert_same_windows(windows, build_windows(events.reverse()))
