"""Policy: bands and rules (pure `decide`), validation, JSON, stored revisions and stored decisions."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.policies import (
    UnknownPolicyError,
    latest_policy,
    policy_at_revision,
    policy_revisions,
    save_policy,
)
from app.engine.policy import (
    DEFAULT_POLICY,
    Action,
    Band,
    Condition,
    DecisionContext,
    Policy,
    PolicyError,
    RiskError,
    Rule,
    Verdict,
    decide,
    decide_many,
    decisive_reason,
)
from app.web import review
from store import Store
from store.decisions import (
    DECISION_COLUMNS,
    DecisionRecord,
    decision_counts_over_time,
    decisions,
    decisions_csv,
    record_decisions,
)

EDGES = [(0.7, Action.ALLOW, Action.REQUIRE_OTP), (0.8, Action.REQUIRE_OTP, Action.FLAG_SESSION),
         (0.95, Action.FLAG_SESSION, Action.DENY)]


def bands(*triples: tuple[float, float, str]) -> tuple[Band, ...]:
    return tuple(Band(lower, upper, Action(action)) for lower, upper, action in triples)


#: Four bands with fixed edges, the shipped default's rules: what the band and rule mechanics are
#: tested on (the shipped default's edges are chosen from the evaluation and may move).
POLICY = Policy("default", bands((0, 0.7, "ALLOW"), (0.7, 0.8, "REQUIRE_OTP"), (0.8, 0.95, "FLAG_SESSION"),
                                 (0.95, 1, "DENY")), rules=DEFAULT_POLICY.rules,
                min_enrolment_windows=DEFAULT_POLICY.min_enrolment_windows, revision=1)


def inside(action: str) -> float:
    """A risk in the middle of the shipped default's band of `action`."""
    band = next(b for b in DEFAULT_POLICY.bands if b.action == action)
    return round((band.lower + band.upper) / 2, 4)


# -- bands: every edge, both sides -----------------------------------------------------------------
def test_default_policy_is_id_default_revision_1_with_four_bands() -> None:
    assert (DEFAULT_POLICY.policy_id, DEFAULT_POLICY.revision) == ("default", 1)
    assert [b.action for b in DEFAULT_POLICY.bands] == list(Action)
    assert [(b.lower, b.upper) for b in DEFAULT_POLICY.bands] == [(0, 0.75), (0.75, 0.9), (0.9, 0.97), (0.97, 1)]
    assert {r.condition for r in DEFAULT_POLICY.rules} == set(Condition)


@pytest.mark.parametrize(("edge", "below", "above"), EDGES, ids=[str(e[0]) for e in EDGES])
def test_a_risk_exactly_on_an_edge_gets_the_stricter_band(edge: float, below: Action, above: Action) -> None:
    assert decide(edge, POLICY).action is above
    assert decide(math.nextafter(edge, 0), POLICY).action is below
    assert decide(edge - 1e-9, POLICY).action is below
    assert decide(math.nextafter(edge, 1), POLICY).action is above
    assert decide(edge + 1e-9, POLICY).action is above


def test_zero_allows_and_one_denies() -> None:
    assert decide(0, POLICY).action is Action.ALLOW
    assert decide(0.0, POLICY).action is Action.ALLOW
    assert decide(1, POLICY).action is Action.DENY
    assert decide(1.0, POLICY).action is Action.DENY


@pytest.mark.parametrize("risk", [math.nan, math.inf, -math.inf, math.nextafter(0, -1), -0.5,
                                  math.nextafter(1, 2), 1.5, "0.5", None, True])
def test_a_risk_that_is_not_a_number_in_0_1_is_refused(risk: object) -> None:
    with pytest.raises(RiskError, match="risk"):
        decide(risk, POLICY)  # type: ignore[arg-type]


def test_nan_is_refused_with_a_message_that_says_nan() -> None:
    with pytest.raises(RiskError, match="NaN"):
        decide(float("nan"), POLICY)


