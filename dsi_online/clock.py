"""The two clocks the schedulers run on: the real one and a virtual one.

Both are asyncio event loops, so scheduler code is the same on either. The virtual loop
never sleeps: whenever nothing is ready it jumps to the next scheduled timer, so a
simulation runs as fast as the CPU allows and is exactly reproducible. The wall loop is
the standard selector loop whose clock stops while the kernel oversleeps a deadline,
so timer slack does not count as simulated time, while all computation does.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, TypeVarTuple, get_args

from dsi_online.errors import require

Clock = Literal["wall", "virtual"]
CLOCKS: tuple[str, ...] = get_args(Clock)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_NS = 1e9
SPIN_S = 0.0005

RANK_DRAFT = 0
"""Rank of a drafter's forward: at one instant, drafts are handled before anything else."""
RANK_DEFAULT = 1
"""Rank of every other timer (target forwards, message delays, plain sleeps)."""


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


class _RankedTimer(asyncio.TimerHandle):
    """A timer ordered by (deadline, rank, creation): a fixed rule for same-instant events."""

    __slots__ = ("_rank", "_seq")

    def __init__(
        self,
        when: float,
        rank: int,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._rank = rank
        self._seq = seq

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _RankedTimer):
            return (self.when(), self._rank, self._seq) < (other.when(), other._rank, other._seq)
        return NotImplemented


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on simulated time with nanosecond resolution.

    Timer deadlines are snapped to whole nanoseconds, so sums of latencies do not
    accumulate floating-point error (30 ms x 500 is exactly 15.0 s). Timers due at the
    same instant fire by rank, then in the order they were made: never in an order that
    depends on which other timers share the loop's heap, so a simulation's result does not
    depend on the other simulations running beside it.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._seq = itertools.count()
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
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_ranked(when, RANK_DEFAULT, callback, *args, context=context)

    def call_ranked(
        self,
        when: float,
        rank: int,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """`call_at` with a rank: among timers due at one instant, lower ranks fire first."""
        self._check_closed()  # type: ignore[attr-defined]
        when = round(when * _NS) / _NS
        timer = _RankedTimer(when, rank, next(self._seq), callback, args, self, context)
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer


class _WakeEarlySelector(selectors.DefaultSelector):
    """The default selector, woken early and made precise.

    It sleeps in the kernel until `spin_s` before the deadline (the kernel's timeouts have
    millisecond grain and oversleep), then polls until the deadline, which also keeps the
    CPU warm for the work that follows. Whatever it still oversleeps is metered as slack.
    """

    def __init__(self, spin_s: float) -> None:
        super().__init__()
        self.spin_s = spin_s
        self.slack = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return list(super().select(timeout))
        start = time.monotonic()
        deadline = start + timeout
        coarse_ms = math.floor((timeout - self.spin_s) * 1e3)
        events = list(super().select(coarse_ms / 1e3 - 1e-7)) if coarse_ms >= 1 else []
        while not events and time.monotonic() < deadline:
            events = list(super().select(0))
        late = time.monotonic() - deadline
        if late > 0 and not events:
            self.slack += late
        return events


class WallEventLoop(asyncio.SelectorEventLoop):
    """The real clock, less timer slack.

    The kernel wakes a sleeping loop up to a millisecond after the deadline it asked for
    (epoll's grain, timer slack, the OS scheduler). That delay is an artifact of the
    simulator, not of a GPU, so this loop's clock stops for it: `time()` is the monotonic
    clock minus the total slack. Everything the loop does while awake (the schedulers'
    computation, task switches, cancellation, other simulations sharing the loop) still
    counts. `slack_s` is the time taken out, for reports.
    """

    def __init__(self, spin_s: float = SPIN_S) -> None:
        self._meter = _WakeEarlySelector(spin_s)
        super().__init__(self._meter)

    @property
    def slack_s(self) -> float:
        """Total timer slack removed from this loop's clock so far."""
        return self._meter.slack

    def time(self) -> float:
        return time.monotonic() - self._meter.slack


def call_ranked(
    loop: asyncio.AbstractEventLoop,
    when: float,
    rank: int,
    callback: Callable[[*Ts], object],
    *args: *Ts,
) -> asyncio.TimerHandle:
    """Schedule `callback` at `when` with a same-instant rank on the virtual clock; other
    loops (the wall clock, where instants do not tie) take a plain `call_at`."""
    if isinstance(loop, VirtualEventLoop):
        return loop.call_ranked(when, rank, callback, *args)
    return loop.call_at(when, callback, *args)


def new_loop(clock: Clock) -> asyncio.AbstractEventLoop:
    """A fresh event loop for `clock`."""
    return VirtualEventLoop() if check_clock(clock) == "virtual" else WallEventLoop()


def run(main: Callable[[], Coroutine[Any, Any, T]], clock: Clock) -> T:
    """Run the coroutine made by `main` to completion on a fresh loop of `clock`."""
    with asyncio.Runner(loop_factory=lambda: new_loop(clock)) as runner:
        return runner.run(main())
