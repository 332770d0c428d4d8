"""A JupyterLab server from the project's .venv and Debian's Chromium, for tests/browser/ (`make test-browser`).

The server runs on 127.0.0.1 with a random free port and a random token, on a copy of notebooks/ in
build/browser/lab/ (the rest of the repository linked next to it, so `../results` still resolves), with
autosave off: running a notebook in the browser never writes outputs into the committed notebooks.
Playwright (pytest-playwright) drives /usr/bin/chromium; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NO_BROWSER = (f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
              "`sudo apt-get install chromium fonts-noto-color-emoji` (or set CHROMIUM=/path/to/chromium) "
              "and run `make test-browser` again.")
# JupyterLab settings for the test server: no autosave, no news pop-up, and every cell laid out (windowing
# off) so that each output can be inspected without scrolling to it; everything else is what a learner gets.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not CHROMIUM.exists():
        pytest.exit(NO_BROWSER, returncode=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_tree(root: Path) -> Path:
    """build/browser/lab: a copy of notebooks/ and links to the repository's other folders."""
    lab = root / "lab"
    shutil.rmtree(lab, ignore_errors=True)
    lab.mkdir(parents=True)
    shutil.copytree(ROOT / "notebooks", lab / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for entry in ROOT.iterdir():
        if entry.name not in ("notebooks", "build", ".git", ".venv"):
            (lab / entry.name).symlink_to(entry)
    return lab


def settings_dir(root: Path) -> Path:
    folder = root / "lab-settings"
    shutil.rmtree(folder, ignore_errors=True)
    for name, values in LAB_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


@pytest.fixture(scope="session")
def lab_server() -> Iterator[dict]:
    """Start `jupyter lab` (this Python's environment) and yield {"url", "token", "root"}; stop it after."""
    BUILD.mkdir(parents=True, exist_ok=True)
    lab, port, token = lab_tree(BUILD), free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings_dir(BUILD)),
               JUPYTERLAB_WORKSPACES_DIR=str(BUILD / "lab-workspaces"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={lab}", "--LabApp.news_url=", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(BUILD / "jupyter-lab.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=lab)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start; see {BUILD / 'jupyter-lab.log'}") from None
                time.sleep(0.5)
        yield {"url": url, "token": token, "root": lab}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch arguments with Debian's Chromium (no browser download)."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM)}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1400}}
