"""The two engines compared on the same coins: the asyncio schedulers (virtual clock) and the
time-unit model priced on each repeat's oracle coins, repeat by repeat (paired).

    python -m dsi_online.units.compare [--tokens 300] [--repeats 20] [--seed 5]
                                         [--extra-servers 0]

prints, for a grid of (c, a, k) with ceil(1/(k c)) target servers (plus `--extra-servers`),
the per-repeat ratio of the event-driven latency to the time-unit model's: DSI's
distribution, and SI's largest deviation (SI is the same algorithm in both, so it must agree
to the nanosecond grid).
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

from dsi_online.errors import InvalidParameterError, require
from dsi_online.sim.runner import oracle_for, run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.units.scenario import simulate_scenario

GRID_C = (0.05, 0.1, 0.3, 0.6)
GRID_A = (0.3, 0.6, 0.8, 0.95)
GRID_K = (1, 3, 5)
TARGET_MS = 10.0


@dataclass(frozen=True)
class PairedComparison:
    """One scenario's latencies per repeat (seconds): event-driven and time-unit model."""

    scenario: Scenario
    events_dsi: npt.NDArray[np.float64]
    units_dsi: npt.NDArray[np.float64]
    events_si: npt.NDArray[np.float64]
    units_si: npt.NDArray[np.float64]

    @property
    def dsi(self) -> npt.NDArray[np.float64]:
        """DSI's ratio per repeat, event-driven over the time-unit model."""
        return self.events_dsi / self.units_dsi

    @property
    def si(self) -> npt.NDArray[np.float64]:
        """SI's ratio per repeat (1 up to rounding: the same algorithm)."""
        return self.events_si / self.units_si

    @property
    def dsi_mean_ratio(self) -> float:
        """Mean event-driven DSI latency over the model's: above 1, slower on average."""
        return float(self.events_dsi.mean() / self.units_dsi.mean())


def compare(scenario: Scenario) -> PairedComparison:
    """Play `scenario` on the virtual clock and price the same repeats' coins with the
    time-unit model (constant latencies, TTFT = TPOT, enough servers)."""
    events = run_scenario(scenario, "virtual")
    coins = [oracle_for(scenario, r).coins for r in range(scenario.repeats)]
    units = simulate_scenario(scenario, coins)
    unit_s = scenario.target.tpot.mean
    return PairedComparison(
        scenario,
        np.array(events.algorithms["dsi"].latency_s),
        units.dsi * unit_s,
        np.array(events.algorithms["si"].latency_s),
        units.si * unit_s,
    )


def grid(tokens: int, repeats: int, seed: int, extra_servers: int = 0) -> list[Scenario]:
    """The grid of docs/engines.md, each scenario with the servers DSI needs (plus extra)."""
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
        scenarios.append(replace(scenario, servers=scenario.servers_needed + extra_servers))
    return scenarios


def _spread(ratios: npt.NDArray[np.float64]) -> str:
    return (
        f"{np.median(ratios):.4f} | {ratios.min():.4f} | {ratios.max():.4f} | "
        f"{np.mean(ratios > 1):.0%}"
    )


def report(results: Sequence[PairedComparison]) -> str:
    """A markdown table, one line per scenario, then a summary over the grid."""
    head = "| c | a | k | N | DSI mean ratio | per repeat: median | min | max | repeats slower |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.scenario
        lines.append(
            f"| {s.c:.3g} | {s.acceptance:g} | {s.lookahead} | {s.servers} | "
            f"{r.dsi_mean_ratio:.4f} | {_spread(r.dsi)} |"
        )
    every = np.concatenate([r.dsi for r in results])
    means = np.array([r.dsi_mean_ratio for r in results])
    si = max(float(np.abs(r.si - 1).max()) for r in results)
    lines += [
        "",
        f"DSI mean ratio per scenario: median {np.median(means):.4f}, min {means.min():.4f}, "
        f"max {means.max():.4f}; slower on average in {int(np.sum(means > 1))} of "
        f"{means.size} scenarios",
        f"DSI per repeat ({every.size} repeats): median {np.median(every):.4f}, min "
        f"{every.min():.4f}, max {every.max():.4f}, slower on {np.mean(every > 1):.0%}",
        f"SI: largest |ratio - 1| over all repeats {si:.1e}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid and print the report."""
    parser = argparse.ArgumentParser(prog="python -m dsi_online.units.compare")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--extra-servers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        require(
            args.extra_servers >= 0,
            f"extra servers (--extra-servers) must be an integer >= 0; got {args.extra_servers}",
        )
        scenarios = grid(args.tokens, args.repeats, args.seed, args.extra_servers)
        results = [compare(s) for s in scenarios]
    except InvalidParameterError as exc:
        print(f"error: {exc.cli_message}", file=sys.stderr)
        return 2
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