@pytest.mark.parametrize(("risk", "verdict"), [(0.0, Verdict.SAFE), (0.69, Verdict.SAFE), (0.7, Verdict.UNSAFE),
                                               (0.85, Verdict.UNSAFE), (1.0, Verdict.UNSAFE)])
def test_only_allow_is_safe(risk: float, verdict: Verdict) -> None:
    assert decide(risk, POLICY).verdict is verdict


def test_a_decision_names_its_policy_revision_risk_and_band() -> None:
    made = decide(0.75, POLICY)

    assert (made.policy_id, made.policy_revision, made.risk) == ("default", 1, 0.75)
    assert made.reasons == ("risk 0.75 is in band REQUIRE_OTP [0.7, 0.8)",)


def test_a_risk_rounding_onto_an_edge_is_shown_in_full() -> None:
    just_below = math.nextafter(0.7, 0)

    assert repr(just_below) in decide(just_below, POLICY).reasons[0]


@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_a_higher_risk_never_gets_a_milder_action(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert decide(low, POLICY).action.severity <= decide(high, POLICY).action.severity


@given(st.floats(min_value=0, max_value=1))
def test_every_risk_in_0_1_lands_in_the_band_that_holds_it(risk: float) -> None:
    band = DEFAULT_POLICY.band_for(risk)
    assert band.lower <= risk
    assert risk < band.upper or (risk == 1.0 and band is DEFAULT_POLICY.bands[-1])


# -- rules -----------------------------------------------------------------------------------------
def test_too_little_enrolment_asks_for_a_code_even_at_low_risk() -> None:
    needed = DEFAULT_POLICY.min_enrolment_windows
    made = decide(0.1, POLICY, DecisionContext(enrolment_windows=needed - 1))

    assert (made.action, made.verdict) == (Action.REQUIRE_OTP, Verdict.UNSAFE)
    assert f"not enough enrolment ({needed - 1} of {needed} windows) → at least REQUIRE_OTP" in made.reasons


def test_enough_or_unknown_enrolment_does_not_fire_the_rule() -> None:
    enough = DecisionContext(enrolment_windows=DEFAULT_POLICY.min_enrolment_windows)
    assert decide(0.1, POLICY, enough).action is Action.ALLOW
    assert decide(0.1, POLICY, DecisionContext(enrolment_windows=None)).action is Action.ALLOW


def test_rules_escalate_but_never_soften() -> None:
    made = decide(0.97, POLICY, DecisionContext(enrolment_windows=0))

    assert made.action is Action.DENY
    assert len(made.reasons) == 2  # the rule fired and is reported, although the band was stricter


@pytest.mark.parametrize("risk", [0.0, 0.6, 0.8, 1.0])
def test_a_replayed_pattern_is_denied_at_any_risk(risk: float) -> None:
    made = decide(risk, POLICY, DecisionContext(enrolment_windows=100, replayed=True))

    assert (made.action, made.verdict) == (Action.DENY, Verdict.UNSAFE)
    assert any("replayed pattern" in reason for reason in made.reasons)


def test_a_policy_without_rules_ignores_the_context() -> None:
    bare = Policy("bare", bands((0, 1, "ALLOW")))

    assert decide(0.99, bare, DecisionContext(enrolment_windows=0, replayed=True)).action is Action.ALLOW


# -- many risks at once ----------------------------------------------------------------------------
def _context(fired: dict[Condition, bool]) -> DecisionContext:
    """A context in which exactly the conditions marked true hold (under DEFAULT_POLICY's minimum)."""
    return DecisionContext(enrolment_windows=0 if fired.get(Condition.INSUFFICIENT_ENROLMENT) else None,
                           replayed=bool(fired.get(Condition.REPLAYED_PATTERN)),
                           machine_like="scripted holds" if fired.get(Condition.MACHINE_LIKE) else None)


def test_decide_many_gives_each_risk_its_band_and_each_firing_rule_its_action() -> None:
    risks = [0.0, 0.69, 0.7, 0.8, 0.95, 1.0, 0.1, 0.1, 0.1]
    fired = {Condition.REPLAYED_PATTERN: [False] * 6 + [True, False, False],
             Condition.INSUFFICIENT_ENROLMENT: [False] * 7 + [True, False],
             Condition.MACHINE_LIKE: [False] * 8 + [True]}

    assert decide_many(risks, POLICY, fired).tolist() == [
        "ALLOW", "ALLOW", "REQUIRE_OTP", "FLAG_SESSION", "DENY", "DENY", "DENY", "REQUIRE_OTP", "DENY"]
    assert decide_many(risks, POLICY).tolist()[6:] == ["ALLOW"] * 3  # no rule fires without flags
    assert decide_many([], POLICY).tolist() == []


def test_decide_many_refuses_a_broken_risk_and_flags_of_another_length() -> None:
    with pytest.raises(RiskError, match="at position 1"):
        decide_many([0.2, math.nan], DEFAULT_POLICY)
    with pytest.raises(RiskError, match=r"risk 1\.5 at position 0"):
        decide_many([1.5], DEFAULT_POLICY)
    with pytest.raises(ValueError, match="2 flags for 3 risks"):
        decide_many([0.1, 0.2, 0.3], DEFAULT_POLICY, {Condition.REPLAYED_PATTERN: [True, False]})


@st.composite
def _policies(draw: st.DrawFn) -> Policy:
    """DEFAULT_POLICY with three random inner edges (actions and rules kept)."""
    edges = sorted(draw(st.lists(st.floats(min_value=0.01, max_value=0.99), min_size=3, max_size=3, unique=True)))
    bounds = [0.0, *edges, 1.0]
    return Policy("drawn", tuple(Band(bounds[i], bounds[i + 1], band.action)
                                 for i, band in enumerate(DEFAULT_POLICY.bands)), rules=DEFAULT_POLICY.rules,
                  min_enrolment_windows=DEFAULT_POLICY.min_enrolment_windows)


@given(st.data())
def test_decide_and_decide_many_agree_on_any_risks_and_fired_rules(data: st.DataObject) -> None:
    policy = data.draw(st.one_of(st.just(DEFAULT_POLICY), _policies()))
    on_edges = [band.lower for band in policy.bands] + [1.0]
    risks = data.draw(st.lists(st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from(on_edges)),
                               max_size=20))
    fired = {condition: data.draw(st.lists(st.booleans(), min_size=len(risks), max_size=len(risks)))
             for condition in Condition}

    many = decide_many(risks, policy, fired)

    one_by_one = [decide(risk, policy, _context({c: flags[i] for c, flags in fired.items()})).action.value
                  for i, risk in enumerate(risks)]
    assert many.tolist() == one_by_one


