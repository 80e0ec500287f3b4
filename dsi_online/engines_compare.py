"""The two engines compared on the same coins: the asyncio schedulers (virtual clock) and the
time-unit model priced on each repeat's oracle coins, repeat by repeat (paired).

    python -m dsi_online.engines_compare [--tokens 300] [--repeats 20] [--seed 5]

prints, for a grid of (c, a, k) with ceil(1/(k c)) target servers, the per-repeat ratio of
the event-driven latency to the time-unit model's: DSI's distribution, and SI's largest
deviation (SI is the same algorithm in both, so it must agree to the nanosecond grid).
docs/engines.md shows its output.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from dsi_online.errors import InvalidParameterError
from dsi_online.runner import oracle_for, run_scenario
from dsi_online.scenario import Scenario
from dsi_online.units import simulate_scenario

GRID_C = (0.05, 0.1, 0.3, 0.6)
GRID_A = (0.3, 0.6, 0.8, 0.95)
GRID_K = (1, 3, 5)
TARGET_MS = 10.0


@dataclass(frozen=True)
class PairedComparison:
    """One scenario: per-repeat latency ratios, event-driven over the time-unit model."""

    scenario: Scenario
    dsi: npt.NDArray[np.float64]
    si: npt.NDArray[np.float64]


def compare(scenario: Scenario) -> PairedComparison:
    """Play `scenario` on the virtual clock and price the same repeats' coins with the
    time-unit model (constant latencies, TTFT = TPOT, enough servers)."""
    events = run_scenario(scenario, "virtual")
    coins = [oracle_for(scenario, r).coins for r in range(scenario.repeats)]
    units = simulate_scenario(scenario, coins)
    unit_s = scenario.target.tpot.mean
    return PairedComparison(
        scenario,
        np.array(events.algorithms["dsi"].latency_s) / (units.dsi * unit_s),
        np.array(events.algorithms["si"].latency_s) / (units.si * unit_s),
    )


def grid(tokens: int, repeats: int, seed: int) -> list[Scenario]:
    """The grid of docs/engines.md, each scenario with the servers DSI needs."""
    scenarios = []
    for c, a, k in itertools.product(GRID_C, GRID_A, GRID_K):
        scenario = Scenario.from_ms(
            target_ms=TARGET_MS,
            drafter_ms=TARGET_MS * c,
            acceptance=a,
            lookahead=k,
            servers=1,
            tokens=tokens,
            repeats=repeats,
            seed=seed,
        )
        scenarios.append(replace(scenario, servers=scenario.servers_needed))
    return scenarios


def _stats(ratios: npt.NDArray[np.float64]) -> str:
    return (
        f"{ratios.mean():.4f} | {np.median(ratios):.4f} | {ratios.min():.4f} | "
        f"{ratios.max():.4f} | {np.mean(ratios > 1):.0%}"
    )


def report(results: Sequence[PairedComparison]) -> str:
    """A markdown table: one line per scenario, then every repeat of every scenario."""
    head = "| c | a | k | N | DSI ratio mean | median | min | max | repeats slower |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.scenario
        row = f"| {s.c:.3g} | {s.acceptance:g} | {s.lookahead} | {s.servers} | {_stats(r.dsi)} |"
        lines.append(row)
    every = np.concatenate([r.dsi for r in results])
    means = np.array([r.dsi.mean() for r in results])
    si = max(float(np.abs(r.si - 1).max()) for r in results)
    lines += [
        "",
        f"all {every.size} repeats: DSI ratio mean | median | min | max | slower = {_stats(every)}",
        f"per-scenario mean ratio: min {means.min():.4f}, max {means.max():.4f}; "
        f"scenarios slower on average: {int(np.sum(means > 1))} of {means.size}",
        f"SI: largest |ratio - 1| over all repeats {si:.1e}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid and print the report."""
    parser = argparse.ArgumentParser(prog="python -m dsi_online.engines_compare")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        results = [compare(s) for s in grid(args.tokens, args.repeats, args.seed)]
    except InvalidParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
