"""One sweep per folder: a lock file naming its owner (pid, host, start time). A lock whose owner is a
dead process on this host is stale (the sweep crashed or was killed) and is taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import MupxError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.took_over: dict | None = None

    def acquire(self) -> SweepLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None and time.time() - self._mtime() < 10:
                    raise MupxError(f"another sweep is starting in {self.path.parent} right now") from None
                if owner is not None and (
                    owner.get("host") != me["host"] or _alive(int(owner.get("pid", -1)))
                ):
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
                    raise MupxError(
                        f"sweep folder {self.path.parent} is in use by pid {owner.get('pid')} on {owner.get('host')} "
                        f"since {since}; wait for it, or remove {self.path} if that sweep is gone"
                    ) from None
                self.took_over = owner or {}
                self.path.unlink(missing_ok=True)  # stale: its owner is dead
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise MupxError(f"could not take the lock {self.path}; another sweep is starting in this folder")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable or half-written: treat as stale

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        owner = self._owner()
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