# -- validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given_bands", "message"), [
    (((0, 0.6, "ALLOW"), (0.5, 1, "DENY")),
     r"band 2 \(DENY\) \[0.5, 1\) overlaps band 1 \(ALLOW\) \[0, 0.6\): it must start at 0.6"),
    (((0.6, 1, "DENY"), (0, 0.6, "ALLOW")), r"band 2 \(ALLOW\) starts at 0, before band 1 \(DENY\) at 0.6: list"),
    (((0, 0.5, "ALLOW"), (0.6, 1, "DENY")),
     r"gap between band 1 \(ALLOW\), which ends at 0.5, and band 2 \(DENY\), which starts at 0.6"),
    (((0.1, 1, "ALLOW"),), r"band 1 \(ALLOW\) starts at 0.1: the first band must start at 0"),
    (((0, 0.9, "ALLOW"),), r"band 1 \(ALLOW\) ends at 0.9: the last band must end at 1"),
    (((0, 0.6, "ALLOW"), (0.6, 0.6, "DENY"), (0.6, 1, "DENY")),
     r"band 2 \(DENY\): lower edge 0.6 is not below its upper edge 0.6"),
    (((0, 0.6, "ALLOW"), (0.6, 1.2, "DENY")), r"band 2 \(DENY\): upper edge 1.2 is outside \[0, 1\]"),
    (((0, math.nan, "ALLOW"),), r"band 1 \(ALLOW\): upper edge nan is not a finite number"),
    (((0, 0.5, "DENY"), (0.5, 1, "ALLOW")), r"band 2 \(ALLOW\) is milder than band 1 \(DENY\)"),
    ((), "at least one band"),
])
def test_bad_bands_are_refused_naming_the_band_and_the_fault(given_bands: tuple, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy("p", bands(*given_bands))


@pytest.mark.parametrize(("changes", "message"), [
    ({"bands": ((0, 1, "PANIC"),)}, r"band 1: unknown action 'PANIC' \(allowed: ALLOW, REQUIRE_OTP"),
    ({"rules": (("moon_phase", "DENY"),)}, r"rule 1: unknown condition 'moon_phase'"),
    ({"rules": (Rule(Condition.REPLAYED_PATTERN, Action.DENY), Rule(Condition.REPLAYED_PATTERN, Action.FLAG_SESSION))},
     "rule 2: condition replayed_pattern already has a rule"),
    ({"policy_id": ""}, "policy id '' must be"),
    ({"policy_id": "a b"}, "policy id 'a b' must be"),
    ({"revision": -1}, "revision must be a whole number"),
    ({"min_enrolment_windows": -3}, "min_enrolment_windows must be a whole number"),
])
def test_bad_fields_are_refused_with_a_clear_message(changes: dict, message: str) -> None:
    fields = {"policy_id": "p", "bands": ((0, 1, "ALLOW"),), **changes}

    with pytest.raises(PolicyError, match=message):
        Policy(**fields)


# -- JSON ------------------------------------------------------------------------------------------
def test_policies_survive_a_json_round_trip() -> None:
    custom = Policy("strict", bands((0, 0.3, "ALLOW"), (0.3, 0.5, "REQUIRE_OTP"), (0.5, 1, "DENY")),
                    rules=(Rule(Condition.REPLAYED_PATTERN, Action.DENY),), min_enrolment_windows=5,
                    revision=3, description="for the demo")

    for policy in (DEFAULT_POLICY, custom):
        assert Policy.from_json(policy.to_json()) == policy
        assert json.loads(policy.to_json())["policy_id"] == policy.policy_id


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a policy is a JSON object, got list"),
    ('{"policy_id": "p"}', "the policy has no 'bands'"),
    ('{"policy_id": "p", "bands": [], "colour": "red"}', r"unknown policy field\(s\) \['colour'\]"),
    ('{"policy_id": "p", "bands": [{"lower": 0, "action": "ALLOW"}]}', "band 1 has no upper"),
    ('{"policy_id": "p", "bands": 7}', "bands must be a list, got int"),
    ('{"policy_id": "p", "bands": [{"lower": 0, "upper": 0.7, "action": "ALLOW"},'
     ' {"lower": 0.6, "upper": 1, "action": "DENY"}]}', "band 2 .* overlaps band 1"),
])
def test_bad_json_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_json(text)


