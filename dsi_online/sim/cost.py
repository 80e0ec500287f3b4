"""A forward's latency as a function of the tokens it processes, measured on a real backend.

The paper's model charges every forward the same TPOT whatever it does. On real hardware a
forward that verifies k drafts processes k + 1 tokens and costs more than a decoding step,
one that catches up a stale cache costs more again, and a prefill costs what its prompt does.
A `TokenCost` holds measured latencies at a few token counts (interpolated linearly between
them, extrapolated from the last two beyond), a linear term in the context length, the
measured spread as ratios (resampled), and the number of layers, at whose boundaries a
cancelled forward stops. Two effects of the host are measured too, because a CPU shows them
plainly (a GPU has its own versions: clocks that drop when idle, kernels that contend): a
forward after the server sat idle is slower (caches and clocks went cold; `idle_s`,
`idle_factor`), and one that runs while another server computes on the same machine is
slower (`contended`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dsi_online.errors import require

_BATCH = 512


def monotone(values: Sequence[float]) -> list[float]:
    """The closest non-decreasing sequence (pool adjacent violators, equal weights): a
    forward over more tokens, or after a longer idle gap, is not faster, so a dip is noise."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, c2), (m1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    return [mean for mean, count in blocks for _ in range(int(count))]


@dataclass(frozen=True)
class TokenCost:
    """Mean latency (seconds) of a forward processing `tokens[i]` tokens at
    `reference_context` tokens of context, plus `attention_s` per processed token per token
    of context beyond it (attention's work grows with both); `ratios` the measured
    latency / mean spread (empty: constant)."""

    tokens: tuple[int, ...]
    mean_s: tuple[float, ...]
    reference_context: int
    attention_s: float = 0.0
    ratios: tuple[float, ...] = ()
    layers: int = 1
    idle_s: tuple[float, ...] = ()
    idle_factor: tuple[float, ...] = ()
    contended: float = 1.0

    def __post_init__(self) -> None:
        require(
            len(self.tokens) >= 2 and len(self.tokens) == len(self.mean_s),
            "a token cost needs the mean latency at two or more token counts",
        )
        require(
            all(a < b for a, b in zip(self.tokens, self.tokens[1:], strict=False))
            and self.tokens[0] >= 1,
            f"token counts must be increasing integers >= 1; got {list(self.tokens)}",
        )
        require(
            all(math.isfinite(m) and m > 0 for m in self.mean_s),
            "mean latencies must be finite and > 0",
        )
        require(self.reference_context >= 0, "reference context must be >= 0")
        require(math.isfinite(self.attention_s), "attention cost must be finite")
        require(
            all(math.isfinite(r) and r > 0 for r in self.ratios),
            "latency ratios must be finite and > 0",
        )
        require(self.layers >= 1, f"layers must be >= 1; got {self.layers}")
        require(
            len(self.idle_s) == len(self.idle_factor)
            and all(a < b for a, b in zip(self.idle_s, self.idle_s[1:], strict=False))
            and all(g > 0 and math.isfinite(g) for g in self.idle_s)
            and all(f > 0 and math.isfinite(f) for f in self.idle_factor),
            "idle gaps must be increasing and > 0, each with a factor > 0",
        )
        require(
            math.isfinite(self.contended) and self.contended > 0,
            f"contention factor must be finite and > 0; got {self.contended}",
        )

    def mean(self, tokens: int, context: int) -> float:
        """Expected latency of a forward over `tokens` new tokens with `context` tokens in
        the cache afterwards. Fewer tokens than the first measured count cost that count."""
        counts, means = self.tokens, self.mean_s
        n = max(tokens, counts[0])
        i = min(max(bisect.bisect_left(counts, n), 1), len(counts) - 1)
        slope = (means[i] - means[i - 1]) / (counts[i] - counts[i - 1])
        base = means[i - 1] + slope * (n - counts[i - 1])
        value = base + self.attention_s * n * (context - self.reference_context)
        if not value > 0:
            raise ValueError(
                f"token cost model gives {value} s for {tokens} tokens at context {context}"
            )
        return value

    def host_factor(self, idle_s: float, contended: bool) -> float:
        """How much slower a forward runs after `idle_s` seconds idle (1 at 0, interpolated
        linearly, the last factor beyond the last gap), and while another server computes."""
        factor = self.contended if contended else 1.0
        gaps = self.idle_s
        if not gaps or idle_s <= 0:
            return factor
        if idle_s >= gaps[-1]:
            return factor * self.idle_factor[-1]
        i = bisect.bisect_left(gaps, idle_s)
        low_gap, low = (0.0, 1.0) if i == 0 else (gaps[i - 1], self.idle_factor[i - 1])
        slope = (self.idle_factor[i] - low) / (gaps[i] - low_gap)
        return factor * (low + slope * (idle_s - low_gap))


@dataclass
class CostStream:
    """One server's draws from a TokenCost: ratios come in batches from its own generator."""

    cost: TokenCost
    rng: np.random.Generator
    _ratios: list[float] = field(default_factory=list)

    def next(
        self, tokens: int, context: int, idle_s: float = 0.0, contended: bool = False
    ) -> float:
        """The latency of a forward over `tokens` tokens ending at `context`, in seconds,
        after `idle_s` seconds idle, `contended` when another server computes meanwhile."""
        mean = self.cost.mean(tokens, context) * self.cost.host_factor(idle_s, contended)
        if not self.cost.ratios:
            return mean
        if not self._ratios:
            pool = np.asarray(self.cost.ratios)
            self._ratios = self.rng.choice(pool, size=_BATCH, replace=True).tolist()
        return mean * self._ratios.pop()

    def stop_time(self, start: float, duration: float, now: float) -> float:
        """When a forward started at `start` for `duration` really stops if cancelled at
        `now`: at the next layer boundary (all layers take an equal share)."""
        step = duration / self.cost.layers
        return min(start + duration, start + math.ceil((now - start) / step - 1e-9) * step)
