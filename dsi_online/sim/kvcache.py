"""What a server's KV cache holds, so a simulated forward knows how many tokens it processes.

A real server keeps the keys and values of every token it has processed. A forward over
`prefix + drafts` keeps the longest common prefix of what the cache holds and the new input,
crops the rest (a rejected suffix) and processes the remaining tokens in one pass: one token
when decoding, k + 1 when verifying k drafts, more when the server was behind (catch-up).
At least the last token is always processed, since its logits are what the forward is for.
A cancelled forward leaves only the common prefix it kept.

Every prefix a scheduler passes is a prefix of the committed output, which only grows; so two
inputs agree on their first min(len(prefix)) tokens and only the tokens beyond need comparing.
The comparison costs time proportional to the drafts involved, never to the output's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardPlan:
    """What one forward pass does with the cache."""

    reused: int  # tokens kept from the cache
    processed: int  # tokens this forward runs through the model

    @property
    def context(self) -> int:
        """Tokens in the cache once the forward completes."""
        return self.reused + self.processed


def _token(prefix: Sequence[int], v: int, drafts: Sequence[int], position: int) -> int:
    return prefix[position] if position < v else drafts[position - v]


class KVCache:
    """The tokens a server's cache holds: the first `length` tokens of `prefix[:v] + drafts`
    (the prefix may be the live committed output; its first v tokens never change)."""

    def __init__(self) -> None:
        self._prefix: Sequence[int] = ()
        self._v = 0
        self._drafts: tuple[int, ...] = ()
        self._length = 0

    @property
    def length(self) -> int:
        """Tokens held."""
        return self._length

    def plan(self, prefix: Sequence[int], drafts: Sequence[int]) -> ForwardPlan:
        """Crop the cache to what `prefix + drafts` shares with it; say what the forward runs.

        The cache then holds the kept tokens only, as after a cancelled forward; `complete`
        records that the forward finished and the cache holds its whole input.
        """
        v, size = len(prefix), len(prefix) + len(drafts)
        limit = min(self._length, size - 1)  # the last token is always processed
        common = max(0, min(v, self._v, limit))
        while common < limit and _token(self._prefix, self._v, self._drafts, common) == _token(
            prefix, v, drafts, common
        ):
            common += 1
        self._prefix, self._v, self._drafts, self._length = prefix, v, tuple(drafts), common
        return ForwardPlan(reused=common, processed=size - common)

    def complete(self) -> None:
        """The planned forward finished: the cache holds its whole input."""
        self._length = self._v + len(self._drafts)
