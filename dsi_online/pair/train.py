"""Training a pair: the target on the corpus, then the drafter distilled from the target.

Target: next-byte cross-entropy on random windows of the training files (AdamW, warm-up then
cosine decay). Drafter: `w * KL(target || drafter) + (1 - w) * cross-entropy` on the same
kind of windows, the target's full next-byte distribution as the soft label (distillation:
the drafter learns to say what the target says, which is what speculation needs).

Determinism: weights are a function of (recipe, seed, corpus) given the same torch build,
the same CPU instruction set and the recipe's number of torch threads, which training pins
whatever the machine's core count (and restores afterwards). Every random draw comes from
generators seeded from `seed`.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsi_online.measure.acceptance import estimate_acceptance, greedy_matches
from dsi_online.measure.torch_runtime import (
    cached,
    torch_module,
    torch_threads,
    transformers_module,
)
from dsi_online.pair.corpus import Corpus
from dsi_online.pair.info import AgreementInfo, LatencyInfo, ModelInfo
from dsi_online.pair.recipes import ModelShape, Recipe, Schedule

LOSS_WINDOW = 20  # the final training loss is the mean over this many last steps
AGREEMENT_SEED = 0  # held-out prompts of the agreement: the same for every seed and size
LATENCY_ROUNDS = 5
LATENCY_STEPS = 24  # decode forwards per model and round; the first of each round is warm-up


@dataclass(frozen=True)
class TrainProgress:
    """A progress report: `done` of `total` work units across phases, and the last loss."""

    phase: str  # "target", "drafter" or "evaluate"
    done: int
    total: int
    loss: float | None


ProgressCallback = Callable[[TrainProgress], None]


def total_units(recipe: Recipe) -> int:
    """Work units of a whole training (a step each, and one per agreement prompt)."""
    return recipe.target_schedule.steps + recipe.drafter_schedule.steps + recipe.eval_prompts


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (weights of a model, its batches)."""
    return int(hashlib.sha256(f"{seed}/{purpose}".encode()).hexdigest()[:15], 16)


def build_model(shape: ModelShape, seed: int) -> Any:
    """A fresh `LlamaForCausalLM` of this shape, initialised from `seed`, in float32."""
    torch = torch_module()
    transformers = transformers_module()
    config = transformers.LlamaConfig(**shape.config_kwargs())
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config)


def parameter_count(model: Any) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


class Batches:
    """Random windows of `seq_len + 1` bytes of a text, drawn from a seeded generator."""

    def __init__(self, text: bytes, seq_len: int, batch: int, seed: int) -> None:
        torch = torch_module()
        self.data = torch.frombuffer(bytearray(text), dtype=torch.uint8)
        self.seq_len = seq_len
        self.batch = batch
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1)

    def next(self) -> tuple[Any, Any]:
        """Inputs and next-byte labels, each (batch, seq_len) long ids."""
        torch = torch_module()
        high = len(self.data) - self.seq_len - 1
        starts = torch.randint(0, high, (self.batch,), generator=self.generator)
        windows = self.data[starts[:, None] + self.offsets].long()
        return windows[:, :-1], windows[:, 1:]


def _optimizer(model: Any, schedule: Schedule) -> Any:
    torch = torch_module()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": schedule.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=schedule.peak_lr, betas=(0.9, 0.95), eps=1e-8)


def _cross_entropy(logits: Any, labels: Any) -> Any:
    functional = torch_module().nn.functional
    return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def _kl(target_logits: Any, drafter_logits: Any) -> Any:
    """Mean over positions of KL(target || drafter) of the next-byte distributions."""
    functional = torch_module().nn.functional
    wanted = functional.log_softmax(target_logits, dim=-1).reshape(-1, target_logits.shape[-1])
    got = functional.log_softmax(drafter_logits, dim=-1).reshape(-1, drafter_logits.shape[-1])
    return functional.kl_div(got, wanted, log_target=True, reduction="batchmean")


