"""How `make run` starts the app: on a desktop it opens the browser; on a machine without a display it
serves without trying to; and it never stops at a prompt (Streamlit asks first-time users for an email)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
#: A stand-in for `xdg-open` (what Streamlit runs to open a browser on Linux): it sends the URL it was
#: asked to open to the test's socket.
FAKE_XDG_OPEN = """#!{python}
import socket, sys
with socket.create_connection(("127.0.0.1", {port})) as connection:
    connection.sendall(sys.argv[1].encode())
"""


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without a display or Streamlit settings of its own, plus `extra`."""
    kept = {key: value for key, value in os.environ.items()
            if key not in ("DISPLAY", "WAYLAND_DISPLAY") and not key.startswith("STREAMLIT_")}
    return {**kept, "HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


def _make_run_streamlit(port: int) -> list[str]:
    """The Streamlit command line `make run` starts (as `make -n` prints it), with this interpreter."""
    printed = subprocess.run(["make", "-n", "run", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    [line] = [line for line in printed.splitlines() if " -m streamlit run " in line]
    return [sys.executable, *shlex.split(line)[1:]]


def test_make_run_opens_the_browser_where_there_is_a_display(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(45)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "xdg-open").write_text(FAKE_XDG_OPEN.format(python=sys.executable,
                                                            port=listener.getsockname()[1]))
    (fake_bin / "xdg-open").chmod(0o755)
    port = free_port()
    env = _environment(tmp_path, DISPLAY=":99", PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
                       TELLTALE_DB=str(tmp_path / "t.duckdb"), TELLTALE_SCHEDULER="off")
    app = subprocess.Popen(_make_run_streamlit(port), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # no stdin: a prompt would end it
    try:
        with listener, listener.accept()[0] as opened:
            url = opened.recv(200).decode()
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert url == f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("display", "headless"), [({}, True), ({"DISPLAY": ":99"}, False),
                                                   ({"WAYLAND_DISPLAY": "wayland-0"}, False)])
def test_streamlit_opens_a_browser_only_with_a_display_and_never_prompts(display: dict[str, str], headless: bool,
                                                                         tmp_path: Path) -> None:
    read = ("import json; from streamlit import config; config.get_config_options(force_reparse=True); "
            "print(json.dumps({name: config.get_option(name) for name in "
            "('server.headless', 'server.showEmailPrompt')}))")
    shown = subprocess.run([sys.executable, "-c", read], cwd=ROOT, env=_environment(tmp_path, **display),
                           capture_output=True, text=True, check=True).stdout
    options = json.loads(shown.strip().splitlines()[-1])
    assert options == {"server.headless": headless, "server.showEmailPrompt": False}
