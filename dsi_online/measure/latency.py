"""`dsi-online measure latency`: time a model's prefill (TTFT) and decoding steps (TPOT).

TTFT: one forward over a fresh random prompt of the given length, without a cache, up to the
first token's argmax. TPOT: after a prefill of the first prompt length, one forward of one
token with the KV cache, up to its argmax; the context grows by one token per step, as in
decoding. With `--by-tokens`, forwards over n new tokens (a verification of k + 1 tokens, a
cache catch-up) at the context decoding reached, the cache cropped back after each: the
profile then prices every forward by the tokens it processes (`dsi_online.sim.cost`). Warm-up
forwards run first and are not recorded. Every timed forward is bracketed by device
synchronisation (torch.cuda.synchronize on CUDA), so the host clock measures the work, not
its launch.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsi_online.errors import InvalidParameterError, require
from dsi_online.measure.models import LoadedModel, check_memory, check_specs, load_model
from dsi_online.measure.torch_runtime import (
    Environment,
    cached,
    check_device_and_dtype,
    free_memory,
    resolve_device,
    resolve_dtype,
    returned_cache,
    synchronize,
    torch_module,
)
from dsi_online.sim.cost import TokenCost, monotone
from dsi_online.sim.latency import Empirical, ModelLatency
from dsi_online.sim.profile import ModelProfile, Profile, Provenance

UNSTABLE = 1.5
"""The factor beyond which timings are unstable (see ModelLatencyResult.warnings)."""
BLOCKS = 4
"""Consecutive blocks a shape's samples are split into to see them drift."""

Advance = Callable[[int], None]
"""Called with the number of forwards just done: progress reporting, kept out of this module."""


@dataclass(frozen=True)
class LatencyRequest:
    """What to measure and how: the options of `dsi-online measure latency`."""

    target: str
    drafter: str | None = None
    prompt_tokens: tuple[int, ...] = (128,)
    samples: int = 100
    warmup: int = 10
    device: str = "auto"
    dtype: str | None = None
    seed: int = 0
    allow_download: bool = False
    by_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        require(
            len(self.prompt_tokens) > 0 and all(n >= 1 for n in self.prompt_tokens),
            "prompt lengths (--prompt-tokens) must be integers >= 1; got "
            + ",".join(str(n) for n in self.prompt_tokens),
        )
        require(self.samples >= 2, f"samples (--samples) must be >= 2; got {self.samples}")
        require(self.warmup >= 0, f"warm-up forwards (--warmup) must be >= 0; got {self.warmup}")
        require(self.seed >= 0, f"seed (--seed) must be >= 0; got {self.seed}")
        require(
            not self.by_tokens
            or (
                len(self.by_tokens) >= 2
                and self.by_tokens[0] >= 1
                and all(a < b for a, b in zip(self.by_tokens, self.by_tokens[1:], strict=False))
            ),
            "token counts (--by-tokens) must be two or more increasing integers >= 1, e.g. "
            "1,2,4,6,8,16; got " + ",".join(str(n) for n in self.by_tokens),
        )
        check_device_and_dtype(self.device, self.dtype)
        check_specs([("--target", self.target), ("--drafter", self.drafter)])

    @property
    def decode_context(self) -> int:
        """The prompt length the decoding steps start from: the first of --prompt-tokens."""
        return self.prompt_tokens[0]

    def forwards_per_model(self) -> int:
        """How many forwards measuring one model takes (progress bars use it)."""
        ttft = len(self.prompt_tokens) * (self.warmup + self.samples)
        by_tokens = len(self.by_tokens) * (self.warmup + self.samples)
        return ttft + 1 + self.warmup + self.samples + by_tokens

    @property
    def by_tokens_context(self) -> int:
        """The context the --by-tokens forwards run at: where decoding ended."""
        return self.decode_context + self.warmup + self.samples

    def command_line(self) -> str:
        """The command that repeats this measurement, every option spelled out."""
        args = ["dsi-online", "measure", "latency", "--target", self.target]
        if self.drafter is not None:
            args += ["--drafter", self.drafter]
        args += ["--prompt-tokens", ",".join(str(n) for n in self.prompt_tokens)]
        if self.by_tokens:
            args += ["--by-tokens", ",".join(str(n) for n in self.by_tokens)]
        args += ["--samples", str(self.samples), "--warmup", str(self.warmup)]
        args += ["--device", self.device]
        if self.dtype is not None:
            args += ["--dtype", self.dtype]
        args += ["--seed", str(self.seed)]
        if self.allow_download:
            args.append("--allow-download")
        return shlex.join(args)


