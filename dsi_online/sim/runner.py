"""The runner: plays non-SI, SI and DSI side by side on one clock, repeat after repeat.

Within a repeat the three algorithms share the oracle's coins and every server's latency
stream (common random numbers), so their speedups are paired comparisons. On the wall
clock they run concurrently in one event loop and so share the machine's noise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from dsi_online.errors import require
from dsi_online.schedulers import Generation, RunResult, Scheduler
from dsi_online.schedulers.registry import ALGORITHMS, gpus_held, schedulers
from dsi_online.sim.clock import Clock, VirtualEventLoop, check_clock
from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.oracle import VOCAB, SimulatedOracle
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.servers import ORACLE_KEY, ServerSet
from dsi_online.sim.stats import Speedup, Summary

Progress = Callable[[int], None]


class LeakedTasksError(RuntimeError):
    """A run left tasks pending on the event loop: a scheduler failed to clean up."""


def schedulers_for(scenario: Scenario) -> dict[str, Scheduler]:
    """The three algorithms configured for `scenario`."""
    return schedulers(scenario.lookahead, scenario.servers)


def oracle_for(scenario: Scenario, repeat: int) -> SimulatedOracle:
    """The oracle of one repeat, the same for every algorithm: random coins of rate
    `acceptance`, or the coins of the scenario's acceptance trace for this repeat."""
    seq = np.random.SeedSequence(scenario.seed, spawn_key=(repeat, ORACLE_KEY))
    rng = np.random.default_rng(seq)
    if scenario.trace is None:
        return SimulatedOracle.draw(scenario.tokens, scenario.acceptance, rng)
    truth = rng.integers(0, VOCAB, size=scenario.tokens).tolist()
    return SimulatedOracle(truth, scenario.trace.coins(repeat, scenario.tokens))


async def play(scheduler: Scheduler, scenario: Scenario, repeat: int) -> RunResult:
    """Run one algorithm over one repeat of `scenario` on the running loop."""
    loop = asyncio.get_running_loop()
    servers = ServerSet(
        scenario.target,
        scenario.drafter,
        oracle_for(scenario, repeat),
        scenario.seed,
        repeat,
        scenario.link,
        scenario.latency_correlation,
        scenario.prompt_tokens,
        loop.time(),
    )
    gen = Generation(tokens=scenario.tokens, servers=servers)
    slack_before = getattr(loop, "slack_s", 0.0)
    result = await scheduler.generate(gen)
    return replace(result, timer_slack_s=getattr(loop, "slack_s", 0.0) - slack_before)


async def play_repeat(scenario: Scenario, repeat: int) -> dict[str, RunResult]:
    """Run the three algorithms concurrently over one repeat."""
    schedulers = schedulers_for(scenario)
    async with asyncio.TaskGroup() as tasks:
        running = {
            name: tasks.create_task(play(scheduler, scenario, repeat))
            for name, scheduler in schedulers.items()
        }
    return {name: task.result() for name, task in running.items()}


@dataclass(frozen=True)
class AlgorithmSummary:
    """One algorithm's runs over all repeats of a scenario."""

    runs: tuple[RunResult, ...]

    @property
    def latency_s(self) -> list[float]:
        return [r.latency_s for r in self.runs]

    @property
    def latency(self) -> Summary:
        return Summary.of(self.latency_s)

    @property
    def mean_s(self) -> float:
        return self.latency.mean

    @property
    def std_s(self) -> float:
        return self.latency.std

    @property
    def sem_s(self) -> float:
        return self.latency.sem

    @property
    def first_token_s(self) -> list[float]:
        return [r.first_token_s for r in self.runs]

    @property
    def target_forwards(self) -> list[int]:
        return [r.target_forwards for r in self.runs]

    @property
    def drafter_forwards(self) -> list[int]:
        return [r.drafter_forwards for r in self.runs]

    @property
    def wasted_forwards(self) -> list[int]:
        return [r.wasted_forwards for r in self.runs]

    @property
    def busy_s(self) -> list[float]:
        return [r.busy_s for r in self.runs]

    @property
    def output_sha256(self) -> list[str]:
        return [r.output_sha256 for r in self.runs]

    @property
    def max_queue_wait_s(self) -> list[float]:
        return [r.max_queue_wait_s for r in self.runs]


@dataclass(frozen=True)
class Speedups:
    """The three paired speedups of a scenario."""

    dsi_over_si: Speedup
    dsi_over_nonsi: Speedup
    si_over_nonsi: Speedup


