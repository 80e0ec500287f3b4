"""The held-out protocol of `dsi-online validate`: disjoint calibration and evaluation prompts,
their acceptance traces, the scenarios that replay the calibration traces, and the
predictive bootstrap's intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from dsi_online.errors import require
from dsi_online.pair import PairInfo, Prompt, heldout_draw
from dsi_online.real.calibrate import PROBES, ROLES, Calibration
from dsi_online.real.handles import Workers
from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.schedulers.seam import Role
from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.runner import ScenarioResult, check_no_leaks, play, schedulers_for
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.trace import AcceptanceTrace

if TYPE_CHECKING:
    from dsi_online.real.backend import RealBackend
    from dsi_online.real.validate import ValidateRequest

SIMULATED_PER_PROMPT = 4
"""Simulated repeats per prompt's trace of the full model (the between-prompt spread, not
the simulation's, dominates the interval); `paper` and `traced`, diagnostics, replay each
trace once."""
BOOTSTRAP = 4000
"""Draws of the predictive bootstrap behind the held-out intervals."""
Calibrations = dict[Workers, dict[str, Calibration]]
"""A validation's merged latency calibrations, by kind of worker and role."""
Slices = dict[Workers, dict[Role, list[Calibration]]]
"""The one-sample calibrations a validation took, by kind of worker and role, in order."""
REPLICATES, REPLICATE_TRACES = 32, 24
"""Resampled latency calibrations behind the held-out intervals (`calibration_factors`),
each simulated over the first REPLICATE_TRACES calibration traces, once each."""


@dataclass(frozen=True)
class Protocol:
    """The prompts of a validation: the calibration set (latency calibration and the traces
    the prediction replays) and the evaluation set (run for real), disjoint."""

    calibration: tuple[Prompt, ...]
    evaluation: tuple[Prompt, ...]

    @classmethod
    def draw(cls, info: PairInfo, request: ValidateRequest) -> Protocol:
        """One draw without replacement of both sets: the first `prompts` evaluate."""
        drawn = heldout_draw(
            info,
            request.prompts + request.calibration_prompts,
            request.prompt_bytes,
            request.draw_seed,
        )
        return cls(tuple(drawn[request.prompts :]), tuple(drawn[: request.prompts]))


def scenarios(
    request: ValidateRequest,
    calibrations: dict[str, Calibration],
    calibration: AcceptanceTrace,
    evaluation: AcceptanceTrace,
) -> dict[str, Scenario]:
    """The held-out scenarios by model (each calibration trace replayed SIMULATED_PER_PROMPT
    times by the full model, once by the others), and the in-sample one (each evaluation
    trace SIMULATED_PER_PROMPT times)."""
    target, drafter = calibrations["target"].latency(), calibrations["drafter"].latency()
    full = Scenario(
        target=target,
        drafter=drafter,
        acceptance=calibration.rate,
        lookahead=request.lookahead,
        servers=request.servers,
        tokens=request.tokens,
        repeats=len(calibration.traces) * SIMULATED_PER_PROMPT,
        seed=request.draw_seed,
        trace=calibration,
        prompt_tokens=request.prompt_bytes,
    )
    paper_latency = {
        "target": ModelLatency(target.ttft, target.tpot),
        "drafter": ModelLatency(drafter.ttft, drafter.tpot),
    }
    traced = replace(
        full,
        target=paper_latency["target"],
        drafter=paper_latency["drafter"],
        repeats=len(calibration.traces),
    )
    in_sample = replace(
        full,
        acceptance=evaluation.rate,
        trace=evaluation,
        repeats=len(evaluation.traces) * SIMULATED_PER_PROMPT,
    )
    return {
        "paper": replace(traced, trace=None),
        "traced": traced,
        "full": full,
        "in_sample": in_sample,
    }


def by_prompt(result: ScenarioResult, name: str, prompts: int) -> np.ndarray:
    """Simulated latencies of `name` by prompt (rows) and repeat (columns): repeat r
    replays trace r mod `prompts`."""
    return np.asarray(result.algorithms[name].latency_s).reshape(-1, prompts).T


