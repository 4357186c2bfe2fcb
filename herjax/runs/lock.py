"""One writer per run directory (host side: NOT pure, it locks a file).

A run holds ``<run_dir>/.herjax.lock`` for its whole life, training or resuming, with an exclusive ``flock``. The
file records who holds it (process id, host, start time, command), so a second run on the same directory is
refused with one line naming that process. The operating system releases a ``flock`` when its process dies,
``kill -9`` included, so a lock left by a killed run is recognised (the file names a holder, but nobody holds the
lock) and taken over, and the taker says so.

    with RunLock(run_dir) as lock:      # raises RunDirError if another process holds it
        lock.stale                      # the dead holder's record, if one was taken over
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Optional

LOCK_NAME = ".herjax.lock"


class RunDirError(ValueError):
    """A run directory that cannot be used (in use, not creatable, a file); the message is one line."""


class RunLock:
    """The exclusive lock of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.stale: Optional[dict] = None
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot write in run directory {os.path.dirname(self.path)!r}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"
                   if holder else "another process")
            raise RunDirError(
                f"run directory {os.path.dirname(self.path)!r} is in use by {who}; wait for that run to end or stop "
                "it, or give this run another run_dir="
            ) from None
        self.stale = _read(fd) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # Emptied, not removed: removing would let a process that opened the old file lock a different inode.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 1 << 16, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