def _optimise(
    model: Any,
    schedule: Schedule,
    batches: Batches,
    loss_of: Callable[[Any, Any], Any],
    report: Callable[[float], None],
) -> float:
    """Run the schedule; the mean loss of the last LOSS_WINDOW steps."""
    torch = torch_module()
    optimizer = _optimizer(model, schedule)
    model.train()
    losses: list[float] = []
    for step in range(schedule.steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(step)
        inputs, labels = batches.next()
        loss = loss_of(inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        report(losses[-1])
    model.eval()
    return statistics.fmean(losses[-LOSS_WINDOW:])


def train_target(
    recipe: Recipe, seed: int, text: bytes, report: Callable[[float], None]
) -> tuple[Any, float]:
    """The target trained on `text`, and its final training loss."""
    schedule = recipe.target_schedule
    model = build_model(recipe.target, derive_seed(seed, "target/weights"))
    batches = Batches(text, schedule.seq_len, schedule.batch, derive_seed(seed, "target/batches"))

    def loss_of(inputs: Any, labels: Any) -> Any:
        return _cross_entropy(model(input_ids=inputs, use_cache=False).logits, labels)

    return model, _optimise(model, schedule, batches, loss_of, report)


def train_drafter(
    recipe: Recipe, seed: int, text: bytes, target: Any, report: Callable[[float], None]
) -> tuple[Any, float]:
    """The drafter distilled from `target` on `text`, and its final training loss."""
    torch = torch_module()
    schedule = recipe.drafter_schedule
    weight = recipe.distill_weight
    model = build_model(recipe.drafter, derive_seed(seed, "drafter/weights"))
    batches = Batches(text, schedule.seq_len, schedule.batch, derive_seed(seed, "drafter/batches"))
    target.eval()

    def loss_of(inputs: Any, labels: Any) -> Any:
        with torch.no_grad():
            wanted = target(input_ids=inputs, use_cache=False).logits
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = weight * _kl(wanted, logits)
        if weight < 1.0:
            loss = loss + (1.0 - weight) * _cross_entropy(logits, labels)
        return loss

    return model, _optimise(model, schedule, batches, loss_of, report)


def heldout_windows(heldout: Sequence[bytes], count: int, seq_len: int) -> list[bytes]:
    """`count` windows of `seq_len + 1` bytes evenly spaced over the concatenated held-out text."""
    text = b"".join(heldout)
    span = len(text) - seq_len - 1
    return [text[i * span // max(count - 1, 1) :][: seq_len + 1] for i in range(count)]


def heldout_loss(model: Any, windows: Sequence[bytes]) -> float:
    """Mean next-byte cross-entropy (nats per byte) of `model` over `windows`."""
    torch = torch_module()
    with torch.inference_mode():
        ids = torch.tensor([list(w) for w in windows], dtype=torch.long)
        logits = model(input_ids=ids[:, :-1], use_cache=False).logits
        return float(_cross_entropy(logits, ids[:, 1:]))


def text_matches(target: Any, drafter: Any, windows: Sequence[bytes]) -> list[list[bool]]:
    """Per window, whether the drafter's greedy next byte is the target's at each position
    of the real held-out text (teacher forcing, no generation)."""
    torch = torch_module()
    with torch.inference_mode():
        ids = torch.tensor([list(w) for w in windows], dtype=torch.long)[:, :-1]
        wanted = target(input_ids=ids, use_cache=False).logits.argmax(-1)
        drafted = drafter(input_ids=ids, use_cache=False).logits.argmax(-1)
        return [[bool(x) for x in row] for row in (wanted == drafted).tolist()]


def agreement(
    target: Any,
    drafter: Any,
    prompts: Sequence[Sequence[int]],
    new_tokens: int,
    windows: Sequence[bytes],
    advance: Callable[[], None],
) -> AgreementInfo:
    """Greedy agreement on the target's generations after held-out prompts, and on the
    held-out text itself, each with the cluster-bootstrap CI of `measure acceptance`."""
    matches = []
    for prompt in prompts:
        matches.append(greedy_matches(target, drafter, prompt, new_tokens))
        advance()
    estimate = estimate_acceptance(matches, lookahead=5, bootstrap=2000, seed=AGREEMENT_SEED)
    on_text = estimate_acceptance(
        text_matches(target, drafter, windows), lookahead=1, bootstrap=2000, seed=AGREEMENT_SEED
    )
    assert estimate.ci95 is not None and on_text.ci95 is not None  # more than one prompt
    return AgreementInfo(
        rate=estimate.rate,
        ci95=estimate.ci95,
        positions=estimate.positions,
        prompts=estimate.prompts,
        prompt_bytes=len(prompts[0]),
        new_tokens=new_tokens,
        by_position=estimate.by_position,
        method=(
            "the target generates greedily after each held-out prompt; at each generated "
            "position the drafter's greedy byte (given the target's prefix) is compared with "
            "the target's; pooled rate, 95% CI by cluster bootstrap over prompts (2000 "
            "resamples), by_position: draft i of a 5-draft window given drafts 1..i-1 accepted; "
            "text_rate: the same comparison at every position of the held-out windows of the "
            "held-out loss (the real text as prefix, no generation), CI by bootstrap over windows"
        ),
        text_rate=on_text.rate,
        text_ci95=on_text.ci95,
        text_positions=on_text.positions,
    )


def _decode_times(model: Any, prompt: Sequence[int], steps: int) -> list[float]:
    """Seconds of each one-byte decode forward with a DynamicCache after a prefill of `prompt`."""
    torch = torch_module()
    transformers = transformers_module()
    times = []
    with torch.inference_mode():
        cache = transformers.DynamicCache()
        ids = torch.tensor([list(prompt)], dtype=torch.long)
        out = model(input_ids=ids, use_cache=True, **cached(model, cache))
        token = out.logits[:, -1:].argmax(-1)
        for _ in range(steps):
            start = time.perf_counter()
            out = model(input_ids=token, use_cache=True, **cached(model, cache))
            token = out.logits[:, -1:].argmax(-1)
            times.append(time.perf_counter() - start)
    return times


def decode_latency(target: Any, drafter: Any, prompt: Sequence[int]) -> LatencyInfo:
    """Median decode forward of each model on 1 thread, rounds alternating between them."""
    target_s: list[float] = []
    drafter_s: list[float] = []
    with torch_threads(1):
        for _ in range(LATENCY_ROUNDS):
            target_s += _decode_times(target, prompt, LATENCY_STEPS)[1:]
            drafter_s += _decode_times(drafter, prompt, LATENCY_STEPS)[1:]
    target_ms = statistics.median(target_s) * 1e3
    drafter_ms = statistics.median(drafter_s) * 1e3
    return LatencyInfo(
        target_ms=target_ms,
        drafter_ms=drafter_ms,
        c=drafter_ms / target_ms,
        threads=1,
        context=len(prompt),
        samples=len(target_s),
        method=(
            f"one-byte decode forwards through transformers with a DynamicCache after a "
            f"{len(prompt)}-byte prefill, {LATENCY_ROUNDS} rounds of {LATENCY_STEPS - 1} timed "
            f"forwards per model (first of each round untimed), rounds alternating between the "
            f"models; medians; 1 torch thread, float32, on the training machine right after "
            f"training (other load on the machine included)"
        ),
    )


def model_info(
    shape: ModelShape,
    schedule: Schedule,
    model: Any,
    objective: str,
    seconds: float,
    final_train_loss: float,
    loss_heldout: float,
) -> ModelInfo:
    """The `pair.toml` table of one trained model."""
    return ModelInfo(
        layers=shape.layers,
        hidden=shape.hidden,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        ffn=shape.ffn,
        parameters=parameter_count(model),
        objective=objective,
        steps=schedule.steps,
        batch=schedule.batch,
        seq_len=schedule.seq_len,
        schedule=schedule.describe(),
        seconds=round(seconds, 3),
        final_train_loss=final_train_loss,
        heldout_loss=loss_heldout,
    )


@dataclass(frozen=True)
class TrainedPair:
    """Both trained models (torch modules, eval mode) and what `pair.toml` records of them."""

    target: Any
    drafter: Any
    target_info: ModelInfo
    drafter_info: ModelInfo
    agreement: AgreementInfo
    latency: LatencyInfo


def train_models(
    recipe: Recipe, seed: int, corpus: Corpus, progress: ProgressCallback | None = None
) -> TrainedPair:
    """Train the target, distil the drafter, evaluate both on held-out text (module doc)."""
    total = total_units(recipe)
    done = 0

    def tick(phase: str, loss: float | None) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(TrainProgress(phase=phase, done=done, total=total, loss=loss))

    text = corpus.read_train()
    heldout = corpus.read_heldout()
    with torch_threads(recipe.threads):
        start = time.perf_counter()
        target, target_loss = train_target(recipe, seed, text, lambda x: tick("target", x))
        target_s = time.perf_counter() - start
        start = time.perf_counter()
        drafter, drafter_loss = train_drafter(
            recipe, seed, text, target, lambda x: tick("drafter", x)
        )
        drafter_s = time.perf_counter() - start
        windows = heldout_windows(heldout, recipe.eval_sequences, recipe.target_schedule.seq_len)
        prompts = corpus.prompts(recipe.eval_prompts, recipe.eval_prompt_bytes, AGREEMENT_SEED)
        agreed = agreement(
            target,
            drafter,
            prompts,
            recipe.eval_new_tokens,
            windows,
            lambda: tick("evaluate", None),
        )
        target_info = model_info(
            recipe.target,
            recipe.target_schedule,
            target,
            "next-byte cross-entropy on the training files",
            target_s,
            target_loss,
            heldout_loss(target, windows),
        )
        drafter_info = model_info(
            recipe.drafter,
            recipe.drafter_schedule,
            drafter,
            _drafter_objective(recipe.distill_weight),
            drafter_s,
            drafter_loss,
            heldout_loss(drafter, windows),
        )
    latency = decode_latency(target, drafter, prompts[0])
    return TrainedPair(target, drafter, target_info, drafter_info, agreed, latency)


def _drafter_objective(weight: float) -> str:
    """How the drafter was trained, in words."""
    if weight >= 1.0:
        return (
            "distilled from the trained target: KL(target || drafter) of the next-byte "
            "distributions on the training files"
        )
    return (
        f"distilled from the trained target: {weight:g} x KL(target || drafter) + "
        f"{1 - weight:g} x next-byte cross-entropy, on the training files"
    )
