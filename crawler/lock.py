"""The run lock of a state file: an exclusive ``flock`` on ``STATE.lock`` that names its holder,
so that two runs never share a state. The OS releases it when its process dies, however it dies.

POSIX only: on Windows (no ``fcntl``) runs are not locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from crawler import jsondata
from crawler.errors import ConfigError, StateLocked

if sys.platform != "win32":
    import fcntl

SUFFIX = ".lock"
# A refused lock is tried again for a moment: `crawler runs` takes it shared for an instant
# to see whether a run is under way, which must not turn a starting run away.
TRIES = 3
RETRY_S = 0.05


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + SUFFIX)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as it wrote into the lock file."""

    pid: int
    host: str
    started_at: str

    def __str__(self) -> str:
        return f"PID {self.pid} on {self.host}, started {self.started_at}"

    @classmethod
    def read(cls, data: bytes) -> Holder | None:
        try:
            fields: Any = jsondata.loads(data)
            return cls(int(fields["pid"]), str(fields["host"]), str(fields["started_at"]))
        except (jsondata.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # not written yet (the holder is starting) or not ours


class StateLock:
    """``async with StateLock(state, started_at):`` holds the state's lock, or raises
    ``StateLocked`` naming the run that holds it."""

    def __init__(self, state: Path, started_at: str) -> None:
        self.state = state
        self.path = lock_path(state)
        self.holder = Holder(os.getpid(), socket.gethostname(), started_at)
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<StateLock {self.path} {'held' if self._fd is not None else 'free'}>"

    async def __aenter__(self) -> StateLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def acquire(self) -> None:
        if sys.platform == "win32":
            return
        fd = _open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            for attempt in range(TRIES):
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                if attempt == TRIES - 1:
                    holder = Holder.read(os.pread(fd, 4096, 0))
                    raise StateLocked(
                        f"state file {self.state} is in use by another run"
                        f" ({holder or 'starting up'}); it was left alone"
                    )
                await asyncio.sleep(RETRY_S)
            os.ftruncate(fd, 0)
            os.pwrite(fd, jsondata.dumps(dataclasses.asdict(self.holder)), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a later reader finds no holder; a killed run leaves its name
        finally:
            os.close(fd)  # closing the last descriptor releases the flock


def holder(state: Path) -> Holder | None:
    """The run that holds the state's lock now, or None when no run does."""
    if sys.platform == "win32":
        return None
    try:
        fd = os.open(lock_path(state), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {lock_path(state)}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.read(os.pread(fd, 4096, 0)) or Holder(0, "?", "?")
        return None
    finally:
        os.close(fd)


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot lock the state with {path}: {exc.strerror}") from None
