"""Shape of the latency benchmark on tiny sizes (timings belong to `python -m app bench latency`)."""

from __future__ import annotations

from bench.latency import TARGET_P99_MS, bench_latency

PERCENTILES = {"p50", "p90", "p99", "max"}


def test_bench_latency_reports_percentiles_beside_the_baseline() -> None:
    result = bench_latency(5, users=3, enrolment_sessions=10, seed=3, enrolment_days=8, stages=True,
                           stage_sessions=2)
    assert {"sessions", "windows", "ours_ms", "baseline_ms", "target_p99_ms", "within_target",
            "stages_ms"} <= set(result)
    assert result["sessions"] == 5
    assert result["decided_windows_by_kind"].get("fixed_text") == 5  # every login is decided by its phrase
    assert result["windows"] == sum(result["decided_windows_by_kind"].values())
    assert set(result["ours_ms"]) == set(result["baseline_ms"]) == PERCENTILES
    assert all(v >= 0 for v in [*result["ours_ms"].values(), *result["baseline_ms"].values()])
    assert result["target_p99_ms"] == TARGET_P99_MS
    assert result["within_target"] == (result["ours_ms"]["p99"] < TARGET_P99_MS)
    assert {"ingest", "featurize", "window_lookup", "score_windows"} <= set(result["stages_ms"])
