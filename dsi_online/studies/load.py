"""`dsi-online load`'s study: every policy at every rate on the same requests, each policy's
capacity at a latency objective (SLO), and which policy is best where.

A cell is one rate and the policies played together on one event loop: on the virtual
clock one policy per cell (cells are independent and run on workers), on the wall clock
every policy of a rate in one cell, so that they share the machine's noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial

import numpy as np

from dsi_online.errors import InvalidParameterError, require
from dsi_online.sim.clock import Clock
from dsi_online.sim.load import LoadScenario, check_rate, run_load
from dsi_online.sim.policy import Policy
from dsi_online.studies.grid import Execution
from dsi_online.studies.load_stats import PolicyRate, summarize
from dsi_online.studies.parallel import run_chunks

MAX_RATES = 1_000
"""Most rates in one study."""
RATE_HELP = "a comma list (0.5,1,2) or start:stop:count (0.5:8:16, evenly spaced)"
NEAR_BEST = 0.05
"""Adaptive 'matches' the best static policy where it is within this fraction of it."""


def _rate(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameterError(
            f"rate (--rate) {spec!r}: {text!r} is not a number; the form is {RATE_HELP}"
        ) from None
    check_rate(value)
    return value


def parse_rates(spec: str) -> tuple[float, ...]:
    """Rates in requests per second from `spec`: '0.5,1,2' or '0.5:8:16'."""
    text = spec.replace(" ", "")
    require(bool(text), f"rate (--rate) must not be empty; the form is {RATE_HELP}")
    if ":" in text:
        parts = text.split(":")
        require(len(parts) == 3, f"rate (--rate) {spec!r}: the form is {RATE_HELP}")
        low, high = _rate(parts[0], spec), _rate(parts[1], spec)
        require(
            parts[2].isdigit() and 2 <= int(parts[2]) <= MAX_RATES,
            f"rate (--rate) {spec!r}: the count must be an integer within [2, {MAX_RATES}]",
        )
        require(high > low, f"rate (--rate) {spec!r}: stop must be above start")
        rates = [float(v) for v in np.linspace(low, high, int(parts[2]))]
    else:
        rates = [_rate(part, spec) for part in text.split(",")]
    require(len(rates) <= MAX_RATES, f"rate (--rate) holds at most {MAX_RATES} rates")
    require(len(set(rates)) == len(rates), f"rate (--rate) {spec!r} lists a rate twice")
    return tuple(sorted(rates))


@dataclass(frozen=True)
class Slo:
    """A latency objective: the `percentile`-th latency percentile at most `bound_s`."""

    percentile: float
    bound_s: float

    @property
    def label(self) -> str:
        return f"p{self.percentile:g}"

    def met(self, cell: PolicyRate) -> bool:
        """Whether a (stable) cell meets the objective."""
        value = cell.latency_at(self.percentile)
        return value is not None and value <= self.bound_s


SLO_HELP = "pQ=SECONDS with 0 < Q < 100, e.g. p99=2.5"


def parse_slo(spec: str) -> Slo:
    """An SLO from 'p99=2.5' (the 99th percentile of latency at most 2.5 s)."""
    name, sep, bound = spec.replace(" ", "").partition("=")
    require(
        bool(sep) and name[:1].lower() == "p",
        f"slo (--slo) {spec!r}: the form is {SLO_HELP}",
    )
    try:
        q, seconds = float(name[1:]), float(bound)
    except ValueError:
        raise InvalidParameterError(f"slo (--slo) {spec!r}: the form is {SLO_HELP}") from None
    require(
        math.isfinite(q) and 0 < q < 100,
        f"slo (--slo) percentile must be within (0, 100) exclusive; got {name[1:]}",
    )
    require(
        math.isfinite(seconds) and seconds > 0,
        f"slo (--slo) bound must be a number of seconds > 0; got {bound}",
    )
    return Slo(q, seconds)


@dataclass(frozen=True)
class LoadConfig:
    """A study: the load, its rates and policies, the clock and the objective."""

    load: LoadScenario
    rates: tuple[float, ...]
    policies: tuple[Policy, ...]
    clock: Clock = "virtual"
    slo: Slo = Slo(99, 4.0)

    def cells(self) -> list[tuple[float, tuple[Policy, ...]]]:
        """The independent cells: (rate, policies played together)."""
        if self.clock == "wall":
            return [(rate, self.policies) for rate in self.rates]
        return [(rate, (policy,)) for rate in self.rates for policy in self.policies]


def play_cell(
    load: LoadScenario, clock: Clock, cell: tuple[float, tuple[Policy, ...]]
) -> list[PolicyRate]:
    """One cell's summaries (a worker's task)."""
    rate, policies = cell
    result = run_load(load, rate, policies, clock)
    ideal = result.ideal.runs if result.ideal is not None else {}
    return [summarize(run, load.warmup, ideal.get(name)) for name, run in result.runs.items()]


@dataclass
class LoadStudy:
    """The cells of a study, as they come back; complete rates make the report."""

    config: LoadConfig
    cells: dict[tuple[str, float], PolicyRate]

    def rates_done(self) -> list[float]:
        """Rates whose every policy is done (an interrupted study reports only those)."""
        names = [p.name for p in self.config.policies]
        return [r for r in self.config.rates if all((n, r) in self.cells for n in names)]

    def series(self, policy: str) -> list[PolicyRate]:
        """A policy's cells at the done rates, in rate order."""
        return [self.cells[policy, rate] for rate in self.rates_done()]

    def capacity(self, policy: str) -> float | None:
        """The highest done rate up to which every rate is stable and meets the SLO."""
        best = None
        for cell in self.series(policy):
            if not self.config.slo.met(cell):
                break
            best = cell.rate
        return best


