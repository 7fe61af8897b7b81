"""Fixtures: a real ferryd (the workspace's target/debug/ferryd, or $FERRYD) on a
temporary socket and state folder, and a local HTTP server over a temporary folder."""

from __future__ import annotations

import functools
import shutil
import tempfile
import os
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
STARTUP_DEADLINE = 60.0


def ferryd_binary() -> Path:
    if os.environ.get("FERRYD"):
        return Path(os.environ["FERRYD"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "debug" / "ferryd"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `cargo build -p ferryd` first (or set FERRYD)")
    return binary


class Daemon:
    """ferryd on ``root/ferryd.sock``; ``config``: the text of its ferryd.toml (none: the
    defaults)."""

    def __init__(self, root: Path, config: "str | None" = None):
        self.socket = root / "ferryd.sock"
        self.state_dir = root / "state"
        self.log = root / "ferryd.log"
        self._log_file = open(self.log, "wb")
        config_path = root / ("ferryd.toml" if config is not None else "no-config.toml")
        if config is not None:
            config_path.write_text(config)
        self.process = subprocess.Popen(
            [str(ferryd_binary()), "--socket", str(self.socket), "--state-dir", str(self.state_dir)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FERRY_CONFIG": str(config_path)},
        )
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not self.socket.exists():
            if self.process.poll() is not None:
                pytest.fail(f"ferryd exited with {self.process.returncode}: {self.log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ferryd did not create {self.socket} in {STARTUP_DEADLINE} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


@pytest.fixture
def ferryd():
    """A running ferryd; its socket path is ``ferryd.socket``. Its folder is short (a
    socket path has at most 107 bytes) and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ferry-py-"))
    daemon = Daemon(root)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_ferryd():
    """Starts ferryd with a ferryd.toml: ``make_ferryd(config_text)``; stopped and removed
    afterwards."""
    started = []

    def start(config: str) -> Daemon:
        root = Path(tempfile.mkdtemp(prefix="ferry-py-"))
        started.append((root, Daemon(root, config)))
        return started[-1][1]

    try:
        yield start
    finally:
        for root, daemon in started:
            daemon.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(ferryd):
    from ferry_client import Client

    with Client(ferryd.socket) as c:
        yield c


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1: (base URL, the folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
