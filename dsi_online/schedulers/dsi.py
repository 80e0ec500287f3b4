"""DSI: Distributed Speculative Inference (Timor et al. 2024).

The drafter never waits for verification. Verification jobs run on a pool of N target
servers; each job is a snapshot of the committed prefix and the drafts beyond it. The
moment a job finds a rejected draft, every job and draft that depends on it is
cancelled and drafting restarts from the corrected prefix.

Jobs launch as docs/model.md says: at the start and after a rejection; after every k-th draft
counted from the moment drafting (re)started; when the last draft ever needed (position
S - 1) is made; and whenever a job commits tokens. A finished job takes effect at once
(docs/model-notes.md says why): a later snapshot of the same generation extends every
older one, so the older jobs it supersedes are cancelled, not waited for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dsi_online.errors import require
from dsi_online.schedulers.base import Generation, RunResult
from dsi_online.schedulers.seam import Outcome, Server, whole_ns
from dsi_online.schedulers.tokens import Prefix


@dataclass(eq=False)
class _Job:
    """A verification job: the target's forward over committed[:start] + drafts."""

    start: int
    drafts: tuple[int, ...]
    launched_at: float
    server: Server | None = None
    server_index: int = 0
    forwards_before: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        """0-based position of the token after its last draft (its bonus token)."""
        return self.start + len(self.drafts)


class DSI:
    """Distributed speculative inference with lookahead k on `servers` target servers."""

    name = "dsi"

    def __init__(self, lookahead: int, servers: int) -> None:
        require(
            isinstance(lookahead, int) and lookahead >= 1,
            f"lookahead (--lookahead/-k) must be an integer >= 1; got {lookahead}",
        )
        require(
            isinstance(servers, int) and servers >= 1,
            f"target servers (--servers/-n) must be an integer >= 1; got {servers}",
        )
        self.lookahead = lookahead
        self.servers = servers

    @property
    def target_servers(self) -> int:
        """Its pool of target servers (the SP degree)."""
        return self.servers

    async def generate(self, gen: Generation) -> RunResult:
        return await _DSIRun(self, gen).run()


