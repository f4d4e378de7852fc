"""Linux process controls through libc: a process that dies with its parent (prctl
PR_SET_PDEATHSIG), and a kernel timer that SIGKILLs this process at a deadline (timer_create).

Both act from outside the interpreter: a job stuck in C code holding the GIL starves every
Python thread, not the kernel. Off Linux neither exists: die_with_parent only checks the
parent, and KillTimer.create() answers None (watchdog.py then guards with its thread alone).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CLOCK_MONOTONIC = 1  # the clock of time.monotonic() on Linux
SIGEV_SIGNAL = 0
TIMER_ABSTIME = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover (not Linux)
    _libc = None


def die_with_parent(sig: int, parent_pid: int) -> bool:
    """Have the kernel send sig to this process when its parent dies (Linux).

    False when the parent is already gone (it died before the request took effect).
    """
    if _libc is not None:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except AttributeError:  # pragma: no cover (no prctl)
            pass
    return os.getppid() == parent_pid


class _SigEvent(ctypes.Structure):  # struct sigevent (Linux): value, signo, notify, a 48-byte union
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("union", ctypes.c_int * 12)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def _timer_library() -> ctypes.CDLL | None:
    """The C library with timer_create: libc (glibc >= 2.34), else librt; None off Linux."""
    if _libc is not None and hasattr(_libc, "timer_create"):
        return _libc
    name = ctypes.util.find_library("rt")
    try:
        librt = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:  # pragma: no cover
        return None
    return librt if librt is not None and hasattr(librt, "timer_create") else None


class KillTimer:
    """A POSIX timer (timer_create on CLOCK_MONOTONIC) with which the kernel SIGKILLs this
    process at a deadline. No thread of ours runs it, so a job stuck in C code that holds
    the GIL, which starves every Python thread (the watchdog's too), cannot hold it off.
    Timers are not inherited across fork: each process makes its own."""

    def __init__(self, library: ctypes.CDLL, timer_id: ctypes.c_void_p):
        self._settime = library.timer_settime
        self._id = timer_id

    @classmethod
    def create(cls) -> KillTimer | None:
        library = _timer_library()
        timer_id = ctypes.c_void_p()
        event = _SigEvent(signo=signal.SIGKILL, notify=SIGEV_SIGNAL)
        if library is None or library.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)):
            log.warning("no kernel kill timer here: only the watchdog thread guards in-process jobs")
            return None
        return cls(library, timer_id)

    def arm(self, deadline: float) -> None:
        """SIGKILL this process at `deadline`, a time.monotonic() value."""
        whole = int(deadline)
        self._set(_TimeSpec(whole, max(1, int((deadline - whole) * 1e9))), TIMER_ABSTIME)

    def disarm(self) -> None:
        self._set(_TimeSpec(0, 0), 0)

    def _set(self, value: _TimeSpec, flags: int) -> None:
        spec = _ITimerSpec(_TimeSpec(0, 0), value)
        if self._settime(self._id, flags, ctypes.byref(spec), None):
            log.error("timer_settime failed (errno %s): only the watchdog thread guards this job", ctypes.get_errno())
