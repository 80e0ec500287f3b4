"""The time-unit model of a Scenario, on its own draws or priced on given coins (the
event-driven engine's), so that the two engines compare per repeat on the same coins (a
paired comparison)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dsi_online.errors import require
from dsi_online.sim.scenario import Scenario
from dsi_online.units.engine import UnitsCell, UnitsResult, simulate_units, validate_run


def leading_runs(coins: Sequence[bool]) -> list[int]:
    """`runs[p]`: how many coins from position p on are true before the first false one, so a
    chunk of `size` drafts starting at p accepts `min(size, runs[p])` of them."""
    runs = [0] * (len(coins) + 1)
    for p in range(len(coins) - 1, -1, -1):
        runs[p] = runs[p + 1] + 1 if coins[p] else 0
    return runs[:-1]


def _si_on_runs(runs: Sequence[int], c: float, k: int, tokens: int) -> float:
    """SI of the time-unit model, each chunk priced on the coins at its positions."""
    cost, done = 0.0, 0
    while done < tokens:
        size = min(k, tokens - 1 - done)
        cost += size * c + 1.0
        done += min(size, runs[done]) + 1
    return cost


def _dsi_on_runs(runs: Sequence[int], c: float, k: int, tokens: int) -> float:
    """DSI of the time-unit model (see `_dsi_step`), each chunk priced on its coins."""
    cost, done = 0.0, 0
    while done < tokens:
        new, spec = 0, 0.0
        while True:
            size = min(k, tokens - 1 - done - new)
            accepted = min(size, runs[done + new])
            new += accepted
            spec += size * c
            if accepted < max(size, 1):
                break
        cost += min(spec + 1.0, float(new + 1))
        done += new + 1
    return cost


def simulate_units_on_coins(
    c: float, a: float, k: int, coins: Sequence[Sequence[bool]], seed: int = 0
) -> UnitsResult:
    """The time-unit model priced on given per-position coins (one sequence of S coins per
    repeat, e.g. the asyncio engine's oracles'): a chunk accepts its leading drafts whose
    coins are true, at most its size. The engines then compare per repeat on the same
    coins (a paired comparison). `a` and `seed` only label the result."""
    require(len(coins) > 0, "coins: at least one repeat is needed")
    tokens = len(coins[0])
    validate_run(tokens, len(coins), seed)
    require(all(len(row) == tokens for row in coins), "coins: every repeat needs S coins")
    cell = UnitsCell(c, a, k)
    runs = [leading_runs(row) for row in coins]
    si = np.array([_si_on_runs(r, c, k, tokens) for r in runs])
    dsi = np.array([_dsi_on_runs(r, c, k, tokens) for r in runs])
    return UnitsResult(cell, tokens, seed, np.full(len(coins), float(tokens)), si, dsi)


def simulate_scenario(
    scenario: Scenario, coins: Sequence[Sequence[bool]] | None = None
) -> UnitsResult:
    """A Scenario under the time-unit model, which assumes what the scenario must then say:
    constant latencies, TTFT = TPOT, no communication delay, and DSI with enough servers.
    With `coins` (one sequence per repeat), chunks are priced on them instead of on the
    model's own Geometric draws (see `simulate_units_on_coins`)."""
    target, drafter = scenario.target, scenario.drafter
    require(
        target.is_constant and drafter.is_constant,
        "--engine units models constant latencies: drop --latency-cv (or use a profile "
        "with constant latencies)",
    )
    require(
        target.ttft.mean == target.tpot.mean and drafter.ttft.mean == drafter.tpot.mean,
        "--engine units models TTFT = TPOT: drop --target-ttft-ms and --drafter-ttft-ms",
    )
    require(scenario.link is None, "--engine units has no communication delay: drop --comm-ms")
    require(
        scenario.c <= 1,
        "--engine units models a drafter no slower than the target: --drafter-ms must be "
        f"<= --target-ms; got c = {scenario.c:g}",
    )
    require(
        scenario.servers >= scenario.servers_needed,
        f"--engine units models DSI with enough servers: --servers/-n must be >= "
        f"ceil(1/(k c)) = {scenario.servers_needed}; got {scenario.servers}",
    )
    if coins is not None:
        require(
            len(coins) == scenario.repeats and all(len(r) == scenario.tokens for r in coins),
            "coins: one sequence of --tokens coins per repeat is needed",
        )
        return simulate_units_on_coins(
            scenario.c, scenario.acceptance, scenario.lookahead, coins, scenario.seed
        )
    return simulate_units(
        scenario.c,
        scenario.acceptance,
        scenario.lookahead,
        scenario.tokens,
        scenario.repeats,
        scenario.seed,
    )
