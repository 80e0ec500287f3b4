"""The two clocks the schedulers run on: the real one and a virtual one.

Both are asyncio event loops, so scheduler code is the same on either. The virtual loop
never sleeps: whenever nothing is ready it jumps to the next scheduled timer, so a
simulation runs as fast as the CPU allows and is exactly reproducible. The wall loop is
the standard selector loop with a finer timer: it sleeps in the kernel until shortly
before a deadline and then polls, because the kernel's timeouts have millisecond grain.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, get_args

from dsi_online.errors import require

Clock = Literal["wall", "virtual"]
CLOCKS: tuple[str, ...] = get_args(Clock)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_NS = 1e9
_SPIN_S = 0.0003


def check_clock(clock: str) -> Clock:
    """Return `clock` as a Clock, or raise InvalidParameterError naming the choices."""
    require(clock in CLOCKS, f"clock (--clock) must be one of wall, virtual; got {clock!r}")
    return clock  # type: ignore[return-value]


class SimulationStalled(RuntimeError):
    """The virtual clock found nothing ready and nothing scheduled: a scheduler deadlocked."""


class _VirtualSelector(selectors.SelectSelector):
    """A selector that never blocks: a timeout moves the loop's virtual time instead."""

    def __init__(self, loop: VirtualEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise SimulationStalled("virtual clock: no task is ready and no timer is scheduled")
        if timeout > 0:
            self._loop.advance(timeout)
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on simulated time with nanosecond resolution.

    Timer deadlines are snapped to whole nanoseconds, so sums of latencies do not
    accumulate floating-point error (30 ms x 500 is exactly 15.0 s).
    """

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_VirtualSelector(self))
        self._clock_resolution = 0.1 / _NS

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds` (snapped to the nanosecond grid)."""
        self._now = round((self._now + seconds) * _NS) / _NS

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: Unpack[Ts],
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return super().call_at(round(when * _NS) / _NS, callback, *args, context=context)


class _PreciseSelector(selectors.DefaultSelector):
    """The default selector, made precise: kernel sleep to near the deadline, then poll."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return list(super().select(timeout))
        deadline = time.monotonic() + timeout
        coarse_ms = math.floor((timeout - _SPIN_S) * 1e3)
        if coarse_ms >= 1:
            events = super().select(coarse_ms / 1e3 - 1e-7)
            if events:
                return list(events)
        while time.monotonic() < deadline:
            events = super().select(0)
            if events:
                return list(events)
        return []


class WallEventLoop(asyncio.SelectorEventLoop):
    """The real clock: a standard selector loop whose timers fire within microseconds."""

    def __init__(self) -> None:
        super().__init__(_PreciseSelector())


def new_loop(clock: Clock) -> asyncio.AbstractEventLoop:
    """A fresh event loop for `clock`."""
    return VirtualEventLoop() if check_clock(clock) == "virtual" else WallEventLoop()


def run(main: Callable[[], Coroutine[Any, Any, T]], clock: Clock) -> T:
    """Run the coroutine made by `main` to completion on a fresh loop of `clock`."""
    with asyncio.Runner(loop_factory=lambda: new_loop(clock)) as runner:
        return runner.run(main())
