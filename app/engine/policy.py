"""Risk → action: a declarative, versioned policy and the pure `decide` step.

A policy maps a risk in [0, 1] to one of four actions through *bands*, then lets *rules* escalate
the action on facts the risk does not capture (too little enrolment, a replayed window).

Conventions (tested at every edge in `tests/test_policy.py`):
- A band covers `[lower, upper)`: its lower edge is inclusive, its upper edge exclusive, except the
  last band, which also includes 1.0. So a risk exactly on an edge gets the stricter band.
- Bands are listed from low risk to high, start at 0, end at 1, touch without gaps or overlaps,
  and never take a milder action at a higher risk.
- Rules only escalate: the final action is the most severe of the band's and every firing rule's.
- Two verdicts: ALLOW is SAFE; REQUIRE_OTP, FLAG_SESSION and DENY are UNSAFE (the session is not
  trusted as it stands; the action says what happens next).
- A risk that is NaN, infinite, outside [0, 1] or not a number is refused (`RiskError`), never
  silently clamped: it means a scoring bug upstream.

Like a threshold (STYLE.md §2) a decision is a pure function of a risk and a policy, so history can
be re-decided under another policy revision without refitting anything. `decide_many` is that
function over arrays and the only place the bands and rules are applied; `decide` runs it on one risk
and writes the reasons.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from numbers import Real
from typing import Any

import numpy as np

from store.text import plural


class Action(StrEnum):
    """What happens to a session, mildest first (the order is the severity)."""

    ALLOW = "ALLOW"
    REQUIRE_OTP = "REQUIRE_OTP"
    FLAG_SESSION = "FLAG_SESSION"
    DENY = "DENY"

    @property
    def severity(self) -> int:
        return list(Action).index(self)

    @property
    def verdict(self) -> Verdict:
        return Verdict.SAFE if self is Action.ALLOW else Verdict.UNSAFE


class Verdict(StrEnum):
    SAFE = "SAFE"
    UNSAFE = "UNSAFE"


class Condition(StrEnum):
    """Facts about a window, beyond its risk, that a rule can act on."""

    #: The user has fewer genuine enrolment windows than `Policy.min_enrolment_windows`.
    INSUFFICIENT_ENROLMENT = "insufficient_enrolment"
    #: The window is identical to an earlier one (a recorded pattern played back).
    REPLAYED_PATTERN = "replayed_pattern"
    #: The input is not a person's: sub-human holds, no variance, perfectly straight pointer paths.
    MACHINE_LIKE = "machine_like"


class PolicyError(ValueError):
    """A policy refused on creation or when read from JSON; the message names the band or field."""


class RiskError(ValueError):
    """A risk that is not a finite number in [0, 1]."""


@dataclass(frozen=True)
class Band:
    """Risks in `[lower, upper)` get `action` (the last band of a policy also includes 1.0)."""

    lower: float
    upper: float
    action: Action

    def describe(self, last: bool = False) -> str:
        return f"{self.action} [{self.lower:g}, {self.upper:g}{']' if last else ')'}"


@dataclass(frozen=True)
class Rule:
    """When `condition` holds, the action is at least `action`."""

    condition: Condition
    action: Action


@dataclass(frozen=True)
class DecisionContext:
    """What the caller knows besides the risk.

    `enrolment_windows` is None when unknown: the enrolment rule then does not fire (the scoring job
    always knows it; a what-if on a page may not).
    """

    enrolment_windows: int | None = None
    replayed: bool = False
    machine_like: str | None = None  # why the input is not a person's (app.engine.evidence.machine_like)


@dataclass(frozen=True)
class Decision:
    """The outcome for one risk, with the policy (id, revision) that produced it and why."""

    action: Action
    verdict: Verdict
    reasons: tuple[str, ...]
    risk: float
    policy_id: str
    policy_revision: int

    def __post_init__(self) -> None:
        if Verdict(self.verdict) is not Action(self.action).verdict:
            raise ValueError(f"decision verdict {self.verdict} does not match its action {self.action} "
                             f"(expected {Action(self.action).verdict}); build decisions with decide")


POLICY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Policy:
    """A validated policy. `revision` 0 is a draft; the store assigns 1, 2, ... when it is saved."""

    policy_id: str
    bands: tuple[Band, ...]
    rules: tuple[Rule, ...] = ()
    min_enrolment_windows: int = 20
    revision: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("bands", "rules"):
            if not isinstance(getattr(self, name), list | tuple):
                raise PolicyError(f"{name} must be a list, got {type(getattr(self, name)).__name__}")
        object.__setattr__(self, "bands", tuple(_as_band(b, i) for i, b in enumerate(self.bands, start=1)))
        object.__setattr__(self, "rules", tuple(_as_rule(r, i) for i, r in enumerate(self.rules, start=1)))
        _validate(self)
        # Plain floats from here on (edges may arrive as ints or numpy scalars), so JSON round-trips.
        object.__setattr__(self, "bands", tuple(Band(float(b.lower), float(b.upper), b.action) for b in self.bands))

    # -- deciding --------------------------------------------------------------------------------
    def band_for(self, risk: float) -> Band:
        """The band holding `risk` (lower edge inclusive, upper exclusive, 1.0 in the last band)."""
        return self.bands[int(_band_positions(self, np.array([check_risk(risk)]))[0])]

    def decide(self, risk: float, context: DecisionContext | None = None) -> Decision:
        return decide(risk, self, context)

    # -- JSON ------------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "revision": self.revision,
            "description": self.description,
            "bands": [{"lower": b.lower, "upper": b.upper, "action": str(b.action)} for b in self.bands],
            "rules": [{"condition": str(r.condition), "action": str(r.action)} for r in self.rules],
            "min_enrolment_windows": self.min_enrolment_windows,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Policy:
        if not isinstance(body, dict):
            raise PolicyError(f"a policy is a JSON object, got {type(body).__name__}")
        allowed = {"policy_id", "revision", "description", "bands", "rules", "min_enrolment_windows"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise PolicyError(f"unknown policy field(s) {unknown} (allowed: {sorted(allowed)})")
        for required in ("policy_id", "bands"):
            if required not in body:
                raise PolicyError(f"the policy has no '{required}'")
        return cls(
            policy_id=body["policy_id"],
            bands=body["bands"],
            rules=body.get("rules", ()),
            min_enrolment_windows=body.get("min_enrolment_windows", 20),
            revision=body.get("revision", 0),
            description=body.get("description", ""),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise PolicyError(f"the policy is not valid JSON: {error}") from None
        return cls.from_dict(body)

    def with_revision(self, revision: int) -> Policy:
        return replace(self, revision=revision)


def check_risk(risk: object) -> float:
    """Return `risk` as a float, or raise `RiskError` when it is not a finite number in [0, 1]."""
    if isinstance(risk, bool) or not isinstance(risk, Real):
        raise RiskError(f"risk must be a number in [0, 1], got {type(risk).__name__} {risk!r}")
    value = float(risk)
    if math.isnan(value):
        raise RiskError("risk is NaN: the score behind it is broken; it is refused, not guessed")
    if not 0.0 <= value <= 1.0:
        raise RiskError(f"risk {value!r} is outside [0, 1]")
    return value


def check_risks(risks: Any) -> np.ndarray:
    """`risks` as a 1-D float array, or `RiskError` naming the first that is not a finite number in [0, 1]."""
    values = np.asarray(risks, dtype=float).reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0.0) & (values <= 1.0)))
    if bad.size:
        raise RiskError(f"risk {float(values[bad[0]])!r} at position {int(bad[0])} is not a finite number in [0, 1]; "
                        "the score behind it is broken: it is refused, not guessed")
    return values


def decide_many(risks: Any, policy: Policy, fired: Mapping[Condition, Any] | None = None) -> np.ndarray:
    """The action of each risk under `policy`, as strings: the band holding it (lower edge inclusive, 1.0
    in the last band), escalated to at least a rule's action wherever `fired[rule.condition]` is true.

    `fired` maps conditions to one boolean per risk; a condition missing from it holds nowhere, and one
    the policy has no rule for changes nothing. This is the one implementation of the policy's
    arithmetic: `decide` calls it for a single risk, the Threshold lab for a whole history.
    """
    values = check_risks(risks)
    flags = {Condition(condition): np.asarray(holds, dtype=bool).reshape(-1)
             for condition, holds in (fired or {}).items()}
    for condition, holds in flags.items():
        if holds.size != values.size:
            raise ValueError(f"condition {condition}: {holds.size} flags for {values.size} risks; give one per risk")
    return _ACTION_NAMES[_escalate(policy, _band_positions(policy, values), flags)]


def decide(risk: float, policy: Policy, context: DecisionContext | None = None) -> Decision:
    """The action and verdict for `risk` under `policy`, escalated by any rule that fires (the same band
    lookup and escalation as `decide_many`), with the reasons in words."""
    value = check_risk(risk)
    context = context or DecisionContext()
    position = _band_positions(policy, np.array([value]))
    band = policy.bands[int(position[0])]
    reasons = [f"risk {_show_risk(value, band)} is in band {band.describe(last=band is policy.bands[-1])}"]
    fired: dict[Condition, np.ndarray] = {}
    for rule in policy.rules:
        reason = _rule_fires(rule.condition, policy, context)
        if reason is not None:
            reasons.append(f"{reason} → at least {rule.action}")
            fired[rule.condition] = np.array([True])
    action = Action(_ACTION_NAMES[_escalate(policy, position, fired)][0])
    return Decision(action, action.verdict, tuple(reasons), value, policy.policy_id, policy.revision)


#: Action names by severity (index = `Action.severity`), for turning severities back into actions.
_ACTION_NAMES = np.array([action.value for action in Action], dtype=object)


def _band_positions(policy: Policy, risks: np.ndarray) -> np.ndarray:
    """Index of the band holding each (checked) risk: a risk on an edge goes to the band above it."""
    uppers = np.array([band.upper for band in policy.bands[:-1]], dtype=float)
    return np.searchsorted(uppers, risks, side="right")


def _escalate(policy: Policy, positions: np.ndarray, fired: Mapping[Condition, np.ndarray]) -> np.ndarray:
    """Severity of each band position, raised to at least a rule's action where its condition holds."""
    severity = np.array([band.action.severity for band in policy.bands])[positions]
    for rule in policy.rules:
        if rule.condition in fired:
            severity = np.where(fired[rule.condition], np.maximum(severity, rule.action.severity), severity)
    return severity


