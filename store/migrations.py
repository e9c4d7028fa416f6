"""Numbered schema migrations. Append new ones; never edit a released one.

`schema_version` records each applied number, so opening an old file upgrades it in place and a
file from a newer Telltale is refused instead of being misread.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE users (
            user_id     VARCHAR PRIMARY KEY,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE sessions (
            session_id  VARCHAR PRIMARY KEY,
            user_id     VARCHAR NOT NULL,
            started_at  TIMESTAMP NOT NULL,       -- wall clock of t_ms = 0 (UTC)
            source      VARCHAR NOT NULL
        );
        -- Ground truth of simulated or labelled sessions: for evaluation only, detectors never read it.
        CREATE TABLE session_labels (
            session_id  VARCHAR PRIMARY KEY,
            label       VARCHAR NOT NULL,         -- genuine, impostor, bot, replay, hijack
            actor_id    VARCHAR,                  -- who really produced the session, when known
            takeover_ms DOUBLE                    -- hijack: t_ms of the first foreign event
        );
        -- The canonical event schema (ARCHITECTURE.md). No characters, no key codes.
        CREATE TABLE events (
            session_id  VARCHAR NOT NULL,
            user_id     VARCHAR NOT NULL,
            seq         BIGINT NOT NULL,
            t_ms        DOUBLE NOT NULL,          -- ms since session start, non-decreasing in seq
            type        VARCHAR NOT NULL,
            key_class   VARCHAR,
            press_id    BIGINT,
            pos         INTEGER,
            field       VARCHAR,
            x           DOUBLE,
            y           DOUBLE,
            button      VARCHAR,
            source      VARCHAR NOT NULL
        );
        CREATE TABLE feature_schemas (
            schema_id   VARCHAR PRIMARY KEY,      -- hash of the feature names in order
            kind        VARCHAR NOT NULL,
            names       VARCHAR[] NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE feature_windows (
            window_id   VARCHAR PRIMARY KEY,
            user_id     VARCHAR NOT NULL,
            session_id  VARCHAR NOT NULL,
            kind        VARCHAR NOT NULL,         -- fixed_text, free_text, mouse, time
            schema_id   VARCHAR NOT NULL,
            start_ms    DOUBLE,
            end_ms      DOUBLE,
            n_events    BIGINT,
            features    DOUBLE[] NOT NULL,        -- in the order of feature_schemas.names
            source      VARCHAR NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE models (
            model_id    VARCHAR PRIMARY KEY,
            user_id     VARCHAR,                  -- null: the global model
            kind        VARCHAR NOT NULL,
            detector    VARCHAR NOT NULL,
            schema_id   VARCHAR NOT NULL,
            trained_at  TIMESTAMP NOT NULL,
            n_samples   BIGINT NOT NULL,
            seed        BIGINT,
            metadata    JSON,
            blob        BLOB NOT NULL,
            active      BOOLEAN NOT NULL DEFAULT true
        );
        CREATE TABLE scores (
            window_id   VARCHAR NOT NULL,
            model_id    VARCHAR NOT NULL,
            raw_score   DOUBLE NOT NULL,
            risk        DOUBLE,                   -- raw score normalised per user, in [0, 1]
            scored_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE policies (
            policy_id   VARCHAR NOT NULL,
            revision    INTEGER NOT NULL,
            body        JSON NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (policy_id, revision)
        );
        CREATE TABLE decisions (
            decision_id VARCHAR PRIMARY KEY,
            window_id   VARCHAR,
            session_id  VARCHAR,
            user_id     VARCHAR,
            policy_id   VARCHAR NOT NULL,
            policy_rev  INTEGER NOT NULL,
            risk        DOUBLE,
            action      VARCHAR NOT NULL,         -- ALLOW, REQUIRE_OTP, FLAG_SESSION, DENY
            verdict     VARCHAR NOT NULL,         -- SAFE, UNSAFE
            reasons     JSON,
            detectors   JSON,
            top_features JSON,
            decided_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE otp_enrolments (
            user_id     VARCHAR PRIMARY KEY,
            secret      VARCHAR NOT NULL,         -- never exported, logged or shown after enrolment
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE otp_events (
            challenge_id VARCHAR NOT NULL,
            user_id     VARCHAR NOT NULL,
            outcome     VARCHAR NOT NULL,         -- issued, verified, failed, expired, locked, unlocked
            detail      VARCHAR,
            happened_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE SEQUENCE audit_seq;
        -- Append-only: the code has no UPDATE or DELETE path for this table.
        CREATE TABLE audit_log (
            audit_id    BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
            happened_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            actor       VARCHAR NOT NULL,
            action      VARCHAR NOT NULL,
            subject     VARCHAR,
            details     JSON
        );
        CREATE TABLE system_metrics (
            sampled_at  TIMESTAMP NOT NULL,
            cpu_percent DOUBLE NOT NULL,
            mem_percent DOUBLE NOT NULL,
            rss_mb      DOUBLE,
            source      VARCHAR NOT NULL          -- psutil, simulator
        );
        CREATE TABLE job_runs (
            job_id      VARCHAR NOT NULL,
            started_at  TIMESTAMP NOT NULL,
            duration_ms DOUBLE NOT NULL,
            rows        BIGINT,
            error       VARCHAR
        );
        """,
    ),
    (
        2,
        "otp challenges and replay guard",
        """
        -- The last TOTP time step (unix seconds // 30) accepted with the user's current secret:
        -- a code of that step or an earlier one is refused (each code is accepted once).
        ALTER TABLE otp_enrolments ADD COLUMN last_accepted_step BIGINT;
        -- One step-up request: issued -> verified | failed (locked) | expired. Times are UTC.
        CREATE TABLE otp_challenges (
            challenge_id    VARCHAR PRIMARY KEY,
            user_id         VARCHAR NOT NULL,
            session_id      VARCHAR,
            decision_id     VARCHAR,              -- the decision that asked for it, when there is one
            status          VARCHAR NOT NULL,     -- issued, verified, failed, expired
            issued_at       TIMESTAMP NOT NULL,
            expires_at      TIMESTAMP NOT NULL,
            failures        INTEGER NOT NULL DEFAULT 0,   -- consecutive wrong or replayed codes
            locked          BOOLEAN NOT NULL DEFAULT false,
            last_failure_at TIMESTAMP,
            resolved_at     TIMESTAMP             -- when it was verified, locked or expired
        );
        """,
    ),
]

