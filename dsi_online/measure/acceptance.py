"""`dsi-online measure acceptance`: how often a drafter's greedy token is the target's.

For each prompt, the target generates greedily (with its KV cache) up to `max_new_tokens`
tokens, stopping after an end-of-sequence token. Then one target forward and one drafter
forward over the whole sequence give, at every generated position p, the target's greedy
token t_p and the drafter's greedy token d_p, both given the target's own prefix: exactly
what a draft made on a correct prefix is compared with in SI and DSI. m_p = [d_p == t_p].

Estimator. With x_j matches among the n_j generated positions of prompt j (j = 1..J),
the acceptance rate is the pooled ratio  a = sum_j x_j / sum_j n_j.  Positions of one prompt
are correlated (they share a context), so its 95% confidence interval comes from a cluster
bootstrap over prompts: resample J prompts with replacement, recompute the ratio, take the
2.5% and 97.5% percentiles of B resamples (seeded). With one prompt there is no interval.

By draft position (lookahead k). A window starts at every generated position s; its draft i
sits at s + i - 1. If drafts 1..i-1 were accepted, the drafter's prefix is the target's, so
draft i is d at that position. The acceptance of draft i given drafts 1..i-1 were is
  a_i = #{s : m_s = ... = m_{s+i-1} = 1} / #{s : m_s = ... = m_{s+i-2} = 1},
over windows that fit inside their prompt's generated tokens. a_1 = a. The list stops before
the first i that no window reaches (its denominator is 0). For an i.i.d. drafter every a_i
equals a; real drafters are not i.i.d.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsi_online.errors import InvalidParameterError, require
from dsi_online.measure.latency import Advance
from dsi_online.measure.models import LoadedModel, check_memory, check_specs, load_model
from dsi_online.measure.torch_runtime import (
    Environment,
    cached,
    check_device_and_dtype,
    free_memory,
    resolve_device,
    resolve_dtype,
    returned_cache,
    torch_module,
)
from dsi_online.sim.profile import AcceptanceProfile, Profile, load_profile, profile_to_toml
from dsi_online.sim.trace import AcceptanceTrace
from dsi_online.studies.results import write_output


@dataclass(frozen=True)
class AcceptanceRequest:
    """What to measure and how: the options of `dsi-online measure acceptance`."""

    target: str
    drafter: str
    prompts: Path
    max_new_tokens: int = 128
    lookahead: int = 5
    bootstrap: int = 2000
    device: str = "auto"
    dtype: str | None = None
    seed: int = 0
    allow_download: bool = False

    def __post_init__(self) -> None:
        require(
            self.max_new_tokens >= 1,
            f"new tokens per prompt (--max-new-tokens) must be >= 1; got {self.max_new_tokens}",
        )
        require(self.lookahead >= 1, f"lookahead (--lookahead) must be >= 1; got {self.lookahead}")
        require(
            self.bootstrap >= 100,
            f"bootstrap resamples (--bootstrap) must be >= 100; got {self.bootstrap}",
        )
        require(self.seed >= 0, f"seed (--seed) must be >= 0; got {self.seed}")
        check_device_and_dtype(self.device, self.dtype)
        check_specs([("--target", self.target), ("--drafter", self.drafter)])

    def command_line(self) -> str:
        """The command that repeats this measurement, every option spelled out."""
        args = ["dsi-online", "measure", "acceptance", "--target", self.target]
        args += ["--drafter", self.drafter, "--prompts", str(self.prompts)]
        args += ["--max-new-tokens", str(self.max_new_tokens), "--lookahead", str(self.lookahead)]
        args += ["--bootstrap", str(self.bootstrap), "--device", self.device]
        if self.dtype is not None:
            args += ["--dtype", self.dtype]
        args += ["--seed", str(self.seed)]
        if self.allow_download:
            args.append("--allow-download")
        return shlex.join(args)


@dataclass(frozen=True)
class AcceptanceEstimate:
    """The acceptance rate, its 95% interval, and the acceptance by draft position."""

    rate: float
    ci95: tuple[float, float] | None  # None with a single prompt
    positions: int
    prompts: int
    bootstrap: int
    by_position: tuple[float, ...]  # a_1..a_i of the module docstring; a_1 == rate
    by_position_windows: tuple[int, ...]  # the denominator of each a_i


def _run_lengths(matches: np.ndarray, cap: int) -> np.ndarray:
    """For each position, how many matches start there in a row (at most `cap`)."""
    runs = np.zeros(len(matches) + 1, dtype=np.int64)
    for p in range(len(matches) - 1, -1, -1):
        runs[p] = min(runs[p + 1] + 1, cap) if matches[p] else 0
    return runs[:-1]


def estimate_acceptance(
    matches: Sequence[Sequence[bool]], lookahead: int, bootstrap: int = 2000, seed: int = 0
) -> AcceptanceEstimate:
    """The estimator of the module docstring, from each prompt's per-position matches."""
    require(len(matches) > 0, "no prompts to estimate an acceptance rate from")
    require(all(len(m) > 0 for m in matches), "every prompt needs at least one generated position")
    hits = np.array([sum(bool(x) for x in m) for m in matches], dtype=np.float64)
    sizes = np.array([len(m) for m in matches], dtype=np.float64)
    rate = float(hits.sum() / sizes.sum())
    ci95: tuple[float, float] | None = None
    if len(matches) > 1:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(matches), size=(bootstrap, len(matches)))
        ratios = hits[picks].sum(axis=1) / sizes[picks].sum(axis=1)
        low, high = np.quantile(ratios, [0.025, 0.975])
        ci95 = (float(low), float(high))
    numerators = np.zeros(lookahead, dtype=np.int64)
    denominators = np.zeros(lookahead, dtype=np.int64)
    for m in matches:
        runs = _run_lengths(np.asarray(m, dtype=bool), lookahead)
        for i in range(1, lookahead + 1):
            starts = runs[: max(len(m) - i + 1, 0)]  # windows whose draft i exists
            denominators[i - 1] += int(np.count_nonzero(starts >= i - 1))
            numerators[i - 1] += int(np.count_nonzero(starts >= i))
    reached = int(np.argmax(denominators == 0)) if (denominators == 0).any() else lookahead
    return AcceptanceEstimate(
        rate=rate,
        ci95=ci95,
        positions=int(sizes.sum()),
        prompts=len(matches),
        bootstrap=bootstrap,
        by_position=tuple(float(numerators[i] / denominators[i]) for i in range(reached)),
        by_position_windows=tuple(int(d) for d in denominators[:reached]),
    )


