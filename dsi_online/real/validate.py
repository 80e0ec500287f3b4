"""`dsi-online validate`: how far the simulator's predictions are from real runs.

For a real pair (the trained `small` pair by default): measure its latencies through the real
backend and its drafter's accept/reject traces on held-out prompts; predict non-SI, SI and
DSI with the simulator from those measurements alone; run all three for real on the same
prompts; report predicted against actual, with transformers' own greedy and assisted
generation beside them. No rich here; the CLI draws the report.

The prediction is made three ways, so that every modelling feature shows what it buys:
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

from dsi_online.errors import InvalidParameterError, require
from dsi_online.measure.acceptance import AcceptanceEstimate, estimate_acceptance
from dsi_online.measure.torch_runtime import Environment, passive_openmp
from dsi_online.pair import PairInfo, heldout_prompts, train_pair
from dsi_online.real import RealBackend, RealRunResult
from dsi_online.real.backend import Breakdown, check_checkpoint, server_devices
from dsi_online.real.calibrate import Calibration, acceptance_trace, calibrate
from dsi_online.real.handles import WORKERS, Workers
from dsi_online.real.peer import PeerResult, time_peer
from dsi_online.real.worker import DTYPES
from dsi_online.schedulers.registry import ALGORITHMS, schedulers
from dsi_online.schedulers.seam import Role
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.profile import AcceptanceProfile, ModelProfile, Profile, Provenance
from dsi_online.sim.runner import ScenarioResult, run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.stats import Speedup, Summary
from dsi_online.sim.trace import AcceptanceTrace

Model = Literal["paper", "traced", "full"]
MODELS: tuple[Model, ...] = ("paper", "traced", "full")
Phase = Literal["pair", "start", "acceptance", "measure", "predict", "transformers"]
Progress = Callable[[Phase, int, int], None]
"""progress(phase, done, total): called as work in each phase completes."""

SIMULATED_PER_PROMPT = 20
"""Simulated repeats per prompt: the prediction's own sampling error stays small."""


@dataclass(frozen=True)
class ValidateRequest:
    """What to validate and how: the options of `dsi-online validate`."""

    pair: Path | None = None  # None: the `small` pair of `seed`, trained if not cached
    lookahead: int = 5
    servers: int = 1
    prompts: int = 10
    prompt_bytes: int = 64
    tokens: int = 128
    repeats: int = 3
    seed: int = 0
    workers: Workers = "process"
    calibration_samples: int = 8
    device: str = "cpu"  # one device, or one per target server then the drafter's
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for value, name, option, low, high in (
            (self.lookahead, "lookahead", "--lookahead/-k", 1, 64),
            (self.servers, "target servers", "--servers/-n", 1, 64),
            (self.prompts, "prompts", "--prompts", 1, 1000),
            (self.prompt_bytes, "prompt length", "--prompt-bytes", 1, 4096),
            (self.tokens, "tokens", "--tokens/-S", 1, 4096),
            (self.repeats, "repeats", "--repeats/-r", 1, 1000),
            (self.calibration_samples, "calibration samples", "--calibration-samples", 3, 100),
        ):
            require(
                isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                f"{name} ({option}) must be an integer within [{low}, {high}]; got {value}",
            )
        require(
            isinstance(self.seed, int) and self.seed >= 0,
            f"seed (--seed) must be an integer >= 0; got {self.seed}",
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
class AlgorithmValidation:
    """One algorithm: the full model's prediction against the real runs."""

    name: str
    predicted_s: float
    predicted_by_model: dict[str, float]
    actual: Summary
    lossless: bool
    runs: tuple[RealRunResult, ...]

    @property
    def error_pct(self) -> float:
        """100 x (predicted - actual) / actual."""
        return 100 * (self.predicted_s - self.actual.mean) / self.actual.mean

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
class ValidationResult:
    """Everything `validate` measured, predicted and ran."""

    request: ValidateRequest
    pair: PairInfo
    pair_path: Path
    acceptance: AcceptanceEstimate
    trace: AcceptanceTrace
    calibrations: dict[str, Calibration]
    predictions: dict[str, ScenarioResult]  # by model
    algorithms: dict[str, AlgorithmValidation]
    peer: PeerResult
    peer_matches_ours: bool
    reference_device: str = "cpu"  # where the target's greedy decoding ran (in `dtype`)

    @property
    def scenario(self) -> Scenario:
        """The full model's scenario: what the prediction simulated."""
        return self.predictions["full"].scenario

    def speedup(self, baseline: str, candidate: str) -> tuple[float, Speedup]:
        """Predicted and actual (paired over prompts and repeats) speedup of `candidate`."""
        predicted = self.algorithms[baseline].predicted_s / self.algorithms[candidate].predicted_s
        actual = Speedup.paired(
            [r.run.latency_s for r in self.algorithms[baseline].runs],
            [r.run.latency_s for r in self.algorithms[candidate].runs],
        )
        return predicted, actual

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
    trace: AcceptanceTrace,
) -> dict[Model, Scenario]:
    target, drafter = calibrations["target"].latency(), calibrations["drafter"].latency()
    full = Scenario(
        target=target,
        drafter=drafter,
        acceptance=trace.rate,
        lookahead=request.lookahead,
        servers=request.servers,
        tokens=request.tokens,
        repeats=request.prompts * SIMULATED_PER_PROMPT,
        seed=request.seed,
        trace=trace,
        prompt_tokens=request.prompt_bytes,
    )
    paper_latency = {
        "target": ModelLatency(target.ttft, target.tpot),
        "drafter": ModelLatency(drafter.ttft, drafter.tpot),
    }
    traced = replace(full, target=paper_latency["target"], drafter=paper_latency["drafter"])
    return {"paper": replace(traced, trace=None), "traced": traced, "full": full}


