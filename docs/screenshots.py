"""Screenshots of every page for the README: `.venv/bin/python docs/screenshots.py [--out docs/screenshots]`.

A fresh store in a temporary folder gets the sample data (`python -m app init`), the app starts on it
(scheduler off, so the pages show the sample data as loaded) and headless Debian chromium opens each
page through the navigation, as a person would, and saves a full-page PNG. The Capture page's pictures
come from the browser test (`tests/test_browser_capture.py` saves them in test-artifacts/).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, app_process  # noqa: E402

#: (navigation link, text that shows once the page has drawn, file name)
PAGES = [
    ("Overview", "users", "overview.png"),
    ("Live monitor", "Show the last", "live.png"),
    ("Investigation", "Keystroke rhythm", "investigation.png"),
    ("History", "Risk and action of each decision", "history.png"),
    ("Threshold lab", "Sensitivity", "threshold-lab.png"),
    ("Models", "Train now", "models.png"),
    ("Step-up", "authenticator", "stepup.png"),
    ("Audit", "audit", "audit.png"),
    ("Data", "Upload", "data.png"),
]


#: True once the page shows no loading placeholder and every Plotly chart has drawn its SVG (charts and
#: tables draw after the page's text).
CHARTS_DRAWN = """() => !document.querySelector('[data-testid^="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .every(chart => chart.querySelector('.main-svg'))"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "screens.duckdb"
        subprocess.run([sys.executable, "-m", "app", "init", "--db", str(db)], cwd=ROOT, check=True,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        with app_process(db, Path(scratch) / "app.log", env={"TELLTALE_SCHEDULER": "off"}) as (url, _), \
                sync_playwright() as play:
            browser = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            for link, shown, name in PAGES:
                page.get_by_role("link", name=link).click()
                page.get_by_text(shown).first.wait_for(timeout=120_000)
                page.wait_for_load_state("networkidle")
                page.wait_for_function(CHARTS_DRAWN, timeout=120_000)
                page.screenshot(path=str(args.out / name), full_page=True)
                print(f"{link}: {args.out / name}", file=sys.stderr)
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