# -- stored policies ----------------------------------------------------------------------------------
def test_the_default_policy_is_installed_once_on_first_use(store: Store) -> None:
    assert store.table_counts()["policies"] == 0

    assert latest_policy(store) == DEFAULT_POLICY
    assert latest_policy(store, "default") == DEFAULT_POLICY
    listed = policy_revisions(store)

    assert listed.select("policy_id", "revision").rows() == [("default", 1)]
    assert Policy.from_json(listed["body"][0]) == DEFAULT_POLICY
    assert store.rows("SELECT actor, action, subject FROM audit_log") == [("system", "policy_change", "default")]


def test_saving_makes_a_new_revision_and_audits_it(store: Store) -> None:
    latest_policy(store)
    stricter = Policy("default", bands((0, 0.5, "ALLOW"), (0.5, 0.9, "REQUIRE_OTP"), (0.9, 1, "DENY")), revision=99)

    saved = save_policy(store, stricter, actor="analyst")

    assert saved.revision == 2  # max + 1; the revision the caller set is ignored
    assert latest_policy(store) == saved
    assert policy_at_revision(store, "default", 1) == DEFAULT_POLICY
    assert policy_revisions(store).select("policy_id", "revision").rows() == [("default", 2), ("default", 1)]
    actor, subject, details = store.rows(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'policy_change' ORDER BY audit_id")[-1]
    assert (actor, subject) == ("analyst", "default")
    assert json.loads(details)["revision"] == 2
    assert json.loads(details)["previous_revision"] == 1
    assert Policy.from_dict(json.loads(details)["policy"]) == saved


def test_a_new_policy_id_starts_at_revision_1(store: Store) -> None:
    saved = save_policy(store, Policy("night", bands((0, 1, "REQUIRE_OTP"))), actor="analyst")

    assert saved.revision == 1
    assert latest_policy(store, "night") == saved


def test_unknown_policies_and_revisions_are_refused_clearly(store: Store) -> None:
    with pytest.raises(UnknownPolicyError, match="no policy 'nope' is stored"):
        latest_policy(store, "nope")
    with pytest.raises(UnknownPolicyError, match=r"policy 'default' has no revision 7 \(stored revisions: \[1\]\)"):
        policy_at_revision(store, "default", 7)


def test_a_refused_policy_changes_nothing(store: Store) -> None:
    latest_policy(store)
    before = store.table_counts()

    with pytest.raises(PolicyError):
        save_policy(store, Policy.from_json('{"policy_id": "default", "bands": [[0, 0.7, "ALLOW"], [0.5, 1, "DENY"]]}'),
                    actor="analyst")

    assert store.table_counts() == before


# -- stored decisions -----------------------------------------------------------------------------
T0 = datetime(2026, 3, 1, 12, 0, 0)


def record(store: Store, risk: float, user: str, at: datetime, context: DecisionContext | None = None,
           policy: Policy | None = None) -> str:
    made = decide(risk, policy or latest_policy(store), context)
    record = DecisionRecord(made, user_id=user, session_id=f"s-{user}", window_id=f"w-{user}-{at:%H%M}",
                            detectors={"iforest": "model-7"}, top_features=[("dwell_mean", 0.41), ("ud_flight", 0.2)],
                            decided_at=at)
    return record_decisions(store, [record])[0]


@pytest.fixture
def decided(store: Store) -> Store:
    """Five decisions: alice ALLOW, alice REQUIRE_OTP, bob DENY (rev 1); bob FLAG, carol ALLOW (rev 2)."""
    record(store, 0.1, "alice", T0)
    record(store, inside("REQUIRE_OTP"), "alice", T0 + timedelta(minutes=30))
    record(store, 0.99, "bob", T0 + timedelta(hours=1))
    stricter = save_policy(store, Policy("default", bands((0, 0.5, "ALLOW"), (0.5, 0.9, "FLAG_SESSION"),
                                                          (0.9, 1, "DENY"))), actor="analyst")
    record(store, 0.6, "bob", T0 + timedelta(hours=2), policy=stricter)
    record(store, 0.2, "carol", T0 + timedelta(hours=2, minutes=5), policy=stricter)
    return store


def test_a_recorded_decision_keeps_everything_needed_to_explain_it(store: Store) -> None:
    decision_id = record(store, inside("REQUIRE_OTP"), "alice", T0, DecisionContext(enrolment_windows=3))

    row = decisions(store).row(0, named=True)

    assert row["decision_id"] == decision_id
    assert (row["user_id"], row["session_id"], row["window_id"]) == ("alice", "s-alice", "w-alice-1200")
    assert (row["action"], row["verdict"], row["risk"]) == ("REQUIRE_OTP", "UNSAFE", inside("REQUIRE_OTP"))
    assert (row["policy_id"], row["policy_rev"], row["decided_at"]) == ("default", 1, T0)
    assert json.loads(row["detectors"]) == {"iforest": "model-7"}
    assert json.loads(row["top_features"]) == [{"feature": "dwell_mean", "contribution": 0.41},
                                               {"feature": "ud_flight", "contribution": 0.2}]
    needed = DEFAULT_POLICY.min_enrolment_windows
    assert json.loads(row["reasons"])[1] == f"not enough enrolment (3 of {needed} windows) → at least REQUIRE_OTP"
    audit_row = store.rows("SELECT actor, subject, details FROM audit_log WHERE action = 'decision'")
    assert [(a, s) for a, s, _ in audit_row] == [("scorer", decision_id)]
    assert json.loads(audit_row[0][2])["policy_revision"] == 1


def test_an_aware_decision_time_is_stored_in_utc(store: Store) -> None:
    record(store, 0.1, "alice", datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))

    assert decisions(store)["decided_at"][0] == T0


