"""Shared pieces of the browser end-to-end tests: a real app process and Debian chromium.

Readiness is polled (the health endpoint, then page text), never waited for with fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
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


#: Streamlit prints this once its server listens.
READY_LINE = "You can now view your Streamlit app"
#: `python -m streamlit`, plus, on SIGUSR1, every thread's Python stack on its output (faulthandler, from C,
#: so even an app whose GIL is stuck answers) followed by STACKS_END (from Python, once the GIL is free).
STACKS_END = "-- end of the app's stacks --"
STREAMLIT_WITH_STACK_DUMPS = (
    "import faulthandler, signal, sys; "
    f"signal.signal(signal.SIGUSR1, lambda *_: print({STACKS_END!r}, flush=True)); "
    "faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True); "
    "sys.argv[0] = 'streamlit'; from streamlit.web.cli import main; main()")
#: App pid -> set when its output shows the end of a stack dump (by `_copy_output`).
_STACKS_DUMPED: dict[int, threading.Event] = {}


def app_stacks(process: subprocess.Popen, log: Path, timeout_s: float = 10.0) -> str:
    """Every thread's Python stack in the running app: what a test that timed out waiting for the
    page prints, so that a stalled app shows where it stalls."""
    if process.poll() is not None:
        return f"(the app had exited with code {process.returncode})"
    dumped = _STACKS_DUMPED[process.pid]
    dumped.clear()
    before = len(log.read_text())
    process.send_signal(signal.SIGUSR1)
    if not dumped.wait(timeout_s):  # no end line: the Python side is stuck; faulthandler's part is there
        return log.read_text()[before:] + f"\n(no end of the dump within {timeout_s:g} s)"
    return log.read_text()[before:]


def _copy_output(process: subprocess.Popen, log: Path, ready: threading.Event, dumped: threading.Event) -> None:
    """Copy the app's output to `log`; set `ready` at Streamlit's ready line or when it exits, and
    `dumped` at the end of a stack dump."""
    with log.open("w") as output:
        for line in process.stdout:
            output.write(line)
            output.flush()
            if READY_LINE in line:
                ready.set()
            if STACKS_END in line:
                dumped.set()
    ready.set()  # the process ended: whoever waits must look at why


@contextmanager
def app_process(db: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `streamlit run app/web/main.py` on a free port with `db` (and extra `env`); yield its URL and
    process (the Streamlit process itself: its pid is the app's); stop it after.

    Readiness is read from the app's own output (its ready line), not guessed with a timer.
    """
    port = free_port()
    env = {**os.environ, "TELLTALE_DB": str(db), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-c", STREAMLIT_WITH_STACK_DUMPS, "run", str(ROOT / "app" / "web" / "main.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    ready, dumped = threading.Event(), threading.Event()
    _STACKS_DUMPED[process.pid] = dumped
    copier = threading.Thread(target=_copy_output, args=(process, log, ready, dumped), daemon=True)
    copier.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if not ready.wait(timeout=60):
            raise AssertionError(f"the app did not start within 60 s:\n{log.read_text()}")
        if process.poll() is not None:
            raise AssertionError(f"the app exited early:\n{log.read_text()}")
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
            assert response.status == 200, f"health check answered {response.status}"
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        copier.join(timeout=10)
        _STACKS_DUMPED.pop(process.pid, None)


@contextmanager
def running_app(db: Path, log: Path) -> Iterator[str]:
    """Start `streamlit run app/web/main.py` on a free port with `db`; yield its URL; stop it after."""
    with app_process(db, log) as (url, _process):
        yield url
