"""The two clocks the schedulers run on: the real one and a virtual one.

Both are asyncio event loops, so scheduler code is the same on either. The virtual loop
never sleeps: whenever nothing is ready it jumps to the next scheduled timer, so a
simulation runs as fast as the CPU allows and is exactly reproducible. The wall loop
sleeps in the kernel, and its clock stops while the kernel oversleeps a deadline, so timer
slack does not count as simulated time, while all computation does.

Both loops keep their own timers and run their own iteration (`_run_once`, the private
method asyncio's `run_forever` calls once per iteration; it is the same in Python
3.11-3.13, and `tests/sim/test_clock.py` pins the behaviour kept from it). The timers are a
heap of plain `(deadline, rank, creation, entry)` tuples, so same-instant timers fire by
rank and then in the order they were made without a Python comparison per heap step, and
an entry is either a timer handle or, for a forward pass, just the future to resolve (no
handle, no callback). Everything else is asyncio's: tasks, futures, cancellation, task
groups, `call_soon` order, exception handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import heapq
import itertools
import logging
import math
import select
import selectors
import time
from asyncio import format_helpers
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar, TypeVarTuple, get_args

from dsi_online.errors import require
from dsi_online.interrupts import run_interruptible

Clock = Literal["wall", "virtual"]
CLOCKS: tuple[str, ...] = get_args(Clock)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_NS = 1e9
SPIN_S = 0.0005
REHEARSE_ABOVE_S = 0.0015
"""A wall-clock wait longer than this leaves the CPU cold: the loop rehearses a wake-up."""
REHEARSE_S = 0.0003
"""How long before such a wait's deadline the wall loop rehearses the wake-up."""
MAX_SELECT_S = 86_400.0
"""Longest single kernel wait of the wall loop (asyncio's own cap): longer waits re-arm."""
_SWEEP_MIN = 1024

RANK_DRAFT = 0
"""Rank of a drafter's forward: at one instant, drafts are handled before anything else."""
RANK_DEFAULT = 1
"""Rank of every other timer (target forwards, message delays, plain sleeps)."""

_Future = asyncio.Future
_asyncio_logger = logging.getLogger("asyncio")
_Entry = tuple[float, int, int, "asyncio.TimerHandle | asyncio.Future[None]"]


def check_clock(clock: str) -> Clock:
    """Return `clock` as a Clock, or raise InvalidParameterError naming the choices."""
    require(clock in CLOCKS, f"clock (--clock) must be one of wall, virtual; got {clock!r}")
    return clock  # type: ignore[return-value]


class SimulationStalled(RuntimeError):
    """The virtual clock found nothing ready and nothing scheduled: a scheduler deadlocked."""


def _live(entry: _Entry) -> bool:
    """Whether a timer still has something to do (a handle not cancelled, a future not done)."""
    item = entry[3]
    if isinstance(item, asyncio.TimerHandle):
        return not item.cancelled()
    return not item.done()


