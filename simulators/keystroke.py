"""Keystroke timing models: a human with stable habits, and two kinds of typing bot.

A typist turns a sequence of key-class codes into key_down and key_up times (milliseconds from the
first key_down). Timings are generated for the whole sequence at once with numpy:

* dwell (key_down -> key_up of one key) is log-normal, per user and per key class;
* flight (key_up -> next key_down) is log-normal with a per-user median and a per-user offset for
  every pair of key groups (letter -> digit is slower than letter -> letter, and differently so for
  each person); with a per-user rollover rate the next key goes down before the previous one is
  released (a negative flight);
* a Shift is held around the key it modifies (pressed before it, released after it goes down).

Only key classes exist here, never characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simulators.events import KEY
from store.schema import KEY_CLASSES

LETTER, DIGIT, SPACE, PUNCT = KEY["letter"], KEY["digit"], KEY["space"], KEY["punct"]
SHIFT, BACKSPACE, ENTER, TAB = KEY["shift"], KEY["backspace"], KEY["enter"], KEY["tab"]

#: The CMU benchmark password ".tie5Roanl" and Return, as key classes (Shift held around the R).
FIXED_PHRASE_CLASSES = np.array(
    [PUNCT, LETTER, LETTER, LETTER, DIGIT, SHIFT, LETTER, LETTER, LETTER, LETTER, LETTER, ENTER],
    dtype=np.int8,
)

# Flight timing depends on the pair of key groups around it.
_GROUP_NAMES = ("letter", "digit", "space", "punct", "shift", "backspace", "control")
_GROUP_OF_CLASS = np.array(
    [_GROUP_NAMES.index(c) if c in _GROUP_NAMES else _GROUP_NAMES.index("control") for c in KEY_CLASSES],
    dtype=np.int8,
)


def _population_pair_offsets() -> np.ndarray:
    """Log-scale flight offsets (from group, to group) shared by everyone; users add their own."""
    g = {name: i for i, name in enumerate(_GROUP_NAMES)}
    offsets = np.zeros((len(_GROUP_NAMES), len(_GROUP_NAMES)))
    offsets[:, g["digit"]] += 0.25
    offsets[:, g["punct"]] += 0.20
    offsets[g["digit"], :] += 0.10
    offsets[:, g["backspace"]] += 0.45  # noticing the mistake
    offsets[g["backspace"], :] += 0.15
    offsets[g["backspace"], g["backspace"]] = -0.35  # repeated backspace is fast
    offsets[:, g["control"]] += 0.30
    offsets[g["space"], g["letter"]] += 0.10  # starting a word
    offsets[g["letter"], g["space"]] -= 0.10
    return offsets


_POPULATION_PAIR_OFFSETS = _population_pair_offsets()


def _population_dwell_offsets() -> np.ndarray:
    """Log-scale dwell offsets per key class shared by everyone (space and Enter are held longer)."""
    offsets = np.zeros(len(KEY_CLASSES))
    for name, offset in (
        ("space", 0.08),
        ("backspace", -0.05),
        ("enter", 0.10),
        ("tab", 0.05),
        ("digit", 0.05),
        ("punct", 0.03),
    ):
        offsets[KEY[name]] = offset
    return offsets


_POPULATION_DWELL_OFFSETS = _population_dwell_offsets()


class Typist(Protocol):
    """Anything that can time a key-class sequence."""

    typo_rate: float

    def press_times(
        self,
        key_classes: np.ndarray,
        rng: np.random.Generator,
        *,
        speed: float = 1.0,
        free_text: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(key_down ms, key_up ms) per key, from 0 at the first key_down; `speed` < 1 is faster."""
        ...


def _hold_shifts(key_classes: np.ndarray, down_to_down_ms: np.ndarray, shift_lead_ms: np.ndarray) -> None:
    """Make each Shift lead the key it modifies by `shift_lead_ms` (in place on the DD intervals)."""
    modifies_next = key_classes[:-1] == SHIFT
    down_to_down_ms[modifies_next] = shift_lead_ms[:-1][modifies_next]


