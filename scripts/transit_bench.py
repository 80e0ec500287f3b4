"""Transit per forward on the real backend: what a forward's request and reply cost beyond
the model, on whichever checkout of dsi_online is first on PYTHONPATH.

    PYTHONPATH=CHECKOUT python scripts/transit_bench.py --pair DIR [-k 3] [--prompts 4]

Two figures, with process workers unless `--workers thread`: the round trip of a request
that runs no model (`reset`, median of `--empties`), and, in real non-SI, SI and DSI runs
on held-out prompts, each role's queued + delivery seconds per forward (`ForwardRecord.queued_s` and
`delivery_s`, as `dsi-online validate` reports them under `where_time_went`), mean and
median. Uses only the backend's API common to every version since the records existed, so
that one command measures an old checkout and a new one (run them interleaved: the machine
is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import dsi_online
from dsi_online.pair import heldout_prompts
from dsi_online.real import RealBackend, play_real
from dsi_online.real.handles import WORKERS, Workers, start_worker
from dsi_online.real.worker import Request, WorkerSpec
from dsi_online.schedulers import DSI, SI, NonSI, Scheduler


async def _empty_round_trips(folder: Path, count: int, workers: Workers) -> list[float]:
    handle = start_worker(workers, "target-0", WorkerSpec(str(folder)))
    try:
        await handle.ready()
        trips = []
        for _ in range(count):
            sent = time.monotonic()
            await handle.call(Request("reset", handle.new_id()))
            trips.append(time.monotonic() - sent)
        return trips
    finally:
        await handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python scripts/transit_bench.py")
    parser.add_argument("--pair", type=Path, required=True)
    parser.add_argument("-k", "--lookahead", type=int, default=3)
    parser.add_argument("-n", "--servers", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-bytes", type=int, default=64)
    parser.add_argument("-S", "--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--empties", type=int, default=500)
    parser.add_argument("--workers", choices=WORKERS, default="process")
    args = parser.parse_args()
    trips = asyncio.run(_empty_round_trips(args.pair / "target", args.empties, args.workers))
    prompts = heldout_prompts(args.pair, args.prompts, args.prompt_bytes, args.seed)
    schedulers: dict[str, Scheduler] = {
        "nonsi": NonSI(),
        "si": SI(args.lookahead),
        "dsi": DSI(args.lookahead, args.servers),
    }
    transit: dict[str, dict[str, list[float]]] = {
        name: {"target": [], "drafter": []} for name in schedulers
    }
    lossless = True
    with RealBackend(
        args.pair / "target", args.pair / "drafter", servers=args.servers, workers=args.workers
    ) as backend:
        for _ in range(args.repeats):
            for prompt in prompts:
                for name, scheduler in schedulers.items():
                    result = play_real(backend, scheduler, prompt, args.tokens)
                    lossless = lossless and result.lossless
                    for record in result.records:
                        transit[name][record.role].append(record.queued_s + record.delivery_s)
    out: dict[str, Any] = {
        "checkout": str(Path(dsi_online.__file__).resolve().parent.parent),
        "workers": args.workers,
        "load": os.getloadavg(),
        "empty_round_trip_ms": 1e3 * statistics.median(trips),
        "lossless": lossless,
        "transit_ms_per_forward": {
            name: {
                role: {
                    "forwards": len(values),
                    "mean": 1e3 * statistics.fmean(values),
                    "median": 1e3 * statistics.median(values),
                }
                for role, values in roles.items()
                if values
            }
            for name, roles in transit.items()
        },
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
