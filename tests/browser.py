"""Shared pieces of the browser end-to-end tests: a real app process and Debian chromium.

Readiness is polled (the health endpoint, then page text), never waited for with fixed sleeps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    """Poll `condition()` until it is truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)  # polling interval, not synchronisation: the condition decides
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def app_process(db: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `streamlit run app/main.py` on a free port with `db` (and extra `env`); yield its URL and
    process (the Streamlit process itself: its pid is the app's); stop it after."""
    port = free_port()
    env = {**os.environ, "TELLTALE_DB": str(db), "PYTHONPATH": str(ROOT), **(env or {})}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _healthy(url) or process.poll() is not None, 60, "the app to answer")
            if process.poll() is not None:
                raise AssertionError(f"the app exited early:\n{log.read_text()}")
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def running_app(db: Path, log: Path) -> Iterator[str]:
    """Start `streamlit run app/main.py` on a free port with `db`; yield its URL; stop it after."""
    with app_process(db, log) as (url, _process):
        yield url
