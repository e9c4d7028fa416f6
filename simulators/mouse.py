"""Pointer models (a human with stable habits, two kinds of bot) and the mouse actions they perform.

Human movements follow the minimum-jerk profile x(t) = x0 + (x1 - x0)(10τ³ - 15τ⁴ + 6τ⁵), τ = t/T,
bowed sideways by a per-user curvature, sometimes overshooting the target and correcting, with
sensor jitter and a sampling interval of 8-16 ms. Positions are CSS pixels on a 1280 x 800 screen;
times are milliseconds.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

import numpy as np

from simulators.events import BUTTON, NO_CODE, TYPE, SessionBuilder

SCREEN_WIDTH_PX = 1280.0
SCREEN_HEIGHT_PX = 800.0
#: Where free targets are drawn: the screen less a 20 px margin (left, top, right, bottom).
SCREEN_INNER_BOX = (20.0, 20.0, SCREEN_WIDTH_PX - 20.0, SCREEN_HEIGHT_PX - 20.0)
#: Kinds of free mouse action, in the order of `Pointer.action_weights`.
ACTIONS = ("click", "drag", "wheel", "hover")
Point = tuple[float, float]  # CSS px


class Pointer(Protocol):
    """Anything that can move a cursor and press buttons."""

    action_weights: tuple[float, ...]  # probabilities of ACTIONS

    def path(self, start: Point, end: Point, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples (t ms after the movement starts, x px, y px); the last sample is the resting point."""
        ...

    def aim_pause_ms(self, rng: np.random.Generator) -> float:
        """Pause between arriving on a target and pressing the button."""
        ...

    def click_dwell_ms(self, rng: np.random.Generator) -> float:
        """Time a button is held in a click."""
        ...

    def wheel_intervals_ms(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Gaps between consecutive wheel ticks."""
        ...


def _minimum_jerk(
    start: Point,
    end: Point,
    duration_ms: float,
    bow: float,
    sample_ms: float,
    jitter_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bowed minimum-jerk stroke sampled at irregular intervals around `sample_ms`.

    `bow` is the sideways offset at mid-stroke as a fraction of the distance (sign = side)."""
    t = (sample_ms * rng.uniform(0.85, 1.15, int(duration_ms / (0.85 * sample_ms)) + 2)).cumsum()
    inside = int(t.searchsorted(duration_ms))  # samples before the end; the draw always reaches past it
    t = t[: inside + 1]
    t[inside] = duration_ms
    tau = t / duration_ms
    progress = tau * tau * tau * (10.0 + tau * (-15.0 + 6.0 * tau))
    dx, dy = end[0] - start[0], end[1] - start[1]
    sideways = 4.0 * bow * progress * (1.0 - progress)  # times (-dy, dx): the normal scaled by the distance
    noise = rng.normal(0.0, jitter_px, (2, inside + 1))
    x = start[0] + dx * progress - dy * sideways + noise[0]
    y = start[1] + dy * progress + dx * sideways + noise[1]
    return t, x, y


@dataclass(frozen=True)
class HumanPointer:
    """One person's mouse habits."""

    peak_speed_px_per_ms: float
    duration_sigma: float  # log-normal spread of movement durations
    curvature_bias: float  # signed sideways bow, as a fraction of the distance
    curvature_sd: float
    overshoot_rate: float
    overshoot_fraction: float  # overshoot distance / movement distance
    jitter_px: float
    sample_ms: float
    click_dwell_mu: float  # log ms
    aim_pause_mu: float  # log ms
    wheel_interval_mu: float  # log ms
    action_weights: tuple[float, ...]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> HumanPointer:
        """Draw a plausible person: peak speed 0.9-2.6 px/ms, click dwell 70-150 ms."""
        return cls(
            peak_speed_px_per_ms=float(rng.uniform(0.9, 2.6)),
            duration_sigma=float(rng.uniform(0.08, 0.18)),
            curvature_bias=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.15)),
            curvature_sd=float(rng.uniform(0.02, 0.06)),
            overshoot_rate=float(rng.uniform(0.05, 0.5)),
            overshoot_fraction=float(rng.uniform(0.03, 0.10)),
            jitter_px=float(rng.uniform(0.2, 1.5)),
            sample_ms=float(rng.uniform(8.0, 16.0)),
            click_dwell_mu=float(np.log(rng.uniform(70.0, 150.0))),
            aim_pause_mu=float(np.log(rng.uniform(60.0, 250.0))),
            wheel_interval_mu=float(np.log(rng.uniform(25.0, 90.0))),
            action_weights=tuple(float(w) for w in rng.dirichlet([4.0, 1.2, 2.0, 1.5])),
        )

    def _duration_ms(self, distance_px: float, rng: np.random.Generator) -> float:
        # A minimum-jerk stroke peaks at 1.875 x its mean speed.
        spread = math.exp(self.duration_sigma * float(rng.standard_normal()))
        return max(120.0, 1.875 * distance_px / self.peak_speed_px_per_ms) * spread

    def path(self, start: Point, end: Point, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        distance = math.hypot(end[0] - start[0], end[1] - start[1])
        if distance < 1.0:
            return np.array([self.sample_ms]), np.array([end[0]]), np.array([end[1]])
        bow = self.curvature_bias + self.curvature_sd * float(rng.standard_normal())
        duration_ms = self._duration_ms(distance, rng)
        if distance < 60.0 or rng.random() >= self.overshoot_rate:
            return _minimum_jerk(start, end, duration_ms, bow, self.sample_ms, self.jitter_px, rng)
        past = self.overshoot_fraction * rng.uniform(0.6, 1.4)
        wobble = rng.normal(0.0, 0.01 * distance, 2)
        beyond = (
            end[0] + (end[0] - start[0]) * past + float(wobble[0]),
            end[1] + (end[1] - start[1]) * past + float(wobble[1]),
        )
        t1, x1, y1 = _minimum_jerk(start, beyond, duration_ms, bow, self.sample_ms, self.jitter_px, rng)
        correction_px = max(math.hypot(end[0] - beyond[0], end[1] - beyond[1]), 1.0)
        correction_ms = max(80.0, 1.875 * correction_px / (0.4 * self.peak_speed_px_per_ms))
        t2, x2, y2 = _minimum_jerk(beyond, end, correction_ms, 0.0, self.sample_ms, self.jitter_px, rng)
        settle_ms = rng.uniform(20.0, 60.0)
        return (
            np.concatenate([t1, t1[-1] + settle_ms + t2]),
            np.concatenate([x1, x2]),
            np.concatenate([y1, y2]),
        )

    def aim_pause_ms(self, rng: np.random.Generator) -> float:
        return float(np.exp(self.aim_pause_mu + 0.4 * rng.standard_normal()))

    def click_dwell_ms(self, rng: np.random.Generator) -> float:
        return float(np.exp(self.click_dwell_mu + 0.2 * rng.standard_normal()))

    def wheel_intervals_ms(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.exp(self.wheel_interval_mu + 0.3 * rng.standard_normal(n))


@dataclass(frozen=True)
class LinearBotPointer:
    """A script moving in straight lines at constant speed, sampled every `sample_ms` exactly."""

    speed_px_per_ms: float = 2.0
    sample_ms: float = 10.0
    action_weights: tuple[float, ...] = (0.6, 0.1, 0.2, 0.1)

    def path(self, start: Point, end: Point, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        distance = math.hypot(end[0] - start[0], end[1] - start[1])
        steps = max(1, math.ceil(distance / (self.speed_px_per_ms * self.sample_ms)))
        t = self.sample_ms * np.arange(1, steps + 1)
        progress = np.minimum(t * self.speed_px_per_ms / max(distance, 1e-9), 1.0)
        return t, start[0] + (end[0] - start[0]) * progress, start[1] + (end[1] - start[1]) * progress

    def aim_pause_ms(self, rng: np.random.Generator) -> float:
        return self.sample_ms

    def click_dwell_ms(self, rng: np.random.Generator) -> float:
        return self.sample_ms

    def wheel_intervals_ms(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.sample_ms)


@dataclass(frozen=True)
class TeleportBotPointer:
    """A script that sets the cursor position directly: one sample at the target, random waits."""

    wait_range_ms: tuple[float, float] = (1.0, 120.0)
    action_weights: tuple[float, ...] = (0.6, 0.1, 0.2, 0.1)

    def path(self, start: Point, end: Point, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array([rng.uniform(*self.wait_range_ms)]), np.array([end[0]]), np.array([end[1]])

    def aim_pause_ms(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.wait_range_ms))

    def click_dwell_ms(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.wait_range_ms))

    def wheel_intervals_ms(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(*self.wait_range_ms, n)


def random_point(rng: np.random.Generator, box: tuple[float, float, float, float] = SCREEN_INNER_BOX) -> Point:
    """A uniformly drawn target inside `box` (left, top, right, bottom; px)."""
    left, top, right, bottom = box
    u = rng.random(2)
    return left + (right - left) * float(u[0]), top + (bottom - top) * float(u[1])


def move_to(
    events: SessionBuilder,
    pointer: Pointer,
    target: Point,
    rng: np.random.Generator,
    *,
    button: int = NO_CODE,
) -> None:
    """Emit mouse_move samples from the cursor to `target` and advance clock and cursor."""
    t, x, y = pointer.path(events.cursor, target, rng)
    x = x.clip(0.0, SCREEN_WIDTH_PX - 1.0)
    y = y.clip(0.0, SCREEN_HEIGHT_PX - 1.0)
    events.add(events.clock_ms + t, TYPE["mouse_move"], x=x, y=y, button=button)
    events.clock_ms += float(t[-1])
    events.cursor = (float(x[-1]), float(y[-1]))


def press(events: SessionBuilder, pointer: Pointer, rng: np.random.Generator, *, button: int) -> float:
    """Emit a mouse_down after the aiming pause; returns its time (ms)."""
    t_down = events.clock_ms + pointer.aim_pause_ms(rng)
    events.add(t_down, TYPE["mouse_down"], x=events.cursor[0], y=events.cursor[1], button=button)
    events.clock_ms = t_down
    return t_down


def release(events: SessionBuilder, pointer: Pointer, rng: np.random.Generator, *, button: int) -> None:
    """Emit a mouse_up one click dwell after the clock."""
    events.clock_ms += pointer.click_dwell_ms(rng)
    events.add(events.clock_ms, TYPE["mouse_up"], x=events.cursor[0], y=events.cursor[1], button=button)


def click(events: SessionBuilder, pointer: Pointer, rng: np.random.Generator, *, button: int = BUTTON["left"]) -> float:
    """Press and release at the cursor; returns the mouse_down time (ms), when focus moves."""
    t_down = press(events, pointer, rng, button=button)
    release(events, pointer, rng, button=button)
    return t_down


def free_mouse_action(events: SessionBuilder, pointer: Pointer, rng: np.random.Generator) -> None:
    """One action chosen by the pointer's habits: click somewhere, drag, scroll, or just move."""
    thresholds = list(accumulate(pointer.action_weights))
    action = ACTIONS[min(bisect_right(thresholds, rng.random() * thresholds[-1]), len(ACTIONS) - 1)]
    move_to(events, pointer, random_point(rng), rng)
    if action == "click":
        which = rng.random()
        button = BUTTON["left"] if which < 0.9 else BUTTON["right"] if which < 0.99 else BUTTON["middle"]
        click(events, pointer, rng, button=button)
    elif action == "drag":
        press(events, pointer, rng, button=BUTTON["left"])
        move_to(events, pointer, random_point(rng), rng, button=BUTTON["left"])
        release(events, pointer, rng, button=BUTTON["left"])
    elif action == "wheel":
        ticks = pointer.wheel_intervals_ms(int(rng.integers(3, 13)), rng).cumsum()
        events.add(events.clock_ms + ticks, TYPE["wheel"], x=events.cursor[0], y=events.cursor[1])
        events.clock_ms += float(ticks[-1])
