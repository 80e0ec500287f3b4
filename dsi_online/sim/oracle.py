"""The acceptance oracle: what the target and the drafter say after a sequence of tokens.

A simulated server asks its oracle for the tokens its forward pass yields; a real server
runs a model instead. The simulated oracle fixes, per repeat, the target's output
y_1..y_S and one coin per position: a draft made on a correct prefix equals y_p with
probability `a`; a draft made on an incorrect prefix is some token other than y_p.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

VOCAB = 32_000


class TokenOracle(Protocol):
    """The two questions a forward pass answers about tokens."""

    def verify(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """The target's tokens after `prefix`, given `prefix + drafts`, up to and including
        the first that differs from its draft: the accepted drafts and one more token (a
        correction, or the bonus token when every draft is accepted)."""
        ...

    def draft(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        """The drafter's token for the position after `prefix + drafts`."""
        ...


class SimulatedOracle:
    """The oracle of docs/model.md: a fixed target output and one acceptance coin per position.

    Every sequence made from its answers stays on the target's output up to some position
    and off it from there on (a token after a wrong one is wrong too), so the first error
    is found from the last token and a bisection: no answer costs time that grows with the
    output's length.
    """

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
        v, end = len(prefix), len(prefix) + len(drafts)
        truth = self.truth
        if end == 0 or (drafts[-1] if drafts else prefix[-1]) == truth[end - 1]:
            return end
        low, high = 0, end - 1  # the error lies in [low, high]: position high is wrong
        while low < high:
            middle = (low + high) // 2
            token = prefix[middle] if middle < v else drafts[middle - v]
            if token == truth[middle]:
                low = middle + 1
            else:
                high = middle
        return low

    def verify(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        v = len(prefix)
        if v + len(drafts) >= len(self.truth):
            raise ValueError("verification beyond the last token of the output")
        error = self._first_error(prefix, drafts)
        if error < v:
            return [self._wrong(v)]
        return self.truth[v : error + 1]

    def draft(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        position = len(prefix) + len(drafts)
        if position >= len(self.truth):
            raise ValueError("draft beyond the last token of the output")
        # On the truth iff the last token is (a token after a wrong one is wrong too).
        if self.coins[position] and (
            position == 0 or (drafts[-1] if drafts else prefix[-1]) == self.truth[position - 1]
        ):
            return self.truth[position]
        return (self.truth[position] + 1) % VOCAB
