"""What a model's forward costs after the other model's, against back to back and against
the same gap asleep, on one kind of real worker: the idle effect that speculative inference
meets between its drafting and verifying turns.

    python scripts/idle_bench.py --pair DIR [--workers inline|process|thread] [--rounds 2]

Per round, for each model, the median seconds of a forward (a verification's 4 tokens for
the target, one for the drafter) back to back, after the other model computed for --gap-ms,
and after as long asleep, each as a ratio to back to back. An inline worker's thread never
sleeps while a run goes on, so its idle slowdowns are the middle column's; a worker in a
process or thread sleeps while the other computes, so its are the last column's
(`dsi_online.real.calibrate.idle_round` measures both ways).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import numpy as np

from dsi_online.measure.torch_runtime import passive_openmp
from dsi_online.real import RealBackend
from dsi_online.real.calibrate import (
    HOST_TOKENS,
    fill_gap,
    fresh_tokens,
    server_of,
    timed,
)
from dsi_online.real.handles import WORKERS
from dsi_online.real.server import RealPool
from dsi_online.schedulers.seam import Role

MODES = ("back to back", "after the other", "after a sleep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", type=Path, required=True)
    parser.add_argument("--workers", choices=WORKERS, default="inline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--gap-ms", type=float, default=6.0)
    args = parser.parse_args()
    passive_openmp()
    fresh = fresh_tokens(np.random.default_rng(5))

    gap = args.gap_ms / 1e3

    async def work(pool: RealPool) -> dict[tuple[Role, str], list[float]]:
        found: dict[tuple[Role, str], list[float]] = {}
        roles: tuple[Role, Role] = ("target", "drafter")
        for role in roles:
            await server_of(pool, role).forward((), ())
        base = fresh(64)
        for _ in range(args.samples):
            for role, other_role in (roles, roles[::-1]):
                server, other = server_of(pool, role), server_of(pool, other_role)
                n = HOST_TOKENS[role]
                for mode in MODES:
                    await server.forward([*base, *fresh(n)], ())  # warm, as in a run
                    await server.forward(base, ())  # crops the cache to prompt + base
                    if mode == "after the other":
                        await fill_gap(other, base, fresh, gap)
                    elif mode == "after a sleep":
                        await asyncio.sleep(gap)
                    found.setdefault((role, mode), []).append(
                        await timed(server, [*base, *fresh(n)], n)
                    )
        return found

    prompt = fresh(64)
    with RealBackend(args.pair / "target", args.pair / "drafter", workers=args.workers) as backend:
        for index in range(args.rounds):
            found = backend.with_pool(prompt, work)
            for role in ("target", "drafter"):
                medians = {mode: statistics.median(found[(role, mode)]) for mode in MODES}
                alone = medians["back to back"]
                cells = "  ".join(
                    f"{mode} {1e3 * value:.3f} ms x{value / alone:.3f}"
                    for mode, value in medians.items()
                )
                print(f"{args.workers} round {index + 1} {role:7s}  {cells}", flush=True)


if __name__ == "__main__":
    main()
