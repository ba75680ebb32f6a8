"""Child server processes that are never left running.

Each server runs in its own process group (so a stop reaches anything it forks) and, unless it is
meant to outlive us (``demandstream dev up``), with a Linux parent-death signal plus an ``atexit``
hook: the group is killed when this process exits, even on SIGKILL of the test runner.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.devinfra.exceptions import ServiceStartError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()
_atexit_registered = False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair(host: str = "127.0.0.1", offset: int = 10_000, attempts: int = 100) -> int:
    """A port ``p`` such that ``p`` and ``p + offset`` were both free a moment ago.

    A Redis Cluster node also listens on its cluster bus port, ``port + 10000``: a node whose bus
    port is taken (by another test's server, or the kernel's ephemeral range) fails to start or
    cannot gossip. Both ports are held at once while checking, so neither is our own pick.
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            if port + offset > 65_535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
                try:
                    bus.bind((host, port + offset))
                except OSError:
                    continue
                return port
    raise ServiceStartError(f"no free port pair (port, port + {offset}) on {host} after {attempts} tries")


def port_accepts(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live, non-zombie process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError):
            # The state letter follows the parenthesised command name; Z = zombie, X = dead.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            return state not in {"Z", "X"}
    return True


def kill_group(pgid: int, grace_s: float = 5.0) -> None:
    """SIGTERM a process group, then SIGKILL it if its leader is still alive after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL us when our parent dies.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stop_all_at_exit() -> None:
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        proc.stop()


class ManagedProcess:
    """One server process in its own process group, with its output going to ``log_path``.

    ``detached=True`` makes a process that outlives this one (no parent-death signal, no
    ``atexit`` stop): only ``demandstream dev up`` wants that.
    """

    def __init__(
        self, argv: Sequence[str], *, name: str, log_path: Path, detached: bool = False
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self.detached = detached
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Spawn the process; a no-op when it is already running."""
        global _atexit_registered
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        preexec: Callable[[], None] | None = None if self.detached else _die_with_parent
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # only sets the parent-death signal
                close_fds=True,
            )
        logger.debug("started %s pid=%s: %s", self.name, self._popen.pid, " ".join(self.argv))
        if not self.detached:
            with _live_lock:
                _live.add(self)
                if not _atexit_registered:
                    atexit.register(_stop_all_at_exit)
                    _atexit_registered = True

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the process group, kill it after ``grace_s``, and reap the leader."""
        popen = self._popen
        with _live_lock:
            _live.discard(self)
        if popen is None:
            return
        kill_group(popen.pid, grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=grace_s)
        logger.debug("stopped %s pid=%s rc=%s", self.name, popen.pid, popen.returncode)
        self._popen = None

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, for fault tests) and reap the leader."""
        popen = self._popen
        with _live_lock:
            _live.discard(self)
        if popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        self._popen = None

    def check_alive(self) -> None:
        """Raise :class:`ServiceStartError` with the log tail if the process has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            raise ServiceStartError(
                f"{self.name} exited with code {self._popen.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