def decisive_reason(reasons: Sequence[str], action: str) -> str | None:
    """The reason, among those `decide` wrote, that set `action`: the band's when the risk alone gives
    that action, else the first rule that escalated to it (a replayed window denies at any risk).

    Works on reasons read back from the store (JSON text decoded to a list). A reason list written
    some other way gives its first reason; an empty one gives None.
    """
    if not reasons:
        return None
    if f"is in band {action} [" in reasons[0]:
        return reasons[0]
    return next((r for r in reasons[1:] if r.endswith(f"→ at least {action}")), reasons[0])


def _show_risk(value: float, band: Band) -> str:
    """Four significant digits, unless rounding would make the risk look like the band's edge."""
    short = f"{value:.4g}"
    return repr(value) if float(short) in (band.lower, band.upper) and float(short) != value else short


def _rule_fires(condition: Condition, policy: Policy, context: DecisionContext) -> str | None:
    """A reason when `condition` holds for `context`, else None."""
    if condition is Condition.INSUFFICIENT_ENROLMENT:
        have = context.enrolment_windows
        if have is not None and have < policy.min_enrolment_windows:
            return f"not enough enrolment ({have} of {plural(policy.min_enrolment_windows, 'window')})"
        return None
    if condition is Condition.REPLAYED_PATTERN:
        return "replayed pattern (the window is identical to an earlier one)" if context.replayed else None
    if condition is Condition.MACHINE_LIKE:
        return f"machine-like input: {context.machine_like}" if context.machine_like else None
    raise AssertionError(f"no check for condition {condition}")  # unreachable: conditions are an enum