def slices_due(index: int, prompts: int, slices: int) -> list[int]:
    """The calibration slices taken before evaluation prompt `index` of `prompts`: `slices`
    in a round, spread evenly (slice j before prompt j * prompts // slices)."""
    return [j for j in range(slices) if j * prompts // slices == index]


def sharing_runs_due(index: int, prompts: int, slices: int, servers: int) -> int:
    """Real DSI runs before evaluation prompt `index` (`Calibration.sharing`): none with one
    target server; else one for each slice taken just before it, and one where none was,
    so that every slice keeps a run's forwards for the resampled calibrations."""
    return max(1, len(slices_due(index, prompts, slices))) if servers > 1 else 0


def host_factors(calibrations: dict[str, Calibration]) -> np.ndarray:
    """The host's speed before each evaluation prompt's runs (each probe of `PROBES`
    one-token forwards per model, `Calibration.probes_s`), relative to its mean: one factor
    per probe, the two models' ratios averaged. A probe's mean also carries its forwards' own
    noise, which a whole run averages away (and the simulation models apart): the factors'
    spread is shrunk to the host's alone, their variance less the within-probe variance over
    the forwards a factor averages (method of moments). [1.0] without probes."""
    rows = [np.asarray(calibrations[r].probes_s, dtype=float).reshape(-1, PROBES) for r in ROLES]
    if rows[0].size == 0:
        return np.ones(1)
    ratios = [row / row.mean() for row in rows]
    factors = np.asarray(np.mean([r.mean(axis=1) for r in ratios], axis=0), dtype=float)
    if len(factors) < 2:
        return np.ones(1)
    noise = float(np.mean([r.var(axis=1, ddof=1).mean() for r in ratios])) / (PROBES * len(ROLES))
    spread = float(factors.var(ddof=1))
    shrink = np.sqrt(max(0.0, spread - noise) / spread) if spread > 0 else 0.0
    return np.asarray(1 + (factors - factors.mean()) * shrink, dtype=float)


@dataclass(frozen=True)
class Replicates:
    """The latency calibration's uncertainty: per algorithm, the predictions of resampled
    calibrations as factors (`calibration_factors`), and how many slices it had."""

    factors: dict[str, np.ndarray]
    slices: int

    def __post_init__(self) -> None:
        require(self.count > 1, f"calibration replicates must be 2 or more; got {self.count}")

    @property
    def count(self) -> int:
        """Replicates per algorithm."""
        return len(next(iter(self.factors.values())))


def calibration_factors(
    request: ValidateRequest,
    slices: Slices,
    calibrations: Calibrations,
    trace: AcceptanceTrace,
    progress: Callable[[int, int], None] | None = None,
) -> Replicates:
    """How far each algorithm's prediction moves with its latency calibration: per
    algorithm, the mean simulated latency under each of REPLICATES calibrations made of the
    calibration's slices resampled with replacement (the same picks for every backend and
    role: a slice measures them at one moment), as factors (`replicate_factors`). They
    carry the slices' measurement noise and the host's speed at their moments, which the
    runs, interleaved with them, sample at moments of their own (with several target servers,
    the real DSI runs kept with each slice too: `Calibration.sharing`). The replicates
    replay the same traces with the same seed, so that only the calibration differs between
    them.
    `progress(done, REPLICATES)` before the first and after each."""
    rng = np.random.default_rng([request.draw_seed, 1])  # apart from the bootstrap's picks
    replayed = replace(trace, traces=trace.traces[:REPLICATE_TRACES])
    count = len(next(iter(slices.values()))["target"])
    means: dict[str, list[float]] = {name: [] for name in ALGORITHMS}
    if progress is not None:
        progress(0, REPLICATES)
    for done in range(1, REPLICATES + 1):
        picks = rng.integers(0, count, size=count)
        for kind, by_role in slices.items():
            resampled: dict[str, Calibration] = {
                role: replace(
                    Calibration.merge([by_role[role][i] for i in picks]),
                    gaps_s=calibrations[kind][role].gaps_s,
                )
                for role in ROLES
            }
            full = scenarios(request, resampled, replayed, replayed)["full"]
            names = [name for name in ALGORITHMS if request.workers_of(name) == kind]
            for name, mean_s in _simulated_means(
                replace(full, repeats=len(replayed.traces)), names
            ).items():
                means[name].append(mean_s)
        if progress is not None:
            progress(done, REPLICATES)
    return Replicates(
        {name: replicate_factors(np.asarray(found), count) for name, found in means.items()},
        count,
    )


def replicate_factors(means: np.ndarray, slices: int) -> np.ndarray:
    """Replicates' predictions (`means`, each from `slices` resampled slices) as factors:
    over their geometric mean, their log spread widened by sqrt(n / (n - 1)) for n slices (a
    resampled mean's variance falls short of the mean's by that)."""
    logs = np.log(means)
    widen = np.sqrt(slices / (slices - 1)) if slices > 1 else 1.0
    return np.asarray(np.exp(widen * (logs - logs.mean())), dtype=float)


def _simulated_means(scenario: Scenario, names: Sequence[str]) -> dict[str, float]:
    """The mean latency of each algorithm of `names` over `scenario`'s repeats, on the
    virtual clock (only those algorithms are played; no task left behind, as the runner
    checks)."""

    async def every() -> dict[str, float]:
        by_name = schedulers_for(scenario)
        found = {}
        for name in names:
            runs = [await play(by_name[name], scenario, r) for r in range(scenario.repeats)]
            found[name] = float(np.mean([run.latency_s for run in runs]))
        check_no_leaks()
        return found

    return run_on_clock(every, "virtual")


def predictive_draws(
    latencies: dict[str, np.ndarray],
    evaluation: int,
    runs: int,
    seed: int,
    host: np.ndarray | None = None,
    calibration: Replicates | None = None,
) -> dict[str, np.ndarray]:
    """Simulated means of an evaluation set, one per bootstrap draw, for each algorithm.

    `latencies[name]` holds simulated latencies by calibration prompt (rows) and simulated
    repeat (columns). A draw resamples the calibration prompts with replacement (the
    calibration sample's own uncertainty), draws `evaluation` prompts from that resample
    (the evaluation set's), and `runs` simulated repeats of each (the run-to-run noise),
    each slowed by a factor drawn from `host` (the host's speed when a real run runs;
    `host_factors`), and takes the mean. With `calibration` (the latency calibration's own
    uncertainty, `calibration_factors`), that mean is divided by the mean host factor of as
    many draws as the calibration had slices (the host's speed at its moments), and by a
    normal combination of the replicates' log factors: their spread, less the part the
    host's explains, and their correlation across algorithms. Without `calibration` the
    calibration is taken as exact. The same picks, factors and weights serve every
    algorithm, so speedups are paired (a prompt's runs of the three run back to back, on one
    calibration)."""
    first = next(iter(latencies.values()))
    prompts, repeats = first.shape
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, prompts, size=(BOOTSTRAP, prompts))
    picked = np.take_along_axis(
        resample, rng.integers(0, prompts, size=(BOOTSTRAP, evaluation)), axis=1
    )
    chosen = rng.integers(0, repeats, size=(BOOTSTRAP, evaluation, runs))
    rows = np.broadcast_to(picked[:, :, None], chosen.shape)
    host = np.ones(1) if host is None else host
    slowed = host[rng.integers(0, len(host), size=chosen.shape)]
    means = {
        name: (lat[rows, chosen] * slowed).mean(axis=(1, 2)) for name, lat in latencies.items()
    }
    if calibration is None:
        return means
    # the host's speed at the calibration's moments, drawn as at the runs'
    level = host[rng.integers(0, len(host), size=(BOOTSTRAP, calibration.slices))].mean(axis=1)
    names = list(means)
    logs = np.log(np.asarray([calibration.factors[name] for name in names]))
    logs -= logs.mean(axis=1, keepdims=True)
    # what moves every algorithm alike across replicates, less what the host's speed at those
    # moments (in `level` already) explains of it (method of moments); what moves one
    # algorithm against another (each backend's own measurement noise) is kept whole
    common = logs.mean(axis=0)
    spread, host_var = float(common.var(ddof=1)), float(np.log(level).var())
    shrink = np.sqrt(max(0.0, spread - host_var) / spread) if spread > 0 else 0.0
    logs += (shrink - 1.0) * common
    weights = rng.standard_normal((BOOTSTRAP, calibration.count)) / np.sqrt(calibration.count - 1)
    return {name: means[name] / level / np.exp(weights @ logs[i]) for i, name in enumerate(names)}


def ci95(draws: np.ndarray) -> tuple[float, float]:
    """The central 95% of bootstrap draws."""
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


def acceptance_trace(
    backend: RealBackend, prompts: Sequence[Sequence[int]], tokens: int, source: str
) -> AcceptanceTrace:
    """Per prompt, at each of the first `tokens` positions of the target's greedy output:
    whether the drafter's greedy token, given the target's own prefix, is the target's."""
    traces = []
    for prompt in prompts:
        reference = backend.reference(prompt, tokens)
        drafted = backend.predictions("drafter", (*prompt, *reference), len(prompt))
        traces.append([d == t for d, t in zip(drafted, reference, strict=False)])
    return AcceptanceTrace.from_matches(traces, source)
