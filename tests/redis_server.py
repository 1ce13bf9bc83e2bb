"""A real ``redis-server`` for tests: started in a temporary folder on a unix socket, with the
persistence the README documents for exactly-once (``appendonly yes``, ``appendfsync always``),
and stopped by PID.

Without the binary the Redis tests are skipped, except under ``CI=true``, where that fails
(`.ci/run` installs Debian's ``redis-server``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from types import TracebackType

import pytest

READY = b"ready to accept connections"


def redis_binary() -> str:
    """The path of ``redis-server``; skips the test (fails it under CI) when there is none."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    return found


class RedisServer:
    """One ``redis-server`` process on ``folder/redis.sock``; ``kill()`` and ``start()`` again
    keep its data (the append-only file in ``folder``)."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "redis.log"

    def __repr__(self) -> str:
        pid = None if self.process is None else self.process.pid
        return f"<RedisServer {self.socket} pid={pid}>"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start the server and return once it accepts connections (it says so on stdout)."""
        command = [
            redis_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.process = process
        assert process.stdout is not None
        with self.log.open("ab") as log:
            for line in process.stdout:
                log.write(line)
                if READY in line.lower():
                    break
            else:
                raise RuntimeError(f"redis-server did not start; see {self.log}")
        # The rest of its output goes to the log file, so the server never blocks on a pipe.
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout, self.log.open("ab") as log:
            for line in process.stdout:
                log.write(line)

    def kill(self) -> None:
        """SIGKILL the server and reap it (the data on disk stays)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
