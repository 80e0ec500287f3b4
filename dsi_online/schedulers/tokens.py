"""Token sequences as the schedulers hand them to a forward pass."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import overload

import numpy as np


class Prefix(Sequence[int]):
    """The first `length` tokens of a list that only grows (the committed output).

    A verification job verifies drafts after the prefix committed when it was launched;
    the output may have grown by the time the job runs. A view costs O(1) to make, so
    launching a job does not copy the whole output.
    """

    __slots__ = ("_length", "_tokens")

    def __init__(self, tokens: list[int], length: int) -> None:
        if not 0 <= length <= len(tokens):
            raise ValueError(f"prefix length {length} outside 0..{len(tokens)}")
        self._tokens = tokens
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return self._tokens[: self._length][index]
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError("prefix index out of range")
        return self._tokens[position]


def digest(tokens: Sequence[int]) -> str:
    """SHA-256 of a token sequence, to compare outputs across algorithms cheaply."""
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()
