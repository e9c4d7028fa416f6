"""One session of each kind, composed from login and free-activity steps.

Page layout (CSS px on 1280 x 800): a login form with a username and a password box, then a page
with a free-typing pad. Every session starts its clock near 0 ms.
"""

from __future__ import annotations

import numpy as np

from simulators.events import FIELD, KEY, TYPE, SessionBuilder, SessionEvents
from simulators.keystroke import FIXED_PHRASE_CLASSES, free_text_classes, with_typos
from simulators.mouse import click, free_mouse_action, move_to, random_point
from simulators.population import Actor, User

USERNAME_BOX = (540.0, 300.0, 740.0, 330.0)
PASSWORD_BOX = (540.0, 360.0, 740.0, 390.0)
PAD_BOX = (240.0, 460.0, 1040.0, 740.0)
TAB_KEY = np.array([KEY["tab"]], dtype=np.int8)
#: Focus events follow the key or button press that caused them by this much (ms).
FOCUS_DELAY_MS = 0.5


def _start(rng: np.random.Generator) -> SessionBuilder:
    return SessionBuilder(start_ms=float(rng.uniform(0.0, 40.0)), cursor=random_point(rng))


def _type(
    events: SessionBuilder,
    actor: Actor,
    key_classes: np.ndarray,
    field: str,
    rng: np.random.Generator,
    *,
    speed: float,
    with_pos: bool = False,
    free_text: bool = False,
) -> np.ndarray:
    """Type a key-class sequence into `field` from the current clock; returns the key_down times (ms)."""
    if len(key_classes) == 0:
        return np.zeros(0)
    down, up = actor.typist.press_times(key_classes, rng, speed=speed, free_text=free_text)
    start = events.clock_ms
    events.add_keys(start + down, start + up, key_classes, FIELD[field], with_pos=with_pos)
    events.clock_ms = start + float(up.max())
    return start + down


def _focus(events: SessionBuilder, at_ms: float, leave: str | None, enter: str | None) -> None:
    kinds = [TYPE["field_leave"]] * (leave is not None) + [TYPE["field_enter"]] * (enter is not None)
    fields = [FIELD[f] for f in (leave, enter) if f is not None]
    events.add(at_ms + FOCUS_DELAY_MS * np.arange(1, len(kinds) + 1), np.array(kinds), field=np.array(fields))


def log_in(
    events: SessionBuilder,
    actor: Actor,
    username_classes: np.ndarray,
    rng: np.random.Generator,
    *,
    speed: float,
) -> None:
    """Click the username box, type the username, go to the password box by Tab or mouse, type the
    fixed phrase (with `pos`) ending in Enter, which submits."""
    move_to(events, actor.pointer, random_point(rng, USERNAME_BOX), rng)
    _focus(events, click(events, actor.pointer, rng), leave=None, enter="username")
    events.clock_ms += actor.pause_ms(rng)
    typed = with_typos(username_classes, actor.typist.typo_rate / 2, rng)
    _type(events, actor, typed, "username", rng, speed=speed)
    events.clock_ms += actor.pause_ms(rng)
    if rng.random() < actor.tab_preference:
        tab_down = _type(events, actor, TAB_KEY, "username", rng, speed=speed)[0]
        _focus(events, tab_down, leave="username", enter="password")
    else:
        move_to(events, actor.pointer, random_point(rng, PASSWORD_BOX), rng)
        _focus(events, click(events, actor.pointer, rng), leave="username", enter="password")
    events.clock_ms += actor.pause_ms(rng)
    enter_down = _type(events, actor, FIXED_PHRASE_CLASSES, "password", rng, speed=speed, with_pos=True)[-1]
    _focus(events, enter_down, leave="password", enter=None)
    events.add(enter_down + 2 * FOCUS_DELAY_MS, TYPE["submit"])


def free_activity(
    events: SessionBuilder,
    actor: Actor,
    rng: np.random.Generator,
    *,
    keys: int,
    mouse_actions: int,
    speed: float,
) -> None:
    """Some mouse actions, then click into the pad and type `keys` keystrokes of prose (plus typo
    corrections), then the remaining mouse actions."""
    actions_before = mouse_actions // 2
    for _ in range(actions_before):
        free_mouse_action(events, actor.pointer, rng)
        events.clock_ms += actor.pause_ms(rng)
    if keys > 0:
        move_to(events, actor.pointer, random_point(rng, PAD_BOX), rng)
        _focus(events, click(events, actor.pointer, rng), leave=None, enter="pad")
        events.clock_ms += actor.pause_ms(rng)
        typed = with_typos(free_text_classes(keys, rng), actor.typist.typo_rate, rng)
        _type(events, actor, typed, "pad", rng, speed=speed, free_text=True)
        events.clock_ms += actor.pause_ms(rng)
        _focus(events, events.clock_ms, leave="pad", enter=None)
    for _ in range(mouse_actions - actions_before):
        events.clock_ms += actor.pause_ms(rng)
        free_mouse_action(events, actor.pointer, rng)


def _page_load_ms(rng: np.random.Generator) -> float:
    return float(rng.uniform(300.0, 1500.0))


def _mouse_actions(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 8))


def ordinary_session(
    account: User, actor: Actor, rng: np.random.Generator, *, speed: float, free_text_keys: int
) -> SessionEvents:
    """Log in to `account` and use the page; genuine when `actor` is the account holder, otherwise
    an impostor or a bot who knows the credentials."""
    events = _start(rng)
    log_in(events, actor, account.username_classes, rng, speed=speed)
    events.clock_ms += _page_load_ms(rng)
    free_activity(events, actor, rng, keys=free_text_keys, mouse_actions=_mouse_actions(rng), speed=speed)
    return events.finish()


def hijacked_session(
    account: User,
    hijacker: Actor,
    rng: np.random.Generator,
    *,
    speed: float,
    hijacker_speed: float,
    free_text_keys: int,
) -> SessionEvents:
    """The account holder logs in and starts working; half-way through the free activity another
    person takes over (their events are marked `foreign`)."""
    events = _start(rng)
    log_in(events, account.actor, account.username_classes, rng, speed=speed)
    events.clock_ms += _page_load_ms(rng)
    actions = _mouse_actions(rng)
    free_activity(events, account.actor, rng, keys=free_text_keys // 2, mouse_actions=actions // 2, speed=speed)
    events.clock_ms += hijacker.pause_ms(rng)
    events.foreign = True
    free_activity(
        events,
        hijacker,
        rng,
        keys=free_text_keys - free_text_keys // 2,
        mouse_actions=actions - actions // 2,
        speed=hijacker_speed,
    )
    return events.finish()


def fixed_phrase_window(session: SessionEvents) -> SessionEvents:
    """The password field's events (focus, the keystrokes with `pos`, leave) and the submit."""
    columns = session.columns
    return session.select((columns["field"] == FIELD["password"]) | (columns["type"] == TYPE["submit"]))


def replayed_session(original: SessionEvents, rng: np.random.Generator) -> SessionEvents:
    """A replay attack: the original's fixed-phrase window with identical relative timings, moved to
    a new time origin near 0 ms, with fresh press ids."""
    window = fixed_phrase_window(original)
    events = _start(rng)
    shift_ms = round(events.clock_ms - float(window.columns["t_ms"][0]), 3)
    events.add_recorded(window, shift_ms)
    return events.finish()
