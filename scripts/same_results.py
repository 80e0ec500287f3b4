"""Record every run of a fixed set of virtual-clock scenarios as JSON, to check that a
speed change leaves results unchanged bit for bit.

    python scripts/same_results.py before.json      # on the old code
    python scripts/same_results.py after.json       # on the new code
    python scripts/same_results.py --compare before.json after.json

Floats are written with repr, so equal files mean equal latencies to the last bit. The set
covers constant and lognormal latencies, same-instant ties (1/c an integer), TTFT, message
delays, few and many servers, long outputs, and concurrency 1 and 3 of the same runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from dsi_online.sim.runner import run_many
from dsi_online.sim.scenario import Scenario


def _scenarios() -> list[tuple[str, Scenario, int]]:
    def s(**kw: Any) -> Scenario:
        return Scenario.from_ms(**kw)

    base = {"target_ms": 30, "drafter_ms": 3, "acceptance": 0.8, "lookahead": 5}
    ties = {"target_ms": 10, "drafter_ms": 2.5, "acceptance": 0.5, "lookahead": 3}
    return [
        ("constant", s(**base, servers=7, tokens=300, repeats=6, seed=1), 1),
        ("ties-c1", s(**ties, servers=4, tokens=300, repeats=8), 1),
        ("ties-c3", s(**ties, servers=4, tokens=300, repeats=8), 3),
        (
            "short",
            s(
                target_ms=100,
                drafter_ms=10,
                acceptance=0.9,
                lookahead=5,
                servers=2,
                tokens=5,
                repeats=60,
                seed=2,
            ),
            1,
        ),
        ("lognormal", s(**base, servers=7, tokens=300, repeats=6, latency_cv=0.3, seed=3), 1),
        ("lognormal-c3", s(**base, servers=7, tokens=300, repeats=6, latency_cv=0.3, seed=3), 3),
        ("comm", s(**base, servers=5, tokens=200, repeats=4, comm_ms=2, seed=4), 1),
        (
            "comm-lognormal",
            s(**base, servers=5, tokens=200, repeats=4, comm_ms=2, latency_cv=1.0, seed=5),
            1,
        ),
        (
            "ttft",
            s(
                **base,
                servers=6,
                tokens=200,
                repeats=4,
                target_ttft_ms=300,
                drafter_ttft_ms=20,
                seed=6,
            ),
            1,
        ),
        ("few-servers", s(**base, servers=1, tokens=300, repeats=4, seed=7), 1),
        (
            "many-servers",
            s(
                target_ms=20,
                drafter_ms=0.2,
                acceptance=0.6,
                lookahead=1,
                servers=200,
                tokens=300,
                repeats=3,
                seed=8,
            ),
            1,
        ),
        (
            "many-servers-cv",
            s(
                target_ms=20,
                drafter_ms=0.2,
                acceptance=0.6,
                lookahead=1,
                servers=200,
                tokens=300,
                repeats=3,
                latency_cv=1.0,
                seed=9,
            ),
            2,
        ),
        ("a0", s(**{**base, "acceptance": 0.0}, servers=3, tokens=100, repeats=3, seed=10), 1),
        ("a1", s(**{**base, "acceptance": 1.0}, servers=3, tokens=100, repeats=3, seed=11), 1),
        ("long", s(**base, servers=7, tokens=5000, repeats=1, seed=12), 1),
    ]


def record() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, scenario, concurrency in _scenarios():
        (result,) = run_many([scenario], "virtual", concurrency)
        out[name] = {
            algo: [
                {
                    k: repr(v) if isinstance(v, float) else v
                    for k, v in asdict(run).items()
                    if k != "servers"
                }
                | {
                    "servers": [
                        {k: repr(v) if isinstance(v, float) else v for k, v in asdict(st).items()}
                        for st in run.servers
                    ]
                }
                for run in summary.runs
            ]
            for algo, summary in result.algorithms.items()
        }
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        with open(argv[1]) as f1, open(argv[2]) as f2:
            a, b = json.load(f1), json.load(f2)
        differing = [name for name in a if a[name] != b.get(name)]
        runs = sum(len(v) for x in a.values() for v in x.values())
        print(
            f"{len(a)} scenarios, {runs} runs: "
            + (
                "identical"
                if not differing and a.keys() == b.keys()
                else f"DIFFERENT: {differing or 'scenario sets differ'}"
            )
        )
        return 1 if differing or a.keys() != b.keys() else 0
    with open(argv[0], "w") as f:
        json.dump(record(), f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
