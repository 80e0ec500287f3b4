"""Simulated servers: a prefill that has begun runs to its end even when cancelled, as the
real backend's do (docs/real.md)."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from dsi_online.sim.clock import run
from dsi_online.sim.latency import LatencyStream, ModelLatency
from dsi_online.sim.oracle import SimulatedOracle
from dsi_online.sim.servers import SimulatedServer


def _server() -> SimulatedServer:
    stream = LatencyStream(ModelLatency.constant(0.1, ttft_s=0.5), np.random.default_rng(0))
    oracle = SimulatedOracle(truth=list(range(10)), coins=[True] * 10)
    return SimulatedServer("target-0", "target", stream, oracle)


async def _cancel_after(server: SimulatedServer, seconds: float) -> None:
    task = asyncio.ensure_future(server.forward([], ()))
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_a_cancelled_prefill_runs_to_its_end_and_warms_its_server() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        server = _server()
        await _cancel_after(server, 0.2)
        seen: list[object] = [server.warm]  # still prefilling: not warm yet
        await server.forward([], ())  # sent at 0.2: waits for the prefill, then a TPOT
        seen += [round(loop.time(), 9), server.warm, round(server.busy_s, 9)]
        await asyncio.sleep(1.0)
        start = loop.time()
        await server.forward([0], ())
        seen.append(round(loop.time() - start, 9))
        return seen

    not_warm, ended, warm, busy, decode = run(main, "virtual")
    assert not_warm is False
    assert ended == 0.6  # the prefill ends at 0.5; the forward then takes its 0.1
    assert warm is True
    assert busy == 0.6  # the whole prefill counts as busy, and the forward after it
    assert decode == 0.1


def test_a_forward_cancelled_before_any_time_passed_never_ran() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        server = _server()
        await _cancel_after(server, 0.0)
        start = loop.time()
        await server.forward([], ())
        return round(loop.time() - start, 9)

    assert run(main, "virtual") == 0.1  # not held back by a prefill that never ran