class _DSIRun:
    """The state of one DSI generation. Every state change happens in a synchronous
    callback, so the loop never observes a half-updated state."""

    def __init__(self, config: DSI, gen: Generation) -> None:
        self.k = config.lookahead
        self.pool_size = config.servers
        self.gen = gen
        self.loop = asyncio.get_running_loop()
        self.drafter = gen.servers.drafter
        self.idle: list[Server] = []  # servers made so far and free now
        self.index: dict[int, int] = {}  # id(server) -> its index in the pool
        self.drafts: list[int] = []
        self.running: list[_Job] = []
        self.waiting: _Job | None = None
        self.max_wait = 0.0
        self.drafting: asyncio.Task[None] | None = None
        self.tasks: asyncio.TaskGroup | None = None
        self.finished: asyncio.Future[None] = self.loop.create_future()

    async def run(self) -> RunResult:
        self.gen.begin()
        async with asyncio.TaskGroup() as tasks:
            self.tasks = tasks
            self._launch()
            self._restart_drafting()
            await self.finished
        return self.gen.result(DSI.name, self.max_wait)

    # -- drafting ---------------------------------------------------------------

    async def _draft(self) -> None:
        """Draft ahead without waiting, up to position S - 1 (the last that needs a draft);
        launch a job on the grid of every k-th draft since this (re)start, and at the last."""
        last = self.gen.tokens - 1
        committed, drafts, drafter, k = self.gen.committed, self.drafts, self.drafter, self.k
        drafted = 0
        while len(committed) + len(drafts) < last:
            (token,) = await drafter.forward(committed, drafts)
            drafts.append(token)
            drafted += 1
            if drafted % k == 0 or len(committed) + len(drafts) == last:
                self._launch()

    def _stop_drafting(self) -> None:
        if self.drafting is not None and not self.drafting.done():
            self.drafting.cancel()
            if self.drafter.in_flight:
                self.drafter.tally(Outcome.CANCELLED)
        self.drafting = None

    def _restart_drafting(self) -> None:
        self._stop_drafting()
        assert self.tasks is not None
        self.drafting = self.tasks.create_task(self._draft())

    def _discard_drafts(self, first: int = 0) -> None:
        self.drafter.tally(Outcome.CANCELLED, len(self.drafts) - first)
        del self.drafts[first:]

    # -- verification jobs ------------------------------------------------------

    def _launch(self) -> None:
        """Launch a job over the drafts that exist now. It replaces the job still waiting, if
        any, and inherits its launch time: the frontier has been waiting since then."""
        waiting = self.waiting
        self.waiting = _Job(
            start=len(self.gen.committed),
            drafts=tuple(self.drafts),
            launched_at=self.loop.time() if waiting is None else waiting.launched_at,
        )
        self._dispatch()

    def _take_server(self) -> Server | None:
        """A free target server: a warm one first, then a new one (made on demand), then a
        cold one (a cold server pays a prefill)."""
        for i, server in enumerate(self.idle):
            if server.warm:
                return self.idle.pop(i)
        made = len(self.index)
        if made < self.pool_size:
            server = self.gen.servers.target(made)
            self.index[id(server)] = made
            return server
        return self.idle.pop(0) if self.idle else None

    def _dispatch(self) -> None:
        """Give the waiting job a free server, if there is one."""
        if self.waiting is None:
            return
        server = self._take_server()
        if server is None:
            return
        job, self.waiting = self.waiting, None
        job.server = server
        job.server_index = self.index[id(server)]
        job.forwards_before = server.forwards
        self.max_wait = max(self.max_wait, whole_ns(self.loop.time() - job.launched_at))
        assert self.tasks is not None
        job.task = self.tasks.create_task(self._verify(job))
        self.running.append(job)

    def _cancel(self, job: _Job) -> None:
        assert job.task is not None and job.server is not None
        job.task.cancel()
        if job.server.forwards > job.forwards_before:  # not when still on its way out
            job.server.tally(Outcome.CANCELLED)
        self.running.remove(job)
        self.idle.append(job.server)

    async def _verify(self, job: _Job) -> None:
        """Send the job to its server, run the forward, send the result back, apply it."""
        assert job.server is not None
        link = self.gen.servers.link(job.server_index)
        await link.send()
        verified = await job.server.forward(Prefix(self.gen.committed, job.start), job.drafts)
        await link.send()
        self._on_verified(job, verified)

    def _on_verified(self, job: _Job, verified: list[int]) -> None:
        """Commit what the job verified; on a rejection cancel all that depends on it."""
        assert job.server is not None
        self.running.remove(job)
        self.idle.append(job.server)
        job.server.tally(Outcome.USEFUL)
        committed = self.gen.committed
        v = len(committed)
        assert job.start <= v <= job.end
        assert tuple(committed[job.start :]) == job.drafts[: v - job.start]
        rejected = False
        accepted = 0
        overtook = False  # committed a token where no draft exists yet: the one in flight
        for token in verified[v - job.start :]:
            self.gen.commit(token)
            if accepted == len(self.drafts):
                overtook = True
                break
            if self.drafts[accepted] != token:
                rejected = True
                break
            accepted += 1
        self.drafter.tally(Outcome.USEFUL, accepted)
        if self.gen.done:
            self._finish(first_leftover=accepted)
            return
        if rejected:
            self.drafter.tally(Outcome.REJECTED)
            self._discard_drafts(first=accepted + 1)
            self.drafts.clear()
            for other in list(self.running):
                self._cancel(other)
            self._restart_drafting()
        else:
            del self.drafts[:accepted]
            new_v = len(committed)
            for other in [j for j in self.running if j.end < new_v]:
                self._cancel(other)
            if overtook:
                self._restart_drafting()
        self._launch()

    def _finish(self, first_leftover: int) -> None:
        """S tokens are committed: cancel all work still running; it counts as wasted."""
        for job in list(self.running):
            self._cancel(job)
        self.waiting = None
        self._stop_drafting()
        self._discard_drafts(first=first_leftover)
        self.finished.set_result(None)
