"""Batching (docs/model.md, "Many requests under load", `--batch B`): a GPU serves up to B
requests at once, one model at a time (a target or a drafter), and each of its forwards
covers every forward its requests have asked for when it starts.

A forward's latency: with a profile that prices forwards by their tokens, the cost of the
batch's total tokens (at the longest context); otherwise, as the paper's model charges it,
one forward (a TTFT draw when any request in the batch is in its prefill, else a TPOT draw).
A forward asked for while one runs waits for the next (a request that asks again at the
instant its forward ends joins the next, see GATHER_HOPS); a request's forward cancelled before
its batch starts leaves the batch, and one cancelled in flight does not shorten it. The
draws are the GPU's own (seeded by (seed, batching key, GPU)), not the request's: under
batching, requests share latency draws only where they share GPUs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dsi_online.schedulers.seam import Account, InstantChannel, Role, ServerStats
from dsi_online.sim.clock import RANK_DEFAULT, RANK_DRAFT, call_ranked
from dsi_online.sim.cost import CostStream
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.oracle import TokenOracle

_BATCHING_KEY = 0xBA7C
GATHER_HOPS = 6
"""Rounds of ready callbacks a GPU waits, at the same instant, before it starts a batch: a
scheduler asks for its next forward within a few task switches of the last one's end
(DSI: the job's task resumes, launches a new job, whose task starts and asks), so that
request joins the batch that follows instead of the one after it."""


@dataclass(eq=False)
class _Ask:
    """One request's forward waiting for, or riding in, a batch."""

    future: asyncio.Future[None]
    server: BatchedServer
    tokens: int
    context: int
    prefill: bool


@dataclass(eq=False)
class BatchGPU:
    """One GPU of a batching fleet: its role while it holds requests, their pending
    forwards, and its own latency draws."""

    index: int
    models: dict[Role, ModelLatency]
    seed: int
    role: Role | None = None
    holders: int = 0
    pending: list[_Ask] = field(default_factory=list)
    running: bool = False
    _rng: np.random.Generator | None = None
    _cost: CostStream | None = None

    def _draw(self, batch: Sequence[_Ask]) -> float:
        assert self.role is not None
        model = self.models[self.role]
        if self._rng is None:
            key = np.random.SeedSequence(self.seed, spawn_key=(_BATCHING_KEY, self.index))
            self._rng = np.random.default_rng(key)
        if model.cost is not None:
            if self._cost is None:
                self._cost = CostStream(model.cost, self._rng)
            tokens = sum(ask.tokens for ask in batch)
            return self._cost.next(tokens, max(ask.context for ask in batch))
        phase = model.ttft if any(ask.prefill for ask in batch) else model.tpot
        return float(phase.sample(self._rng, 1)[0])

    def ask(self, ask: _Ask) -> None:
        """Queue a forward; it starts with the next batch (at once when the GPU is idle)."""
        self.pending.append(ask)
        if not self.running:
            self.running = True
            self._after_hops(GATHER_HOPS)

    def _after_hops(self, hops: int) -> None:
        """Start the next batch after `hops` rounds of the loop's ready callbacks, at the
        same instant: the requests whose forwards just ended ask again meanwhile."""
        if hops == 0:
            self._start()
        else:
            asyncio.get_running_loop().call_soon(self._after_hops, hops - 1)

    def _start(self) -> None:
        batch = [ask for ask in self.pending if not ask.future.done()]
        self.pending.clear()
        if not batch:
            self.running = False
            return
        loop = asyncio.get_running_loop()
        duration = self._draw(batch)
        rank = RANK_DRAFT if self.role == "drafter" else RANK_DEFAULT
        call_ranked(loop, loop.time() + duration, rank, self._finish, batch, duration)

    def _finish(self, batch: list[_Ask], duration: float) -> None:
        share = duration / len(batch)
        for ask in batch:
            ask.server.busy_s += share
            if not ask.future.done():
                ask.future.set_result(None)
        self._after_hops(GATHER_HOPS)


class BatchedServer(Account):
    """A request's server on a batching GPU: its forwards ride the GPU's batches."""

    def __init__(
        self, name: str, role: Role, gpu: BatchGPU, oracle: TokenOracle, prompt_tokens: int
    ) -> None:
        super().__init__(name, role)
        self._gpu = gpu
        self._oracle = oracle
        self._prompt = prompt_tokens

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """Join the GPU's next batch; return this request's tokens when it ends."""
        if self.role == "drafter":
            tokens = [self._oracle.draft(prefix, drafts)]
        else:
            tokens = self._oracle.verify(prefix, drafts)
        prefill = self.forwards == 0
        processed = len(drafts) + 1 + (self._prompt if prefill else 0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        context = len(prefix) + len(drafts) + 1 + self._prompt
        self._gpu.ask(_Ask(future, self, processed, context, prefill))
        self.forwards += 1
        self.in_flight = True
        try:
            await future
        finally:
            self.in_flight = False
        return tokens


class BatchedPool:
    """One request's servers on batching GPUs: target i on `targets[i]`, the drafter on
    `drafter` (the seam's ServerPool)."""

    def __init__(
        self,
        targets: Sequence[BatchGPU],
        drafter: BatchGPU | None,
        oracle: TokenOracle,
        prompt_tokens: int,
    ) -> None:
        self._servers = [
            BatchedServer(f"target-{i}", "target", gpu, oracle, prompt_tokens)
            for i, gpu in enumerate(targets)
        ]
        self._drafter = (
            None
            if drafter is None
            else BatchedServer("drafter-0", "drafter", drafter, oracle, prompt_tokens)
        )
        self._link = InstantChannel()

    def target(self, index: int = 0) -> BatchedServer:
        return self._servers[index]

    @property
    def drafter(self) -> BatchedServer:
        assert self._drafter is not None
        return self._drafter

    def link(self, index: int = 0) -> InstantChannel:
        return self._link

    def stats(self) -> tuple[ServerStats, ...]:
        servers = [*self._servers, *([] if self._drafter is None else [self._drafter])]
        return tuple(s.stats() for s in servers)
