"""`dsi-online validate`: how far the simulator's predictions are from real runs.

For a real pair (the trained `small` pair by default), held-out prompts are drawn and split
in two disjoint sets (docs/validate.md). The calibration set gives the latency calibration
(through the real backend) and the drafter's accept/reject traces; the evaluation set is run
for real (non-SI, SI and DSI, and transformers' own greedy and assisted generation) and is
never seen by the prediction. The prediction replays the calibration set's whole traces and
carries a 95% interval for the evaluation set's mean latency and every speedup, from a
predictive bootstrap over calibration prompts and the evaluation set's size. The in-sample
prediction (the evaluation set's own traces replayed) is kept as a diagnostic. No rich here;
the CLI draws the report.

The held-out prediction is made three ways, so that every modelling feature shows what it
buys:
- `paper`: the paper's model. A forward costs a TTFT (the first) or a TPOT draw whatever it
  processes, acceptance is an i.i.d. coin at the measured rate.
- `traced`: the same latencies, with the measured traces as the coins.
- `full` (what `predicted_s` reports): traces, and a forward priced by the tokens it
  processes (`dsi_online.sim.cost.TokenCost`, with a KV-cache model per server and cancelled
  forwards that stop at a layer boundary).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.special import stdtrit

from dsi_online.errors import InvalidParameterError, require
from dsi_online.measure.acceptance import AcceptanceEstimate, estimate_acceptance
from dsi_online.measure.torch_runtime import Environment, passive_openmp
from dsi_online.pair import PairInfo, Prompt, heldout_draw, train_pair
from dsi_online.real import RealBackend, RealRunResult
from dsi_online.real.backend import Breakdown, check_checkpoint, server_devices
from dsi_online.real.calibrate import Calibration, acceptance_trace, calibrate, dispatch_gaps
from dsi_online.real.handles import WORKERS, Workers
from dsi_online.real.peer import PeerResult, time_peer
from dsi_online.real.worker import DTYPES
from dsi_online.schedulers.registry import ALGORITHMS, schedulers
from dsi_online.schedulers.seam import Role
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.profile import AcceptanceProfile, ModelProfile, Profile, Provenance
from dsi_online.sim.runner import ScenarioResult, run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.stats import CONFIDENCE, Speedup, Summary
from dsi_online.sim.trace import AcceptanceTrace

Model = Literal["paper", "traced", "full"]
MODELS: tuple[Model, ...] = ("paper", "traced", "full")
Phase = Literal["pair", "start", "acceptance", "measure", "predict", "transformers"]
Progress = Callable[[Phase, int, int], None]
"""progress(phase, done, total): called as work in each phase completes."""

SIMULATED_PER_PROMPT = 4
"""Simulated repeats per prompt's trace of the full model (the between-prompt spread, not
the simulation's, dominates the interval); `paper` and `traced`, diagnostics, replay each
trace once."""
BOOTSTRAP = 4000
"""Draws of the predictive bootstrap behind the held-out intervals."""
SPEEDUPS = (("si", "dsi"), ("nonsi", "dsi"), ("nonsi", "si"))
"""(baseline, candidate) of every speedup reported, as `candidate_over_baseline`."""


@dataclass(frozen=True)
class ValidateRequest:
    """What to validate and how: the options of `dsi-online validate`."""

    pair: Path | None = None  # None: the `small` pair of `seed`, trained if not cached
    lookahead: int = 5
    servers: int = 1
    prompts: int = 40  # the evaluation set: run for real, never seen by the prediction
    calibration_prompts: int = 120  # the calibration set: traces and latency calibration
    prompt_bytes: int = 64
    tokens: int = 128
    repeats: int = 2
    seed: int = 0
    prompt_seed: int | None = None  # None: `seed`
    workers: Workers = "process"
    device: str = "cpu"  # one device, or one per target server then the drafter's
    dtype: str = "float32"
    calibration_samples: int = 8

    def __post_init__(self) -> None:
        for value, name, option, low, high in (
            (self.lookahead, "lookahead", "--lookahead/-k", 1, 64),
            (self.servers, "target servers", "--servers/-n", 1, 64),
            (self.prompts, "evaluation prompts", "--prompts", 2, 1000),
            (self.calibration_prompts, "calibration prompts", "--calibration-prompts", 2, 1000),
            (self.prompt_bytes, "prompt length", "--prompt-bytes", 1, 4096),
            (self.tokens, "tokens", "--tokens/-S", 1, 4096),
            (self.repeats, "repeats", "--repeats/-r", 1, 1000),
            (self.calibration_samples, "calibration samples", "--calibration-samples", 3, 100),
        ):
            require(
                isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                f"{name} ({option}) must be an integer within [{low}, {high}]; got {value}",
            )
        for seed, option in ((self.seed, "--seed"), (self.prompt_seed, "--seeds")):
            require(
                seed is None or (isinstance(seed, int) and seed >= 0),
                f"seed ({option}) must be an integer >= 0; got {seed}",
            )
        require(
            self.pair is None or (Path(self.pair) / "pair.toml").is_file(),
            f"pair (--pair) must be a folder made by dsi-online pair train (pair.toml, target/, "
            f"drafter/); got {self.pair}",
        )
        if self.pair is not None:
            for role in ("target", "drafter"):
                check_checkpoint(Path(self.pair) / role, role)
            check_vocabularies(Path(self.pair))
        require(
            self.workers in WORKERS,
            f"workers (--workers) must be one of {', '.join(WORKERS)}; got {self.workers!r}",
        )
        require(
            self.dtype in DTYPES,
            f"dtype (--dtype) must be one of {', '.join(DTYPES)}; got {self.dtype!r}",
        )
        server_devices(self.device, self.servers)

    @property
    def draw_seed(self) -> int:
        """The seed of the prompts and of the simulation."""
        return self.seed if self.prompt_seed is None else self.prompt_seed


def check_vocabularies(folder: Path) -> None:
    """InvalidParameterError, before any model loads, unless the pair's target and drafter
    share a vocabulary (their config.json's vocab_size): a drafter's token ids must be the
    target's, or no draft can be verified."""
    sizes = {}
    for role in ("target", "drafter"):
        config = folder / role / "config.json"
        try:
            sizes[role] = json.loads(config.read_text(encoding="utf-8"))["vocab_size"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterError(
                f"pair (--pair) {folder}: cannot read the vocabulary size from {config} "
                f"({exc.__class__.__name__})"
            ) from None
    require(
        sizes["target"] == sizes["drafter"],
        f"pair (--pair) {folder}: the drafter's vocabulary ({sizes['drafter']} tokens) differs "
        f"from the target's ({sizes['target']}): target and drafter must share a tokenizer",
    )


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


def predictive_draws(
    latencies: dict[str, np.ndarray], evaluation: int, runs: int, seed: int
) -> dict[str, np.ndarray]:
    """Simulated means of an evaluation set, one per bootstrap draw, for each algorithm.

    `latencies[name]` holds simulated latencies by calibration prompt (rows) and simulated
    repeat (columns). A draw resamples the calibration prompts with replacement (the
    calibration sample's own uncertainty), draws `evaluation` prompts from that resample
    (the evaluation set's), and `runs` simulated repeats of each (the run-to-run noise), and
    takes the mean. The same picks serve every algorithm, so speedups are paired."""
    first = next(iter(latencies.values()))
    prompts, repeats = first.shape
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, prompts, size=(BOOTSTRAP, prompts))
    picked = np.take_along_axis(
        resample, rng.integers(0, prompts, size=(BOOTSTRAP, evaluation)), axis=1
    )
    chosen = rng.integers(0, repeats, size=(BOOTSTRAP, evaluation, runs))
    rows = np.broadcast_to(picked[:, :, None], chosen.shape)
    return {name: lat[rows, chosen].mean(axis=(1, 2)) for name, lat in latencies.items()}


def ci95(draws: np.ndarray) -> tuple[float, float]:
    """The central 95% of bootstrap draws."""
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


@dataclass(frozen=True)
class AlgorithmValidation:
    """One algorithm: the held-out prediction (with its interval), the in-sample one, and
    the real runs."""

    name: str
    predicted_s: float
    predicted_ci95_s: tuple[float, float]
    in_sample_s: float
    predicted_by_model: dict[str, float]
    actual: Summary
    lossless: bool
    runs: tuple[RealRunResult, ...]

    @property
    def error_pct(self) -> float:
        """100 x (predicted - actual) / actual, held out."""
        return 100 * (self.predicted_s - self.actual.mean) / self.actual.mean

    @property
    def in_sample_error_pct(self) -> float:
        """The in-sample prediction's error."""
        return 100 * (self.in_sample_s - self.actual.mean) / self.actual.mean

    @property
    def inside(self) -> bool:
        """Whether the real mean fell inside the held-out 95% interval."""
        return self.predicted_ci95_s[0] <= self.actual.mean <= self.predicted_ci95_s[1]

    def error_pct_of(self, model: Model) -> float:
        """The error of one model's prediction."""
        return 100 * (self.predicted_by_model[model] - self.actual.mean) / self.actual.mean

    def breakdown(self, role: Literal["target", "drafter"]) -> Breakdown:
        """Where `role`'s time went, summed over the real runs and divided by their count."""
        totals = [run.breakdown(role) for run in self.runs]
        n = len(totals)
        return Breakdown(
            forwards=round(sum(b.forwards for b in totals) / n),
            cancelled=round(sum(b.cancelled for b in totals) / n),
            processed=round(sum(b.processed for b in totals) / n),
            prompt=round(sum(b.prompt for b in totals) / n),
            catchup=round(sum(b.catchup for b in totals) / n),
            compute_s=sum(b.compute_s for b in totals) / n,
            queued_s=sum(b.queued_s for b in totals) / n,
            delivery_s=sum(b.delivery_s for b in totals) / n,
            tail_s=sum(b.tail_s for b in totals) / n,
        )


@dataclass(frozen=True)
class SpeedupValidation:
    """One speedup: held out with its interval, in sample, and real (paired over runs)."""

    predicted: float
    predicted_ci95: tuple[float, float]
    in_sample: float
    actual: Speedup

    @property
    def error_pct(self) -> float:
        return 100 * (self.predicted - self.actual.value) / self.actual.value

    @property
    def in_sample_error_pct(self) -> float:
        return 100 * (self.in_sample - self.actual.value) / self.actual.value

    @property
    def inside(self) -> bool:
        return self.predicted_ci95[0] <= self.actual.value <= self.predicted_ci95[1]


@dataclass(frozen=True)
class ValidationResult:
    """Everything `validate` measured, predicted and ran."""

    request: ValidateRequest
    pair: PairInfo
    pair_path: Path
    protocol: Protocol
    acceptance: AcceptanceEstimate  # of the calibration traces
    trace: AcceptanceTrace  # the calibration set's: what the prediction replays
    evaluation_trace: AcceptanceTrace  # the evaluation set's: the in-sample prediction's
    calibrations: dict[str, Calibration]
    predictions: dict[str, ScenarioResult]  # by model, and "in_sample"
    algorithms: dict[str, AlgorithmValidation]
    speedups: dict[str, SpeedupValidation]  # "candidate_over_baseline"
    peer: PeerResult
    peer_matches_ours: bool
    reference_device: str = "cpu"  # where the target's greedy decoding ran (in `dtype`)

    @property
    def scenario(self) -> Scenario:
        """The full model's scenario: what the held-out prediction simulated."""
        return self.predictions["full"].scenario

    @property
    def lossless(self) -> bool:
        """Every real run's output equals the target's greedy decoding."""
        return all(a.lossless for a in self.algorithms.values())

    def profile(self, command: str) -> Profile:
        """The measured latencies and acceptance as a profile (with the token-cost model),
        so that `dsi-online run --profile` simulates this pair as the prediction did."""
        environment = Environment.detect(self.reference_device, self.request.dtype)
        estimate = self.acceptance
        return Profile(
            name=f"validated-{self.pair.size}-seed{self.pair.seed}",
            target=ModelProfile("target", self.calibrations["target"].latency()),
            drafter=ModelProfile("drafter", self.calibrations["drafter"].latency()),
            provenance=Provenance(
                source="measured by dsi-online validate through the real backend "
                f"({self.request.workers} workers): one forward at a time, as a scheduler "
                "sees it, in rounds between the real runs",
                hardware=environment.hardware,
                date=environment.date,
                command=command,
                notes=environment.describe(),
            ),
            acceptance=AcceptanceProfile(
                rate=estimate.rate,
                source=self.trace.source,
                by_position=estimate.by_position,
                ci95=estimate.ci95,
                samples=estimate.positions,
            ),
        )


def _scenarios(
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


def _pair(request: ValidateRequest, progress: Progress | None) -> Path:
    if request.pair is not None:
        return request.pair
    if progress is not None:
        progress("pair", 0, 1)
    path = train_pair("small", request.seed).path
    if progress is not None:
        progress("pair", 1, 1)
    return path


def by_prompt(result: ScenarioResult, name: str, prompts: int) -> np.ndarray:
    """Simulated latencies of `name` by prompt (rows) and repeat (columns): repeat r
    replays trace r mod `prompts`."""
    return np.asarray(result.algorithms[name].latency_s).reshape(-1, prompts).T


def validate(request: ValidateRequest, progress: Progress | None = None) -> ValidationResult:
    """Measure, predict, run for real, compare (module docstring)."""
    passive_openmp()  # before the workers start: they calibrate (real/calibrate.py)
    folder = _pair(request, progress)
    with _backend(folder, request) as backend:
        return validate_on(backend, folder, request, progress)


def _backend(folder: Path, request: ValidateRequest) -> RealBackend:
    """The real backend of the pair in `folder`, as `request` asks for it."""
    return RealBackend(
        folder / "target",
        folder / "drafter",
        servers=request.servers,
        workers=request.workers,
        device=request.device,
        dtype=request.dtype,
    )


def validate_on(
    backend: RealBackend, folder: Path, request: ValidateRequest, progress: Progress | None
) -> ValidationResult:
    """`validate` on a running backend of the pair in `folder`."""

    def step(phase: Phase, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, done, total)

    info = PairInfo.read(folder)
    protocol = Protocol.draw(info, request)
    calibration = [list(p.tokens) for p in protocol.calibration]
    evaluation = [list(p.tokens) for p in protocol.evaluation]
    step("acceptance", 0, 2)
    traces = acceptance_trace(
        backend,
        calibration,
        request.tokens,
        f"dsi-online validate: greedy matches of the drafter on {len(calibration)} held-out "
        f"calibration prompts of {request.prompt_bytes} bytes, {request.tokens} tokens each",
    )
    step("acceptance", 1, 2)
    evaluation_traces = acceptance_trace(
        backend,
        evaluation,
        request.tokens,
        f"dsi-online validate: greedy matches of the drafter on {len(evaluation)} held-out "
        f"evaluation prompts of {request.prompt_bytes} bytes, {request.tokens} tokens each",
    )
    step("acceptance", 2, 2)
    calibrations, runs = _measure_and_run(backend, request, calibration, evaluation, step)
    references = [backend.reference(prompt, request.tokens) for prompt in evaluation]
    estimate = estimate_acceptance(
        [[c == "1" for c in t] for t in traces.traces], request.lookahead, seed=request.draw_seed
    )
    scenarios = _scenarios(request, calibrations, traces, evaluation_traces)
    predictions: dict[str, ScenarioResult] = {}
    for done, model in enumerate(scenarios):
        step("predict", done, len(scenarios))
        predictions[model] = run_scenario(scenarios[model], clock="virtual")
    step("predict", len(scenarios), len(scenarios))
    step("transformers", 0, 1)
    peer = time_peer(
        folder / "target",
        folder / "drafter",
        evaluation,
        request.tokens,
        request.lookahead,
        dtype=request.dtype,
        device=backend.reference_device,
    )
    step("transformers", 1, 1)
    draws = predictive_draws(
        {name: by_prompt(predictions["full"], name, len(calibration)) for name in ALGORITHMS},
        len(evaluation),
        request.repeats,
        request.draw_seed,
    )
    algorithms = {
        name: AlgorithmValidation(
            name=name,
            predicted_s=predictions["full"].algorithms[name].mean_s,
            predicted_ci95_s=ci95(draws[name]),
            in_sample_s=predictions["in_sample"].algorithms[name].mean_s,
            predicted_by_model={m: predictions[m].algorithms[name].mean_s for m in MODELS},
            actual=Summary.of([r.run.latency_s for r in runs[name]]),
            lossless=all(r.lossless for r in runs[name]),
            runs=tuple(runs[name]),
        )
        for name in ALGORITHMS
    }
    speedups = {
        f"{candidate}_over_{baseline}": SpeedupValidation(
            predicted=algorithms[baseline].predicted_s / algorithms[candidate].predicted_s,
            predicted_ci95=ci95(draws[baseline] / draws[candidate]),
            in_sample=algorithms[baseline].in_sample_s / algorithms[candidate].in_sample_s,
            actual=Speedup.paired(
                [r.run.latency_s for r in runs[baseline]],
                [r.run.latency_s for r in runs[candidate]],
            ),
        )
        for baseline, candidate in SPEEDUPS
    }
    return ValidationResult(
        request=request,
        pair=info,
        pair_path=folder,
        protocol=protocol,
        acceptance=estimate,
        trace=traces,
        evaluation_trace=evaluation_traces,
        calibrations=calibrations,
        predictions=predictions,
        algorithms=algorithms,
        speedups=speedups,
        peer=peer,
        peer_matches_ours=all(
            run.output == references[run.prompt] for run in (*peer.greedy, *peer.assisted)
        ),
        reference_device=backend.reference_device,
    )


def validate_seeds(
    request: ValidateRequest, seeds: Sequence[int], progress: Progress | None = None
) -> list[ValidationResult]:
    """`validate` once per prompt seed on one pair and one running backend (the pair of
    `request.seed`; each seed draws its own calibration and evaluation prompts)."""
    passive_openmp()
    folder = _pair(request, progress)
    with _backend(folder, request) as backend:
        return [
            validate_on(backend, folder, replace(request, prompt_seed=seed), progress)
            for seed in seeds
        ]


@dataclass(frozen=True)
class SignedErrors:
    """One quantity's errors over several validations: each run's held-out and in-sample
    error (%), whether the real value fell inside the held-out interval, and the means of
    the signed errors with their 95% intervals (t over runs; None with one run)."""

    held_out: tuple[float, ...]
    in_sample: tuple[float, ...]
    inside: tuple[bool, ...]

    @staticmethod
    def _mean_ci(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
        summary = Summary.of(values)
        if len(values) < 2:
            return summary.mean, None
        half = float(stdtrit(len(values) - 1, (1 + CONFIDENCE) / 2)) * summary.sem
        return summary.mean, (summary.mean - half, summary.mean + half)

    @property
    def held_out_mean(self) -> tuple[float, tuple[float, float] | None]:
        return self._mean_ci(self.held_out)

    @property
    def in_sample_mean(self) -> tuple[float, tuple[float, float] | None]:
        return self._mean_ci(self.in_sample)


def signed_errors(results: Sequence[ValidationResult]) -> dict[str, SignedErrors]:
    """Per algorithm and per speedup (`candidate_over_baseline`), the errors of `results`."""
    table: dict[str, SignedErrors] = {}
    for name in ALGORITHMS:
        runs = [r.algorithms[name] for r in results]
        table[name] = SignedErrors(
            tuple(a.error_pct for a in runs),
            tuple(a.in_sample_error_pct for a in runs),
            tuple(a.inside for a in runs),
        )
    for key in results[0].speedups:
        speedups = [r.speedups[key] for r in results]
        table[key] = SignedErrors(
            tuple(s.error_pct for s in speedups),
            tuple(s.in_sample_error_pct for s in speedups),
            tuple(s.inside for s in speedups),
        )
    return table


def _measure_and_run(
    backend: RealBackend,
    request: ValidateRequest,
    calibration: Sequence[Sequence[int]],
    prompts: Sequence[Sequence[int]],
    step: Progress,
) -> tuple[dict[str, Calibration], dict[str, list[RealRunResult]]]:
    """`repeats` rounds, each a slice of the calibration (with one real run of every
    algorithm on a calibration prompt, for the loop's time a forward) then every algorithm on
    every evaluation prompt once, so that the measurements the prediction uses and the runs
    it predicts sample the same stretch of the machine's time (a shared machine drifts by
    several percent over minutes). The prediction never sees the runs. Within a round the
    order of the algorithms rotates from one prompt to the next; runs are listed round by
    round, prompt by prompt, the same for every algorithm (paired)."""
    by_name = schedulers(request.lookahead, request.servers)
    roles: tuple[Role, ...] = ("target", "drafter")
    parts: dict[str, list[Calibration]] = {role: [] for role in roles}
    runs: dict[str, list[RealRunResult]] = {name: [] for name in ALGORITHMS}
    total = request.repeats * (len(roles) + len(prompts) * len(ALGORITHMS))
    done = 0
    for round_ in range(request.repeats):
        sample = calibration[round_ % len(calibration)]
        measured = {}
        for role in roles:
            measured[role] = calibrate(
                backend,
                role,
                sample,
                request.tokens,
                request.calibration_samples,
                request.draw_seed + round_,
            )
            done += 1
            step("measure", done, total)
        gaps: dict[Role, list[float]] = {role: [] for role in roles}
        for name in ALGORITHMS:  # the schedulers' own loop time, on a calibration prompt
            run = backend.play(by_name[name], sample, request.tokens)
            for role, found in dispatch_gaps(run).items():
                gaps[role] += found
        for role in roles:
            parts[role].append(replace(measured[role], gaps_s=tuple(gaps[role])))
        for index, prompt in enumerate(prompts):
            order = ALGORITHMS[index % 3 :] + ALGORITHMS[: index % 3]
            for name in order:
                runs[name].append(backend.play(by_name[name], prompt, request.tokens))
                done += 1
                step("measure", done, total)
    return {role: Calibration.merge(parts[role]) for role in roles}, runs