def _pair(request: ValidateRequest, progress: Progress | None) -> Path:
    if request.pair is not None:
        return request.pair
    if progress is not None:
        progress("pair", 0, 1)
    path = train_pair("small", request.seed).path
    if progress is not None:
        progress("pair", 1, 1)
    return path


def validate(request: ValidateRequest, progress: Progress | None = None) -> ValidationResult:
    """Measure, predict, run for real, compare (module docstring)."""

    def step(phase: Phase, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, done, total)

    passive_openmp()  # before the workers start: they calibrate (real/calibrate.py)
    folder = _pair(request, progress)
    info = PairInfo.read(folder)
    prompts = heldout_prompts(info, request.prompts, request.prompt_bytes, request.seed)
    target_dir, drafter_dir = folder / "target", folder / "drafter"
    step("start", 0, 1)
    with RealBackend(
        target_dir,
        drafter_dir,
        servers=request.servers,
        workers=request.workers,
        device=request.device,
        dtype=request.dtype,
    ) as backend:
        reference_device = backend.reference_device
        step("start", 1, 1)
        step("acceptance", 0, 1)
        trace = acceptance_trace(
            backend,
            prompts,
            request.tokens,
            f"dsi-online validate: greedy matches of the drafter on {len(prompts)} held-out "
            f"prompts of {request.prompt_bytes} bytes, {request.tokens} tokens each",
        )
        step("acceptance", 1, 1)
        calibrations, runs = _measure_and_run(backend, request, prompts, step)
        references = [backend.reference(prompt, request.tokens) for prompt in prompts]
    estimate = estimate_acceptance(
        [[c == "1" for c in t] for t in trace.traces], request.lookahead, seed=request.seed
    )
    scenarios = _scenarios(request, calibrations, trace)
    predictions: dict[str, ScenarioResult] = {}
    for done, model in enumerate(MODELS):
        step("predict", done, len(MODELS))
        predictions[model] = run_scenario(scenarios[model], clock="virtual")
    step("predict", len(MODELS), len(MODELS))
    step("transformers", 0, 1)
    peer = time_peer(
        target_dir,
        drafter_dir,
        prompts,
        request.tokens,
        request.lookahead,
        repeats=request.repeats,
        dtype=request.dtype,
        device=reference_device,
    )
    step("transformers", 1, 1)
    return ValidationResult(
        request=request,
        pair=info,
        pair_path=folder,
        acceptance=estimate,
        trace=trace,
        calibrations=calibrations,
        predictions=predictions,
        algorithms={
            name: AlgorithmValidation(
                name=name,
                predicted_s=predictions["full"].algorithms[name].mean_s,
                predicted_by_model={m: predictions[m].algorithms[name].mean_s for m in MODELS},
                actual=Summary.of([r.run.latency_s for r in runs[name]]),
                lossless=all(r.lossless for r in runs[name]),
                runs=tuple(runs[name]),
            )
            for name in ALGORITHMS
        },
        peer=peer,
        peer_matches_ours=all(
            run.output == references[run.prompt] for run in (*peer.greedy, *peer.assisted)
        ),
        reference_device=reference_device,
    )


def _measure_and_run(
    backend: RealBackend,
    request: ValidateRequest,
    prompts: Sequence[Sequence[int]],
    step: Progress,
) -> tuple[dict[str, Calibration], dict[str, list[RealRunResult]]]:
    """`repeats` rounds, each a slice of the calibration then every algorithm on every prompt
    once, so that the measurements the prediction uses and the runs it predicts sample the
    same stretch of the machine's time (a shared machine drifts by several percent over
    minutes). The prediction never sees the runs. Within a round the order of the
    algorithms rotates from one prompt to the next; runs are listed round by round, prompt
    by prompt, the same for every algorithm (paired)."""
    by_name = schedulers(request.lookahead, request.servers)
    roles: tuple[Role, ...] = ("target", "drafter")
    parts: dict[str, list[Calibration]] = {role: [] for role in roles}
    runs: dict[str, list[RealRunResult]] = {name: [] for name in ALGORITHMS}
    total = request.repeats * (len(roles) + len(prompts) * len(ALGORITHMS))
    done = 0
    for round_ in range(request.repeats):
        for role in roles:
            parts[role].append(
                calibrate(
                    backend,
                    role,
                    prompts[0],
                    request.tokens,
                    request.calibration_samples,
                    request.seed + round_,
                )
            )
            done += 1
            step("measure", done, total)
        for index, prompt in enumerate(prompts):
            order = ALGORITHMS[index % 3 :] + ALGORITHMS[: index % 3]
            for name in order:
                runs[name].append(backend.play(by_name[name], prompt, request.tokens))
                done += 1
                step("measure", done, total)
    return {role: Calibration.merge(parts[role]) for role in roles}, runs