@pytest.mark.parametrize(("filters", "users"), [
    ({}, ["carol", "bob", "bob", "alice", "alice"]),
    ({"user_id": "alice"}, ["alice", "alice"]),
    ({"verdict": "SAFE"}, ["carol", "alice"]),
    ({"action": "DENY"}, ["bob"]),
    ({"since": T0 + timedelta(minutes=30), "until": T0 + timedelta(hours=2)}, ["bob", "alice"]),
    ({"since": T0 + timedelta(minutes=30, microseconds=1)}, ["carol", "bob", "bob"]),
    ({"policy_id": "default", "policy_revision": 2}, ["carol", "bob"]),
    ({"user_id": "bob", "verdict": "UNSAFE", "policy_revision": 1}, ["bob"]),
    ({"limit": 2}, ["carol", "bob"]),
])
def test_decisions_filter_newest_first(decided: Store, filters: dict, users: list[str]) -> None:
    assert decisions(decided, **filters)["user_id"].to_list() == users


@pytest.mark.parametrize(("filters", "message"), [({"verdict": "safe"}, "unknown verdict 'safe'"),
                                                  ({"action": "BLOCK"}, "unknown action 'BLOCK'")])
def test_unknown_filter_values_are_refused(decided: Store, filters: dict, message: str) -> None:
    for read in (review.decisions_for, review.decisions_export):
        with pytest.raises(ValueError, match=message):
            read(decided, [], **filters)
    with pytest.raises(ValueError, match=message):
        review.counts_for(decided, [], "hour", **filters)


