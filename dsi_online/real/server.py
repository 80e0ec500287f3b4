"""Real servers: the `Server` seam over a model worker, and the pool one generation uses.

A `RealServer`'s forward hands its worker the whole context (the prompt, which the scheduler
never sees, + the committed prefix + the drafts, read when the forward starts; a process
worker is sent only what changed) and awaits the reply off the loop. Every forward leaves a
`ForwardRecord`, cancelled or not: the data that explains where a real run's time went.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from dsi_online.errors import InvalidParameterError
from dsi_online.real.handles import WorkerHandle
from dsi_online.real.worker import Reply, Request
from dsi_online.schedulers.seam import Account, InstantChannel, Role, ServerStats


@dataclass(frozen=True)
class ForwardRecord:
    """One forward pass of a real server. Token counts: `context` = prompt + prefix + drafts;
    the cache held `kept` of them, the model ran over `processed` = context - kept, of which
    `prompt` were prompt tokens (a prefill) and `catchup` tokens between the prompt and the
    forward's own (the last committed token and the drafts) that the cache lacked. Times:
    seconds from the run's start on the loop's clock (`time.monotonic()`, shared with worker
    processes): submitted, started and ended (by the worker), delivered (to the loop);
    `cancel_s` when the scheduler cancelled it (None if it did not)."""

    server: str
    role: Role
    context: int
    kept: int
    processed: int
    prompt: int
    catchup: int
    layers: int
    submitted_s: float
    started_s: float
    ended_s: float
    delivered_s: float
    cpu_s: float
    stopped: bool  # the worker stopped it between layers (its cache was cropped back)
    cancel_s: float | None = None

    @property
    def compute_s(self) -> float:
        """Seconds the worker spent on it (a stopped forward: until it stopped)."""
        return self.ended_s - self.started_s

    @property
    def queued_s(self) -> float:
        """Seconds from submission to the worker starting it: the request's transfer, plus
        the wait behind the server's previous forward when that was still winding down."""
        return self.started_s - self.submitted_s

    @property
    def delivery_s(self) -> float:
        """Seconds from the worker's end to the loop handling the reply (transfer + wake-up)."""
        return self.delivered_s - self.ended_s

    @property
    def cancelled(self) -> bool:
        """Whether the scheduler cancelled it (it may still have run to its end)."""
        return self.cancel_s is not None

    @property
    def tail_s(self) -> float:
        """Seconds the server stayed busy after the cancellation (0 unless cancelled)."""
        if self.cancel_s is None:
            return 0.0
        return max(0.0, self.ended_s - max(self.cancel_s, self.started_s))


def _verified(predictions: Sequence[int], drafts: Sequence[int]) -> list[int]:
    """The target's tokens up to and including the first that differs from its draft."""
    out: list[int] = []
    for i, token in enumerate(predictions):
        out.append(token)
        if i == len(drafts) or token != drafts[i]:
            break
    return out


class RealServer(Account):
    """A server whose forward is a real model forward on its worker (module docstring)."""

    def __init__(
        self, name: str, role: Role, worker: WorkerHandle, prompt: tuple[int, ...], origin: float
    ) -> None:
        super().__init__(name, role)
        self._worker = worker
        self._prompt = prompt
        self._origin = origin
        self._cached = 0
        self._cancelled_at: dict[int, float] = {}
        self.records: list[ForwardRecord] = []

    @property
    def warm(self) -> bool:
        """Whether the worker's cache holds the prompt, as its last reply said (a cancelled
        prefill that the worker runs to its end warms the server when it ends)."""
        return self._cached >= len(self._prompt)

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        loop = asyncio.get_running_loop()
        worker = self._worker
        request = Request(
            kind="forward",
            id=worker.new_id(),
            context=(*self._prompt, *prefix, *drafts),
            first=len(self._prompt) + len(prefix),
            prompt=len(self._prompt),
        )
        self.forwards += 1
        self.in_flight = True
        submitted = loop.time()
        # a cancelled forward's reply still comes, and is recorded then (`_orphan`)
        future = worker.submit(request, lambda reply: self._record(request, submitted, reply))
        try:
            reply = await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                worker.cancel(request.id)
                self._cancelled_at[request.id] = loop.time()
            elif future.exception() is None:  # answered, then cancelled before it resumed
                self._record(request, submitted, future.result())
            raise
        finally:
            self.in_flight = False
        self._record(request, submitted, reply)
        self.lag_s += loop.time() - reply.ended
        if self.role == "drafter":
            return [reply.tokens[-1]]
        return _verified(reply.tokens, drafts)

    def _record(self, request: Request, submitted: float, reply: Reply) -> None:
        """Record a forward once its reply is in the hands of the code awaiting it (or, for
        a cancelled forward, of the loop)."""
        cancel = self._cancelled_at.pop(reply.id, None)
        self._cached = reply.cached
        self.busy_s += reply.ended - reply.started
        prompt = len(self._prompt)
        origin = self._origin
        self.records.append(
            ForwardRecord(
                server=self.name,
                role=self.role,
                context=len(request.context),
                kept=reply.kept,
                processed=reply.processed,
                prompt=max(0, prompt - reply.kept),
                catchup=max(0, request.first - 1 - max(reply.kept, prompt)),
                layers=reply.layers,
                submitted_s=submitted - origin,
                started_s=reply.started - origin,
                ended_s=reply.ended - origin,
                delivered_s=asyncio.get_running_loop().time() - origin,
                cpu_s=reply.cpu_s,
                stopped=reply.cancelled,
                cancel_s=None if cancel is None else cancel - origin,
            )
        )

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until the worker has answered every forward sent (cancelled ones included),
        or failed (each request has its deadline); `timeout_s` at most if given."""
        await self._worker.idle(timeout_s)


class RealPool:
    """The real servers of one generation over the backend's workers: target server i runs
    on target worker i, made on demand; links are instant (one machine)."""

    def __init__(
        self,
        targets: Sequence[WorkerHandle],
        drafter: WorkerHandle,
        prompt: tuple[int, ...],
        origin: float,
    ) -> None:
        self._workers = tuple(targets)
        self._prompt = prompt
        self._origin = origin
        self._targets: dict[int, RealServer] = {}
        self._drafter = RealServer("drafter-0", "drafter", drafter, prompt, origin)
        self._link = InstantChannel()

    def target(self, index: int = 0) -> RealServer:
        if not 0 <= index < len(self._workers):
            raise InvalidParameterError(
                f"target server {index} requested; the real backend runs {len(self._workers)} "
                f"target server(s) (servers= must be >= the scheduler's)"
            )
        if index not in self._targets:
            self._targets[index] = RealServer(
                f"target-{index}", "target", self._workers[index], self._prompt, self._origin
            )
        return self._targets[index]

    @property
    def drafter(self) -> RealServer:
        return self._drafter

    def link(self, index: int = 0) -> InstantChannel:
        return self._link

    def made(self) -> tuple[RealServer, ...]:
        """Every server made so far: the drafter, then the targets by index."""
        return (self._drafter, *(self._targets[i] for i in sorted(self._targets)))

    def stats(self) -> tuple[ServerStats, ...]:
        return tuple(server.stats() for server in self.made())

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every worker has answered every forward of this generation (or
        failed); `timeout_s` at most if given."""
        await asyncio.gather(*(server.drain(timeout_s) for server in self.made()))