def greedy_matches(
    target: Any,
    drafter: Any,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    eos_token_ids: frozenset[int] = frozenset(),
    device: str = "cpu",
) -> list[bool]:
    """m_p for each position the target generates after `prompt_ids` (module docstring)."""
    torch = torch_module()
    length = len(prompt_ids)
    with torch.inference_mode():
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
        out = target(ids, use_cache=True)
        tokens = [out.logits[:, -1:].argmax(-1)]
        while len(tokens) < max_new_tokens and int(tokens[-1]) not in eos_token_ids:
            out = target(tokens[-1], use_cache=True, **cached(target, returned_cache(out)))
            tokens.append(out.logits[:, -1:].argmax(-1))
        prefixes = torch.cat([ids, *tokens[:-1]], dim=1)
        wanted = target(prefixes, use_cache=False).logits[0, length - 1 :].argmax(-1)
        drafted = drafter(prefixes, use_cache=False).logits[0, length - 1 :].argmax(-1)
        return [bool(x) for x in (wanted == drafted).tolist()]


def read_prompts(path: Path) -> list[str]:
    """The prompts of a file, one per line; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidParameterError(f"prompts file (--prompts) not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(
            f"prompts file (--prompts) {path} cannot be read as UTF-8 text "
            f"({exc.__class__.__name__})"
        ) from None
    prompts = [line for line in text.splitlines() if line.strip()]
    require(len(prompts) > 0, f"prompts file (--prompts) {path} holds no prompt")
    return prompts


def encode(prompt: str, model: LoadedModel) -> list[int]:
    """Token ids of a prompt: the model's tokenizer, or without one its UTF-8 bytes."""
    if model.tokenizer is None:
        return [byte % model.vocab_size for byte in prompt.encode("utf-8")]
    return [int(i) for i in model.tokenizer(prompt)["input_ids"]]


