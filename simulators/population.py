"""Who acts in a simulation: users with stable, individual habits, and scripted bots.

An `Actor` bundles a typist, a pointer and a few navigation habits. A `User` is an actor plus the
account it owns (the key classes of its username) and how its typing speed drifts from one
session to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.keystroke import (
    DIGIT,
    LETTER,
    PUNCT,
    ConstantBotTypist,
    HumanTypist,
    Typist,
    UniformBotTypist,
)
from simulators.mouse import HumanPointer, LinearBotPointer, Pointer, TeleportBotPointer

# Independent random streams under one seed (numpy SeedSequence spawn keys).
USERS_STREAM, PLAN_STREAM, SESSIONS_STREAM = 0, 1, 2


def child_rng(seed: int, *path: int) -> np.random.Generator:
    """A generator for one part of the simulation, independent of how many other parts exist."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=path))


@dataclass(frozen=True)
class Actor:
    """Whoever really produces a session's events."""

    actor_id: str
    typist: Typist
    pointer: Pointer
    tab_preference: float  # probability of reaching the password field by Tab rather than the mouse
    pause_median_ms: float  # between steps (reading, deciding)
    pause_sigma: float

    def pause_ms(self, rng: np.random.Generator) -> float:
        return self.pause_median_ms * float(np.exp(self.pause_sigma * rng.standard_normal()))


@dataclass(frozen=True, eq=False)
class User:
    """An account holder: their habits, their username's key classes, their speed per session."""

    actor: Actor
    username_classes: np.ndarray
    speed_by_session: np.ndarray  # multiplier of flight times in their k-th session (< 1 is faster)

    @property
    def user_id(self) -> str:
        return self.actor.actor_id


def user_id(index: int, users: int) -> str:
    """'u001'.. for up to 999 users, wider ids beyond."""
    return f"u{index + 1:0{max(3, len(str(users)))}d}"


def _username_classes(rng: np.random.Generator) -> np.ndarray:
    length = int(rng.integers(5, 11))
    classes = np.full(length, LETTER, dtype=np.int8)
    if rng.random() < 0.4:
        classes[length - int(rng.integers(1, 4)) :] = DIGIT
    if rng.random() < 0.1:
        classes[int(rng.integers(1, length - 1))] = PUNCT
    return classes


def _speed_drift(sessions: int, rng: np.random.Generator) -> np.ndarray:
    """Slow session-to-session drift: an AR(1) walk of a few % per session plus a practice effect."""
    steps = rng.normal(0.0, 0.03, max(sessions, 1))
    log_speed = np.empty_like(steps)
    level = 0.0
    for k, step in enumerate(steps):  # one value per session, not per event
        level = 0.85 * level + step
        log_speed[k] = level
    practice = -rng.uniform(0.05, 0.15) * (1.0 - np.exp(-np.arange(len(steps)) / 12.0))
    return np.exp(log_speed + practice)


def make_user(index: int, users: int, sessions: int, seed: int) -> User:
    """User number `index` (0-based); the same seed gives the same person whatever the population size."""
    rng = child_rng(seed, USERS_STREAM, index)
    actor = Actor(
        actor_id=user_id(index, users),
        typist=HumanTypist.sample(rng),
        pointer=HumanPointer.sample(rng),
        tab_preference=float(rng.beta(0.6, 0.6)),
        pause_median_ms=float(rng.uniform(250.0, 700.0)),
        pause_sigma=float(rng.uniform(0.25, 0.45)),
    )
    return User(actor=actor, username_classes=_username_classes(rng), speed_by_session=_speed_drift(sessions, rng))


def make_population(users: int, sessions: int, seed: int) -> list[User]:
    return [make_user(index, users, sessions, seed) for index in range(users)]


#: Scripted attackers: constant 10 ms timings with straight constant-speed mouse paths, and uniformly
#: random timings with a teleporting cursor.
BOTS: tuple[Actor, ...] = (
    Actor(
        "bot-constant",
        ConstantBotTypist(),
        LinearBotPointer(),
        tab_preference=1.0,
        pause_median_ms=10.0,
        pause_sigma=0.0,
    ),
    Actor(
        "bot-uniform",
        UniformBotTypist(),
        TeleportBotPointer(),
        tab_preference=0.0,
        pause_median_ms=100.0,
        pause_sigma=0.8,
    ),
)
