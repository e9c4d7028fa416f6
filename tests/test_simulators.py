"""Contract and realism checks for the seeded simulators (small sizes, no sleeps)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from simulators import EPOCH, LABELS, Simulation, live_batches, simulate, system_load
from store.schema import BUTTONS, EVENT_SCHEMA, EVENT_TYPES, KEY_CLASSES

USERS, SESSIONS, SEED = 6, 4, 11


@pytest.fixture(scope="module")
def sim() -> Simulation:
    # 6 * 4 * 0.5 = 12 attacks: three of each kind.
    return simulate(users=USERS, sessions=SESSIONS, seed=SEED, attack_share=0.5, free_text_keys=40)


def key_presses(events: pl.DataFrame) -> pl.DataFrame:
    """One row per press: t_down, t_up, dwell_ms (from the key_down/key_up pair)."""
    downs = events.filter(pl.col("type") == "key_down").select(
        "session_id", "user_id", "press_id", "key_class", "field", "pos", t_down="t_ms"
    )
    ups = events.filter(pl.col("type") == "key_up").select("session_id", "press_id", t_up="t_ms")
    return downs.join(ups, on=["session_id", "press_id"], how="left").with_columns(
        dwell_ms=pl.col("t_up") - pl.col("t_down")
    )


def password_window(events: pl.DataFrame, session_id: str) -> pl.DataFrame:
    """The fixed-phrase window of a session, with times relative to its first event."""
    window = events.filter(
        (pl.col("session_id") == session_id) & ((pl.col("field") == "password") | (pl.col("type") == "submit"))
    )
    return window.with_columns(pl.col("t_ms") - pl.col("t_ms").first()).select("t_ms", "type", "key_class", "pos")


def session_ids_labelled(sim: Simulation, label: str) -> list[str]:
    return sim.labels.filter(pl.col("label") == label)["session_id"].to_list()


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames_and_csv(sim: Simulation) -> None:
    again = simulate(users=USERS, sessions=SESSIONS, seed=SEED, attack_share=0.5, free_text_keys=40)
    assert again.events.equals(sim.events)
    assert again.sessions.equals(sim.sessions)
    assert again.labels.equals(sim.labels)
    assert again.events.write_csv() == sim.events.write_csv()


def test_different_seed_gives_different_data(sim: Simulation) -> None:
    other = simulate(users=USERS, sessions=SESSIONS, seed=SEED + 1, attack_share=0.5, free_text_keys=40)
    assert not other.events.drop("session_id").equals(sim.events.drop("session_id"))
    assert other.events["session_id"][0] == f"s-{SEED + 1}-000001"


def test_users_keep_their_habits_when_the_population_grows() -> None:
    small = simulate(users=2, sessions=2, seed=5, attack_share=0)
    large = simulate(users=4, sessions=2, seed=5, attack_share=0)
    small_dwell = key_presses(small.events).group_by("user_id").agg(pl.col("dwell_ms").mean()).sort("user_id")
    large_dwell = key_presses(large.events).group_by("user_id").agg(pl.col("dwell_ms").mean()).sort("user_id")
    assert small_dwell.equals(large_dwell.head(2))


# --- schema and allowed values -----------------------------------------------------------------


def test_events_are_canonical_and_sorted(sim: Simulation) -> None:
    events = sim.events
    assert events.schema == pl.Schema(EVENT_SCHEMA)
    assert events.equals(events.sort("session_id", "seq"))
    assert set(events["source"].unique()) == {"simulator"}
    assert set(events["type"].unique()) <= set(EVENT_TYPES)
    assert set(events["key_class"].drop_nulls().unique()) <= set(KEY_CLASSES)
    assert set(events["button"].drop_nulls().unique()) <= set(BUTTONS)
    assert events.select(pl.col("session_id", "user_id", "seq", "t_ms", "type").null_count()).sum_horizontal()[0] == 0


def test_columns_are_set_exactly_where_they_mean_something(sim: Simulation) -> None:
    events = sim.events
    is_key = pl.col("type").is_in(["key_down", "key_up"])
    is_mouse = pl.col("type").is_in(["mouse_move", "mouse_down", "mouse_up", "wheel"])
    is_field_event = pl.col("type").is_in(["field_enter", "field_leave"])
    assert events.filter(is_key & (pl.col("key_class").is_null() | pl.col("press_id").is_null())).height == 0
    assert events.filter(~is_key & (pl.col("key_class").is_not_null() | pl.col("press_id").is_not_null())).height == 0
    assert events.filter((is_key | is_field_event) & pl.col("field").is_null()).height == 0
    assert events.filter(~(is_key | is_field_event) & pl.col("field").is_not_null()).height == 0
    mouse = events.filter(is_mouse)
    assert mouse["x"].null_count() == 0
    assert mouse["y"].null_count() == 0
    assert mouse["x"].min() >= 0
    assert mouse["x"].max() < 1280
    assert mouse["y"].min() >= 0
    assert mouse["y"].max() < 800
    assert events.filter(~is_mouse & (pl.col("x").is_not_null() | pl.col("button").is_not_null())).height == 0
    assert events.filter(pl.col("type").is_in(["mouse_down", "mouse_up"]) & pl.col("button").is_null()).height == 0
    assert set(events.filter(pl.col("pos").is_not_null())["field"].unique()) == {"password"}


def test_sessions_and_labels_describe_every_session(sim: Simulation) -> None:
    assert sim.sessions.schema == pl.Schema(
        {"session_id": pl.String(), "user_id": pl.String(), "started_at": pl.Datetime("us")}
    )
    assert sim.labels.schema == pl.Schema(
        {
            "session_id": pl.String(),
            "label": pl.String(),
            "actor_id": pl.String(),
            "takeover_ms": pl.Float64(),
        }
    )
    assert sim.sessions["session_id"].to_list() == sim.labels["session_id"].to_list()
    assert sim.sessions["session_id"].to_list() == sorted(sim.events["session_id"].unique().to_list())
    assert sim.sessions["session_id"][0] == f"s-{SEED}-000001"
    assert set(sim.labels["label"].unique()) <= set(LABELS)
    assert set(sim.sessions["user_id"].unique()) <= {f"u{i:03d}" for i in range(1, USERS + 1)}
    claimed = sim.events.group_by("session_id").agg(pl.col("user_id").unique())
    assert claimed["user_id"].list.len().max() == 1
    started = sim.sessions["started_at"]
    assert started.min() >= EPOCH
    assert started.max() < EPOCH + timedelta(days=SESSIONS + 2)
    assert started.is_sorted()


def test_fixed_phrase_has_twelve_positioned_keystrokes_with_shift_around_r(sim: Simulation) -> None:
    phrase = key_presses(sim.events).filter(pl.col("field") == "password").sort("session_id", "pos")
    per_session = phrase.group_by("session_id").agg("pos", "key_class", "t_down", "t_up")
    expected = [
        "punct",
        "letter",
        "letter",
        "letter",
        "digit",
        "shift",
        "letter",
        "letter",
        "letter",
        "letter",
        "letter",
        "enter",
    ]
    assert all(row == list(range(12)) for row in per_session["pos"].to_list())
    assert all(row == expected for row in per_session["key_class"].to_list())
    for downs, ups in zip(per_session["t_down"].to_list(), per_session["t_up"].to_list(), strict=True):
        assert downs[5] < downs[6] < ups[5]  # Shift is down before the R and released after it went down


# --- key pairing and ordering ------------------------------------------------------------------


def test_every_key_down_has_one_key_up_with_nonnegative_dwell(sim: Simulation) -> None:
    keys = sim.events.filter(pl.col("type").is_in(["key_down", "key_up"]))
    counts = keys.group_by("session_id", "press_id").agg(pl.col("type").sort(), pl.col("key_class").n_unique())
    assert counts["type"].to_list() == [["key_down", "key_up"]] * counts.height
    assert counts["key_class"].max() == 1
    presses = key_presses(sim.events)
    assert presses["dwell_ms"].null_count() == 0
    assert presses["dwell_ms"].min() >= 0
    ids = presses.group_by("session_id").agg(
        pl.col("press_id").min().alias("low"), pl.col("press_id").max().alias("high"), pl.len()
    )
    assert (ids["low"] == 1).all()
    assert (ids["high"] == ids["len"]).all()


def test_time_is_non_decreasing_and_seq_contiguous(sim: Simulation) -> None:
    per_session = sim.events.group_by("session_id").agg(
        pl.col("t_ms").diff().min().alias("smallest_step"),
        (pl.col("seq") == pl.int_range(pl.len())).all().alias("contiguous"),
        pl.col("t_ms").first().alias("first_t"),
    )
    assert per_session["smallest_step"].min() >= 0
    assert per_session["contiguous"].all()
    assert per_session["first_t"].min() >= 0
    assert per_session["first_t"].max() < 250


# --- ground truth ------------------------------------------------------------------------------


def test_label_counts_follow_attack_share(sim: Simulation) -> None:
    counts = dict(sim.labels.group_by("label").len().iter_rows())
    assert counts == {"genuine": USERS * SESSIONS, "impostor": 3, "bot": 3, "replay": 3, "hijack": 3}
    none = simulate(users=3, sessions=2, seed=1, attack_share=0.0, free_text_keys=5)
    assert none.labels["label"].unique().to_list() == ["genuine"]
    rounded = simulate(users=3, sessions=3, seed=1, attack_share=0.1, free_text_keys=5)
    assert rounded.labels.filter(pl.col("label") != "genuine").height == round(0.1 * 3 * 3)


def test_actors_match_labels(sim: Simulation) -> None:
    truth = sim.labels.join(sim.sessions, on="session_id")
    genuine = truth.filter(pl.col("label") == "genuine")
    assert (genuine["actor_id"] == genuine["user_id"]).all()
    humans_attacking = truth.filter(pl.col("label").is_in(["impostor", "hijack"]))
    assert (humans_attacking["actor_id"] != humans_attacking["user_id"]).all()
    assert humans_attacking["actor_id"].str.starts_with("u").all()
    assert set(truth.filter(pl.col("label") == "bot")["actor_id"]) == {"bot-constant", "bot-uniform"}


def test_replay_copies_an_earlier_genuine_fixed_phrase_window_exactly(sim: Simulation) -> None:
    truth = sim.labels.join(sim.sessions, on="session_id")
    for replay in truth.filter(pl.col("label") == "replay").iter_rows(named=True):
        copied = password_window(sim.events, replay["session_id"])
        candidates = truth.filter(
            (pl.col("label") == "genuine")
            & (pl.col("user_id") == replay["user_id"])
            & (pl.col("started_at") < replay["started_at"])
        )
        matches = [
            sid
            for sid in candidates["session_id"]
            if (original := password_window(sim.events, sid)).height == copied.height
            and original.drop("t_ms").equals(copied.drop("t_ms"))
            and np.allclose(original["t_ms"].to_numpy(), copied["t_ms"].to_numpy(), rtol=0, atol=1e-6)
        ]
        assert len(matches) == 1, replay["session_id"]
        replay_events = sim.events.filter(pl.col("session_id") == replay["session_id"])
        assert replay_events["t_ms"].min() < 100  # new origin


def test_hijack_takeover_is_inside_the_session(sim: Simulation) -> None:
    assert sim.labels.filter(pl.col("label") != "hijack")["takeover_ms"].null_count() == sim.labels.height - 3
    for hijack in sim.labels.filter(pl.col("label") == "hijack").iter_rows(named=True):
        times = sim.events.filter(pl.col("session_id") == hijack["session_id"])["t_ms"]
        takeover = hijack["takeover_ms"]
        assert times.min() < takeover < times.max()
        assert (times == takeover).any()
        assert (times < takeover).sum() > 0.2 * len(times)  # the owner worked before the takeover


def test_constant_bot_has_constant_timings_and_straight_paths(sim: Simulation) -> None:
    truth = sim.labels.filter(pl.col("actor_id") == "bot-constant")
    assert truth.height > 0
    bot_events = sim.events.filter(pl.col("session_id").is_in(truth["session_id"].implode()))
    dwell = key_presses(bot_events).filter(pl.col("key_class") != "shift")["dwell_ms"]
    assert dwell.std() < 0.01
    assert abs(dwell.mean() - 10) < 0.01
    moves = bot_events.filter(pl.col("type") == "mouse_move").with_columns(
        step=((pl.col("x").diff() ** 2 + pl.col("y").diff() ** 2).sqrt()).over("session_id"),
        gap=pl.col("t_ms").diff().over("session_id"),
    )
    assert moves.filter(pl.col("gap").round(2) == 10)["step"].median() == pytest.approx(20, abs=0.1)


def test_uniform_bot_timings_are_spread_not_human(sim: Simulation) -> None:
    truth = sim.labels.filter(pl.col("actor_id") == "bot-uniform")
    presses = key_presses(sim.events.filter(pl.col("session_id").is_in(truth["session_id"].implode())))
    dwell = presses.filter(pl.col("key_class") != "shift")["dwell_ms"]
    assert dwell.min() >= 5
    assert dwell.max() <= 150
    assert dwell.std() > 25


def test_users_dwell_habits_are_stable_and_individual() -> None:
    users = 10
    stable = simulate(users=users, sessions=6, seed=2, attack_share=0, free_text_keys=60)
    presses = key_presses(stable.events).join(stable.sessions, on="session_id").filter(pl.col("key_class") != "shift")
    session_means = presses.group_by("user_id", "session_id", "started_at").agg(pl.col("dwell_ms").mean())
    ranked = session_means.sort("started_at").with_columns(late=pl.int_range(pl.len()).over("user_id") >= 3)
    halves = ranked.group_by("user_id", "late").agg(pl.col("dwell_ms").mean()).sort("user_id")
    early = halves.filter(~pl.col("late"))["dwell_ms"].to_numpy()
    late = halves.filter(pl.col("late"))["dwell_ms"].to_numpy()
    distances = np.abs(late[:, None] - early[None, :])  # [user's late sessions, every user's early sessions]
    own = np.diag(distances)
    closer_than_own = (distances < own[:, None]).sum(axis=1)
    assert (closer_than_own < (users - 1) / 2).mean() >= 0.9  # most other users are farther than oneself


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"users": 0, "sessions": 1, "seed": 1}, "users >= 1"),
        ({"users": 2, "sessions": -1, "seed": 1}, "sessions >= 0"),
        ({"users": 2, "sessions": 1, "seed": -3}, "seed >= 0"),
        ({"users": 2, "sessions": 1, "seed": 1, "attack_share": -0.1}, "attack_share"),
        ({"users": 1, "sessions": 5, "seed": 1, "attack_share": 0.5}, "another user"),
    ],
)
def test_impossible_arguments_are_refused(arguments: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        simulate(**arguments)


# --- system load -------------------------------------------------------------------------------


def test_system_load_shape_ranges_and_bursts() -> None:
    load = system_load(900, seed=3)
    assert load.schema == pl.Schema({"at": pl.Datetime("us"), "cpu_percent": pl.Float64(), "mem_percent": pl.Float64()})
    assert load.height == 900
    assert load["at"][0] == EPOCH
    assert (load["at"].diff().drop_nulls() == timedelta(seconds=1)).all()
    for column in ("cpu_percent", "mem_percent"):
        assert load[column].min() >= 0
        assert load[column].max() <= 100
    cpu = load["cpu_percent"]
    assert cpu.max() - cpu.median() > 25  # bursts stand out of the base load
    assert (cpu > cpu.median() + 25).mean() < 0.5
    assert load["mem_percent"].diff().abs().max() < 1  # memory varies slowly (percentage points per second)
    assert load.equals(system_load(900, seed=3))
    assert not load.equals(system_load(900, seed=4))
    assert system_load(3, seed=3, start=datetime(2026, 2, 1))["at"][2] == datetime(2026, 2, 1, 0, 0, 2)
    assert system_load(0, seed=3).height == 0


# --- live replay -------------------------------------------------------------------------------


def test_live_batches_send_every_event_once_in_time_order(sim: Simulation) -> None:
    events = sim.events.filter(pl.col("user_id").is_in(["u001", "u002"]))
    batches = list(live_batches(events, speed=1.0, batch_ms=500.0))
    offsets = [offset for offset, _ in batches]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    sent = pl.concat([batch for _, batch in batches])
    assert sent.schema == events.schema
    assert sent.sort("session_id", "seq").equals(events.sort("session_id", "seq"))
    for offset, batch in batches:
        happened_s = (
            batch["t_ms"]
            - batch.join(events.group_by("session_id").agg(origin=pl.col("t_ms").min()), on="session_id")["origin"]
        ) / 1000
        assert happened_s.max() < offset
        assert happened_s.min() >= offset - 0.5 - 1e-9
    longest_s = events.group_by("session_id").agg(pl.col("t_ms").max() - pl.col("t_ms").min())["t_ms"].max() / 1000
    assert offsets[-1] == pytest.approx(longest_s, abs=0.5)


def test_live_batches_scale_with_speed(sim: Simulation) -> None:
    events = sim.events.filter(pl.col("user_id") == "u003")
    normal = list(live_batches(events, speed=1.0, batch_ms=1000.0))
    double = list(live_batches(events, speed=2.0, batch_ms=500.0))
    assert [offset / 2 for offset, _ in normal] == pytest.approx([offset for offset, _ in double])
    assert all(a.equals(b) for (_, a), (_, b) in zip(normal, double, strict=True))
    faster = list(live_batches(events, speed=4.0, batch_ms=1000.0))
    assert faster[-1][0] == pytest.approx(normal[-1][0] / 4, abs=1.0)


def test_live_batches_refuse_bad_pacing_and_accept_empty_frames(sim: Simulation) -> None:
    with pytest.raises(ValueError, match="speed=0"):
        live_batches(sim.events, speed=0)
    with pytest.raises(ValueError, match="batch_ms=-1"):
        live_batches(sim.events, batch_ms=-1)
    assert list(live_batches(sim.events.head(0))) == []