def test_a_decision_whose_verdict_contradicts_its_action_cannot_be_made() -> None:
    made = decide(0.99, DEFAULT_POLICY)
    with pytest.raises(ValueError, match="does not match its action DENY"):
        replace(made, verdict=Verdict.SAFE)


def test_decision_counts_per_bucket(decided: Store) -> None:
    hourly = decision_counts_over_time(decided, "hour")

    assert hourly.rows() == [
        (T0, "ALLOW", "SAFE", 1), (T0, "REQUIRE_OTP", "UNSAFE", 1),
        (T0 + timedelta(hours=1), "DENY", "UNSAFE", 1),
        (T0 + timedelta(hours=2), "ALLOW", "SAFE", 1), (T0 + timedelta(hours=2), "FLAG_SESSION", "UNSAFE", 1),
    ]
    assert decision_counts_over_time(decided, "day", verdict="UNSAFE").rows() == [
        (datetime(2026, 3, 1), "DENY", "UNSAFE", 1), (datetime(2026, 3, 1), "FLAG_SESSION", "UNSAFE", 1),
        (datetime(2026, 3, 1), "REQUIRE_OTP", "UNSAFE", 1)]
    with pytest.raises(ValueError, match="unknown bucket 'fortnight'"):
        decision_counts_over_time(decided, "fortnight")


def test_csv_export_has_the_filtered_decisions_and_is_audited_when_handed_out(decided: Store) -> None:
    before = decided.table_counts()["audit_log"]

    preview = decisions_csv(decided, user_id="bob")
    assert decided.table_counts()["audit_log"] == before  # building a preview is not an export
    data = decisions_csv(decided, actor="analyst", user_id="bob")

    assert data == preview
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert list(rows[0]) == list(DECISION_COLUMNS)
    assert [(r["user_id"], r["action"]) for r in rows] == [("bob", "FLAG_SESSION"), ("bob", "DENY")]
    actor, action, subject, details = decided.rows(
        "SELECT actor, action, subject, details FROM audit_log ORDER BY audit_id DESC LIMIT 1")[0]
    assert (actor, action, subject) == ("analyst", "export", "decisions.csv")
    assert json.loads(details) == {"rows": 2, "filters": {"user_id": "bob"}}