@dataclass(frozen=True)
class AcceptanceResult:
    """A measured acceptance rate with what produced it."""

    request: AcceptanceRequest
    environment: Environment
    target: str
    drafter: str
    estimate: AcceptanceEstimate
    random_weights: bool  # a preset took part: the rate says nothing about real models
    matches: tuple[tuple[bool, ...], ...] = ()  # per prompt, per generated position

    def trace(self) -> AcceptanceTrace:
        """Every prompt's matches as a trace that `run --acceptance-trace` replays."""
        return AcceptanceTrace.from_matches(
            self.matches,
            f"{self.request.command_line()} ({self.environment.date}): per prompt, at each "
            f"generated position, whether the drafter's greedy token given the target's prefix "
            f"is the target's",
        )

    def to_json(self) -> dict[str, Any]:
        """The whole measurement as plain JSON values, with its command line."""
        document = dataclasses.asdict(self)
        document["request"]["prompts"] = str(self.request.prompts)
        document["matches"] = list(self.trace().traces)
        return {**document, "command": self.request.command_line()}

    def acceptance_profile(self) -> AcceptanceProfile:
        """The profile's [acceptance] table; its source is the command line and the date."""
        est = self.estimate
        interval = (
            f"95% CI by cluster bootstrap over prompts ({est.bootstrap} resamples)"
            if est.ci95 is not None
            else "no CI (one prompt)"
        )
        caveat = (
            "; RANDOM-WEIGHT PRESETS: this rate says nothing about real models"
            if self.random_weights
            else ""
        )
        source = (
            f"{self.request.command_line()} ({self.environment.date}): greedy matches at "
            f"{est.positions} positions of {est.prompts} prompts, pooled; {interval}; "
            f"by_position: draft i of a {self.request.lookahead}-draft window given drafts "
            f"1..i-1 accepted{caveat}"
        )
        return AcceptanceProfile(
            rate=est.rate,
            source=source,
            by_position=est.by_position,
            ci95=est.ci95,
            samples=est.positions,
        )


def _load(
    request: AcceptanceRequest, spec: str, option: str, device: str, dtype: str
) -> LoadedModel:
    return load_model(
        spec,
        option=option,
        device=device,
        dtype=dtype,
        seed=request.seed,
        allow_download=request.allow_download,
    )


def measure_acceptance(
    request: AcceptanceRequest,
    advance: Advance | None = None,
    started: Callable[[int], None] | None = None,
) -> AcceptanceResult:
    """Load both models, run every prompt, estimate; `started` gets the number of prompts."""
    lines = read_prompts(request.prompts)
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    environment = Environment.detect(device, dtype)
    check_memory([("--target", request.target), ("--drafter", request.drafter)], device, dtype)
    target: LoadedModel = _load(request, request.target, "--target", device, dtype)
    drafter: LoadedModel = _load(request, request.drafter, "--drafter", device, dtype)
    if drafter.vocab_size != target.vocab_size:
        raise InvalidParameterError(
            f"the drafter's vocabulary ({drafter.vocab_size} tokens) differs from the "
            f"target's ({target.vocab_size}): target and drafter must share a tokenizer"
        )
    room = min(target.max_positions, drafter.max_positions)
    prompts = [encode(line, target) for line in lines]
    for number, ids in enumerate(prompts, start=1):
        if len(ids) + request.max_new_tokens > room:
            raise InvalidParameterError(
                f"prompt {number} of --prompts ({len(ids)} tokens) plus --max-new-tokens "
                f"({request.max_new_tokens}) exceeds the models' {room} positions"
            )
    if started is not None:
        started(len(prompts))
    matches: list[list[bool]] = []
    for ids in prompts:
        matches.append(
            greedy_matches(
                target.module,
                drafter.module,
                ids,
                request.max_new_tokens,
                target.eos_token_ids,
                device,
            )
        )
        if advance is not None:
            advance(1)
    labels = (target.label, drafter.label)
    random_weights = target.preset is not None or drafter.preset is not None
    del target, drafter
    free_memory()
    return AcceptanceResult(
        request=request,
        environment=environment,
        target=labels[0],
        drafter=labels[1],
        estimate=estimate_acceptance(matches, request.lookahead, request.bootstrap, request.seed),
        random_weights=random_weights,
        matches=tuple(tuple(row) for row in matches),
    )


def write_acceptance(path: Path, acceptance: AcceptanceProfile) -> Profile:
    """Put `acceptance` into the profile at `path` (atomically), keeping its latency part
    and provenance."""
    profile = dataclasses.replace(load_profile(path), acceptance=acceptance)
    write_output(path, profile_to_toml(profile))
    return profile
