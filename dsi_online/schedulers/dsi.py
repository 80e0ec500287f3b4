"""DSI: Distributed Speculative Inference (Timor et al. 2024).

The drafter never waits for verification. Verification jobs run on a pool of N target
servers; each job is a snapshot of the committed prefix and the drafts beyond it. The
moment a job finds a rejected draft, every job and draft that depends on it is
cancelled and drafting restarts from the corrected prefix.

One rule differs from a literal reading of MODEL.md ("jobs take effect in launch
order; a later job that finishes first waits"): a finished job takes effect at once,
and the older jobs it supersedes are cancelled. Within one generation a later job's
snapshot extends every older one's, so this commits exactly the same tokens, only
never later; waiting would let a slow older job (a cold server's prefill, a long
latency draw) hold back tokens already verified. docs/model-notes.md gives the details.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dsi_online.errors import require
from dsi_online.schedulers.base import Generation, RunResult
from dsi_online.server import Outcome, Server


@dataclass(eq=False)
class _Job:
    """A verification job: the target's forward over committed[:start] + drafts."""

    start: int
    drafts: tuple[int, ...]
    verdict: list[int]
    launched_at: float
    server: Server | None = None
    server_index: int = 0
    forwards_before: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        """Position of the last draft it verifies (its bonus token lands at end + 1)."""
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

    async def generate(self, gen: Generation) -> RunResult:
        return await _DSIRun(self, gen).run()


class _DSIRun:
    """The state of one DSI generation. Every state change happens in a synchronous
    callback, so the loop never observes a half-updated state."""

    def __init__(self, config: DSI, gen: Generation) -> None:
        self.k = config.lookahead
        self.gen = gen
        self.loop = asyncio.get_running_loop()
        self.drafter = gen.servers.drafter
        self.free: list[Server] = [gen.servers.target(i) for i in range(config.servers)]
        self.index = {id(server): i for i, server in enumerate(self.free)}
        self.drafts: list[int] = []
        self.running: list[_Job] = []
        self.waiting: _Job | None = None
        self.launched_end = 0
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

    def _draft_end(self) -> int:
        return len(self.gen.committed) + len(self.drafts)

    async def _draft(self) -> None:
        """Draft ahead without waiting, up to position S - 1 (the last that needs a draft)."""
        while self._draft_end() < self.gen.tokens - 1:
            await self.drafter.forward()
            self.drafts.append(self.gen.oracle.draft_next(self.gen.committed, self.drafts))
            if self._draft_end() - self.launched_end >= self.k:
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
        """Launch a job over the drafts that exist now; it replaces any job still waiting."""
        committed = self.gen.committed
        job = _Job(
            start=len(committed),
            drafts=tuple(self.drafts),
            verdict=self.gen.oracle.target_verify(committed, self.drafts),
            launched_at=self.loop.time(),
        )
        self.launched_end = job.end
        self.waiting = job
        self._dispatch()

    def _dispatch(self) -> None:
        """Give the waiting job a free server, a warm one first (a cold one pays a prefill)."""
        if self.waiting is None or not self.free:
            return
        server = next((s for s in self.free if s.warm), self.free[0])
        self.free.remove(server)
        job, self.waiting = self.waiting, None
        job.server = server
        job.server_index = self.index[id(server)]
        job.forwards_before = server.forwards
        self.max_wait = max(self.max_wait, self.loop.time() - job.launched_at)
        assert self.tasks is not None
        job.task = self.tasks.create_task(self._verify(job))
        self.running.append(job)

    def _cancel(self, job: _Job) -> None:
        assert job.task is not None and job.server is not None
        job.task.cancel()
        if job.server.forwards > job.forwards_before:  # not when still on its way out
            job.server.tally(Outcome.CANCELLED)
        self.running.remove(job)
        self.free.append(job.server)

    async def _verify(self, job: _Job) -> None:
        """Send the job to its server, run the forward, send the result back, apply it."""
        assert job.server is not None
        link = self.gen.servers.link(job.server_index)
        await link.send()
        await job.server.forward()
        await link.send()
        self._on_verified(job)

    def _on_verified(self, job: _Job) -> None:
        """Commit what the job verified; on a rejection cancel all that depends on it."""
        assert job.server is not None
        self.running.remove(job)
        self.free.append(job.server)
        job.server.tally(Outcome.USEFUL)
        committed = self.gen.committed
        v = len(committed)
        assert (
            job.start <= v <= job.end
            and tuple(committed[job.start :]) == job.drafts[: v - job.start]
        )
        rejected = False
        accepted = 0
        overtook = False  # committed a token where no draft exists yet: the one in flight
        for position in range(v, job.end + 1):
            token = job.verdict[position - job.start]
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