def run_study(
    config: LoadConfig,
    execution: Execution,
    *,
    progress: Callable[[int], None] | None = None,
    study: LoadStudy | None = None,
) -> LoadStudy:
    """Play every cell (here, on a process pool or on Ray); `study` collects them as they
    come back, so that an interrupted run keeps its finished rates."""
    study = study if study is not None else LoadStudy(config, {})
    func = partial(play_cell, config.load, config.clock)
    with ExitStack() as stack:
        results: Iterator[list[PolicyRate]] = run_chunks(
            func,
            config.cells(),
            workers=execution.workers,
            backend=execution.backend,
            ray_address=execution.ray_address,
            stack=stack,
            command="load",
        )
        for summaries in results:
            for cell in summaries:
                study.cells[cell.policy, cell.rate] = cell
            if progress is not None:
                progress(1)
    return study


def best_static(study: LoadStudy, rate: float, q: float) -> PolicyRate | None:
    """The static policy with the lowest q-th percentile at `rate` (None: all unstable)."""
    stable = [
        study.cells[p.name, rate]
        for p in study.config.policies
        if not p.adaptive and study.cells[p.name, rate].stable
    ]
    return min(stable, key=lambda c: _at(c, q), default=None)


def _at(cell: PolicyRate, q: float) -> float:
    value = cell.latency_at(q)
    return math.inf if value is None else value


def _rates(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _regions(study: LoadStudy, q: float) -> list[tuple[str, float, float]]:
    """Consecutive done rates with the same best static policy: (label, first, last)."""
    regions: list[tuple[str, float, float]] = []
    for rate in study.rates_done():
        best = best_static(study, rate, q)
        label = "none (every static policy is unstable)" if best is None else best.label
        if regions and regions[-1][0] == label:
            regions[-1] = (label, regions[-1][1], rate)
        else:
            regions.append((label, rate, rate))
    return regions


def verdict(study: LoadStudy) -> str:
    """Which static policy gives the lowest latency percentile at which rates, and how
    adaptive compares with the best of them."""
    q = study.config.slo.percentile
    label = study.config.slo.label
    parts = [
        f"{name} from {first:.3g} to {last:.3g} req/s"
        if first != last
        else f"{name} at {first:.3g} req/s"
        for name, first, last in _regions(study, q)
    ]
    sentences = [
        f"With {study.config.load.gpus} GPUs, the lowest {label} among static policies: "
        + "; ".join(parts)
        + "."
    ]
    adaptive = [p for p in study.config.policies if p.adaptive]
    if adaptive and any(not p.adaptive for p in study.config.policies):
        sentences.append(_adaptive_sentence(study, adaptive[0].name, q, label))
    return " ".join(sentences)


def _adaptive_sentence(study: LoadStudy, name: str, q: float, label: str) -> str:
    gaps: list[float] = []
    wins: list[float] = []
    lone: list[float] = []
    for rate in study.rates_done():
        cell = study.cells[name, rate]
        best = best_static(study, rate, q)
        mine = cell.latency_at(q)
        if best is None:
            if mine is not None:
                lone.append(rate)
            continue
        theirs = best.latency_at(q)
        assert theirs is not None
        if mine is None:
            gaps.append(math.inf)
            continue
        gaps.append(mine / theirs - 1)
        if mine < theirs:
            wins.append(rate)
    if not gaps:
        return "Adaptive: no rate at which a static policy is stable to compare with."
    worst = max(gaps)
    if not math.isfinite(worst):
        text = "Adaptive is unstable at a rate where a static policy is stable"
    elif worst <= 0 and min(gaps) == 0:
        text = (
            f"Adaptive's {label} equals the best static policy's at every rate where one is stable"
        )
    elif worst <= 0:
        text = (
            f"Adaptive's {label} is at or below the best static policy's at every rate where "
            f"one is stable (up to {-min(gaps):.1%} below)"
        )
    else:
        text = (
            f"Adaptive's {label} is within {worst:.0%} of the best static policy's at every "
            "rate where one is stable"
        )
    text += (
        f"; it beats every static policy at {_rates(wins)} req/s"
        if wins
        else "; it beats every static policy at no rate"
    )
    if lone:
        text += f", and alone is stable at {_rates(lone)} req/s"
    return text + "."