@dataclass(frozen=True)
class PromptTTFT:
    """TTFT samples (seconds) at one prompt length."""

    prompt_tokens: int
    samples_s: tuple[float, ...]

    @property
    def mean_s(self) -> float:
        """Mean TTFT in seconds."""
        return statistics.fmean(self.samples_s)


@dataclass(frozen=True)
class TokenCountLatency:
    """Latency samples (seconds) of forwards over `tokens` new tokens."""

    tokens: int
    samples_s: tuple[float, ...]

    @property
    def mean_s(self) -> float:
        """Mean latency in seconds."""
        return statistics.fmean(self.samples_s)


def unstable_timings(
    label: str,
    shapes: Sequence[tuple[str, Sequence[float]]],
    counts: Sequence[tuple[int, Sequence[float]]],
    step: Sequence[float],
    blocks: int = BLOCKS,
) -> tuple[str, ...]:
    """Timings that repeated samples cannot explain, one sentence each, by two statistics
    (each stays under UNSTABLE on a quiet machine):

    - drift, of each shape's samples (a prompt length's TTFT, TPOT, a token count), in the
      order taken: split into `blocks` consecutive blocks (measure's quarters, or
      validate's calibration rounds), the largest block median over the smallest. Noise
      moves a median of several samples by far less; the machine changing under the
      measurement (another job starting) moves it more.
    - excess, of each forward over n >= 2 tokens (`counts`) against n one-token decoding
      steps (`step`): its median over n x the steps' median. One forward over n tokens does
      no more work than n forwards over one; threads fighting for the cores (another job
      spinning on them) made every forward of 2 or more tokens 130x slower (issue 17)."""
    found = []
    for what, samples in shapes:
        drift = block_drift(samples, blocks)
        if drift is not None and drift > UNSTABLE:
            found.append(
                f"{label}: {what} drifted during the measurement: the medians of {blocks} "
                f"consecutive blocks of samples differ {drift:.2f}x (more than {UNSTABLE}x); "
                "is another job running?"
            )
    one = statistics.median(step)
    for tokens, samples in counts:
        median = statistics.median(samples)
        excess = median / (tokens * one)
        if tokens >= 2 and excess > UNSTABLE:
            found.append(
                f"{label}: a forward of {tokens} tokens took {_ms_text(median)} ms, "
                f"{excess:.3g}x as long as {tokens} decoding steps ({_ms_text(one)} ms each): "
                "threads contend for the cores; is another job running?"
            )
    return tuple(found)


def block_drift(samples: Sequence[float], blocks: int = BLOCKS) -> float | None:
    """The largest median of `blocks` consecutive blocks of `samples` over the smallest;
    None with fewer than 2 samples a block."""
    size = len(samples) // blocks
    if size < 2:
        return None
    medians = [statistics.median(samples[i * size : (i + 1) * size]) for i in range(blocks)]
    return max(medians) / min(medians)