@dataclass(frozen=True)
class Overhead:
    """How far one algorithm's wall-clock runs fell behind the same runs on the virtual
    clock (the ideal: same coins, same latency draws, no orchestration cost)."""

    wall_s: float
    ideal_s: float
    forwards: int
    lag_s: float
    timer_slack_s: float

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.ideal_s

    @property
    def overhead_pct(self) -> float:
        return 100 * self.overhead_s / self.ideal_s

    @property
    def per_forward_us(self) -> float:
        """Latency overhead per forward pass of the runs, in microseconds."""
        return 1e6 * self.overhead_s / self.forwards if self.forwards else 0.0

    @property
    def wake_lag_us(self) -> float:
        """Mean delay from a forward's deadline to its task resuming, in microseconds."""
        return 1e6 * self.lag_s / self.forwards if self.forwards else 0.0


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario played on one clock: each algorithm's runs and the speedups between them.
    A wall-clock result carries `ideal`, the same scenario replayed on the virtual clock."""

    scenario: Scenario
    clock: Clock
    algorithms: dict[str, AlgorithmSummary]
    ideal: ScenarioResult | None = None

    def overhead(self, name: str) -> Overhead | None:
        """Wall-clock overhead of algorithm `name` against the ideal (None on the virtual clock)."""
        if self.ideal is None:
            return None
        runs = self.algorithms[name].runs
        return Overhead(
            wall_s=sum(r.latency_s for r in runs),
            ideal_s=sum(self.ideal.algorithms[name].latency_s),
            forwards=sum(r.forwards for r in runs),
            lag_s=sum(r.lag_s for r in runs),
            timer_slack_s=sum(r.timer_slack_s for r in runs),
        )

    def gpus(self, name: str) -> int:
        """GPUs algorithm `name` holds for its whole latency (see gpus_held)."""
        return gpus_held(name, self.scenario.servers)

    def reserved_s(self, name: str) -> list[float]:
        """Reserved GPU-seconds of algorithm `name` per repeat: its latency times the GPUs it
        holds, busy or not (busy_s counts only the time they compute)."""
        gpus = self.gpus(name)
        return [latency * gpus for latency in self.algorithms[name].latency_s]

    @property
    def speedups(self) -> Speedups:
        lat = {name: summary.latency_s for name, summary in self.algorithms.items()}
        return Speedups(
            dsi_over_si=Speedup.paired(lat["si"], lat["dsi"]),
            dsi_over_nonsi=Speedup.paired(lat["nonsi"], lat["dsi"]),
            si_over_nonsi=Speedup.paired(lat["nonsi"], lat["si"]),
        )

    @property
    def lossless(self) -> bool:
        """Whether every algorithm produced the same output in every repeat."""
        digests = [s.output_sha256 for s in self.algorithms.values()]
        return all(d == digests[0] for d in digests)


def _collect(
    scenario: Scenario, clock: Clock, repeats: Sequence[dict[str, RunResult]]
) -> ScenarioResult:
    return ScenarioResult(
        scenario=scenario,
        clock=clock,
        algorithms={
            name: AlgorithmSummary(tuple(rep[name] for rep in repeats)) for name in ALGORITHMS
        },
    )


def check_concurrency(concurrency: int) -> None:
    """InvalidParameterError unless `concurrency` (repeats played at once) is an integer >= 1."""
    require(
        isinstance(concurrency, int) and concurrency >= 1,
        f"concurrency (--concurrency) must be an integer >= 1; got {concurrency}",
    )


def check_no_leaks() -> None:
    """LeakedTasksError if a task other than the current one is still pending on the loop."""
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current]
    if leaked:
        raise LeakedTasksError(f"{len(leaked)} task(s) still pending after the runs: {leaked[:3]}")


async def play_many(
    scenarios: Sequence[Scenario], concurrency: int = 1, progress: Progress | None = None
) -> list[ScenarioResult]:
    """Play every repeat of every scenario on the running loop, `concurrency` repeats at a
    time (each repeat runs its three algorithms concurrently)."""
    check_concurrency(concurrency)
    on_virtual = isinstance(asyncio.get_running_loop(), VirtualEventLoop)
    clock: Clock = "virtual" if on_virtual else "wall"
    slots = asyncio.Semaphore(concurrency)
    units = [(i, r) for i, s in enumerate(scenarios) for r in range(s.repeats)]
    results: dict[tuple[int, int], dict[str, RunResult]] = {}

    async def one(index: int, repeat: int) -> None:
        async with slots:
            results[index, repeat] = await play_repeat(scenarios[index], repeat)
        if progress is not None:
            progress(1)

    async with asyncio.TaskGroup() as tasks:
        for index, repeat in units:
            tasks.create_task(one(index, repeat))
    check_no_leaks()
    return [
        _collect(s, clock, [results[i, r] for r in range(s.repeats)])
        for i, s in enumerate(scenarios)
    ]


def run_many(
    scenarios: Sequence[Scenario],
    clock: Clock = "virtual",
    concurrency: int = 1,
    progress: Progress | None = None,
) -> list[ScenarioResult]:
    """Play many scenarios in one event loop on `clock`; `progress(n)` after each repeat.

    On the wall clock every scenario is also replayed on the virtual clock, so each result
    carries its ideal and hence its measured orchestration overhead.
    """
    check_clock(clock)
    results = run_on_clock(lambda: play_many(scenarios, concurrency, progress), clock)
    if clock == "virtual":
        return results
    ideals = run_on_clock(lambda: play_many(scenarios, concurrency), "virtual")
    return [replace(r, ideal=i) for r, i in zip(results, ideals, strict=True)]


def run_scenario(
    scenario: Scenario,
    clock: Clock = "virtual",
    concurrency: int = 1,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Play non-SI, SI and DSI over every repeat of `scenario` on `clock`."""
    return run_many([scenario], clock, concurrency, progress)[0]
