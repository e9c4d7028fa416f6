"""Every setting in one declarative table: name, environment variable, default, help.

`TELLTALE_*` environment variables override the defaults. docs/settings.md is this table as
`python -m app settings --markdown` prints it; `tests/test_settings.py` fails when they differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    def default_value(self) -> Any:
        """The default as `get` returns it (a setting written as text, like kind weights, parsed)."""
        return self.default if self.parse in (str, int, float) else self.parse(str(self.default))


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "TELLTALE_DB", str(ROOT / "var" / "telltale.duckdb"),
            "DuckDB file of the event store (CLI: --db wins over it)."),
    Setting("port", "PORT", 8501, "Port of the Streamlit app started by `make run` (on 127.0.0.1).", int),
    Setting("sample_data", "TELLTALE_SAMPLE_DATA", str(ROOT / "sample_data"),
            "Folder loaded into an empty store on first start."),
    Setting("ingest_chunk_rows", "TELLTALE_INGEST_CHUNK_ROWS", 1_000_000,
            "Rows of a CSV held in memory at once while importing (bounds memory for huge files).", int),
    Setting("scheduler", "TELLTALE_SCHEDULER", "on",
            "`off` starts the app without its scheduled jobs (sampling, inbox, scoring).",
            lambda raw: _choice(raw, ("on", "off"))),
    Setting("sample_seconds", "TELLTALE_SAMPLE_SECONDS", 1.0, "Interval of the CPU/memory sampler job, in seconds.",
            float),
    Setting("inbox_seconds", "TELLTALE_INBOX_SECONDS", 1.0,
            "Interval of the job that stores batches posted to the inbox (live streams), in seconds.", float),
    Setting("fixed_text_keys", "TELLTALE_FIXED_TEXT_KEYS", 12,
            "Key presses of one fixed-phrase repetition (.tie5Roanl + Shift + Enter = 12).", int),
    Setting("free_text_keys", "TELLTALE_FREE_TEXT_KEYS", 30, "Keystrokes per free-text window.", int),
    Setting("mouse_actions", "TELLTALE_MOUSE_ACTIONS", 5, "Mouse actions per mouse window.", int),
    Setting("time_window_seconds", "TELLTALE_TIME_WINDOW_SECONDS", 10.0, "Length of a time window, in seconds.",
            float),
    Setting("session_idle_seconds", "TELLTALE_SESSION_IDLE_SECONDS", 30.0,
            "A session without new events for this long is finalized (its last partial windows are built).",
            float),
    Setting("score_seconds", "TELLTALE_SCORE_SECONDS", 2.0,
            "Interval of the job that builds windows from new events and scores them, in seconds.", float),
    Setting("retrain_check_seconds", "TELLTALE_RETRAIN_CHECK_SECONDS", 60.0,
            "Interval of the job that retrains users with enough new genuine windows, in seconds.", float),
    Setting("retrain_after_windows", "TELLTALE_RETRAIN_AFTER_WINDOWS", 10,
            "New training windows of a user (all kinds together) that trigger a retrain of their models; a kind "
            "without a model is trained as soon as it has TELLTALE_MIN_ENROLMENT_WINDOWS.", int),
    Setting("nightly_hour", "TELLTALE_NIGHTLY_HOUR", 3, "Hour (UTC, 0-23) of the nightly full retrain.", int),
    Setting("drift_seconds", "TELLTALE_DRIFT_SECONDS", 600.0, "Interval of the drift check job, in seconds.", float),
    Setting("release_memory_seconds", "TELLTALE_RELEASE_MEMORY_SECONDS", 60.0,
            "Interval of the job that frees what DuckDB keeps for the temporary blocks of past queries, in "
            "seconds (without it a long-running app grows by about 200 MB an hour).", float),
    Setting("drift_limit", "TELLTALE_DRIFT_LIMIT", 2.0,
            "A feature mean shifted by more than this many training standard deviations flags drift.", float),
    Setting("enrolment_repetitions", "TELLTALE_ENROLMENT_REPETITIONS", 10,
            "Clean repetitions of the phrase the Capture page asks for at enrolment.", int),
    Setting("enrolment_sessions", "TELLTALE_ENROLMENT_SESSIONS", 6,
            "A user's first N sessions are their enrolment (training windows), with explicit 'enrol-' sessions "
            "and later sessions whose decisions were all SAFE.", int),
    Setting("sensitivity", "TELLTALE_SENSITIVITY", 0.0,
            "In [-1, 1]: how much a typical window wears a session's evidence down. 0 is the calibrated balance, "
            "+1 never (flags more), -1 twice as much (flags less); nothing is refitted.", float),
    Setting("min_enrolment_windows", "TELLTALE_MIN_ENROLMENT_WINDOWS", 5,
            "Windows of a kind a user needs before a personal model is trained (else the global model "
            "scores them and the decision says 'not enough enrolment').", int),
    Setting("detectors", "TELLTALE_DETECTORS", "background,manhattan_scaled",
            "Detectors trained per user and window kind (comma-separated registry names).",
            lambda raw: _detector_list(raw)),
    Setting("target_frr", "TELLTALE_TARGET_FRR", 0.05,
            "A window on its own is flagged when it is rarer than this share of the user's genuine windows "
            "(measured on sessions the model did not see).", float),
    Setting("evidence_shift", "TELLTALE_EVIDENCE_SHIFT", 1.0,
            "How far above a genuine window (in standard deviations) a session's evidence expects an attacker's "
            "windows: larger reacts harder to one strong window and forgives mild ones faster.",
            lambda raw: _positive(float(raw))),
    Setting("kind_weights", "TELLTALE_KIND_WEIGHTS", "fixed_text=1,free_text=1,mouse=1,time=0.5",
            "Weight of each window kind in a session's evidence (kind=weight, comma-separated; 0 leaves a kind "
            "out of decisions).", lambda raw: _weights(raw)),
    Setting("upload_limit_mb", "TELLTALE_UPLOAD_LIMIT_MB", 200,
            "Largest CSV the Data page accepts, in MB (the CLI has no limit: it streams).", int),
    Setting("otp_expiry_seconds", "TELLTALE_OTP_EXPIRY_SECONDS", 300,
            "Seconds a one-time-code challenge stays open after it is issued.", int),
    Setting("expire_challenges_seconds", "TELLTALE_EXPIRE_CHALLENGES_SECONDS", 5.0,
            "Interval of the job that marks one-time-code challenges past their expiry as expired, in seconds.",
            float),
)
_BY_NAME = {s.name: s for s in SETTINGS}


#: Registry names of detectors (tests/test_settings.py checks this against the registry;
#: importing the registry here would load PyOD and torch into every CLI command).
KNOWN_DETECTORS = ("iforest", "lof", "autoencoder", "manhattan_scaled", "manhattan_log", "zscore_count",
                   "background", "ensemble")


def _detector_list(raw: str) -> str:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if not names or any(name not in KNOWN_DETECTORS for name in names):
        raise ValueError(raw)
    return ",".join(names)


def _positive(value: float) -> float:
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(value)
    return value


WINDOW_KINDS = ("fixed_text", "free_text", "mouse", "time")


def _weights(raw: str) -> dict[str, float]:
    """"fixed_text=1,time=0.5" -> {kind: weight}; every kind named once, weights finite and >= 0."""
    weights: dict[str, float] = {}
    for part in (piece.strip() for piece in raw.split(",") if piece.strip()):
        kind, _, value = part.partition("=")
        number = float(value)
        if kind.strip() not in WINDOW_KINDS or kind.strip() in weights or not 0 <= number < float("inf"):
            raise ValueError(raw)
        weights[kind.strip()] = number
    return weights


def _choice(raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ValueError(raw)
    return raw


def get(name: str) -> Any:
    """The setting's value: its environment variable when set and non-empty, else the default."""
    setting = _BY_NAME[name]
    raw = os.environ.get(setting.env)
    if raw is None or raw == "":
        return setting.default_value()
    try:
        return setting.parse(raw)
    except ValueError:
        raise SystemExit(f"{setting.env}={raw!r} is not valid: {setting.help}") from None


def markdown_table() -> str:
    """Every setting as a Markdown table (docs/settings.md holds exactly this; a test compares them)."""
    escape = {"|": "\\|"}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{row['variable']}` | `{row['default']}` | {row['meaning'].translate(str.maketrans(escape))} |"
             for row in as_table()]
    return "\n".join(rows)


def current() -> list[dict[str, str]]:
    """Each setting's value in this environment and where it comes from (the environment or the default)."""
    return [{"variable": s.env, "value": str(get(s.name)) if not isinstance(get(s.name), dict) else
             ",".join(f"{k}={v:g}" for k, v in get(s.name).items()),
             "source": "environment" if os.environ.get(s.env) else "default"} for s in SETTINGS]


def as_table() -> list[dict[str, str]]:
    """Rows for the docs and the Data page: variable, default, meaning."""
    return [{"variable": s.env, "default": str(s.default).replace(str(ROOT) + "/", ""), "meaning": s.help}
            for s in SETTINGS]
