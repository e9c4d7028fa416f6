"""Shape of the page benchmark's render part on a tiny store (timings belong to `python -m app bench pages`;
the memory soak needs a browser and minutes, so it is not run here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pages import PAGES, _rss_summary, build_store, page_render_times


@pytest.fixture
def tiny_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TELLTALE_DB", "TELLTALE_SCHEDULER", "TELLTALE_DETECTORS"):  # the bench sets them; restore after
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("TELLTALE_ENROLMENT_SESSIONS", "4")
    db = tmp_path / "tiny.duckdb"
    built = build_store(db, users=3, sessions=6, seed=5)
    assert 1_000 <= built["events"] <= 50_000
    assert built["counts"]["decisions"] > 0
    return db


def test_render_times_cover_every_page_with_a_baseline(tiny_store: Path) -> None:
    result = page_render_times(tiny_store)
    names = sorted(p.stem for p in PAGES.glob("*.py"))
    assert sorted(result["pages"]) == names
    for figures in result["pages"].values():
        assert set(figures) == {"first_s", "rerun_s", "errors"}
        assert figures["first_s"] > 0 and figures["rerun_s"] > 0
        assert figures["errors"] == []
    assert result["target_s"] == 1.0
    assert result["baseline_s"] > 0 and "st.write" in result["baseline"]
    assert result["overview_s"] == result["pages"]["overview"]["first_s"]
    assert result["slowest"] in names
    assert set(result["over_target"]) <= set(names)


def test_rss_summary_fits_a_slope_in_mb_per_hour() -> None:
    summary = _rss_summary([(0.0, 100.0), (1800.0, 105.0), (3600.0, 110.0)])
    assert summary == {"samples": 3, "start_mb": 100.0, "end_mb": 110.0, "max_mb": 110.0, "slope_mb_per_hour": 10.0,
                       "second_half_slope_mb_per_hour": 10.0, "mean_mb_by_10_min": [100.0, 105.0, 110.0]}


def test_rss_summary_tells_a_plateau_from_a_climb() -> None:
    plateau = [(t * 60.0, min(100.0 + t, 120.0)) for t in range(60)]  # +1 MB a minute for 20 min, then flat
    summary = _rss_summary(plateau)
    assert summary["slope_mb_per_hour"] > 0
    assert summary["second_half_slope_mb_per_hour"] == 0.0
    assert summary["mean_mb_by_10_min"] == [104.5, 114.5, 120.0, 120.0, 120.0, 120.0]
