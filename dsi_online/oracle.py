"""The acceptance oracle: what the target and the drafter would say for a prefix.

The schedulers only ask two questions, so a real model pair can stand behind the same
interface later. The simulated oracle fixes, per repeat, the target's output
y_1..y_S and one coin per position: a draft made on a correct prefix equals y_p with
probability `a`; a draft made on an incorrect prefix is some token other than y_p.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

VOCAB = 32_000


class TokenOracle(Protocol):
    """The two questions a scheduler asks about tokens."""

    def target_verify(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """The target's token at each of the len(drafts) + 1 positions after `prefix`,
        given `prefix + drafts` (one forward pass)."""
        ...

    def draft_next(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        """The drafter's token for the position after `prefix + drafts`."""
        ...


class SimulatedOracle:
    """The oracle of MODEL.md: a fixed target output and one acceptance coin per position."""

    def __init__(self, truth: Sequence[int], coins: Sequence[bool]) -> None:
        if len(truth) != len(coins):
            raise ValueError("truth and coins must have the same length")
        self.truth: list[int] = list(truth)
        self.coins: list[bool] = list(coins)

    @classmethod
    def draw(cls, tokens: int, acceptance: float, rng: np.random.Generator) -> SimulatedOracle:
        """Draw the target output and the coins of one repeat from `rng`."""
        truth = rng.integers(0, VOCAB, size=tokens).tolist()
        coins = (rng.random(tokens) < acceptance).tolist()
        return cls(truth, coins)

    def _wrong(self, index: int) -> int:
        return (self.truth[index] + 1) % VOCAB

    def _first_error(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        """Index of the first position where prefix + drafts leaves the truth (or its length)."""
        v = len(prefix)
        if prefix != self.truth[:v] and list(prefix) != self.truth[:v]:
            return next(
                i for i, (x, y) in enumerate(zip(prefix, self.truth, strict=False)) if x != y
            )
        for i, token in enumerate(drafts):
            if token != self.truth[v + i]:
                return v + i
        return v + len(drafts)

    def target_verify(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        v = len(prefix)
        if v + len(drafts) >= len(self.truth):
            raise ValueError("verification beyond the last token of the output")
        error = self._first_error(prefix, drafts)
        return [
            self.truth[i] if i <= error else self._wrong(i) for i in range(v, v + len(drafts) + 1)
        ]

    def draft_next(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        position = len(prefix) + len(drafts)
        if position >= len(self.truth):
            raise ValueError("draft beyond the last token of the output")
        on_truth = self._first_error(prefix, drafts) == position
        return self.truth[position] if on_truth and self.coins[position] else self._wrong(position)


def digest(tokens: Sequence[int]) -> str:
    """SHA-256 of a token sequence, to compare outputs across algorithms cheaply."""
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()