# -- validation -----------------------------------------------------------------------------------
def _as_band(value: object, number: int) -> Band:
    if isinstance(value, Band):
        return Band(value.lower, value.upper, _as_action(value.action, f"band {number}"))
    if isinstance(value, dict):
        missing = [k for k in ("lower", "upper", "action") if k not in value]
        if missing:
            raise PolicyError(f"band {number} has no {', '.join(missing)}")
        return Band(value["lower"], value["upper"], _as_action(value["action"], f"band {number}"))
    if isinstance(value, list | tuple) and len(value) == 3:
        return Band(value[0], value[1], _as_action(value[2], f"band {number}"))
    raise PolicyError(f"band {number} must be a Band, a (lower, upper, action) triple or an object, got {value!r}")


def _as_rule(value: object, number: int) -> Rule:
    if isinstance(value, Rule):
        raw_condition, raw_action = value.condition, value.action
    elif isinstance(value, dict) and {"condition", "action"} <= set(value):
        raw_condition, raw_action = value["condition"], value["action"]
    elif isinstance(value, list | tuple) and len(value) == 2:
        raw_condition, raw_action = value
    else:
        raise PolicyError(f"rule {number} must be a Rule, a (condition, action) pair or an object, got {value!r}")
    try:
        condition = Condition(raw_condition)
    except ValueError:
        raise PolicyError(f"rule {number}: unknown condition {raw_condition!r} "
                          f"(allowed: {', '.join(c.value for c in Condition)})") from None
    return Rule(condition, _as_action(raw_action, f"rule {number}"))