class RankedLoop(asyncio.SelectorEventLoop):
    """What both clocks share: ranked timers on a heap of tuples, and a lean iteration.

    An iteration does what asyncio's `_run_once` does, in the same order: when no callback
    is ready, wait for the first live timer (the subclass's `_wait`); move every due timer
    to the ready queue in heap order; then run the callbacks that were ready at that point
    in FIFO order, skipping cancelled ones and handing exceptions to the loop's exception
    handler; callbacks they schedule run in the next iteration. Dead timers (cancelled
    handles, futures already done or cancelled) are skipped and, when the heap has doubled
    since the last sweep, swept out.
    """

    def __init__(self, selector: selectors.BaseSelector) -> None:
        super().__init__(selector)
        self._timers: list[_Entry] = []
        self._seq = itertools.count()
        self._sweep_above = _SWEEP_MIN

    def _snap(self, when: float) -> float:
        """A deadline as this clock keeps it."""
        return when

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
        if self._debug:  # type: ignore[attr-defined]
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        when = self._snap(when)
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        timer._scheduled = True  # type: ignore[attr-defined]
        heapq.heappush(self._timers, (when, rank, next(self._seq), timer))
        return timer

    def wake_at(self, when: float, rank: int) -> asyncio.Future[None]:
        """A future this loop resolves at `when` (ranked among same-instant timers), with
        no handle and no callback; cancelling the future drops the timer."""
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        future: asyncio.Future[None] = _Future(loop=self)
        heapq.heappush(self._timers, (self._snap(when), rank, next(self._seq), future))
        return future

    def call_soon(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        if self._debug:  # type: ignore[attr-defined]
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_soon")  # type: ignore[attr-defined]
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def _sweep(self) -> None:
        """Drop dead timers from the heap (amortised: only after it has doubled)."""
        live = [entry for entry in self._timers if _live(entry)]
        heapq.heapify(live)
        self._timers = live
        self._sweep_above = max(_SWEEP_MIN, 2 * len(live))

    def _first_deadline(self) -> float | None:
        """The deadline of the first live timer (dropping dead ones before it), or None."""
        timers = self._timers
        while timers:
            first = timers[0]
            item = first[3]
            if item.__class__ is _Future:
                if not item.done():
                    return first[0]
            elif not item._cancelled:  # type: ignore[union-attr]
                return first[0]
            heapq.heappop(timers)
        return None

    def _wait(self) -> float:
        """Unless a callback is ready or the loop is stopping, wait until the first timer is
        due (or for I/O); return the bound below which a deadline counts as due."""
        raise NotImplementedError

    def _run_once(self) -> None:
        if len(self._timers) > self._sweep_above:
            self._sweep()
        ready = self._ready  # type: ignore[attr-defined]
        timers = self._timers
        end = self._wait()
        while timers and timers[0][0] < end:
            item = heapq.heappop(timers)[3]
            if item.__class__ is not _Future:
                item._scheduled = False  # type: ignore[union-attr]
            ready.append(item)
        debug = self._debug  # type: ignore[attr-defined]
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle.__class__ is _Future:  # a wake_at timer
                if not handle.done():
                    handle.set_result(None)
            elif handle._cancelled:
                continue
            elif debug:
                self._run_debug(handle)
            else:
                try:  # Handle._run, inlined
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._callback_failed(handle, exc)
        handle = None  # no reference cycle through an exception's traceback

    def _callback_failed(self, handle: asyncio.Handle, exc: BaseException) -> None:
        """Hand a callback's exception to the loop's exception handler, as `Handle._run`."""
        callback, args = handle._callback, handle._args  # type: ignore[attr-defined]
        source = format_helpers._format_callback_source(callback, args)
        context: dict[str, Any] = {
            "message": f"Exception in callback {source}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:  # type: ignore[attr-defined]
            context["source_traceback"] = handle._source_traceback  # type: ignore[attr-defined]
        self.call_exception_handler(context)

    def _run_debug(self, handle: asyncio.Handle) -> None:
        """Run a callback in debug mode, with asyncio's warning for slow callbacks."""
        try:
            self._current_handle = handle
            start = self.time()
            handle._run()
            elapsed = self.time() - start
            if elapsed >= self.slow_callback_duration:
                _asyncio_logger.warning("Executing %s took %.3f seconds", handle, elapsed)
        finally:
            self._current_handle = None  # type: ignore[assignment]

    def close(self) -> None:
        super().close()
        self._timers.clear()


class VirtualEventLoop(RankedLoop):
    """An asyncio loop on simulated time with nanosecond resolution.

    Timer deadlines are snapped to whole nanoseconds, so sums of latencies do not
    accumulate floating-point error (30 ms x 500 is exactly 15.0 s). Timers due at the
    same instant fire by rank, then in the order they were made: never in an order that
    depends on which other timers share the loop's heap, so a simulation's result does not
    depend on the other simulations running beside it. When nothing is ready, time jumps
    straight to the first deadline, however far. The loop does no I/O.
    """

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selectors.SelectSelector())

    def time(self) -> float:
        return self._now

    def _snap(self, when: float) -> float:
        return round(when * _NS) / _NS

    def wake_at(self, when: float, rank: int) -> asyncio.Future[None]:
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        future: asyncio.Future[None] = _Future(loop=self)
        heapq.heappush(self._timers, (round(when * _NS) / _NS, rank, next(self._seq), future))
        return future

    def _wait(self) -> float:
        if not self._ready and not self._stopping:  # type: ignore[attr-defined]
            first = self._first_deadline()
            if first is None:
                raise SimulationStalled("virtual clock: no task is ready and no timer is scheduled")
            if first > self._now:
                self._now = first
        # Due means at or before now. Deadlines are exact, so no resolution is added: from
        # about 10^6 s on, a tenth of a nanosecond is below a float's step (now + 0.1 ns ==
        # now) and a timer due now would never fire.
        return math.nextafter(self._now, math.inf)


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

    def select(
        self, timeout: float | None = None, grace: float = 0.0
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait `timeout` seconds (or for I/O); only what it oversleeps beyond `timeout +
        grace` is slack (the loop wakes `grace` early on purpose)."""
        if timeout is None or timeout <= 0:
            return list(super().select(timeout))
        start = time.monotonic()
        deadline = start + timeout
        coarse_ms = math.floor((timeout - self.spin_s) * 1e3)
        if coarse_ms >= 1:
            self._sleep_ms(coarse_ms)
        events = list(super().select(0))
        while not events and time.monotonic() < deadline:
            events = list(super().select(0))
        late = time.monotonic() - deadline - grace
        if late > 0 and not events:
            self.slack += late
        return events

    def _sleep_ms(self, ms: int) -> None:
        """Sleep in the kernel for `ms` whole milliseconds, or until I/O is ready (the polls
        that follow report it: readiness is level-triggered). Not through `select()`: the
        selectors module rounds a timeout to k * 1e-3 s, which for some k (9, 13, 18, 26...)
        is a hair above k ms, and epoll then rounds it up to k + 1: the 9 ms sleep before
        a 10 ms deadline became 10 ms, and the loop woke after the deadline, cold."""
        raw = getattr(self, "_selector", None)
        if isinstance(raw, select.epoll):
            raw.poll((ms - 0.5) / 1e3)  # epoll rounds up to whole milliseconds: ms
        else:
            super().select((ms - 1) / 1e3)  # elsewhere: a millisecond less, then spin


async def _rehearsal(loop: RankedLoop) -> None:
    """A throwaway wake-up: a task resumed by a timer's future, as a forward's is."""
    await loop.wake_at(loop.time(), RANK_DEFAULT)


class WallEventLoop(RankedLoop):
    """The real clock, less timer slack.

    The kernel wakes a sleeping loop up to a millisecond after the deadline it asked for
    (epoll's grain, timer slack, the OS scheduler). That delay is an artifact of the
    simulator, not of a GPU, so this loop's clock stops for it: `time()` is the monotonic
    clock minus the total slack. Everything the loop does while awake (the schedulers'
    computation, task switches, cancellation, other simulations sharing the loop) still
    counts. `slack_s` is the time taken out, for reports. I/O (the self-pipe that wakes
    the loop from other threads) is polled whenever the loop waits, not between callbacks
    that are ready at once; a wait longer than a day is made of one-day waits.

    After an idle wait the path from the kernel to a waiting task runs on a cold CPU
    (about ten times slower, docs/fidelity.md), which would count as overhead on every
    forward that follows a long wait. So before a wait longer than REHEARSE_ABOVE_S the
    loop wakes REHEARSE_S early and runs a throwaway task through that path; the
    deadline's own wake-up then runs warm. Nothing of it happens after the deadline.
    """

    def __init__(self, spin_s: float = SPIN_S) -> None:
        self._meter = _WakeEarlySelector(spin_s)
        self._rehearsed: float | None = None  # the deadline last rehearsed for
        super().__init__(self._meter)

    @property
    def slack_s(self) -> float:
        """Total timer slack removed from this loop's clock so far."""
        return self._meter.slack

    def time(self) -> float:
        return time.monotonic() - self._meter.slack

    def _wait(self) -> float:
        if not self._ready and not self._stopping:  # type: ignore[attr-defined]
            first = self._first_deadline()
            if first is None:
                self._process_events(self._meter.select(None))  # type: ignore[attr-defined]
                return self.time()
            timeout = min(max(0.0, first - self.time()), MAX_SELECT_S)
            if timeout <= REHEARSE_ABOVE_S or first == self._rehearsed:
                self._process_events(self._meter.select(timeout))  # type: ignore[attr-defined]
            else:
                events = self._meter.select(timeout - REHEARSE_S, grace=REHEARSE_S)
                self._process_events(events)  # type: ignore[attr-defined]
                if first - self.time() > REHEARSE_S / 2:  # not if it woke too late for it
                    self._rehearsed = first
                    self.create_task(_rehearsal(self))
        resolution: float = self._clock_resolution  # type: ignore[attr-defined]
        return self.time() + resolution


def call_ranked(
    loop: asyncio.AbstractEventLoop,
    when: float,
    rank: int,
    callback: Callable[[*Ts], object],
    *args: *Ts,
) -> asyncio.TimerHandle:
    """Schedule `callback` at `when` with a same-instant rank on this module's clocks;
    other loops take a plain `call_at`."""
    if isinstance(loop, RankedLoop):
        return loop.call_ranked(when, rank, callback, *args)
    return loop.call_at(when, callback, *args)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def wake_at(loop: asyncio.AbstractEventLoop, when: float, rank: int) -> asyncio.Future[None]:
    """A future resolved at `when` on `loop`'s clock (ranked among same-instant timers on
    this module's clocks); cancelling it cancels the timer. Await it to sleep until `when`."""
    if isinstance(loop, RankedLoop):
        return loop.wake_at(when, rank)
    future = loop.create_future()
    timer = loop.call_at(when, _resolve, future)
    future.add_done_callback(lambda _: timer.cancel())
    return future


def new_loop(clock: Clock) -> asyncio.AbstractEventLoop:
    """A fresh event loop for `clock`."""
    return VirtualEventLoop() if check_clock(clock) == "virtual" else WallEventLoop()


@contextlib.contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Leave the objects alive before a run out of the garbage collector's scans during it
    (`gc.freeze`): a full collection then costs time in proportion to the run's own
    objects, not to every module loaded (docs/fidelity.md has the figures). Whatever was
    frozen before is unfrozen after (`gc.unfreeze` releases all)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run(main: Callable[[], Coroutine[Any, Any, T]], clock: Clock) -> T:
    """Run the coroutine made by `main` to completion on a fresh loop of `clock`."""
    with _old_objects_frozen(), asyncio.Runner(loop_factory=lambda: new_loop(clock)) as runner:
        return run_interruptible(runner, main())
