"""Simulated servers: running instances of a model whose forward pass is a timed sleep on
the running loop's clock, behind the seam's `Server` protocol (dsi_online.schedulers.seam)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from dsi_online.schedulers.seam import Account, Role, ServerStats
from dsi_online.sim.clock import RANK_DEFAULT, RANK_DRAFT, RankedLoop, wake_at
from dsi_online.sim.cost import CostStream
from dsi_online.sim.kvcache import KVCache
from dsi_online.sim.latency import (
    CorrelatedStream,
    LatencyModel,
    LatencyStream,
    ModelLatency,
    StepDraws,
)
from dsi_online.sim.oracle import TokenOracle

_ROLE_KEY = {"target": 0, "drafter": 1}
ORACLE_KEY = 2
_LINK_KEY = 3
_STEP_KEY = 4


class Activity:
    """Which servers of one run are computing: a forward priced by a token-cost model pays
    the model's contention factor for the servers computing, or still winding down after a
    cancel, when it starts."""

    __slots__ = ("busy", "tails")

    def __init__(self) -> None:
        self.busy = 0
        self.tails: list[float] = []  # when cancelled forwards that still run really stop

    def contended(self, at: float) -> int:
        """How many other servers compute at `at` (now, or later for a forward queued)."""
        return self.busy + sum(t > at for t in self.tails)

    def wind_down(self, now: float, end: float) -> None:
        """A cancelled forward computes until `end`; tails ended by `now` are forgotten."""
        self.tails = [t for t in self.tails if t > now]
        if end > now:
            self.tails.append(end)


@dataclass(frozen=True)
class SimForward:
    """One forward of a server priced by a token-cost model, in the terms of the real
    backend's ForwardRecord: tokens of the prompt and the output its cache kept, tokens run
    (of them prompt tokens, a prefill, and catch-up tokens), layers run, and whether it was
    stopped before its end."""

    kept: int
    processed: int
    prompt: int
    catchup: int
    layers: int
    stopped: bool


class SimulatedServer(Account):
    """A model instance whose forward pass is a timed sleep: its first forward is a TTFT
    draw, every later one a TPOT draw, and its tokens come from the oracle. A prefill that
    has begun runs to its end even when cancelled, as on the real backend (docs/real.md): the
    server is warm from that end on, and a forward sent to it before waits for it.

    With a token-cost model (`CostStream`) a forward is priced by what it does instead, and
    accounted as the real backend accounts it (`records`): the server keeps a model of its
    KV cache, so a forward costs the tokens it processes at the context its cache held
    before it (a prefill, from an empty cache, also the prompt's, priced from the measured
    cold prefill), slowed by the time the server sat idle before it (from the run's start
    for its first) and by another server computing or winding down when it starts
    (`activity`). A cancelled forward does what the real server's does (`CostStream.stop`),
    keeping its server busy until then.

    A drafter's forwards end before target forwards that end at the same instant
    (docs/model.md's same-instant rule); the virtual clock orders its timers by that rank.
    """

    def __init__(
        self,
        name: str,
        role: Role,
        stream: LatencyStream | CorrelatedStream | CostStream,
        oracle: TokenOracle,
        prompt_tokens: int = 0,
        activity: Activity | None = None,
        origin: float = 0.0,
    ) -> None:
        super().__init__(name, role)
        self._oracle = oracle
        self._rank = RANK_DRAFT if role == "drafter" else RANK_DEFAULT
        self._warm_at = 0.0  # the end of a cancelled prefill, which runs to its end
        self._free_at = 0.0  # when a cancelled forward really stops
        if isinstance(stream, CostStream):
            self._cost: CostStream | None = stream
            self._cache = KVCache()
            self._prompt = prompt_tokens
            self._prompt_cached = False
            self._activity = Activity() if activity is None else activity
            self._last_end = origin
            self.records: list[SimForward] = []
        else:
            self._cost = None
            self._stream = stream

    @property
    def warm(self) -> bool:
        """Whether the server's prefill has ended (a cancelled one runs to its end)."""
        cached = self.forwards > 0 if self._cost is None else self._prompt_cached
        return cached and (
            self._warm_at == 0.0 or asyncio.get_running_loop().time() >= self._warm_at
        )

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """Sleep for the next latency draw on the running loop's clock; return the tokens.
        (Hot path: whole_ns is inlined.)"""
        if self._rank == RANK_DRAFT:
            tokens = [self._oracle.draft(prefix, drafts)]
        else:
            tokens = self._oracle.verify(prefix, drafts)
        if self._cost is not None:
            await self._priced(self._cost, prefix, drafts)
            return tokens
        prefill = self.forwards == 0
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._warm_at)  # a prefill running to its end first
        duration = self._stream.next(prefix)
        self.forwards += 1
        self.in_flight = True
        end = -1.0
        try:
            if isinstance(loop, RankedLoop):
                await loop.wake_at(start + duration, self._rank)
            else:
                await wake_at(loop, start + duration, self._rank)
            self.lag_s += round((loop.time() - start - duration) * 1e9) / 1e9
        except BaseException:
            now = loop.time()
            if prefill and now > start:  # a prefill that began runs to its end
                self._warm_at = end = start + duration
            raise
        finally:
            stop = end if end >= 0 else loop.time()
            self.busy_s += round(max(0.0, stop - start) * 1e9) / 1e9
            self.in_flight = False
        return tokens

    async def _priced(self, cost: CostStream, prefix: Sequence[int], drafts: Sequence[int]) -> None:
        """A forward priced by the token-cost model (class docstring)."""
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._free_at)  # a forward still stopping first
        plan = self._cache.plan(prefix, drafts)
        prefill = not self._prompt_cached
        kept = 0 if prefill else self._prompt + plan.reused
        processed = plan.processed + (self._prompt if prefill else 0)
        duration = cost.next(
            processed,
            kept,
            max(0.0, start - self._last_end),
            self._activity.contended(start),
            prefill,
        )
        record = partial(
            SimForward,
            kept,
            processed,
            self._prompt if prefill else 0,
            max(0, len(prefix) - 1 - plan.reused),
        )
        self.forwards += 1
        self.in_flight = True
        self._activity.busy += 1
        end = start + duration
        try:
            if isinstance(loop, RankedLoop):
                await loop.wake_at(end, self._rank)
            else:
                await wake_at(loop, end, self._rank)
            self.lag_s += round((loop.time() - end) * 1e9) / 1e9
            self._complete()
            self.records.append(record(cost.cost.layers, False))
        except BaseException:
            now = loop.time()
            stop = cost.stop(start, duration, now, prefill and cost.cost.prefill == "finish")
            end = stop.end
            if stop.completed:
                self._complete()
                if prefill:
                    self._warm_at = end
            self._free_at = max(self._free_at, end)
            self._activity.wind_down(now, end)
            self.records.append(record(stop.layers, not stop.completed))
            raise
        finally:
            self.busy_s += round(max(0.0, end - start) * 1e9) / 1e9
            self.in_flight = False
            self._activity.busy -= 1
            if end > start:
                self._last_end = end

    def _complete(self) -> None:
        """The forward finished: its cache holds its whole input, the prompt's included."""
        self._cache.complete()
        self._prompt_cached = True


