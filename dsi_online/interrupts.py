"""How every dsi-online command stops: Ctrl-C, and the death of the process that started it.

The conventions (every command run through `dsi_online.cli.main` gets them; a new command
only says what an interrupt keeps, with `keeping`):

- The first Ctrl-C prints at once, on stderr, that the command is stopping and what is kept
  (finished cells in a results folder, or nothing), then raises KeyboardInterrupt in the main
  thread; while an event loop runs (`run_interruptible`), it cancels the loop's main task
  instead, and KeyboardInterrupt is raised once the cancellation has unwound every task.
  Pools of workers are terminated, not waited for (`dsi_online.studies.parallel`), so the command
  ends within about a second; `main` exits with code 130 and no traceback.
- A second Ctrl-C stops at once: the process exits with code 130 on the spot.
- Worker processes exit when the process that started them dies, even after `kill -9`:
  `worker_init` asks Linux for a parent-death signal (prctl PR_SET_PDEATHSIG) and starts a
  watchdog thread that polls the parent everywhere. The forkserver and the resource tracker
  of `multiprocessing` already exit when their parent's pipe closes.

This module imports only the standard library, so that `main` can install the handler
before the heavy imports (numpy, scipy, rich) run: Ctrl-C during imports ends cleanly too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_INTERRUPTED = 130
"""Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it."""

NOTHING_KEPT = "nothing is kept"
WATCHDOG_PERIOD_S = 0.2
"""How often a worker checks that its parent is alive (where prctl is unavailable or the
parent is a forkserver)."""
_PR_SET_PDEATHSIG = 1


@dataclass
class _State:
    kept: str = NOTHING_KEPT
    interrupted: bool = False
    owner_pid: int = 0
    stop: Callable[[], object] | None = None


_state = _State()


def _say(text: str) -> None:
    """Write a line to stderr at once, from a signal handler: no buffers, no locks. On a
    terminal, first erase the line a progress bar may be drawing (it redraws below)."""
    prefix = "\r\x1b[2K" if os.isatty(2) else ""
    with contextlib.suppress(OSError):
        os.write(2, f"{prefix}{text}\n".encode(errors="replace"))


def _handler(signum: int, frame: FrameType | None) -> None:
    """SIGINT: the first stops cleanly (KeyboardInterrupt), the second at once."""
    if os.getpid() != _state.owner_pid:
        return  # a forked worker before its initializer ran: the parent decides
    if _state.interrupted:
        _say("interrupted again: stopped at once")
        os._exit(EXIT_INTERRUPTED)
    _state.interrupted = True
    _say(f"interrupted: stopping; {_state.kept}. Press Ctrl-C again to stop at once.")
    if _state.stop is not None:
        _state.stop()  # an event loop is running: cancel its work, structured
        return
    raise KeyboardInterrupt


def announced() -> bool:
    """Whether the handler has already told the user that the command is stopping."""
    return _state.interrupted


@contextmanager
def handling(*, restore: bool = True) -> Iterator[None]:
    """Install the Ctrl-C handler for the duration (main thread only; elsewhere a no-op).
    After it, restore the previous handler, so that in-process callers (tests) keep theirs;
    or, with `restore` False (the process is about to exit), ignore Ctrl-C, so that one
    arriving while the interpreter shuts down cannot kill it with a signal instead of 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: Any = signal.signal(signal.SIGINT, _handler)
    saved = _State(_state.kept, _state.interrupted, _state.owner_pid)
    _state.kept, _state.interrupted, _state.owner_pid = NOTHING_KEPT, False, os.getpid()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if restore else signal.SIG_IGN)
        _state.kept, _state.interrupted, _state.owner_pid = (
            saved.kept,
            saved.interrupted,
            saved.owner_pid,
        )


@contextmanager
def keeping(what: str) -> Iterator[None]:
    """Say `what` an interrupt keeps (e.g. "finished cells are kept in DIR; continue with
    ...") while the block runs; the message the first Ctrl-C prints ends with it."""
    before = _state.kept
    _state.kept = what
    try:
        yield
    finally:
        _state.kept = before


def run_interruptible(runner: asyncio.Runner, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on `runner`; a first Ctrl-C meanwhile cancels its task (TaskGroups
    cancel their children, nothing is left pending) and then raises KeyboardInterrupt here.
    Raised instead wherever the loop happened to be, in a callback or in asyncio's own
    bookkeeping, it would leave tasks pending and print their tracebacks."""
    loop = runner.get_loop()
    before = _state.interrupted

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        previous = _state.stop
        _state.stop = lambda: loop.call_soon_threadsafe(task.cancel)
        try:
            return await coroutine
        finally:
            _state.stop = previous

    try:
        result = runner.run(guarded())
    except asyncio.CancelledError:
        if _state.interrupted and not before:
            raise KeyboardInterrupt from None
        raise
    if _state.interrupted and not before:
        raise KeyboardInterrupt  # arrived as the work finished: the user still asked to stop
    return result


def _parent_death_signal() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watchdog below still covers it


def _watchdog(parent: int) -> None:
    """Exit as soon as this process is re-parented: its parent has died."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_PERIOD_S)
    os._exit(1)


def worker_init(parent: int | None = None) -> None:
    """Initializer of every worker process: Ctrl-C is the parent's to handle, and the worker
    dies with its parent (see the module docstring). `parent`: the pid of the process that
    started this one, where known (a worker that starts after its parent died exits at
    once); by default the current parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid() if parent is None else parent
    _parent_death_signal()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent,), name="parent-watchdog", daemon=True).start()