def _release_shifts(key_classes: np.ndarray, down: np.ndarray, up: np.ndarray, release_fraction: np.ndarray) -> None:
    """Release each Shift after the key it modifies went down, near that key's own release (in place)."""
    shifts = np.flatnonzero(key_classes[:-1] == SHIFT)
    modified = shifts + 1
    up[shifts] = down[modified] + (up[modified] - down[modified]) * release_fraction[shifts]


def _times_from_intervals(dwell_ms: np.ndarray, down_to_down_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    down = np.concatenate([[0.0], np.cumsum(down_to_down_ms)])
    return down, down + dwell_ms


@dataclass(frozen=True, eq=False)
class HumanTypist:
    """One person's keystroke habits (log-normal parameters are of milliseconds)."""

    dwell_mu: float
    dwell_sigma: float
    dwell_class_offsets: np.ndarray  # per key class, log scale
    flight_mu: float
    flight_sigma: float
    pair_offsets: np.ndarray  # (from group, to group), log scale
    rollover_rate: float  # share of flights that are negative (next key down before release)
    shift_lead_mu: float  # Shift down -> modified key down
    pause_rate: float  # share of free-text flights that contain a thinking pause
    typo_rate: float  # share of free-text keys typed wrong, then corrected with backspace

    @classmethod
    def sample(cls, rng: np.random.Generator) -> HumanTypist:
        """Draw a plausible person: mean dwell 70-130 ms, median flight 60-220 ms."""
        dwell_sigma = rng.uniform(0.20, 0.35)
        mean_dwell_ms = rng.uniform(70.0, 130.0)
        median_flight_ms = rng.uniform(60.0, 220.0)
        return cls(
            dwell_mu=float(np.log(mean_dwell_ms) - dwell_sigma**2 / 2),
            dwell_sigma=float(dwell_sigma),
            dwell_class_offsets=_POPULATION_DWELL_OFFSETS + rng.normal(0.0, 0.06, len(KEY_CLASSES)),
            flight_mu=float(np.log(median_flight_ms)),
            flight_sigma=float(rng.uniform(0.30, 0.50)),
            pair_offsets=_POPULATION_PAIR_OFFSETS + rng.normal(0.0, 0.12, _POPULATION_PAIR_OFFSETS.shape),
            rollover_rate=float(np.clip(0.32 - 0.0012 * median_flight_ms + rng.normal(0, 0.03), 0.01, 0.35)),
            shift_lead_mu=float(np.log(rng.uniform(80.0, 220.0))),
            pause_rate=float(rng.uniform(0.01, 0.05)),
            typo_rate=float(rng.uniform(0.01, 0.06)),
        )

    def press_times(
        self,
        key_classes: np.ndarray,
        rng: np.random.Generator,
        *,
        speed: float = 1.0,
        free_text: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(key_classes)
        log_speed = np.log(speed)
        dwell = np.exp(
            self.dwell_mu
            + self.dwell_class_offsets[key_classes]
            + 0.3 * log_speed
            + self.dwell_sigma * rng.standard_normal(n)
        )
        groups = _GROUP_OF_CLASS[key_classes]
        flight = np.exp(
            self.flight_mu
            + self.pair_offsets[groups[:-1], groups[1:]]
            + log_speed
            + self.flight_sigma * rng.standard_normal(n - 1)
        )
        if free_text:
            pauses = rng.random(n - 1) < self.pause_rate
            flight[pauses] *= np.exp(rng.normal(1.4, 0.5, int(pauses.sum())))
        rollover = rng.random(n - 1) < self.rollover_rate
        flight[rollover] = -dwell[:-1][rollover] * rng.uniform(0.1, 0.7, int(rollover.sum()))
        down_to_down = dwell[:-1] + flight
        _hold_shifts(key_classes, down_to_down, np.exp(self.shift_lead_mu + log_speed + 0.25 * rng.standard_normal(n)))
        down, up = _times_from_intervals(dwell, down_to_down)
        _release_shifts(key_classes, down, up, rng.uniform(0.6, 1.5, n))
        return down, up


@dataclass(frozen=True)
class ConstantBotTypist:
    """A script with fixed dwell and flight (default 10 ms each): no human variance at all."""

    dwell_ms: float = 10.0
    flight_ms: float = 10.0
    typo_rate: float = 0.0

    def press_times(
        self,
        key_classes: np.ndarray,
        rng: np.random.Generator,
        *,
        speed: float = 1.0,
        free_text: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(key_classes)
        dwell = np.full(n, self.dwell_ms)
        down_to_down = np.full(n - 1, self.dwell_ms + self.flight_ms)
        _hold_shifts(key_classes, down_to_down, np.full(n, self.flight_ms))
        down, up = _times_from_intervals(dwell, down_to_down)
        _release_shifts(key_classes, down, up, np.ones(n))
        return down, up


@dataclass(frozen=True)
class UniformBotTypist:
    """A script that randomises timings uniformly (ms), which no human rhythm resembles."""

    dwell_range_ms: tuple[float, float] = (5.0, 150.0)
    flight_range_ms: tuple[float, float] = (0.0, 250.0)
    typo_rate: float = 0.0

    def press_times(
        self,
        key_classes: np.ndarray,
        rng: np.random.Generator,
        *,
        speed: float = 1.0,
        free_text: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(key_classes)
        dwell = rng.uniform(*self.dwell_range_ms, n)
        down_to_down = dwell[:-1] + rng.uniform(*self.flight_range_ms, n - 1)
        _hold_shifts(key_classes, down_to_down, rng.uniform(*self.flight_range_ms, n) + 1.0)
        down, up = _times_from_intervals(dwell, down_to_down)
        _release_shifts(key_classes, down, up, rng.uniform(0.5, 1.5, n))
        return down, up


def free_text_classes(n_keys: int, rng: np.random.Generator) -> np.ndarray:
    """Key classes of `n_keys` keystrokes of prose: words of ~4.8 letters separated by spaces,
    some punctuation at word ends, a few digits and Shift-modified capitals."""
    if n_keys <= 0:
        return np.zeros(0, dtype=np.int8)
    word_lengths = 1 + rng.poisson(3.8, n_keys)
    space_at = np.cumsum(word_lengths + 1) - 1
    classes = np.full(n_keys, LETTER, dtype=np.int8)
    classes[space_at[space_at < n_keys]] = SPACE
    before_space = space_at[(space_at < n_keys) & (space_at > 0)] - 1
    classes[before_space[rng.random(len(before_space)) < 0.12]] = PUNCT
    letters = np.flatnonzero(classes == LETTER)
    classes[letters[rng.random(len(letters)) < 0.02]] = DIGIT
    capitals = np.flatnonzero((classes == LETTER) & (rng.random(n_keys) < 0.02))
    classes = np.insert(classes, capitals, SHIFT)[:n_keys]
    if classes[-1] == SHIFT:
        classes[-1] = LETTER
    return classes


def with_typos(key_classes: np.ndarray, typo_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Insert mistakes: a wrong key (same class), 0-2 more keys before noticing, as many backspaces,
    then the intended keys again. Returns the longer sequence actually typed."""
    n = len(key_classes)
    if typo_rate <= 0 or n == 0:
        return key_classes
    typo_positions = np.flatnonzero(rng.random(n) < typo_rate)
    keys_before_noticing = rng.integers(0, 3, len(typo_positions))
    pieces: list[np.ndarray] = []
    resume_at = 0  # first intended key not yet emitted
    for position, extra in zip(typo_positions, keys_before_noticing, strict=True):
        wrong_end = min(position + 1 + int(extra), n)
        touches_shift = (key_classes[max(position - 1, 0) : wrong_end] == SHIFT).any()
        if position < resume_at or touches_shift:
            continue
        pieces.append(key_classes[resume_at:wrong_end])
        pieces.append(np.full(wrong_end - position, BACKSPACE, dtype=np.int8))
        pieces.append(key_classes[position:wrong_end])
        resume_at = wrong_end
    pieces.append(key_classes[resume_at:])
    return np.concatenate(pieces)
