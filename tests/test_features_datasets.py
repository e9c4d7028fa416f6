"""The feature pipeline on the shared real datasets: every window of every kind that applies is finite.

Reads `../shared/datasets` (next to the repository) and skips with a message when it is absent.
All of the Balabit training part is used (2.25M events, 10 users: import 1.7 s, all windows 1.2-1.9 s);
the whole module took 6-11 s on the two shared cores while other sessions kept them busy.

Window counts asserted below were counted on these files with today's window definitions; the floors sit a
little under them, and each count is also checked against what the parts imply (runs of N per session),
so a silent drop of windows fails even when it stays above a floor.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detectors.features import WINDOW_COLUMNS, WindowSettings, build_windows, feature_names, session_parts

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BALABIT = DATASETS / "balabit-mouse"
AALTO = DATASETS / "aalto-keystrokes"
DEFAULTS = WindowSettings()

pytestmark = pytest.mark.datasets


def need(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: these tests read the shared datasets from ../shared/datasets "
                    "next to the repository")
    return folder


def assert_finite_windows(windows: pl.DataFrame, kind: str) -> None:
    names = feature_names(kind)
    assert windows.columns == [*WINDOW_COLUMNS, *names]
    bad = windows.select(pl.col(names).is_finite().not_().fill_null(True).sum()).row(0, named=True)
    assert {name: count for name, count in bad.items() if count} == {}, f"{kind}: non-finite features"
    assert windows.select(pl.col(WINDOW_COLUMNS).is_null().any()).row(0) == (False,) * len(WINDOW_COLUMNS)
    assert windows["window_id"].is_unique().all()


def runs_per_session(rows: pl.DataFrame, size: int) -> int:
    """Windows that consecutive non-overlapping runs of `size` rows per session make."""
    return int(rows.group_by("session_id").len().select((pl.col("len") // size).sum()).item())


@pytest.fixture(scope="module")
def balabit() -> pl.DataFrame:
    from store.importers.balabit import read_balabit

    return read_balabit(need(BALABIT)).events


@pytest.fixture(scope="module")
def balabit_windows(balabit: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return build_windows(balabit)


@pytest.mark.parametrize("kind", ["mouse", "time"])
def test_balabit_windows_are_finite(kind: str, balabit_windows) -> None:
    assert_finite_windows(balabit_windows[kind], kind)


def test_balabit_window_counts(balabit: pl.DataFrame, balabit_windows) -> None:
    # Measured: 138,648 mouse actions in 65 sessions -> 27,705 windows of 5 actions; 32,794 ten-second slots
    # with any event. Every one of the 10 users gets windows of both kinds. No keys: no keystroke windows.
    actions = session_parts(balabit).actions.collect()
    mouse, time = balabit_windows["mouse"], balabit_windows["time"]
    assert mouse.height == runs_per_session(actions, DEFAULTS.mouse_actions) > 25_000
    assert time.height > 30_000
    assert mouse["user_id"].n_unique() == time["user_id"].n_unique() == balabit["user_id"].n_unique() == 10
    assert balabit_windows["free_text"].height == balabit_windows["fixed_text"].height == 0
    # all three action kinds are common (measured: clicks in 87%, drags in 31%, moves in 85% of windows)
    clicks, drags, moves = mouse.select((pl.col("share_click") > 0).mean(), (pl.col("drag_share") > 0).mean(),
                                        (pl.col("share_move") > 0).mean()).row(0)
    assert clicks > 0.8 and drags > 0.25 and moves > 0.8
    # scroll rows reach the windows (measured: 4,755 time and 3,835 mouse windows scroll)
    assert (time["scroll_rate"] > 0).sum() > 4_000 and (mouse["scroll_rate"] > 0).sum() > 3_000


@pytest.fixture(scope="module", params=["keystroke-sample", "train-dev-test"])
def aalto(request: pytest.FixtureRequest) -> tuple[str, pl.DataFrame, dict[str, pl.DataFrame]]:
    from store.importers.aalto import read_aalto

    events = read_aalto(need(AALTO / request.param)).events
    return request.param, events, build_windows(events)


@pytest.mark.parametrize("kind", ["free_text", "time"])
def test_aalto_windows_are_finite(kind: str, aalto) -> None:
    _, _, windows = aalto
    assert_finite_windows(windows[kind], kind)


#: Measured windows: (free_text of 30 keys, 10-second slots). One Aalto session is one typed sentence
#: (15 to 136 keystrokes, median 48), so most sessions make one free-text window, short ones none.
AALTO_MEASURED = {"keystroke-sample": (2_597, 3_985), "train-dev-test": (1_193, 1_721)}


def test_aalto_window_counts(aalto) -> None:
    folder, events, windows = aalto
    free, time = windows["free_text"], windows["time"]
    measured_free, measured_time = AALTO_MEASURED[folder]
    presses = session_parts(events).presses.collect()
    assert free.height == runs_per_session(presses, DEFAULTS.free_text_keys) > 0.95 * measured_free
    assert time.height > 0.95 * measured_time
    # every participant typed enough for free-text windows
    assert free["user_id"].n_unique() == events["user_id"].n_unique()
    assert windows["mouse"].height == windows["fixed_text"].height == 0
    # real typing overlaps keys (rollover) and corrects itself: measured in 92-96% and 57-61% of windows
    overlapping, correcting = free.select((pl.col("overlap_rate") > 0).mean(),
                                          (pl.col("backspace_ratio") > 0).mean()).row(0)
    assert overlapping > 0.8 and correcting > 0.4
