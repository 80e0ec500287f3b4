"""How precisely a calibration measures a model's slowdown beside the other model computing,
by the design of a contention round: one chain of forwards alone then one beside the busy
other (`--chains 1x10`, the design before 2026-12-07) against alternating shorter chains
(`4x5`, the default, `dsi_online.real.calibrate.CHAIN`).

    python scripts/contention_bench.py --pair DIR [--rounds 30] [--median-of 16]

Each round measures every design once, in turn (paired: they meet the same minutes of the
host), on a process backend as DSI's. Per role and design it prints the median of every
round's ratio, the rounds' standard deviation, and the standard deviation of what a
calibration reports, the median of `--median-of` rounds (validate's defaults take 16: 8
slices a repeat, 2 repeats), over bootstrap draws of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from pathlib import Path

import numpy as np

from dsi_online.measure.torch_runtime import passive_openmp
from dsi_online.real import RealBackend
from dsi_online.real.calibrate import ROLES, fresh_tokens, host_effects
from dsi_online.real.server import RealPool
from dsi_online.schedulers.seam import Role

BOOTSTRAP = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--median-of", type=int, default=16)
    parser.add_argument("--chains", nargs="+", default=["1x10", "4x5"])
    args = parser.parse_args()
    passive_openmp()
    designs = [(int(d.split("x")[0]), int(d.split("x")[1])) for d in args.chains]
    fresh = fresh_tokens(np.random.default_rng(7))

    async def one(pool: RealPool, role: Role, chains: tuple[int, int]) -> float:
        _, contended = await host_effects(pool, role, 1, 64, fresh, False, True, chains)
        return contended[0]

    ratios: dict[tuple[Role, str], list[float]] = {}
    prompt = fresh(64)
    with RealBackend(args.pair / "target", args.pair / "drafter", workers="process") as backend:
        for index in range(args.rounds):
            for role in ROLES:
                order = designs if index % 2 == 0 else designs[::-1]
                for chains in order:
                    ratio = backend.with_pool(prompt, partial(one, role=role, chains=chains))
                    ratios.setdefault((role, "{}x{}".format(*chains)), []).append(ratio)
            print(f"round {index + 1}/{args.rounds}", end="\r", flush=True)
    rng = np.random.default_rng(0)
    for (role, name), found in sorted(ratios.items()):
        draws = np.median(rng.choice(found, size=(BOOTSTRAP, args.median_of)), axis=1)
        print(
            f"{role:7s} {name:5s} median {statistics.median(found):.3f}"
            f"  rounds' sd {statistics.stdev(found):.3f}"
            f"  sd of a median of {args.median_of} {float(np.std(draws)):.3f}"
        )


if __name__ == "__main__":
    main()