def _ms_text(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


@dataclass(frozen=True)
class ModelLatencyResult:
    """One model's measured TTFT per prompt length, TPOT samples and, with --by-tokens, the
    latency of forwards by the tokens they process at `by_tokens_context`."""

    spec: str
    label: str
    ttft: tuple[PromptTTFT, ...]
    tpot_s: tuple[float, ...]
    decode_context: int
    random_weights: bool  # an architecture preset: its latency is the real model's
    by_tokens: tuple[TokenCountLatency, ...] = ()
    by_tokens_context: int = 0

    @property
    def tpot_mean_s(self) -> float:
        """Mean TPOT in seconds."""
        return statistics.fmean(self.tpot_s)

    @property
    def tpot_cv(self) -> float:
        """TPOT's coefficient of variation (sample standard deviation / mean)."""
        return statistics.stdev(self.tpot_s) / self.tpot_mean_s

    def model_latency(self) -> ModelLatency:
        """Empirical latency models: TTFT at the first prompt length, and TPOT; with
        --by-tokens, a token cost (means by count, made non-decreasing as in
        `dsi-online validate`'s calibration; the spread as ratios to them; a cancelled
        forward runs to its end, as one inside a serving engine's model call does)."""
        return ModelLatency(
            Empirical(self.ttft[0].samples_s), Empirical(self.tpot_s), self.token_cost()
        )

    def token_cost(self) -> TokenCost | None:
        """The --by-tokens measurement as a token-cost model, or None without it."""
        if not self.by_tokens:
            return None
        ratios = tuple(s / c.mean_s for c in self.by_tokens for s in c.samples_s)
        return TokenCost(
            tokens=tuple(c.tokens for c in self.by_tokens),
            mean_s=tuple(monotone([c.mean_s for c in self.by_tokens])),
            reference_context=self.by_tokens_context,
            ratios=ratios,
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Timings that repeated samples cannot explain (unstable_timings)."""
        shapes = [(f"TTFT at {t.prompt_tokens} tokens", t.samples_s) for t in self.ttft]
        shapes.append(("TPOT", self.tpot_s))
        counts = [(c.tokens, c.samples_s) for c in self.by_tokens]
        shapes += [(f"forwards of {n} tokens", samples) for n, samples in counts]
        return unstable_timings(self.label, shapes, counts, self.tpot_s)

    def summary(self) -> str:
        """TTFT means by prompt length and the TPOT mean, for provenance notes."""
        ttft = ", ".join(f"{t.prompt_tokens} tokens {t.mean_s * 1e3:.4g} ms" for t in self.ttft)
        text = (
            f"{self.label}: TTFT mean {ttft}; TPOT mean {self.tpot_mean_s * 1e3:.4g} ms "
            f"(cv {self.tpot_cv:.3g}) from a {self.decode_context}-token context"
        )
        if self.by_tokens:
            counts = ", ".join(f"{c.tokens} {c.mean_s * 1e3:.4g}" for c in self.by_tokens)
            text += f"; forward mean ms by tokens at context {self.by_tokens_context}: {counts}"
        return text


@dataclass(frozen=True)
class LatencyResult:
    """A latency measurement of a target (and drafter), with its provenance."""

    request: LatencyRequest
    environment: Environment
    target: ModelLatencyResult
    drafter: ModelLatencyResult | None

    @property
    def warnings(self) -> tuple[str, ...]:
        """Both models' unstable timings (ModelLatencyResult.warnings)."""
        models = (self.target,) if self.drafter is None else (self.target, self.drafter)
        return tuple(w for model in models for w in model.warnings)

    @property
    def c(self) -> float | None:
        """Drafter TPOT / target TPOT (means), when a drafter was measured."""
        if self.drafter is None:
            return None
        return self.drafter.tpot_mean_s / self.target.tpot_mean_s

    def to_json(self) -> dict[str, Any]:
        """The whole measurement as plain JSON values (seconds), with its command line."""
        return {
            **dataclasses.asdict(self),
            "c": self.c,
            "warnings": list(self.warnings),
            "command": self.request.command_line(),
        }

    def to_profile(self, name: str) -> Profile:
        """The profile of the pair: empirical latency models and full provenance."""
        if self.drafter is None:
            raise InvalidParameterError(
                "a profile holds a target/drafter pair: give --drafter to write --out"
            )
        env = self.environment
        notes = (
            f"{env.describe()}. {self.target.summary()}. {self.drafter.summary()}. "
            f"Profile TTFT: the {self.request.decode_context}-token prompt samples."
        )
        if self.warnings:
            notes += " Unstable timings: " + " ".join(self.warnings)
        presets = self.target.random_weights or self.drafter.random_weights
        source = (
            f"measured with dsi-online measure latency: {self.request.samples} samples per "
            f"phase after {self.request.warmup} warm-up forwards"
            + ("; presets have random weights, which leave latency unchanged" if presets else "")
        )
        return Profile(
            name=name,
            target=ModelProfile(self.target.label, self.target.model_latency()),
            drafter=ModelProfile(self.drafter.label, self.drafter.model_latency()),
            provenance=Provenance(
                source=source,
                hardware=env.hardware,
                date=env.date,
                command=self.request.command_line(),
                notes=notes,
            ),
        )


def _timed(device: str, step: Callable[[object], object], argument: object = None) -> float:
    synchronize(device)
    start = time.perf_counter()
    step(argument)
    synchronize(device)
    return time.perf_counter() - start


def measure_model(
    model: LoadedModel, request: LatencyRequest, device: str, advance: Advance | None = None
) -> ModelLatencyResult:
    """Measure one loaded model's TTFT at each prompt length, then its TPOT."""
    longest = max(request.prompt_tokens)
    decode_end = request.by_tokens_context + max(request.by_tokens, default=1)
    if max(longest, decode_end) > model.max_positions:
        raise InvalidParameterError(
            f"{model.spec} takes at most {model.max_positions} positions: the longest prompt "
            f"(--prompt-tokens) and the first prompt + --warmup + --samples + 1 (or + the "
            f"largest --by-tokens) must fit; got {longest} and {decode_end}"
        )
    torch = torch_module()
    generator = torch.Generator().manual_seed(request.seed)
    net = model.module

    def prompt(length: int) -> object:
        ids = torch.randint(0, model.vocab_size, (1, length), generator=generator)
        return ids.to(device)

    def prefill(ids: object) -> object:
        return net(ids, use_cache=True).logits[:, -1].argmax(-1)

    def tick() -> None:
        if advance is not None:
            advance(1)

    def timed_samples(
        step: Callable[[Any], object], argument: Callable[[], object] = lambda: None
    ) -> tuple[float, ...]:
        """--warmup untimed then --samples timed calls of `step`, each on a new argument."""
        samples: list[float] = []
        for i in range(request.warmup + request.samples):
            seconds = _timed(device, step, argument())
            if i >= request.warmup:
                samples.append(seconds)
            tick()
        return tuple(samples)

    with torch.inference_mode():
        ttft = [
            PromptTTFT(length, timed_samples(prefill, functools.partial(prompt, length)))
            for length in request.prompt_tokens
        ]

        out = net(prompt(request.decode_context), use_cache=True)
        state = {"cache": returned_cache(out), "next": out.logits[:, -1:].argmax(-1)}
        tick()

        def decode(_: object) -> None:
            step = net(state["next"], use_cache=True, **cached(net, state["cache"]))
            state["cache"] = returned_cache(step)
            state["next"] = step.logits[:, -1:].argmax(-1)

        tpot = timed_samples(decode)

        def extend(ids: Any) -> None:
            net(ids, use_cache=True, **cached(net, state["cache"]))
            state["cache"].crop(-ids.shape[-1])  # negative: drop that many (every version)

        by_tokens = [
            TokenCountLatency(count, timed_samples(extend, functools.partial(prompt, count)))
            for count in request.by_tokens
        ]
    return ModelLatencyResult(
        spec=model.spec,
        label=model.label,
        ttft=tuple(ttft),
        tpot_s=tpot,
        decode_context=request.decode_context,
        random_weights=model.preset is not None,
        by_tokens=tuple(by_tokens),
        by_tokens_context=request.by_tokens_context if by_tokens else 0,
    )


def _load_and_measure(
    spec: str,
    option: str,
    request: LatencyRequest,
    device: str,
    dtype: str,
    advance: Advance | None,
) -> ModelLatencyResult:
    model = load_model(
        spec,
        option=option,
        device=device,
        dtype=dtype,
        seed=request.seed,
        allow_download=request.allow_download,
    )
    return measure_model(model, request, device, advance)


def measure_latency(
    request: LatencyRequest,
    advance: Advance | None = None,
    loading: Callable[[str], None] | None = None,
) -> LatencyResult:
    """Measure the target (and the drafter) one after the other on one device."""
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    environment = Environment.detect(device, dtype)
    results: list[ModelLatencyResult] = []
    roles: list[tuple[str, str]] = [("--target", request.target)]
    if request.drafter is not None:
        roles.append(("--drafter", request.drafter))
    for role in roles:  # one model at a time: each must fit alone
        check_memory([role], device, dtype)
    for option, spec in roles:
        if loading is not None:
            loading(spec)
        results.append(_load_and_measure(spec, option, request, device, dtype, advance))
        free_memory()
    return LatencyResult(
        request=request,
        environment=environment,
        target=results[0],
        drafter=results[1] if len(results) > 1 else None,
    )


def parse_prompt_tokens(values: Sequence[str]) -> tuple[int, ...]:
    """Prompt lengths from '--prompt-tokens 128,512' (or the option repeated)."""
    return parse_counts(values, "prompt lengths (--prompt-tokens)", "128,512")


def parse_counts(values: Sequence[str], what: str, example: str) -> tuple[int, ...]:
    """Integers from comma-separated values (or the option repeated)."""
    counts: list[int] = []
    for value in values:
        for part in value.split(","):
            try:
                counts.append(int(part))
            except ValueError:
                raise InvalidParameterError(
                    f"{what} must be integers >= 1, e.g. {example}; got {value!r}"
                ) from None
    return tuple(counts)
