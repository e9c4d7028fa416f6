"""The decision engine: events -> windows -> models -> evidence -> policy -> step-up, and the jobs that
run it. No Streamlit here: the pages, the command line and (later) an HTTP API all call these modules.

- `pipeline`: new events to windows, scores and decisions (`score_windows`, `ingest_and_score`).
- `training`: per-user models from stored windows; `evidence`: a session's evidence from calibrated
  window scores; `policy`: risk to action; `stepup`: one-time codes.
- `jobs` (the scheduler) and `inbox` (events handed over by other processes).
- `history` (re-deciding stored decisions), `replay` (decision evaluation through this path),
  `detector_evaluation` (detectors on public datasets), `samples` (sample data and simulations),
  `stream` (simulated sessions at wall-clock pace), `imports` (files and datasets into the store).
"""
