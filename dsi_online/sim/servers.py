"""Simulated servers: running instances of a model whose forward pass is a timed sleep on
the running loop's clock, behind the seam's `Server` protocol (dsi_online.schedulers.seam)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
    """How many servers of one run are computing now: a forward priced by a token-cost model
    that starts while another computes pays the model's contention factor."""

    __slots__ = ("busy",)

    def __init__(self) -> None:
        self.busy = 0


class SimulatedServer(Account):
    """A model instance whose forward pass is a timed sleep: its first forward is a TTFT
    draw, every later one a TPOT draw, and its tokens come from the oracle. A prefill that
    has begun runs to its end even when cancelled, as on the real backend (docs/real.md): the
    server is warm from that end on, and a forward sent to it before waits for it.

    With a token-cost model (`CostStream`) a forward is priced by what it does instead: the
    server keeps a model of its KV cache, so a forward costs the tokens it processes (its
    first also the prompt's) at its context, slowed by the time the server sat idle before
    it and by another server computing when it starts (`activity`); a cancelled forward
    stops at the next layer boundary, keeping its server busy until then, as the real
    backend's does.

    A drafter's forwards end before target forwards that end at the same instant
    (MODEL.md's same-instant rule); the virtual clock orders its timers by that rank.
    """

    def __init__(
        self,
        name: str,
        role: Role,
        stream: LatencyStream | CorrelatedStream | CostStream,
        oracle: TokenOracle,
        prompt_tokens: int = 0,
        activity: Activity | None = None,
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
            self._activity = Activity() if activity is None else activity
            self._last_end: float | None = None
        else:
            self._cost = None
            self._stream = stream

    @property
    def warm(self) -> bool:
        """Whether the server's prefill has ended (a cancelled one runs to its end)."""
        return self.forwards > 0 and (
            self._warm_at == 0.0 or asyncio.get_running_loop().time() >= self._warm_at
        )

    def _duration(
        self, prefix: Sequence[int], drafts: Sequence[int], prefill: bool, start: float
    ) -> float:
        if self._cost is None:
            return self._stream.next(prefix)
        plan = self._cache.plan(prefix, drafts)
        prompt = self._prompt if prefill else 0
        idle = 0.0 if self._last_end is None else start - self._last_end
        return self._cost.next(
            plan.processed + prompt, plan.context + self._prompt, idle, self._activity.busy > 0
        )

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """Sleep for the next latency draw on the running loop's clock; return the tokens.
        (Hot path: whole_ns is inlined.)"""
        if self._rank == RANK_DRAFT:
            tokens = [self._oracle.draft(prefix, drafts)]
        else:
            tokens = self._oracle.verify(prefix, drafts)
        prefill = self.forwards == 0
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._free_at, self._warm_at)  # a stopping forward first
        duration = self._duration(prefix, drafts, prefill, start)
        self.forwards += 1
        self.in_flight = True
        if self._cost is not None:
            self._activity.busy += 1
        end = -1.0
        try:
            if isinstance(loop, RankedLoop):
                await loop.wake_at(start + duration, self._rank)
            else:
                await wake_at(loop, start + duration, self._rank)
            self.lag_s += round((loop.time() - start - duration) * 1e9) / 1e9
            if self._cost is not None:
                self._cache.complete()
        except BaseException:
            now = loop.time()
            if prefill and now > start:  # a prefill that began runs to its end
                self._warm_at = end = start + duration
                if self._cost is not None:
                    self._cache.complete()
            elif self._cost is not None and now > start:  # stops at the next layer
                self._free_at = end = self._cost.stop_time(start, duration, now)
            raise
        finally:
            stop = end if end >= 0 else loop.time()
            self.busy_s += round(max(0.0, stop - start) * 1e9) / 1e9
            self.in_flight = False
            if self._cost is not None:
                self._activity.busy -= 1
                if stop > start:
                    self._last_end = stop
        return tokens


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
    seeded by (seed, repeat) (see CorrelatedStream); 0 keeps them independent."""

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
    ) -> None:
        self._models = {"target": target, "drafter": drafter}
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
                f"{role}-{index}", role, stream, self._oracle, self._prompt_tokens, self._activity
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
