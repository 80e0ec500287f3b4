"""What each size of pair is: the two models' shapes and how they are trained (no torch).

Both models are byte-level Llama models (vocabulary 256, token id = byte value, no special
tokens: generation always runs to the requested length). The target is trained on the corpus
with next-byte cross-entropy; the drafter is distilled from the trained target (see
`dsi_online.pair.train`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from dsi_online.errors import InvalidParameterError

VOCAB_SIZE = 256
MAX_POSITIONS = 2048  # RoPE positions the config allows; quality holds up to the trained length
RECIPE_VERSION = 2  # bump when training code changes in a way that changes the weights


@dataclass(frozen=True)
class ModelShape:
    """A Llama model's shape (the transformers LlamaConfig fields that matter)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `transformers.LlamaConfig` for this shape."""
        return {
            "vocab_size": VOCAB_SIZE,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "intermediate_size": self.ffn,
            "max_position_embeddings": MAX_POSITIONS,
            "tie_word_embeddings": True,
            "bos_token_id": None,
            "eos_token_id": None,
            "pad_token_id": 0,
        }


@dataclass(frozen=True)
class Schedule:
    """One model's optimisation: AdamW, linear warm-up, then cosine decay to `final_lr`."""

    steps: int
    batch: int  # sequences per step
    seq_len: int  # bytes per sequence (the trained context length)
    peak_lr: float
    warmup_steps: int
    final_lr: float
    weight_decay: float = 0.1
    clip_norm: float = 1.0

    def lr(self, step: int) -> float:
        """The learning rate of optimisation step `step` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        span = max(self.steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (
            1 + math.cos(math.pi * progress)
        )

    def describe(self) -> str:
        """One line: the schedule as a reader wants it."""
        return (
            f"AdamW (betas 0.9/0.95, weight decay {self.weight_decay}, clip {self.clip_norm}), "
            f"linear warm-up over {self.warmup_steps} steps to {self.peak_lr:g}, cosine decay "
            f"to {self.final_lr:g} at step {self.steps}"
        )


@dataclass(frozen=True)
class Recipe:
    """A pair size: both shapes, both schedules, and the held-out evaluation's size."""

    name: str
    threads: int  # torch CPU threads while training, pinned whatever the machine's core count
    target: ModelShape
    drafter: ModelShape
    target_schedule: Schedule
    drafter_schedule: Schedule
    distill_weight: float  # drafter loss = w * KL(target || drafter) + (1 - w) * data CE
    eval_sequences: int  # held-out windows of `seq_len` bytes for the held-out losses
    eval_prompts: int  # held-out prompts for the greedy agreement
    eval_prompt_bytes: int
    eval_new_tokens: int

    def key(self) -> str:
        """A digest of everything in the recipe that changes the weights, and its version."""
        fields = dataclasses.asdict(self)
        for name in ("eval_sequences", "eval_prompts", "eval_prompt_bytes", "eval_new_tokens"):
            del fields[name]
        fields["version"] = RECIPE_VERSION
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


RECIPES: dict[str, Recipe] = {
    "test": Recipe(
        name="test",
        threads=1,
        target=ModelShape(layers=2, hidden=64, heads=2, kv_heads=2, ffn=172),
        drafter=ModelShape(layers=1, hidden=32, heads=2, kv_heads=2, ffn=86),
        target_schedule=Schedule(
            steps=60, batch=8, seq_len=64, peak_lr=1e-2, warmup_steps=6, final_lr=1e-3
        ),
        drafter_schedule=Schedule(
            steps=40, batch=8, seq_len=64, peak_lr=1e-2, warmup_steps=4, final_lr=1e-3
        ),
        distill_weight=1.0,
        eval_sequences=8,
        eval_prompts=4,
        eval_prompt_bytes=32,
        eval_new_tokens=16,
    ),
    "small": Recipe(
        name="small",
        threads=2,
        target=ModelShape(layers=6, hidden=128, heads=4, kv_heads=4, ffn=344),
        drafter=ModelShape(layers=1, hidden=64, heads=2, kv_heads=2, ffn=172),
        target_schedule=Schedule(
            steps=600, batch=16, seq_len=256, peak_lr=5e-3, warmup_steps=40, final_lr=5e-4
        ),
        drafter_schedule=Schedule(
            steps=300, batch=16, seq_len=256, peak_lr=6e-3, warmup_steps=30, final_lr=6e-4
        ),
        distill_weight=1.0,
        eval_sequences=64,
        eval_prompts=40,
        eval_prompt_bytes=64,
        eval_new_tokens=64,
    ),
}
SIZES = tuple(RECIPES)


def get_recipe(size: str) -> Recipe:
    """The recipe of a size; InvalidParameterError naming --size for an unknown one."""
    if size not in RECIPES:
        raise InvalidParameterError(
            f"size (--size) must be one of {', '.join(SIZES)}; got {size!r}"
        )
    return RECIPES[size]
