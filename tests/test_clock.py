"""The two clocks: the virtual one jumps exactly; both run the same coroutines."""

from __future__ import annotations

import asyncio

import pytest

from dsi_online.clock import SimulationStalled, VirtualEventLoop, check_clock, new_loop, run
from dsi_online.errors import InvalidParameterError
from dsi_online.runner import play_repeat
from dsi_online.scenario import Scenario


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


def test_wall_clock_sleeps_at_least_the_requested_time() -> None:
    elapsed = run(lambda: sleeps(5, 0.004), "wall")
    assert elapsed >= 0.02


def test_new_loop_kinds() -> None:
    loop = new_loop("virtual")
    try:
        assert isinstance(loop, VirtualEventLoop)
    finally:
        loop.close()
    with pytest.raises(InvalidParameterError, match="--clock"):
        check_clock("lunar")


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
