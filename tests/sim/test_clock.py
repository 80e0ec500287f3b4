"""The two clocks: the virtual one jumps exactly; both run the same coroutines."""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import random
import re
import select
import selectors
from collections.abc import Callable

import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.schedulers import RunResult
from dsi_online.sim import clock
from dsi_online.sim.clock import (
    RANK_DEFAULT,
    RANK_DRAFT,
    SimulationStalled,
    VirtualEventLoop,
    call_ranked,
    check_clock,
    new_loop,
    run,
    wake_at,
)
from dsi_online.sim.runner import play_repeat
from dsi_online.sim.scenario import Scenario


async def sleeps(n: int, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(n):
        await asyncio.sleep(seconds)
    return loop.time() - start


def test_virtual_time_is_exact_on_the_nanosecond_grid() -> None:
    assert run(lambda: sleeps(500, 0.03), "virtual") == 15.0


def test_virtual_time_runs_concurrent_sleepers_by_deadline() -> None:
    order: list[str] = []

    async def sleeper(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        order.append(name)

    async def main() -> float:
        await asyncio.gather(sleeper("c", 3), sleeper("a", 1), sleeper("b", 2))
        return asyncio.get_running_loop().time()

    assert run(main, "virtual") == 3.0
    assert order == ["a", "b", "c"]


def test_virtual_clock_reports_a_deadlock() -> None:
    async def stuck() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(SimulationStalled):
        run(stuck, "virtual")


@pytest.mark.wall
def test_wall_clock_sleeps_at_least_the_requested_time() -> None:
    elapsed = run(lambda: sleeps(5, 0.004), "wall")
    assert elapsed >= 0.02


def test_new_loop_kinds() -> None:
    loop = new_loop("virtual")
    try:
        assert isinstance(loop, VirtualEventLoop)
    finally:
        loop.close()
    with pytest.raises(InvalidParameterError) as raised:
        check_clock("lunar")
    assert re.search("--clock", raised.value.cli_message)


def test_cancelling_a_run_leaves_no_task_pending() -> None:
    """Cancel a repeat in the middle: every job and draft task is cancelled with it."""
    scenario = Scenario.from_ms(
        target_ms=10, drafter_ms=1, acceptance=0.7, lookahead=3, servers=4, tokens=200
    )

    async def main() -> int:
        task = asyncio.create_task(play_repeat(scenario, 0))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        current = asyncio.current_task()
        return len([t for t in asyncio.all_tasks() if t is not current])

    assert run(main, "virtual") == 0


# -- the clocks' own loop iteration ------------------------------------------------------


class _AdvancingSelector(selectors.SelectSelector):
    """For the reference loop: a wait moves virtual time instead of blocking."""

    def __init__(self, loop: _StockVirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise SimulationStalled("reference loop: nothing to do")
        self._loop.now += timeout
        return []


class _StockVirtualLoop(asyncio.SelectorEventLoop):
    """asyncio's own iteration and timer heap, on virtual time: the reference that the
    clocks' lean iteration must agree with (where deadlines do not tie)."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_AdvancingSelector(self))

    def time(self) -> float:
        return self.now


async def _random_program(seed: int) -> list[str]:
    """A random tree of callbacks, timers, sleeping tasks and cancellations; returns the
    order in which things happened (with the virtual time, to the microsecond)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    log: list[str] = []
    handles: list[asyncio.Handle] = []
    tasks: list[asyncio.Task[None]] = []
    made = itertools.count()
    loop.set_exception_handler(lambda _, context: log.append(f"handler: {context['message']}"))

    def delay() -> float:
        """Up to half a second; deadlines never tie (asyncio breaks ties arbitrarily)."""
        deadline = (math.floor(loop.time() * 100) + rng.randrange(1, 50)) / 100
        return deadline + next(made) * 1e-7 - loop.time()

    def node(label: str) -> None:
        log.append(f"{label}@{loop.time():.7f}")
        if len(log) > 300:
            return
        children = 8 if label == "root" else rng.choice((1, 1, 2, 2, 3))
        for i in range(children):
            child = f"{label}.{i}"
            action = rng.randrange(13)
            if action < 2:
                handles.append(loop.call_soon(node, child))
            elif action < 5:
                handles.append(loop.call_later(delay(), node, child))
            elif action < 7 and handles:
                rng.choice(handles).cancel()
            elif action < 9:
                tasks.append(loop.create_task(sleeper(child, delay())))
            elif action < 10 and tasks:
                rng.choice(tasks).cancel()
            elif action < 12:
                tasks.append(loop.create_task(waker(child, loop.time() + delay())))
            else:
                tasks.append(loop.create_task(failing(child)))

    async def sleeper(label: str, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            log.append(f"{label} cancelled@{loop.time():.7f}")
            raise
        node(label)

    async def waker(label: str, when: float) -> None:
        await wake_at(loop, when, RANK_DEFAULT)
        node(label)

    async def failing(label: str) -> None:
        await asyncio.sleep(0)
        raise ValueError(label)

    node("root")
    await asyncio.sleep(1000)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.append(f"failed {task.exception()}")
    await asyncio.gather(*tasks, return_exceptions=True)
    return log


def test_lean_iteration_agrees_with_asyncios_own() -> None:
    """Callbacks, timers, cancelled timers, sleeping and cancelled tasks, failing tasks:
    the same order and times as asyncio's own iteration on a virtual clock."""

    def play(factory: Callable[[], asyncio.AbstractEventLoop], seed: int) -> list[str]:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_random_program(seed))

    lines = []
    for seed in range(40):
        expected = play(_StockVirtualLoop, seed)
        assert play(VirtualEventLoop, seed) == expected, f"seed {seed}"
        lines += expected
    assert len(lines) > 10_000
    assert any("cancelled" in line for line in lines)
    assert any("failed" in line for line in lines)


def test_same_instant_timers_fire_by_rank_then_creation() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def wait(name: str, rank: int) -> None:
            await wake_at(loop, 1.0, rank)
            order.append(name)

        async with asyncio.TaskGroup() as group:
            call_ranked(loop, 1.0, RANK_DEFAULT, order.append, "t1")
            group.create_task(wait("w1", RANK_DEFAULT))
            group.create_task(wait("d1", RANK_DRAFT))
            loop.call_at(1.0, order.append, "t2")
            call_ranked(loop, 1.0, RANK_DRAFT, order.append, "d2")
            group.create_task(wait("d3", RANK_DRAFT))
            loop.call_at(0.5, order.append, "early")
        return order

    # Plain callbacks run in the timers' turn; a waiting task resumes one turn later, in
    # the order its timer fired.
    assert run(main, "virtual") == ["early", "d2", "t1", "t2", "d1", "d3", "w1"]


def test_timers_due_at_one_instant_run_before_the_callbacks_they_schedule() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        def first() -> None:
            order.append("first")
            loop.call_soon(order.append, "soon-1")
            loop.call_soon(order.append, "soon-2")

        loop.call_at(2.0, first)
        loop.call_at(2.0, order.append, "second")
        await asyncio.sleep(3)
        return order

    assert run(main, "virtual") == ["first", "second", "soon-1", "soon-2"]


def test_cancelled_timers_never_fire_nor_move_the_clock() -> None:
    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        loop.set_exception_handler(lambda _, context: order.append(context["message"]))
        loop.call_at(5.0, order.append, "cancelled").cancel()
        loop.call_soon(order.append, "cancelled too").cancel()
        wake_at(loop, 7.0, RANK_DRAFT).cancel()
        loop.call_at(1.0, order.append, "kept")
        sleeper = asyncio.create_task(asyncio.sleep(9))
        await asyncio.sleep(2)
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        return loop.time(), order

    assert run(main, "virtual") == (2.0, ["kept"])


def test_dead_timers_are_swept_from_the_heap() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        for i in range(20_000):
            wake_at(loop, 1e6 + i, RANK_DEFAULT).cancel()
            loop.call_at(1e6 + i, print).cancel()
            await asyncio.sleep(0)
        return len(loop._timers)

    assert run(main, "virtual") < 5_000


def test_a_failing_callback_goes_to_the_exception_handler_and_the_loop_goes_on() -> None:
    async def main() -> tuple[list[dict[str, object]], float]:
        loop = asyncio.get_running_loop()
        caught: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: caught.append(context))

        def boom() -> None:
            raise ZeroDivisionError("boom")

        loop.call_later(1, boom)
        loop.call_soon(boom)
        await asyncio.sleep(2)
        return caught, loop.time()

    caught, now = run(main, "virtual")
    assert now == 2.0
    assert [type(c["exception"]) for c in caught] == [ZeroDivisionError] * 2
    assert all(str(c["message"]).startswith("Exception in callback") for c in caught)
    assert all(isinstance(c["handle"], asyncio.Handle) for c in caught)


def test_a_failing_job_cancels_its_task_group_and_leaves_no_task() -> None:
    async def main() -> int:
        async def fail_later() -> None:
            await asyncio.sleep(1)
            raise KeyError("job")

        with pytest.raises(ExceptionGroup):
            async with asyncio.TaskGroup() as group:
                group.create_task(fail_later())
                for _ in range(5):
                    group.create_task(asyncio.sleep(100))
        current = asyncio.current_task()
        return len([t for t in asyncio.all_tasks() if t is not current])

    assert run(main, "virtual") == 0


@pytest.mark.parametrize("forward_s", [86_401.0, 1e5])
def test_forwards_longer_than_a_day_complete(forward_s: float) -> None:
    """asyncio caps a wait at one day and, from about 10^6 s on, a tenth of a nanosecond
    is below a float's step: the virtual clock must still reach every deadline."""

    class Counting(VirtualEventLoop):
        turns = 0

        def _run_once(self) -> None:
            Counting.turns += 1
            if Counting.turns > 10_000:
                raise RuntimeError("the virtual clock is spinning")
            super()._run_once()

    scenario = Scenario.from_ms(
        target_ms=forward_s * 1e3,
        drafter_ms=forward_s * 1e2,
        acceptance=0.8,
        lookahead=2,
        servers=2,
        tokens=20,
    )
    with asyncio.Runner(loop_factory=Counting) as runner:
        results = runner.run(play_repeat(scenario, 0))
    assert results["nonsi"].latency_s == pytest.approx(20 * forward_s, rel=1e-12)
    assert results["si"].tokens == results["dsi"].tokens == 20


@pytest.mark.wall
def test_wall_clock_splits_waits_longer_than_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "MAX_SELECT_S", 0.01)
    assert run(lambda: sleeps(1, 0.05), "wall") >= 0.05


@pytest.mark.wall
def test_wall_clock_cancellation_leaves_no_task_pending() -> None:
    scenario = Scenario.from_ms(
        target_ms=2, drafter_ms=0.2, acceptance=0.7, lookahead=3, servers=4, tokens=200
    )

    async def main() -> int:
        task = asyncio.create_task(play_repeat(scenario, 0))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        current = asyncio.current_task()
        return len([t for t in asyncio.all_tasks() if t is not current])

    assert run(main, "wall") == 0


def test_debug_mode_gives_the_same_results() -> None:
    scenario = Scenario.from_ms(
        target_ms=10, drafter_ms=2.5, acceptance=0.5, lookahead=3, servers=3, tokens=60
    )

    async def main(debug: bool) -> dict[str, RunResult]:
        asyncio.get_running_loop().set_debug(debug)
        return await play_repeat(scenario, 0)

    assert run(lambda: main(True), "virtual") == run(lambda: main(False), "virtual")


def test_a_closed_loop_refuses_new_work() -> None:
    loop = new_loop("virtual")
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        wake_at(loop, 1.0, RANK_DEFAULT)


def test_the_kernel_sleep_before_a_10_ms_deadline_is_9_ms_not_10(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The selectors module turns 9 ms into 0.009000000000000001 s, which epoll rounds up
    to 10 ms; the wall loop asks epoll itself, for a timeout that rounds to 9."""
    selector = clock._WakeEarlySelector(clock.SPIN_S)
    raw = selector._selector  # type: ignore[attr-defined]
    if not isinstance(raw, select.epoll):
        pytest.skip("epoll only")
    asked: list[float] = []

    class Recording:
        def poll(self, timeout: float) -> list[tuple[int, int]]:
            asked.append(timeout)
            return []

    monkeypatch.setattr(clock.select, "epoll", Recording)
    selector._selector = Recording()  # type: ignore[attr-defined]
    try:
        for ms in (1, 9, 13, 18, 26, 100):
            asked.clear()
            selector._sleep_ms(ms)
            (timeout,) = asked
            assert math.ceil(math.ceil(timeout * 1e9) / 1e6) == ms  # epoll: ns up, ms up
    finally:
        selector._selector = raw  # type: ignore[attr-defined]
        selector.close()


@pytest.mark.wall
def test_a_long_wall_wait_rehearses_its_wake_up_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "REHEARSE_S", 0.005)
    rehearsed: list[float] = []
    original = clock._rehearsal

    async def recorded(loop: clock.RankedLoop) -> None:
        rehearsed.append(loop.time())
        await original(loop)

    monkeypatch.setattr(clock, "_rehearsal", recorded)

    async def main() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        deadlines = []
        for _ in range(5):
            deadlines.append(loop.time() + 0.02)
            await asyncio.sleep(0.02)
        current = asyncio.current_task()
        return deadlines, len([t for t in asyncio.all_tasks() if t is not current])

    deadlines, pending = run(main, "wall")
    assert pending == 0
    # At most one rehearsal per wait, each in the last REHEARSE_S before its deadline (a
    # wait whose kernel sleep overran that window rehearses nothing).
    assert 1 <= len(rehearsed) <= len(deadlines)
    assert all(any(d - 0.005 - 0.001 < r < d for d in deadlines) for r in rehearsed)


@pytest.mark.wall
def test_servers_run_on_a_plain_asyncio_loop() -> None:
    scenario = Scenario.from_ms(
        target_ms=1, drafter_ms=0.1, acceptance=0.7, lookahead=3, servers=2, tokens=30
    )
    results = asyncio.run(play_repeat(scenario, 0))
    assert len({r.output_sha256 for r in results.values()}) == 1
    assert all(r.tokens == 30 for r in results.values())


def test_wake_at_on_a_plain_loop_cancels_its_timer_with_the_future() -> None:
    async def main() -> list[asyncio.TimerHandle]:
        loop = asyncio.get_running_loop()
        future = wake_at(loop, loop.time() + 100, RANK_DEFAULT)
        future.cancel()
        await asyncio.sleep(0)
        return [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]

    assert asyncio.run(main()) == []


def test_a_run_freezes_older_objects_only_for_its_duration() -> None:
    async def frozen() -> int:
        return gc.get_freeze_count()

    assert run(frozen, "virtual") > 10_000  # every module, function and class loaded
    assert gc.get_freeze_count() == 0
