"""Simulated servers: a prefill cancelled before its end leaves the server cold."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from dsi_online.clock import run
from dsi_online.latency import LatencyStream, ModelLatency
from dsi_online.oracle import SimulatedOracle
from dsi_online.server import SimulatedServer


def _server() -> SimulatedServer:
    stream = LatencyStream(ModelLatency.constant(0.1, ttft_s=0.5), np.random.default_rng(0))
    oracle = SimulatedOracle(truth=list(range(10)), coins=[True] * 10)
    return SimulatedServer("target-0", "target", stream, oracle)


def test_a_cancelled_prefill_is_paid_again_and_a_completed_one_warms() -> None:
    async def main() -> list[tuple[float, bool]]:
        loop = asyncio.get_running_loop()
        server = _server()
        seen = []
        task = asyncio.ensure_future(server.forward([], ()))
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        seen.append((loop.time(), server.warm))
        for _ in range(2):
            start = loop.time()
            await server.forward([], ())
            seen.append((round(loop.time() - start, 9), server.warm))
        return seen

    cancelled, prefill, decode = run(main, "virtual")
    assert cancelled == (0.2, False)
    assert prefill == (0.5, True)  # the TTFT again, not a TPOT
    assert decode == (0.1, True)
