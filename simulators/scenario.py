"""`simulate`: a population, a schedule of genuine and attack sessions, and their ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from simulators.events import SessionEvents, to_event_frame
from simulators.population import BOTS, PLAN_STREAM, SESSIONS_STREAM, User, child_rng, make_population
from simulators.sessions import hijacked_session, ordinary_session, replayed_session

#: Bumped whenever the same arguments would produce different data.
GENERATOR_VERSION = "1"
#: Session start times are this instant plus seeded offsets (never the wall clock).
EPOCH = datetime(2026, 1, 5, 9, 0, 0)
LABELS = ("genuine", "impostor", "bot", "replay", "hijack")
ATTACK_CYCLE = ("impostor", "bot", "replay", "hijack")

_DAY_US = 86_400_000_000
_WORKDAY_US = 10 * 3_600_000_000
_EPOCH_US = (EPOCH - datetime(1970, 1, 1)) // timedelta(microseconds=1)


@dataclass(frozen=True, eq=False)
class Simulation:
    """Synthetic behaviour with ground truth, in the canonical event schema.

    (eq=False: frames do not compare with `==`; compare fields with `DataFrame.equals`.)
    """

    events: pl.DataFrame  # canonical columns, source "simulator", sorted by session_id, seq
    sessions: pl.DataFrame  # session_id, user_id (the claimed account), started_at
    labels: pl.DataFrame  # session_id, label, actor_id (who really acted), takeover_ms (hijacks only)


@dataclass(frozen=True)
class _Planned:
    started_us: int  # after EPOCH
    account: int  # claimed user index
    label: str
    day: int  # the account's session index whose speed drift applies
    attacker: int | None = None  # user index of an impostor or hijacker
    bot: int | None = None  # index into BOTS
    original: int | None = None  # plan index of the replayed genuine session


def _plan(users: int, sessions: int, attacks: int, rng: np.random.Generator, enrolment_days: int = 0) -> list[_Planned]:
    """Genuine sessions: one per user per day; attacks: cycling kinds on random accounts and days
    from `enrolment_days` on (the first days of every account are supervised enrolment)."""
    offsets = rng.integers(0, _WORKDAY_US, users * sessions)
    plan = [
        _Planned(
            started_us=day * _DAY_US + int(offsets[user * sessions + day]),
            account=user,
            label="genuine",
            day=day,
        )
        for user in range(users)
        for day in range(sessions)
    ]
    for attack in range(attacks):
        kind = ATTACK_CYCLE[attack % len(ATTACK_CYCLE)]
        account = int(rng.integers(users))
        day = int(rng.integers(enrolment_days, sessions))
        started_us = day * _DAY_US + int(rng.integers(0, _WORKDAY_US))
        if kind == "replay":
            original = account * sessions + day
            started_us = plan[original].started_us + int(rng.integers(300_000_000, _DAY_US))
            plan.append(_Planned(started_us, account, kind, day, original=original))
        elif kind == "bot":
            plan.append(_Planned(started_us, account, kind, day, bot=(attack // len(ATTACK_CYCLE)) % len(BOTS)))
        else:
            attacker = (account + int(rng.integers(1, users))) % users
            plan.append(_Planned(started_us, account, kind, day, attacker=attacker))
    return plan


def _actor_id(planned: _Planned, population: list[User]) -> str:
    if planned.bot is not None:
        return BOTS[planned.bot].actor_id
    if planned.label == "replay":
        return "replay-bot"
    return population[planned.attacker if planned.attacker is not None else planned.account].user_id


def _generate(
    planned: _Planned,
    population: list[User],
    generated: dict[int, SessionEvents],
    rng: np.random.Generator,
    *,
    free_text_keys: int,
) -> SessionEvents:
    """The events of one planned session (`generated` holds earlier sessions, for replays)."""
    account = population[planned.account]
    if planned.label == "replay":
        return replayed_session(generated[planned.original], rng)
    if planned.label == "bot":
        return ordinary_session(account, BOTS[planned.bot], rng, speed=1.0, free_text_keys=free_text_keys)
    if planned.label == "hijack":
        hijacker = population[planned.attacker]
        return hijacked_session(
            account,
            hijacker.actor,
            rng,
            free_text_keys=free_text_keys,
            speed=float(account.speed_by_session[planned.day]),
            hijacker_speed=float(hijacker.speed_by_session[planned.day]),
        )
    actor = account if planned.attacker is None else population[planned.attacker]  # genuine or impostor
    return ordinary_session(
        account,
        actor.actor,
        rng,
        free_text_keys=free_text_keys,
        speed=float(actor.speed_by_session[planned.day]),
    )


def simulate(
    users: int, sessions: int, seed: int, *, attack_share: float = 0.2, free_text_keys: int = 60,
    enrolment_days: int = 0,
) -> Simulation:
    """`sessions` genuine sessions per user, plus round(attack_share * users * sessions) attacks.

    Each session logs in (username, then the fixed phrase ".tie5Roanl" as key classes), then types
    `free_text_keys` keystrokes of prose in a pad and performs a few mouse actions. Same arguments,
    same frames (byte-identical CSV). With `enrolment_days` = k, no attack happens in an account's
    first k days, so its first k genuine sessions are clean enrolment.
    """
    if users < 1 or sessions < 0 or free_text_keys < 0 or seed < 0:
        raise ValueError(
            f"need users >= 1, sessions >= 0, free_text_keys >= 0, seed >= 0; got users={users}, "
            f"sessions={sessions}, free_text_keys={free_text_keys}, seed={seed}"
        )
    if not (math.isfinite(attack_share) and attack_share >= 0.0):
        raise ValueError(f"attack_share must be a finite share >= 0 of the genuine sessions, got {attack_share}")
    attacks = round(attack_share * users * sessions)
    if attacks and not 0 <= enrolment_days < sessions:
        raise ValueError(f"enrolment_days must be in [0, sessions) when there are attacks; got {enrolment_days}")
    if attacks and users < 2:
        raise ValueError("impostor and hijack sessions need another user: use users >= 2 or attack_share=0")

    population = make_population(users, sessions, seed)
    plan = _plan(users, sessions, attacks, child_rng(seed, PLAN_STREAM), enrolment_days)
    order = sorted(range(len(plan)), key=lambda index: (plan[index].started_us, index))
    id_width = max(6, len(str(len(plan))))
    session_ids = [f"s-{seed}-{rank + 1:0{id_width}d}" for rank in range(len(plan))]

    generated: dict[int, SessionEvents] = {}
    takeover_ms: list[float | None] = []
    for index in order:  # chronological, so a replayed original always exists already
        session = _generate(
            plan[index],
            population,
            generated,
            child_rng(seed, SESSIONS_STREAM, index),
            free_text_keys=free_text_keys,
        )
        generated[index] = session
        foreign_t = session.columns["t_ms"][session.columns["foreign"]]
        takeover_ms.append(float(foreign_t[0]) if len(foreign_t) else None)

    claimed = [population[plan[index].account].user_id for index in order]
    events = to_event_frame([generated[index] for index in order], session_ids, claimed)
    started_us = np.array([plan[index].started_us for index in order], dtype=np.int64) + _EPOCH_US
    sessions_frame = pl.DataFrame(
        {
            "session_id": pl.Series(session_ids, dtype=pl.String),
            "user_id": pl.Series(claimed, dtype=pl.String),
            "started_at": pl.Series(started_us, dtype=pl.Int64).cast(pl.Datetime("us")),
        }
    )
    labels = pl.DataFrame(
        {
            "session_id": pl.Series(session_ids, dtype=pl.String),
            "label": pl.Series([plan[index].label for index in order], dtype=pl.String),
            "actor_id": pl.Series([_actor_id(plan[index], population) for index in order], dtype=pl.String),
            "takeover_ms": pl.Series(takeover_ms, dtype=pl.Float64),
        }
    )
    return Simulation(events=events, sessions=sessions_frame, labels=labels)
