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

The held-out prediction is made three ways, so that every modelling feature shows its gain:
- `paper`: the paper's model. A forward costs a TTFT (the first) or a TPOT draw whatever it
  processes, acceptance is an i.i.d. coin at the measured rate.
- `traced`: the same latencies, with the measured traces as the coins.
- `full` (what `predicted_s` reports): traces, and a forward priced by the tokens it
  processes (`dsi_online.sim.cost.TokenCost`, with a KV-cache model per server and cancelled
  forwards that stop at a layer boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from dsi_online.errors import require
from dsi_online.measure.acceptance import AcceptanceEstimate, estimate_acceptance
from dsi_online.measure.torch_runtime import Environment, passive_openmp
from dsi_online.pair import PairInfo, train_pair
from dsi_online.real import RealBackend, RealRunResult
from dsi_online.real.backend import check_checkpoint, check_vocabularies, server_devices
from dsi_online.real.calibrate import ROLES, Calibration, calibrate, probe
from dsi_online.real.compare import AlgorithmValidation, SpeedupValidation, compare
from dsi_online.real.handles import WORKERS, Workers
from dsi_online.real.heldout import (
    Calibrations,
    Protocol,
    Slices,
    acceptance_trace,
    calibration_factors,
    host_factors,
    scenarios,
    sharing_runs_due,
    slices_due,
)
from dsi_online.real.peer import Method, Peer, PeerResult, PeerRun
from dsi_online.real.runs import dispatch_gaps, run_forwards
from dsi_online.real.worker import DTYPES
from dsi_online.schedulers import Scheduler
from dsi_online.schedulers.registry import ALGORITHMS, schedulers
from dsi_online.schedulers.seam import Role
from dsi_online.sim.profile import AcceptanceProfile, ModelProfile, Profile, Provenance
from dsi_online.sim.runner import ScenarioResult, run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.trace import AcceptanceTrace

Placement = Literal["auto", "process", "thread", "inline"]
PLACEMENTS: tuple[Placement, ...] = ("auto", *WORKERS)
"""Where validate runs the models: `auto` runs DSI on process workers (its servers compute
at once) and non-SI and SI inline, in the loop's own thread, as transformers runs them (one
forward at a time: a process boundary would only add its transit); any other, every
algorithm on workers of that kind (`dsi_online.real.handles.WORKERS`)."""
Phase = Literal["pair", "start", "acceptance", "measure", "predict", "replicate", "transformers"]
Progress = Callable[[Phase, int, int], None]
"""progress(phase, done, total): called as work in each phase completes."""


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
    workers: Placement = "auto"
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
            PairInfo.read(Path(self.pair))  # a pair.toml that does not read: refused now
            for role in ("target", "drafter"):
                check_checkpoint(Path(self.pair) / role, role)
            check_vocabularies(Path(self.pair))
        require(
            self.workers in PLACEMENTS,
            f"workers (--workers) must be one of {', '.join(PLACEMENTS)}; got {self.workers!r}",
        )
        require(
            self.dtype in DTYPES,
            f"dtype (--dtype) must be one of {', '.join(DTYPES)}; got {self.dtype!r}",
        )
        server_devices(self.device, self.servers)

    def workers_of(self, name: str) -> Workers:
        """The kind of worker that runs algorithm `name` for real (PLACEMENTS)."""
        if self.workers == "auto":
            return "process" if name == "dsi" else "inline"
        return self.workers

    @property
    def kinds(self) -> tuple[Workers, ...]:
        """Every kind of worker the real runs use, DSI's first."""
        return tuple(dict.fromkeys(self.workers_of(name) for name in ("dsi", *ALGORITHMS)))

    @property
    def draw_seed(self) -> int:
        """The seed of the prompts and of the simulation."""
        return self.seed if self.prompt_seed is None else self.prompt_seed


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
    calibrations: dict[str, Calibration]  # by role, of DSI's backend
    predictions: dict[str, ScenarioResult]  # by model, and "in_sample"
    algorithms: dict[str, AlgorithmValidation]
    speedups: dict[str, SpeedupValidation]  # "candidate_over_baseline"
    peer: PeerResult
    peer_matches_ours: bool
    reference_device: str = "cpu"  # where the target's greedy decoding ran (in `dtype`)
    inline_calibrations: dict[str, Calibration] = field(default_factory=dict)
    """By role, of the inline backend that ran non-SI and SI (`--workers auto`), else empty."""

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
                f"({self.request.workers_of('dsi')} workers"
                f"{', DSI' if self.request.workers == 'auto' else ''}): one forward at a time, "
                "as a scheduler sees it, in rounds between the real runs",
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
    passive_openmp()  # before the workers start: they calibrate (real/calibrate.py)
    folder = _pair(request, progress)
    with backends_of(folder, request) as backends:
        return validate_on(backends, folder, request, progress)


Backends = dict[Workers, RealBackend]
"""The running backends of a validation, by kind of worker (`ValidateRequest.kinds`)."""
Gaps = dict[Role, list[float]]


@contextmanager
def backends_of(folder: Path, request: ValidateRequest) -> Iterator[Backends]:
    """The real backends of the pair in `folder` that `request` asks for, started in
    `request.kinds` order and stopped on exit; DSI's has `request.servers` target servers,
    an inline one beside it one (non-SI and SI use one), on target server 0's device, its
    drafter on the drafter's."""
    dsi = request.workers_of("dsi")
    devices = server_devices(request.device, request.servers)
    with ExitStack() as stack:
        yield {
            kind: stack.enter_context(
                RealBackend(
                    folder / "target",
                    folder / "drafter",
                    servers=request.servers if kind == dsi else 1,
                    workers=kind,
                    device=request.device if kind == dsi else f"{devices[0]},{devices[-1]}",
                    dtype=request.dtype,
                )
            )
            for kind in request.kinds
        }


def validate_on(
    backends: Backends, folder: Path, request: ValidateRequest, progress: Progress | None
) -> ValidationResult:
    """`validate` on running backends of the pair in `folder` (`backends_of`)."""

    def step(phase: Phase, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, done, total)

    info = PairInfo.read(folder)
    protocol = Protocol.draw(info, request)
    calibration = [list(p.tokens) for p in protocol.calibration]
    evaluation = [list(p.tokens) for p in protocol.evaluation]
    dsi, sequential = request.workers_of("dsi"), request.workers_of("nonsi")
    backend = backends[dsi]
    traces, evaluation_traces = _traces(backend, request, calibration, evaluation, step)
    peer = _peer(backend, folder, request, evaluation, step)
    calibrations, slices, runs, peer_runs = _measure_and_run(
        backends, request, calibration, evaluation, peer, step
    )
    references = [backend.reference(prompt, request.tokens) for prompt in evaluation]
    estimate = estimate_acceptance(
        [[c == "1" for c in t] for t in traces.traces], request.lookahead, seed=request.draw_seed
    )
    predicted = _predict(
        {
            kind: scenarios(request, calibrations[kind], traces, evaluation_traces)
            for kind in request.kinds
        },
        step,
    )
    predictions = {
        model: replace(
            result,
            algorithms={
                name: predicted[request.workers_of(name)][model].algorithms[name]
                for name in ALGORITHMS
            },
        )
        for model, result in predicted[dsi].items()
    }
    factors = calibration_factors(
        request, slices, calibrations, traces, lambda done, total: step("replicate", done, total)
    )
    algorithms, speedups = compare(
        predictions, runs, protocol, request, host_factors(calibrations[dsi]), factors
    )
    return ValidationResult(
        request=request,
        pair=info,
        pair_path=folder,
        protocol=protocol,
        acceptance=estimate,
        trace=traces,
        evaluation_trace=evaluation_traces,
        calibrations=calibrations[dsi],
        predictions=predictions,
        algorithms=algorithms,
        speedups=speedups,
        peer=peer.result(peer_runs, request.tokens),
        peer_matches_ours=all(run.output == references[run.prompt] for run in peer_runs),
        reference_device=backend.reference_device,
        inline_calibrations=calibrations[sequential] if sequential != dsi else {},
    )


def _traces(
    backend: RealBackend,
    request: ValidateRequest,
    calibration: Sequence[Sequence[int]],
    evaluation: Sequence[Sequence[int]],
    step: Progress,
) -> tuple[AcceptanceTrace, AcceptanceTrace]:
    """The drafter's accept/reject traces on the calibration and the evaluation prompts."""
    found = []
    step("acceptance", 0, 2)
    for done, (prompts, kind) in enumerate(
        ((calibration, "calibration"), (evaluation, "evaluation")), start=1
    ):
        found.append(
            acceptance_trace(
                backend,
                prompts,
                request.tokens,
                f"dsi-online validate: greedy matches of the drafter on {len(prompts)} held-out "
                f"{kind} prompts of {request.prompt_bytes} bytes, {request.tokens} tokens each",
            )
        )
        step("acceptance", done, 2)
    return found[0], found[1]


def _predict(
    by_kind: dict[Workers, dict[str, Scenario]], step: Progress
) -> dict[Workers, dict[str, ScenarioResult]]:
    """Every scenario simulated on the virtual clock, by backend kind and model, on one
    progress count."""
    total = sum(len(models) for models in by_kind.values())
    predictions: dict[Workers, dict[str, ScenarioResult]] = {kind: {} for kind in by_kind}
    done = 0
    for kind, models in by_kind.items():
        for model, scenario in models.items():
            step("predict", done, total)
            predictions[kind][model] = run_scenario(scenario, clock="virtual")
            done += 1
    step("predict", total, total)
    return predictions


def _peer(
    backend: RealBackend,
    folder: Path,
    request: ValidateRequest,
    evaluation: Sequence[Sequence[int]],
    step: Progress,
) -> Peer:
    """transformers' own greedy and assisted generation, loaded and warmed up, to be timed on
    the evaluation prompts between our runs."""
    step("transformers", 0, 1)
    peer = Peer(
        folder / "target",
        folder / "drafter",
        request.lookahead,
        dtype=request.dtype,
        device=backend.reference_device,
    )
    peer.warm_up(evaluation[0], request.tokens)
    step("transformers", 1, 1)
    return peer


def validate_seeds(
    request: ValidateRequest, seeds: Sequence[int], progress: Progress | None = None
) -> list[ValidationResult]:
    """`validate` once per prompt seed on one pair and one running backend (the pair of
    `request.seed`; each seed draws its own calibration and evaluation prompts)."""
    passive_openmp()
    folder = _pair(request, progress)
    with backends_of(folder, request) as backends:
        return [
            validate_on(backends, folder, replace(request, prompt_seed=seed), progress)
            for seed in seeds
        ]


def _dispatch(
    backend: RealBackend,
    request: ValidateRequest,
    by_name: dict[str, Scheduler],
    prompt: Sequence[int],
) -> Gaps:
    """The schedulers' own loop time before each forward, by role (`dispatch_gaps`), in one
    real run on `prompt` of each algorithm of `by_name` that `backend` runs."""
    names = [name for name in ALGORITHMS if backend.settings.workers == request.workers_of(name)]
    runs = [dispatch_gaps(backend.play(by_name[name], prompt, request.tokens)) for name in names]
    return {role: [gap for run in runs for gap in run[role]] for role in ROLES}


def _measure_and_run(
    backends: Backends,
    request: ValidateRequest,
    calibration: Sequence[Sequence[int]],
    prompts: Sequence[Sequence[int]],
    peer: Peer,
    step: Progress,
) -> tuple[Calibrations, Slices, dict[str, list[RealRunResult]], list[PeerRun]]:
    """`repeats` rounds, each a real run of each algorithm on a calibration prompt
    (`_dispatch`), then every algorithm on every evaluation prompt, followed by
    transformers' greedy and assisted generation. The round's calibration is taken in
    `calibration_samples` one-sample slices spread between the prompts (`slices_due`: this
    host's speed wanders by 20% within seconds), each calibrating every backend the runs
    use, one right after the other (which first alternates). The host's speed is probed
    before each prompt (`Calibration.probes_s`); with several target servers, DSI then runs
    on calibration prompts in turn (`sharing_runs_due`), kept with the slices taken last
    (`Calibration.sharing`): among the evaluation runs, not after a slice's chains
    (docs/validate.md). The algorithms' order rotates by prompt, the peer's two alternate;
    runs are listed by round, then prompt (paired). The prediction never sees the runs.
    Returns the merged calibrations and their slices in order (`calibration_factors`)."""
    by_name = schedulers(request.lookahead, request.servers)
    main = request.workers_of("dsi")
    slices = request.calibration_samples
    parts: dict[Workers, dict[Role, list[Calibration]]] = {
        kind: {role: [] for role in ROLES} for kind in request.kinds
    }
    slices_taken: Slices = {kind: {role: [] for role in ROLES} for kind in request.kinds}
    runs: dict[str, list[RealRunResult]] = {name: [] for name in ALGORITHMS}
    peer_runs: list[PeerRun] = []
    methods: tuple[Method, ...] = ("greedy", "assisted")
    due = [sharing_runs_due(i, len(prompts), slices, request.servers) for i in range(len(prompts))]
    per_round = len(prompts) * (len(ALGORITHMS) + len(methods)) + sum(due)
    total = request.repeats * (slices * len(request.kinds) * len(ROLES) + per_round)
    done = taken = 0
    for round_ in range(request.repeats):
        sample = calibration[round_ % len(calibration)]
        gaps = {kind: _dispatch(backends[kind], request, by_name, sample) for kind in backends}
        measured: dict[Workers, dict[Role, list[Calibration]]] = {
            kind: {role: [] for role in ROLES} for kind in request.kinds
        }
        probes: dict[Role, list[float]] = {role: [] for role in ROLES}
        for index, prompt in enumerate(prompts):
            for part in slices_due(index, len(prompts), slices):
                seed = request.draw_seed + round_ * slices + part
                kinds = request.kinds if part % 2 == 0 else request.kinds[::-1]
                for role in ROLES:
                    for kind in kinds:  # only DSI's backend runs two forwards at once
                        args = (backends[kind], role, sample, request.tokens, 1, seed)
                        measured[kind][role].append(calibrate(*args, contention=kind == main))
                        done += 1
                        step("measure", done, total)
            # the host's speed now (Calibration.host_speed), on the calibration prompt
            now = probe(backends[main], sample, seed=request.draw_seed + index)
            for role, times in now.items():
                probes[role] += times
            for back in range(due[index], 0, -1):  # how the servers share the host
                other, taken = calibration[taken % len(calibration)], taken + 1
                found = run_forwards(backends[main].play(by_name["dsi"], other, request.tokens))
                for role in ROLES:  # Calibration.sharing, kept with a slice taken last
                    latest = measured[main][role]
                    latest[-back] = latest[-back].with_forwards(found)
                done += 1
                step("measure", done, total)
            order = ALGORITHMS[index % 3 :] + ALGORITHMS[: index % 3]
            for name in order:
                backend = backends[request.workers_of(name)]
                runs[name].append(backend.play(by_name[name], prompt, request.tokens))
                done += 1
                step("measure", done, total)
            for method in methods if index % 2 == 0 else methods[::-1]:
                peer_runs.append(peer.time(method, index, prompt, request.tokens))
                done += 1
                step("measure", done, total)
        for kind in request.kinds:
            for role in ROLES:
                spread = replace(
                    Calibration.spread(measured[kind][role]), gaps_s=tuple(gaps[kind][role])
                )
                if kind == main:
                    spread = replace(spread, probes_s=tuple(probes[role]))
                parts[kind][role].append(spread)
                slices_taken[kind][role] += measured[kind][role]
    calibrations: Calibrations = {
        kind: {role: Calibration.merge(parts[kind][role]) for role in ROLES}
        for kind in request.kinds
    }
    return calibrations, slices_taken, runs, peer_runs
