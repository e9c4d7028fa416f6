"""Shape of the detector benchmark on tiny sizes (timings belong to `python -m app bench detectors`)."""

from __future__ import annotations

import numpy as np

from bench.detectors import bench_detectors, simulated_windows


def test_simulated_windows_are_fixed_text_shaped_and_seeded() -> None:
    X, user, names = simulated_windows(3, 5, seed=1)
    assert X.shape == (15, 38) and len(names) == 38
    assert np.isfinite(X).all()
    assert user.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.array_equal(X, simulated_windows(3, 5, seed=1)[0])


def test_bench_detectors_reports_every_figure_per_detector() -> None:
    detectors = ("manhattan_log", "lof")
    result = bench_detectors(users=3, windows_per_user=20, sizes=(10, 20), fit_users=2, score_windows=100,
                             detectors=detectors)
    assert {"fit_s", "score_per_s", "retrain_100_users_s", "retrain_by_detector_s",
            "baseline_retrain_100_users_s", "ratio", "extrapolated_from_users"} <= set(result)
    assert set(result["fit_s"]) == set(detectors)
    assert all(list(sizes) == ["10", "20"] for sizes in result["fit_s"].values())
    assert set(result["score_per_s"]) == set(result["retrain_by_detector_s"]) == set(detectors)
    assert result["retrain_100_users_s"] == round(sum(result["retrain_by_detector_s"].values()), 2)
    assert result["baseline_retrain_100_users_s"] > 0
    assert result["users"] == 3 and result["features"] == 38


def test_bench_detectors_extrapolates_a_retrain_over_its_budget() -> None:
    result = bench_detectors(users=4, windows_per_user=12, sizes=(12,), fit_users=2, score_windows=50,
                             detectors=("zscore_count",), retrain_budget_s=0.0)
    assert result["extrapolated_from_users"] == {"zscore_count": 2}
    assert list(result["fit_s"]["zscore_count"]) == ["12"]


def test_bench_detectors_times_pyod_beside_the_detector_it_is_a_reference_for() -> None:
    result = bench_detectors(users=3, windows_per_user=12, sizes=(12,), fit_users=2, score_windows=50,
                             detectors=("iforest",))
    beside = result["pyod_beside_ours"]["iforest"]
    assert beside["pyod"] == "pyod_iforest"
    assert set(beside["fit_s"]) == set(beside["bare_fit_s"]) == set(beside["retrain_s"]) == {"ours", "pyod"}
    assert list(beside["bare_fit_s"]["pyod"]) == ["12"]
    assert set(result["retrain_by_detector_s"]) == {"iforest"}  # references stay out of the total