def test_a_decision_under_an_unsaved_policy_is_refused_and_nothing_is_stored(store: Store) -> None:
    draft = Policy("draft", bands((0, 1, "ALLOW")))
    before = store.table_counts()

    with pytest.raises(UnknownPolicyError, match="policy 'draft' revision 0, which is not stored"):
        record_decisions(store, [DecisionRecord(decide(0.2, draft), user_id="alice", decided_at=datetime.now(UTC))])

    assert store.table_counts() == before


def test_decisions_recorded_together_keep_their_order_each_with_its_audit_row(store: Store) -> None:
    policy = latest_policy(store)
    risks = [0.1, 0.95, 0.5]
    made = [DecisionRecord(decide(r, policy), user_id="alice", session_id="s1", window_id=f"s1:time:{i}",
                           detectors={"lof": f"m{i}"}, top_features=[("dwell_mean", 2.0 + i)])
            for i, r in enumerate(risks)]

    ids = record_decisions(store, made)

    stored = store.rows("SELECT decision_id, window_id, risk, action FROM decisions ORDER BY window_id")
    assert [(d, w, r) for d, w, r, _ in stored] == list(zip(ids, [m.window_id for m in made], risks, strict=True))
    assert [a for *_, a in stored] == [str(decide(r, policy).action) for r in risks]
    audited = store.rows("SELECT subject, details FROM audit_log WHERE action = 'decision' ORDER BY audit_id")
    assert [s for s, _ in audited] == ids
    assert [json.loads(d)["window_id"] for _, d in audited] == [m.window_id for m in made]


def test_one_decision_under_an_unsaved_policy_refuses_the_whole_batch(store: Store) -> None:
    saved = latest_policy(store)
    draft = Policy("draft", bands((0, 1, "ALLOW")))
    before = store.table_counts()

    with pytest.raises(UnknownPolicyError, match="policy 'draft' revision 0"):
        record_decisions(store, [DecisionRecord(decide(0.2, saved), user_id="alice"),
                                 DecisionRecord(decide(0.2, draft), user_id="alice")])

    assert store.table_counts() == before


def test_numpy_risks_and_edges_are_plain_numbers_to_the_policy() -> None:
    import numpy as np

    policy = Policy("np", [Band(np.float32(0), np.float32(0.5), "ALLOW"), (np.float64(0.5), np.int64(1), "DENY")])

    assert decide(np.float32(0.5), policy).action is Action.DENY
    assert Policy.from_json(policy.to_json()) == policy
    assert all(type(edge) is float for band in policy.bands for edge in (band.lower, band.upper))


@pytest.mark.parametrize(("risk", "context", "decisive"), [
    (0.05, DecisionContext(enrolment_windows=50), "is in band ALLOW"),  # the band alone
    (0.05, DecisionContext(enrolment_windows=50, replayed=True), "replayed pattern"),  # a rule escalated
    (0.7, DecisionContext(enrolment_windows=2), "is in band REQUIRE_OTP"),  # a rule fired, the band already asked
    (0.05, DecisionContext(enrolment_windows=2, replayed=True), "replayed pattern"),  # the stricter of two rules
    (0.97, DecisionContext(enrolment_windows=2), "is in band DENY"),
])
def test_the_decisive_reason_is_the_one_that_set_the_action(risk: float, context: DecisionContext,
                                                            decisive: str) -> None:
    decision = decide(risk, POLICY, context)
    reason = decisive_reason(decision.reasons, decision.action)
    assert decisive in reason and reason in decision.reasons
    assert decisive_reason(list(decision.reasons), str(decision.action)) == reason  # as read back from the store


def test_a_decision_without_reasons_has_no_decisive_reason() -> None:
    assert decisive_reason([], "ALLOW") is None
    assert decisive_reason(["written by something else"], "DENY") == "written by something else"
