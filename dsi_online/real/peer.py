"""The real peer: Hugging Face transformers' own greedy and assisted (SI) generation.

`generate(do_sample=False)` is plain greedy decoding; with `assistant_model=drafter` it is
speculative inference. The drafter's generation config is set so that it drafts exactly
`lookahead` tokens per round: a constant number of assistant tokens
(`num_assistant_tokens_schedule="constant"`) and no confidence threshold
(`assistant_confidence_threshold=0`, which transformers otherwise uses to stop drafting
early). Both run in this process, on this thread, with the same torch thread count as the
backend's workers, on the device and in the dtype given (the backend's); the models load
here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dsi_online.errors import require
from dsi_online.measure.torch_runtime import (
    Environment,
    synchronize,
    torch_module,
    torch_threads,
    transformers_module,
)

Method = Literal["greedy", "assisted"]


@dataclass(frozen=True)
class PeerRun:
    """One timed generation by transformers."""

    method: Method
    prompt: int  # index of the prompt
    output: tuple[int, ...]
    wall_s: float


@dataclass(frozen=True)
class PeerResult:
    """transformers' greedy and assisted generation timed on the same prompts."""

    lookahead: int
    tokens: int
    threads: int
    greedy: tuple[PeerRun, ...]
    assisted: tuple[PeerRun, ...]
    environment: Environment

    @property
    def tokens_match(self) -> bool:
        """Whether assisted generation gave greedy's tokens on every prompt and repeat."""
        reference = {run.prompt: run.output for run in self.greedy}
        return all(run.output == reference[run.prompt] for run in self.assisted)

    @property
    def greedy_s(self) -> float:
        """Mean wall time of a greedy generation."""
        return statistics.fmean(run.wall_s for run in self.greedy)

    @property
    def assisted_s(self) -> float:
        """Mean wall time of an assisted generation."""
        return statistics.fmean(run.wall_s for run in self.assisted)


@dataclass(frozen=True)
class PeerModels:
    """A target and a drafter loaded in this process, eval mode, for transformers' generate."""

    target: Any
    drafter: Any


def load_models(
    target_dir: str | Path,
    drafter_dir: str | Path,
    dtype: str = "float32",
    attention: str = "sdpa",
    device: str = "cpu",
) -> PeerModels:
    """Load both checkpoints as the backend's workers do, on `device`."""
    torch = torch_module()
    transformers = transformers_module()
    models = [
        transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=getattr(torch, dtype), attn_implementation=attention
        )
        .to(device)
        .eval()
        for folder in (target_dir, drafter_dir)
    ]
    return PeerModels(target=models[0], drafter=models[1])


def _generate(models: PeerModels, prompt: Sequence[int], tokens: int, lookahead: int) -> list[int]:
    """`tokens` tokens after `prompt`: greedy (lookahead 0) or assisted with `lookahead`."""
    torch = torch_module()
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=models.target.device)
    extra: dict[str, Any] = {}
    if lookahead > 0:
        config = models.drafter.generation_config
        config.num_assistant_tokens = lookahead
        config.num_assistant_tokens_schedule = "constant"
        config.assistant_confidence_threshold = 0.0
        extra["assistant_model"] = models.drafter
    with torch.inference_mode():
        out = models.target.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            pad_token_id=0,
            **extra,
        )
    return [int(t) for t in out[0, len(prompt) :].tolist()]


def greedy_generate(models: PeerModels, prompt: Sequence[int], tokens: int) -> list[int]:
    """transformers' greedy decoding of `tokens` tokens after `prompt`."""
    return _generate(models, prompt, tokens, 0)


def assisted_generate(
    models: PeerModels, prompt: Sequence[int], tokens: int, lookahead: int
) -> list[int]:
    """transformers' assisted generation (SI) drafting exactly `lookahead` tokens a round."""
    require(
        isinstance(lookahead, int) and lookahead >= 1,
        f"lookahead (--lookahead/-k) must be an integer >= 1; got {lookahead}",
    )
    return _generate(models, prompt, tokens, lookahead)


class Peer:
    """transformers' greedy and assisted generation of a pair loaded once in this process,
    timed one generation at a time, so that a caller can interleave them with its own runs
    (both then see the same machine load)."""

    def __init__(
        self,
        target_dir: str | Path,
        drafter_dir: str | Path,
        lookahead: int,
        *,
        threads: int = 1,
        dtype: str = "float32",
        attention: str = "sdpa",
        device: str = "cpu",
    ) -> None:
        require(
            isinstance(lookahead, int) and lookahead >= 1,
            f"lookahead (--lookahead/-k) must be an integer >= 1; got {lookahead}",
        )
        self.lookahead = lookahead
        self.threads = threads
        self.device = device
        self.dtype = dtype
        with torch_threads(threads):
            self.models = load_models(target_dir, drafter_dir, dtype, attention, device)

    def warm_up(self, prompt: Sequence[int], tokens: int, rounds: int = 1) -> None:
        """Untimed generations of each method on `prompt` (the first calls are slower)."""
        with torch_threads(self.threads):
            for _ in range(rounds):
                greedy_generate(self.models, prompt, tokens)
                assisted_generate(self.models, prompt, tokens, self.lookahead)

    def time(self, method: Method, index: int, prompt: Sequence[int], tokens: int) -> PeerRun:
        """One timed generation of `tokens` tokens after prompt number `index` (the device is
        synchronised before each clock reading)."""
        k = self.lookahead if method == "assisted" else 0
        with torch_threads(self.threads):
            synchronize(self.device)
            start = time.perf_counter()
            output = _generate(self.models, prompt, tokens, k)
            synchronize(self.device)
            return PeerRun(method, index, tuple(output), time.perf_counter() - start)

    def result(self, runs: Sequence[PeerRun], tokens: int) -> PeerResult:
        """`runs` (this peer's) as a result."""
        return PeerResult(
            lookahead=self.lookahead,
            tokens=tokens,
            threads=self.threads,
            greedy=tuple(r for r in runs if r.method == "greedy"),
            assisted=tuple(r for r in runs if r.method == "assisted"),
            environment=Environment.detect(self.device, self.dtype),
        )


def time_peer(
    target_dir: str | Path,
    drafter_dir: str | Path,
    prompts: Sequence[Sequence[int]],
    tokens: int,
    lookahead: int,
    *,
    threads: int = 1,
    repeats: int = 1,
    warmup: int = 1,
    dtype: str = "float32",
    attention: str = "sdpa",
    device: str = "cpu",
) -> PeerResult:
    """Time transformers' greedy and assisted generation on every prompt, `repeats` times,
    alternating the two per prompt (so both see the same machine load), after `warmup`
    untimed generations of each on the first prompt; both models on `device`."""
    require(len(prompts) >= 1, "prompts: at least one is needed")
    require(isinstance(tokens, int) and tokens >= 1, f"tokens must be >= 1; got {tokens}")
    require(isinstance(repeats, int) and repeats >= 1, f"repeats must be >= 1; got {repeats}")
    require(isinstance(warmup, int) and warmup >= 0, f"warmup must be >= 0; got {warmup}")
    peer = Peer(
        target_dir,
        drafter_dir,
        lookahead,
        threads=threads,
        dtype=dtype,
        attention=attention,
        device=device,
    )
    peer.warm_up(prompts[0], tokens, warmup)
    methods: tuple[Method, ...] = ("greedy", "assisted")
    runs = [
        peer.time(method, index, prompt, tokens)
        for _ in range(repeats)
        for index, prompt in enumerate(prompts)
        for method in methods
    ]
    return peer.result(runs, tokens)
