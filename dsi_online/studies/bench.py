"""`dsi-online bench`: a fixed, versioned suite measuring the wall clock's fidelity and the
virtual clock's speed. No rich here; the CLI draws the table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.sim.load import LoadScenario, run_load
from dsi_online.sim.policy import Policy, parse_policies
from dsi_online.sim.runner import ScenarioResult, run_many
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.workload import poisson

SUITE_VERSION = "2"


@dataclass(frozen=True)
class BenchCase:
    """One scenario of the suite, played `concurrency` repeats at a time."""

    name: str
    scenario: Scenario
    concurrency: int = 1
    quick: bool = False


def _case(
    name: str,
    *,
    target_ms: float,
    c: float,
    a: float,
    k: int,
    n: int,
    tokens: int,
    repeats: int,
    concurrency: int = 1,
    cv: float = 0.0,
    quick: bool = False,
) -> BenchCase:
    scenario = Scenario.from_ms(
        target_ms=target_ms,
        drafter_ms=target_ms * c,
        acceptance=a,
        lookahead=k,
        servers=n,
        tokens=tokens,
        repeats=repeats,
        seed=2024,
        latency_cv=cv,
    )
    return BenchCase(name, scenario, concurrency, quick)


SUITE: tuple[BenchCase, ...] = (
    _case("t5-short", target_ms=5, c=0.1, a=0.8, k=5, n=7, tokens=100, repeats=2, quick=True),
    _case("t10-S200", target_ms=10, c=0.05, a=0.9, k=8, n=4, tokens=200, repeats=2, quick=True),
    _case("t10-S1000", target_ms=10, c=0.1, a=0.8, k=5, n=7, tokens=1000, repeats=1),
    _case("t20-slow-drafter", target_ms=20, c=0.5, a=0.3, k=1, n=2, tokens=200, repeats=2),
    _case("t20-few-servers", target_ms=20, c=0.1, a=0.8, k=5, n=1, tokens=200, repeats=2),
    _case("t20-lognormal", target_ms=20, c=0.1, a=0.7, k=4, n=7, tokens=200, repeats=2, cv=0.3),
    _case("t50-c0.01-a0.95", target_ms=50, c=0.01, a=0.95, k=10, n=7, tokens=200, repeats=1),
    _case("t100-c0.2-a0.6", target_ms=100, c=0.2, a=0.6, k=3, n=2, tokens=200, repeats=1),
    _case(
        "t20-M20",
        target_ms=20,
        c=0.1,
        a=0.8,
        k=5,
        n=7,
        tokens=100,
        repeats=20,
        concurrency=20,
        quick=True,
    ),
    _case(
        "t20-M100",
        target_ms=20,
        c=0.1,
        a=0.8,
        k=5,
        n=7,
        tokens=200,
        repeats=100,
        concurrency=100,
    ),
    _case(
        "t50-M100",
        target_ms=50,
        c=0.1,
        a=0.8,
        k=5,
        n=7,
        tokens=200,
        repeats=100,
        concurrency=100,
    ),
)


@dataclass(frozen=True)
class CaseResult:
    """A case played on the wall clock, with its ideal (the same runs on the virtual clock)."""

    case: BenchCase
    result: ScenarioResult

    def _sum(self, attribute: str) -> float:
        total = 0.0
        for name in ALGORITHMS:
            overhead = self.result.overhead(name)
            assert overhead is not None
            total += getattr(overhead, attribute)
        return total

    @property
    def wall_s(self) -> float:
        """Wall-clock latency summed over every run of every algorithm."""
        return self._sum("wall_s")

    @property
    def ideal_s(self) -> float:
        return self._sum("ideal_s")

    @property
    def forwards(self) -> int:
        return int(self._sum("forwards"))

    @property
    def overhead_pct(self) -> float:
        return 100 * (self.wall_s - self.ideal_s) / self.ideal_s

    @property
    def per_forward_overhead_us(self) -> float:
        return 1e6 * (self.wall_s - self.ideal_s) / self.forwards

    @property
    def speedup_wall(self) -> float:
        """DSI over SI on the wall clock."""
        return self.result.speedups.dsi_over_si.value

    @property
    def speedup_ideal(self) -> float:
        assert self.result.ideal is not None
        return self.result.ideal.speedups.dsi_over_si.value

    @property
    def speedup_error_pct(self) -> float:
        """Largest relative gap between a wall-clock speedup and its ideal, in percent."""
        assert self.result.ideal is not None
        wall, ideal = self.result.speedups, self.result.ideal.speedups
        pairs = [
            (wall.dsi_over_si, ideal.dsi_over_si),
            (wall.dsi_over_nonsi, ideal.dsi_over_nonsi),
            (wall.si_over_nonsi, ideal.si_over_nonsi),
        ]
        return max(100 * abs(w.value / i.value - 1) for w, i in pairs)

    def to_json(self) -> dict[str, Any]:
        per_algorithm = {}
        for name in ALGORITHMS:
            overhead = self.result.overhead(name)
            assert overhead is not None
            per_algorithm[name] = {
                "wall_s": overhead.wall_s,
                "ideal_s": overhead.ideal_s,
                "overhead_pct": overhead.overhead_pct,
                "per_forward_overhead_us": overhead.per_forward_us,
                "wake_lag_us": overhead.wake_lag_us,
                "timer_slack_s": overhead.timer_slack_s,
            }
        return {
            "name": self.case.name,
            "scenario": self.case.scenario.to_dict(),
            "concurrency": self.case.concurrency,
            "wall_s": self.wall_s,
            "ideal_s": self.ideal_s,
            "overhead_pct": self.overhead_pct,
            "per_forward_overhead_us": self.per_forward_overhead_us,
            "speedup_wall": self.speedup_wall,
            "speedup_ideal": self.speedup_ideal,
            "speedup_error_pct": self.speedup_error_pct,
            "algorithms": per_algorithm,
        }


def run_case(case: BenchCase, progress: Callable[[int], None] | None = None) -> CaseResult:
    """Play one case on the wall clock (and its ideal on the virtual clock)."""
    (result,) = run_many([case.scenario], "wall", case.concurrency, progress)
    return CaseResult(case, result)


VIRTUAL_WORKLOAD = Scenario.from_ms(
    target_ms=30,
    drafter_ms=3,
    acceptance=0.8,
    lookahead=5,
    servers=7,
    tokens=500,
    repeats=10,
    seed=1,
)


LONG_WORKLOAD = replace(VIRTUAL_WORKLOAD, tokens=20_000, repeats=1)
"""The same scenario with a long output: per-event costs must not grow with S, so its
throughput should match VIRTUAL_WORKLOAD's."""


