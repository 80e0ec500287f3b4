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
`idle_factor`), and one that runs while other servers compute on the same machine is slower
(`contended` beside one busy server, `crowded[i]` beside i + 2, the last beyond: a CPU's
cores shared by more busy processes than it has, measured, not assumed).

A forward's latency is its round trip as a scheduler sees it: the request's transit to the
server (`transit_s[0]`), the model's layers, and the reply's transit back (`transit_s[1]`),
after `dispatch_s`, the event loop's own time a forward beyond what the calibration's forwards
spent on it (a scheduler's code between a reply and its next request; not scaled by the
spread).
A prefill (a forward from an empty cache) is priced from the measured cold prefill of
`prefill_tokens` tokens (`prefill_s`), scaled by the warm curve for other counts (without a
measured prefill, the warm curve at its reference context). What a
cancelled forward does follows the real server's settings (docs/real.md): cancelled in
transit it never runs; otherwise it stops at its next layer boundary, unless it is
`interruptible=False` or a prefill under `prefill="finish"`, which run to their end; one
cancelled during its last layer completes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

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
    """Mean latency (seconds) of a forward processing `tokens[i]` tokens after
    `reference_context` tokens already in the cache, plus `attention_s` per processed token
    per cached token beyond it (attention's work grows with both); `ratios` the measured
    latency / mean spread (empty: constant); the rest as the module docstring says."""

    tokens: tuple[int, ...]
    mean_s: tuple[float, ...]
    reference_context: int
    attention_s: float = 0.0
    ratios: tuple[float, ...] = ()
    layers: int = 1
    idle_s: tuple[float, ...] = ()
    idle_factor: tuple[float, ...] = ()
    contended: float = 1.0
    crowded: tuple[float, ...] = ()
    prefill_tokens: int = 0  # 0: a prefill is priced from the warm curve
    prefill_s: float = 0.0
    transit_s: tuple[float, float] = (0.0, 0.0)
    interruptible: bool = True
    prefill: Literal["finish", "stop"] = "finish"
    dispatch_s: float = 0.0

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
        require(
            all(math.isfinite(f) and f > 0 for f in self.crowded),
            f"contention factors must be finite and > 0; got {list(self.crowded)}",
        )
        require(
            self.prefill_tokens == 0
            or (self.prefill_tokens >= 1 and math.isfinite(self.prefill_s) and self.prefill_s > 0),
            "a measured prefill needs its token count (>= 1) and a latency > 0",
        )
        require(
            len(self.transit_s) == 2 and all(math.isfinite(t) and t >= 0 for t in self.transit_s),
            f"transit times must be two finite numbers >= 0; got {self.transit_s}",
        )
        require(math.isfinite(self.dispatch_s), "dispatch time must be finite")
        require(
            self.prefill in ("finish", "stop"),
            f"prefill must be finish or stop; got {self.prefill!r}",
        )

    def mean(self, tokens: int, context: int) -> float:
        """Expected latency of a forward over `tokens` new tokens with `context` tokens in
        the cache before it. Fewer tokens than the first measured count cost that count."""
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

    def prefill_mean(self, tokens: int) -> float:
        """Expected latency of a prefill over `tokens` tokens (an empty cache before it):
        the warm curve as measured (attention is not extrapolated below its context),
        scaled to the measured cold prefill at its count."""
        warm = self.mean(tokens, self.reference_context)
        if self.prefill_tokens == 0:
            return warm
        return self.prefill_s * warm / self.mean(self.prefill_tokens, self.reference_context)

    def host_factor(self, idle_s: float, busy: int) -> float:
        """How much slower a forward runs after `idle_s` seconds idle (1 at 0, interpolated
        linearly, the last factor beyond the last gap), and while `busy` other servers
        compute (module docstring)."""
        if busy <= 0:
            factor = 1.0
        elif busy == 1 or not self.crowded:
            factor = self.contended
        else:
            factor = self.crowded[min(busy - 2, len(self.crowded) - 1)]
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
        self,
        tokens: int,
        context: int,
        idle_s: float = 0.0,
        busy: int = 0,
        prefill: bool = False,
    ) -> float:
        """The latency of a forward over `tokens` tokens after `context` cached ones (a
        `prefill` from an empty cache), in seconds, after `idle_s` seconds idle, while
        `busy` other servers compute."""
        base = self.cost.prefill_mean(tokens) if prefill else self.cost.mean(tokens, context)
        mean = base * self.cost.host_factor(idle_s, busy)
        if not self.cost.ratios:
            return max(0.0, mean + self.cost.dispatch_s)
        if not self._ratios:
            pool = np.asarray(self.cost.ratios)
            self._ratios = self.rng.choice(pool, size=_BATCH, replace=True).tolist()
        return max(0.0, mean * self._ratios.pop() + self.cost.dispatch_s)

    def stop(self, start: float, duration: float, now: float, protected: bool) -> Stop:
        """What a forward started at `start` for `duration` does when cancelled at `now`
        (`protected`: a prefill under prefill="finish"; module docstring)."""
        out, back = self.cost.transit_s
        out = max(0.0, out + self.cost.dispatch_s)
        compute = max(0.0, duration - out - back)
        begin = start + out
        if now <= begin:  # still queued or in transit: it never runs
            return Stop(now, 0, completed=False)
        end = begin + compute
        layers = self.cost.layers
        if protected or not self.cost.interruptible or now >= end:
            return Stop(end, layers, completed=True)
        done = math.ceil((now - begin) / (compute / layers) - 1e-9)
        if done >= layers:
            return Stop(end, layers, completed=True)
        return Stop(begin + done * compute / layers, done, completed=False)


@dataclass(frozen=True)
class Stop:
    """Where a cancelled forward stops: when its server is free, the layers it ran, and
    whether it completed (its cache then holds its whole input)."""

    end: float
    layers: int
    completed: bool
