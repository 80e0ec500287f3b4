"""Where the virtual clock's CPU time goes, and whether its cost is linear in S.

    python scripts/virtual_speed.py profile                 # cProfile shares per part
    python scripts/virtual_speed.py scale 10000,20000,40000 # CPU-s and forwards per CPU-s

Both use `bench.VIRTUAL_WORKLOAD` (30 ms target, 3 ms drafter, a = 0.8, k = 5, n = 7);
`scale` plays one repeat of it with S tokens. Figures in docs/fidelity.md come from here.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import sys
import time
from dataclasses import replace

from dsi_online.sim.runner import run_many
from dsi_online.sim.scenario import Scenario
from dsi_online.studies.bench import VIRTUAL_WORKLOAD

PARTS = (
    ("dsi_online/clock.py", "event loop: this project's loop and timers"),
    ("asyncio", "event loop: asyncio's tasks, futures, handles"),
    ("dsi_online/schedulers", "schedulers"),
    ("dsi_online/server.py", "SimulatedServer.forward and accounting"),
    ("dsi_online/oracle.py", "oracle and prefixes"),
    ("dsi_online/tokens.py", "oracle and prefixes"),
    ("dsi_online/latency.py", "latency draws"),
)
C_ASYNCIO = ("_contextvars.Context", "_asyncio", "Future", "_heapq", "deque")


def _part(filename: str, function: str) -> str:
    for marker, part in PARTS:
        if marker in filename:
            return part
    if any(marker in function for marker in C_ASYNCIO):
        return "event loop: asyncio's tasks, futures, handles"
    return "other (builtins, the runner, the collector)"


def _play(scenario: Scenario) -> tuple[float, int]:
    start = time.process_time()
    (result,) = run_many([scenario], "virtual")
    cpu = time.process_time() - start
    return cpu, sum(r.forwards for s in result.algorithms.values() for r in s.runs)


def profile() -> None:
    _play(VIRTUAL_WORKLOAD)  # warm up
    profiler = cProfile.Profile()
    profiler.enable()
    _play(VIRTUAL_WORKLOAD)
    profiler.disable()
    shares: collections.Counter[str] = collections.Counter()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        shares[_part(filename, function)] += own
    total = sum(shares.values())
    for part, seconds in shares.most_common():
        print(f"{part:50s} {100 * seconds / total:5.1f}%")
    cpu, forwards = _play(VIRTUAL_WORKLOAD)
    print(f"unprofiled: {1e6 * cpu / forwards:.2f} µs CPU per forward ({forwards / cpu:,.0f}/s)")


def scale(sizes: list[int]) -> None:
    for tokens in sizes:
        cpu, forwards = _play(replace(VIRTUAL_WORKLOAD, tokens=tokens, repeats=1))
        print(f"S={tokens}: {cpu:.2f} CPU-s, {forwards} forwards, {forwards / cpu:,.0f}/CPU-s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["profile"]:
        profile()
    elif sys.argv[1:2] == ["scale"]:
        scale([int(s) for s in sys.argv[2].split(",")])
    else:
        sys.exit(__doc__)