def _as_action(value: object, where: str) -> Action:
    try:
        return Action(value)
    except ValueError:
        allowed = ", ".join(a.value for a in Action)
        raise PolicyError(f"{where}: unknown action {value!r} (allowed: {allowed})") from None


def _validate(policy: Policy) -> None:
    if not isinstance(policy.policy_id, str) or not POLICY_ID_PATTERN.match(policy.policy_id):
        raise PolicyError(f"policy id {policy.policy_id!r} must be 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")
    if isinstance(policy.revision, bool) or not isinstance(policy.revision, int) or policy.revision < 0:
        raise PolicyError(f"revision must be a whole number ≥ 0 (0 = not saved yet), got {policy.revision!r}")
    windows = policy.min_enrolment_windows
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 0:
        raise PolicyError(f"min_enrolment_windows must be a whole number ≥ 0, got {windows!r}")
    if not isinstance(policy.description, str):
        raise PolicyError("description must be text")
    _validate_bands(policy.bands)
    seen: set[Condition] = set()
    for number, rule in enumerate(policy.rules, start=1):
        if rule.condition in seen:
            raise PolicyError(f"rule {number}: condition {rule.condition} already has a rule")
        seen.add(rule.condition)


def _validate_bands(bands: tuple[Band, ...]) -> None:
    """Bands must be finite, inside [0, 1], each non-empty, ordered, touching, covering [0, 1]."""
    if not bands:
        raise PolicyError("a policy needs at least one band covering risks 0 to 1")
    for number, band in enumerate(bands, start=1):
        name = f"band {number} ({band.action})"
        for edge in ("lower", "upper"):
            value = getattr(band, edge)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise PolicyError(f"{name}: {edge} edge {value!r} is not a finite number")
            if not 0.0 <= value <= 1.0:
                raise PolicyError(f"{name}: {edge} edge {value!r} is outside [0, 1]")
        if band.lower >= band.upper:
            raise PolicyError(f"{name}: lower edge {band.lower:g} is not below its upper edge {band.upper:g}")
    for number, (before, band) in enumerate(itertools.pairwise(bands), start=2):
        name, previous = f"band {number} ({band.action})", f"band {number - 1} ({before.action})"
        if band.lower < before.lower:
            raise PolicyError(f"{name} starts at {band.lower:g}, before {previous} at {before.lower:g}: "
                              "list the bands from low risk to high")
        if band.lower < before.upper:
            raise PolicyError(f"{name} [{band.lower:g}, {band.upper:g}) overlaps {previous} "
                              f"[{before.lower:g}, {before.upper:g}): it must start at {before.upper:g}")
        if band.lower > before.upper:
            raise PolicyError(f"gap between {previous}, which ends at {before.upper:g}, and {name}, "
                              f"which starts at {band.lower:g}: risks in between would have no action")
        if band.action.severity < before.action.severity:
            raise PolicyError(f"{name} is milder than {previous} although its risks are higher")
    if bands[0].lower != 0.0:
        raise PolicyError(f"band 1 ({bands[0].action}) starts at {bands[0].lower:g}: the first band must start at 0")
    if bands[-1].upper != 1.0:
        raise PolicyError(f"band {len(bands)} ({bands[-1].action}) ends at {bands[-1].upper:g}: "
                          "the last band must end at 1")


#: Installed in the store on first use as policy "default", revision 1 (a store made before session
#: evidence gets it as its next revision: store.migrations 5). The band edges are chosen from the replay
#: evaluation (docs/evaluation.md): a single unusual window reaches at most 0.78 (a one-time code), flagging
#: takes two strong windows and denying three, or a rule (a replay, machine-like input).
DEFAULT_POLICY = Policy(
    policy_id="default",
    description="Risk is the session's evidence (1 - e^-S): allow below 0.75; ask for a one-time code up to "
                "0.9; flag up to 0.97; deny above. Replays and machine-like input are denied.",
    bands=(
        Band(0.0, 0.75, Action.ALLOW),
        Band(0.75, 0.9, Action.REQUIRE_OTP),
        Band(0.9, 0.97, Action.FLAG_SESSION),
        Band(0.97, 1.0, Action.DENY),
    ),
    rules=(
        Rule(Condition.INSUFFICIENT_ENROLMENT, Action.REQUIRE_OTP),
        Rule(Condition.REPLAYED_PATTERN, Action.DENY),
        Rule(Condition.MACHINE_LIKE, Action.DENY),
    ),
    min_enrolment_windows=5,
    revision=1,
)