MIGRATIONS.append((
    3,
    "live pipeline: session progress and drift checks",
    """
    -- How far the featurize job got with each session: windows are (re)built when events_seen
    -- changes; a session idle for a while is finalized (its last, partial windows are stored too).
    CREATE TABLE session_progress (
        session_id  VARCHAR PRIMARY KEY,
        events_seen BIGINT NOT NULL,
        changed_at  TIMESTAMP NOT NULL,       -- wall clock when events_seen last changed (UTC)
        finalized   BOOLEAN NOT NULL DEFAULT false
    );
    -- Feature distribution shift between a user's training windows and recent windows.
    CREATE TABLE drift_checks (
        user_id     VARCHAR NOT NULL,
        kind        VARCHAR NOT NULL,
        checked_at  TIMESTAMP NOT NULL,
        recent      BIGINT NOT NULL,          -- recent windows compared
        statistic   DOUBLE NOT NULL,          -- largest per-feature shift (see app/jobs.py)
        feature     VARCHAR,                  -- the feature that shifted most
        drifted     BOOLEAN NOT NULL
    );
    """,
))

MIGRATIONS.append((
    4,
    "failures kept per session",
    """
    -- The last failure of building or scoring a session's windows (error text, when, which stage).
    -- A failed session is left out of the scoring queue until it gets new events or is retried;
    -- the other sessions go on.
    ALTER TABLE session_progress ADD COLUMN error VARCHAR;
    ALTER TABLE session_progress ADD COLUMN failed_at TIMESTAMP;
    ALTER TABLE session_progress ADD COLUMN failed_stage VARCHAR;   -- featurize, score
    """,
))