LOAD_REQUESTS = 200
LOAD_GPUS = 8
LOAD_RATE = 1.5
LOAD_POLICIES = ("nonsi", "si", "dsi:3", "adaptive")


def load_workload() -> tuple[LoadScenario, list[Policy]]:
    """The load case: VIRTUAL_WORKLOAD's pair, 100 tokens a request, LOAD_REQUESTS Poisson
    arrivals at LOAD_RATE per second on LOAD_GPUS GPUs, under LOAD_POLICIES at once (about
    half the fleet's capacity for SI, past DSI:3's)."""
    scenario = replace(VIRTUAL_WORKLOAD, tokens=100, repeats=1)
    workload = poisson(LOAD_REQUESTS, scenario.tokens, 0, scenario.seed)
    return LoadScenario(scenario, workload, LOAD_GPUS), parse_policies(
        LOAD_POLICIES, scenario, LOAD_GPUS
    )


def virtual_load_forwards_per_s(runs: int = 3) -> float:
    """Simulated forward passes per CPU-second on the virtual clock under load (the median
    of `runs` plays of the load case; the adaptive policy's calibration is not counted)."""
    load, policies = load_workload()

    def once() -> float:
        start = time.process_time()
        result = run_load(load, LOAD_RATE, policies)
        cpu = time.process_time() - start
        return sum(r.forwards for run in result.runs.values() for r in run.records) / cpu

    return statistics.median(once() for _ in range(runs))


def _forwards_per_cpu_s(scenario: Scenario) -> float:
    start = time.process_time()
    (result,) = run_many([scenario], "virtual")
    cpu = time.process_time() - start
    forwards = sum(r.forwards for s in result.algorithms.values() for r in s.runs)
    return forwards / cpu


def virtual_forwards_per_s(runs: int = 3) -> float:
    """Simulated forward passes per CPU-second of the asyncio engine on the virtual clock
    (the median of `runs` plays of VIRTUAL_WORKLOAD)."""
    return statistics.median(_forwards_per_cpu_s(VIRTUAL_WORKLOAD) for _ in range(runs))


def virtual_long_forwards_per_s() -> float:
    """The same on LONG_WORKLOAD (S = 20,000): equal to the above when cost is linear in S."""
    return _forwards_per_cpu_s(LONG_WORKLOAD)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def suite(quick: bool) -> list[BenchCase]:
    """The cases to play: the quick subset or the whole suite."""
    return [case for case in SUITE if case.quick or not quick]