class Link:
    """The network between the drafter's host and one target server: every message
    (a job sent out, a result or rejection sent back) waits one delay draw."""

    def __init__(self, stream: LatencyStream | None) -> None:
        self._stream = stream

    async def send(self) -> None:
        """Deliver one message; instant when the scenario has no communication delay."""
        if self._stream is not None:
            loop = asyncio.get_running_loop()
            await wake_at(loop, loop.time() + self._stream.next(), RANK_DEFAULT)


class ServerSet:
    """The simulated servers of one run, made on demand; server i of a role always draws
    from the stream seeded by (seed, repeat, role, i), so algorithms share latency draws.
    So does the link to target server i. Every server answers from the repeat's oracle.
    With `correlation` > 0 the target servers' draws share a factor per decoding step,
    seeded by (seed, repeat) (see CorrelatedStream); 0 keeps them independent. `origin`: the
    run's start on the loop's clock, from which a server's first forward has sat idle."""

    def __init__(
        self,
        target: ModelLatency,
        drafter: ModelLatency,
        oracle: TokenOracle,
        seed: int,
        repeat: int,
        link: LatencyModel | None = None,
        correlation: float = 0.0,
        prompt_tokens: int = 0,
        origin: float = 0.0,
    ) -> None:
        self._models = {"target": target, "drafter": drafter}
        self._origin = origin
        self._prompt_tokens = prompt_tokens
        self._activity = Activity()
        self._oracle = oracle
        self._link = link
        self._seed = seed
        self._repeat = repeat
        self._correlation = correlation
        self._steps: StepDraws | None = None
        self._servers: dict[tuple[Role, int], SimulatedServer] = {}
        self._links: dict[int, Link] = {}

    def _rng(self, role_key: int, index: int) -> np.random.Generator:
        seq = np.random.SeedSequence(self._seed, spawn_key=(self._repeat, role_key, index))
        return np.random.default_rng(seq)

    def _get(self, role: Role, index: int) -> SimulatedServer:
        key = (role, index)
        if key not in self._servers:
            rng = self._rng(_ROLE_KEY[role], index)
            model = self._models[role]
            stream: LatencyStream | CorrelatedStream | CostStream
            if model.cost is not None:
                stream = CostStream(model.cost, rng)
            elif role == "target" and self._correlation > 0:
                if self._steps is None:
                    self._steps = StepDraws(self._rng(_STEP_KEY, 0))
                stream = CorrelatedStream(self._models[role], rng, self._steps, self._correlation)
            else:
                stream = LatencyStream(self._models[role], rng)
            self._servers[key] = SimulatedServer(
                f"{role}-{index}",
                role,
                stream,
                self._oracle,
                self._prompt_tokens,
                self._activity,
                self._origin,
            )
        return self._servers[key]

    def link(self, index: int = 0) -> Link:
        """The link between the drafter's host and target server `index`."""
        if index not in self._links:
            stream = None
            if self._link is not None:
                model = ModelLatency(self._link, self._link)
                stream = LatencyStream(model, self._rng(_LINK_KEY, index))
            self._links[index] = Link(stream)
        return self._links[index]

    def target(self, index: int = 0) -> SimulatedServer:
        return self._get("target", index)

    @property
    def drafter(self) -> SimulatedServer:
        return self._get("drafter", 0)

    def stats(self) -> tuple[ServerStats, ...]:
        return tuple(server.stats() for _, server in sorted(self._servers.items()))