#: The default policy as migration 5 installs it (app.engine.policy.DEFAULT_POLICY at the time, without its
#: revision). Frozen with the migration: a later default needs a migration of its own.
_EVIDENCE_DEFAULT_POLICY = (
    '{"bands": [{"action": "ALLOW", "lower": 0.0, "upper": 0.75}, '
    '{"action": "REQUIRE_OTP", "lower": 0.75, "upper": 0.9}, '
    '{"action": "FLAG_SESSION", "lower": 0.9, "upper": 0.97}, '
    '{"action": "DENY", "lower": 0.97, "upper": 1.0}], '
    '"description": "Risk is the session\'s evidence (1 - e^-S): allow below 0.75; ask for a one-time '
    'code up to 0.9; flag up to 0.97; deny above. Replays and machine-like input are denied.", '
    '"min_enrolment_windows": 5, "policy_id": "default", '
    '"rules": [{"action": "REQUIRE_OTP", "condition": "insufficient_enrolment"}, '
    '{"action": "DENY", "condition": "replayed_pattern"}, {"action": "DENY", "condition": "machine_like"}]}'
)

MIGRATIONS.append((
    5,
    "session evidence on decisions; models recalibrated on held-out sessions",
    """
    -- A decision judges the session after one window: the window on its own (window_risk: 1 - how rare
    -- it is among the user's genuine windows, its detectors combined; flagged: rarer than the target),
    -- how much the window moved the session's evidence, and the evidence after it (nats, app.engine.evidence).
    -- decided_at is the time of the behaviour judged: the session's start plus the window's end.
    ALTER TABLE decisions ADD COLUMN window_risk DOUBLE;
    ALTER TABLE decisions ADD COLUMN evidence DOUBLE;
    ALTER TABLE decisions ADD COLUMN evidence_change DOUBLE;
    ALTER TABLE decisions ADD COLUMN flagged BOOLEAN;
    -- Models saved before calibration on held-out sessions cannot say how rare a score is: retired, and
    -- retrained by the retrain job (or `python -m app train`).
    UPDATE models SET active = false;
    -- Risk is now a session's accumulated evidence, so the default policy's bands mean something new: a
    -- store that has the default policy gets the evidence-era default as its next revision (audited).
    INSERT INTO policies (policy_id, revision, body)
        SELECT 'default', max(revision) + 1,
               json_merge_patch('""" + _EVIDENCE_DEFAULT_POLICY.replace("'", "''") + """',
                                json_object('revision', max(revision) + 1))
        FROM policies WHERE policy_id = 'default' HAVING count(*) > 0;
    INSERT INTO audit_log (actor, action, subject, details)
        SELECT 'system', 'policy_change', 'default',
               json_object('policy_id', 'default', 'revision', revision, 'previous_revision', revision - 1,
                           'policy', body, 'reason', 'schema migration 5: risk is session evidence')
        FROM policies   -- the revision just inserted: the newest, and not the first
        WHERE policy_id = 'default' AND revision > 1
          AND revision = (SELECT max(revision) FROM policies WHERE policy_id = 'default');
    """,
))

LATEST_VERSION: int = MIGRATIONS[-1][0]

#: Tables a user sees counted by `stats`, in display order.
TABLES: tuple[str, ...] = (
    "users", "sessions", "session_labels", "events", "feature_schemas", "feature_windows", "models",
    "scores", "policies", "decisions", "otp_enrolments", "otp_challenges", "otp_events", "audit_log",
    "system_metrics", "job_runs", "session_progress", "drift_checks",
)
