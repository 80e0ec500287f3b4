"""Many requests on a fixed fleet of GPUs (docs/model.md, "Many requests under load").

Requests arrive at their times, wait first come, first served for their allotment, and are
then served by the unchanged single-request scheduler on servers of their own: request i is
repeat i of the scenario (`dsi_online.sim.runner.play`), so its coins and latency draws,
seeded by (seed, i, role, server), are the same under every policy, at every rate and with
every fleet (common random numbers), and with one request in the system every figure
equals `run`'s. Every policy's requests share one event loop, on either clock. With a batch
size above 1 a request runs on shared GPUs instead (`dsi_online.sim.batching`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from dsi_online.errors import require
from dsi_online.schedulers.base import Generation, RunResult
from dsi_online.schedulers.registry import REGISTRY
from dsi_online.schedulers.seam import Role
from dsi_online.schedulers.tokens import digest
from dsi_online.sim.batching import BatchedPool, BatchGPU
from dsi_online.sim.clock import RANK_DEFAULT, Clock, VirtualEventLoop, check_clock, wake_at
from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.policy import Policy
from dsi_online.sim.runner import check_no_leaks, oracle_for, play
from dsi_online.sim.scenario import Scenario, check_int
from dsi_online.sim.workload import Allotment, Request, Workload

MAX_GPUS = 1_000_000
"""Most GPUs of a fleet: the bound only keeps the numbers sane."""
MAX_BATCH = 4_096
"""Largest batch size."""
Progress = Callable[[int], None]


@dataclass(frozen=True)
class LoadScenario:
    """A load run but its rate: the single-request scenario (latencies, acceptance,
    lookahead, seed, DSI's default servers), the requests, the fleet and the warm-up."""

    scenario: Scenario
    workload: Workload
    gpus: int
    warmup: int = 0
    batch: int = 1
    """Requests a GPU serves at once (1: no batching; see dsi_online.sim.batching)."""

    def __post_init__(self) -> None:
        check_int(self.gpus, "GPUs", "--gpus", maximum=MAX_GPUS)
        check_int(self.batch, "batch size", "--batch", maximum=MAX_BATCH)
        require(
            self.batch == 1
            or (self.scenario.link is None and self.scenario.latency_correlation == 0),
            "batch size (--batch) above 1 cannot be combined with --comm-ms or "
            "--latency-correlation (a batch's forward is one draw of its GPU)",
        )
        require(
            0 <= self.warmup <= len(self.workload.requests) - 2,
            f"warm-up requests (--warmup) must be within [0, "
            f"{len(self.workload.requests) - 2}]; got {self.warmup}",
        )


MIN_RATE = 1e-4
"""Lowest arrival rate, requests per second (one every 2.8 hours): slower arrivals put
deadlines so far out that a float no longer resolves the clocks' nanoseconds."""
MAX_RATE = 1e6
"""Highest arrival rate, requests per second."""


def check_rate(rate: float) -> None:
    """InvalidParameterError unless `rate` is within [MIN_RATE, MAX_RATE] per second."""
    require(
        isinstance(rate, int | float) and MIN_RATE <= rate <= MAX_RATE,
        f"rate (--rate) must be a number of requests per second within [{MIN_RATE:g}, "
        f"{MAX_RATE:g}]; got {rate}",
    )


@dataclass(frozen=True)
class RequestRecord:
    """What became of one request: its arrival and admission (seconds from the run's
    start), its single-request run on its allotment, and what its servers did."""

    index: int
    arrival_s: float
    admitted_s: float
    service_s: float
    first_token_after_s: float
    tokens: int
    allotment: Allotment
    forwards: int
    wasted_forwards: int
    busy_s: float
    lossless: bool

    @property
    def wait_s(self) -> float:
        """Queue wait: arrival to admission."""
        return self.admitted_s - self.arrival_s

    @property
    def latency_s(self) -> float:
        """Arrival to last token: the wait, then the run on the allotment (`service_s`)."""
        return self.wait_s + self.service_s

    @property
    def ttft_s(self) -> float:
        """Arrival to first token."""
        return self.wait_s + self.first_token_after_s

    @property
    def finish_s(self) -> float:
        return self.admitted_s + self.service_s

    @property
    def reserved_s(self) -> float:
        """GPU-seconds held: the service time times the GPUs of the allotment."""
        return self.service_s * self.allotment.gpus


@dataclass(frozen=True)
class PolicyRun:
    """One policy's requests at one rate: a record per request (in index order), and the
    time integrals of the number of requests in the system and in the queue."""

    policy: Policy
    rate: float
    gpus: int
    batch: int
    records: tuple[RequestRecord, ...]
    in_system_s: float
    in_queue_s: float

    @property
    def horizon_s(self) -> float:
        """From the first arrival to the last finish."""
        return max(r.finish_s for r in self.records) - min(r.arrival_s for r in self.records)


@dataclass(frozen=True)
class LoadResult:
    """Every policy's run at one rate on one clock; a wall-clock result carries `ideal`, the
    same requests replayed on the virtual clock."""

    rate: float
    clock: Clock
    runs: dict[str, PolicyRun]
    ideal: LoadResult | None = None


class Census:
    """Requests in the system and in the queue, integrated over time (for Little's law)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = loop.time()
        self.in_system = 0
        self.in_queue = 0
        self.system_s = 0.0
        self.queue_s = 0.0

    def change(self, system: int, queue: int) -> None:
        """Integrate up to now, then add `system` and `queue` to the counts."""
        now = self._loop.time()
        self.system_s += self.in_system * (now - self._last)
        self.queue_s += self.in_queue * (now - self._last)
        self._last = now
        self.in_system += system
        self.in_queue += queue


@dataclass(frozen=True)
class Grant:
    """An admitted request's allotment and, when GPUs batch, the GPUs it runs on."""

    allotment: Allotment
    targets: tuple[BatchGPU, ...] = ()
    drafter: BatchGPU | None = None


class Fleet:
    """G GPUs handed out first come, first served: the request at the head of the queue is
    admitted as soon as its policy finds an allotment that fits in the free GPUs; no
    request overtakes an earlier one. With batching a GPU is free while it holds fewer than
    B requests, and serves one model at a time: a request's servers go to GPUs of their
    role with room (the least loaded first), then to empty ones."""

    def __init__(self, load: LoadScenario, policy: Policy) -> None:
        self.free = load.gpus
        self._policy = policy
        self._batch = load.batch
        models: dict[Role, ModelLatency] = {
            "target": load.scenario.target,
            "drafter": load.scenario.drafter,
        }
        self._gpus = (
            [BatchGPU(i, models, load.scenario.seed) for i in range(load.gpus)]
            if load.batch > 1
            else []
        )
        self._queue: deque[tuple[int, asyncio.Future[Grant]]] = deque()
        self.census = Census(asyncio.get_running_loop())

    async def admit(self, index: int) -> Grant:
        """Join the queue and wait for an allotment (request `index` has arrived now)."""
        self.census.change(1, 1)
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        entry = (index, future)
        self._queue.append(entry)
        self._grant()
        try:
            return await future
        except asyncio.CancelledError:
            if entry in self._queue:  # cancelled while waiting: leave the queue
                self._queue.remove(entry)
                self.census.change(-1, -1)
                self._grant()
            elif future.done() and not future.cancelled():
                self.release(future.result())
            raise

    def release(self, grant: Grant) -> None:
        """A request finished: its GPUs are free for the queue."""
        if self._gpus:
            for gpu in (*grant.targets, *([grant.drafter] if grant.drafter else [])):
                gpu.holders -= 1
                if gpu.holders == 0:
                    gpu.role = None
            self.free = sum(gpu.holders < self._batch for gpu in self._gpus)
        else:
            self.free += grant.allotment.gpus
        self.census.change(-1, 0)
        self._grant()

    def _pick(self, role: Role, count: int, taken: set[int]) -> list[BatchGPU]:
        room = [
            g
            for g in self._gpus
            if g.holders < self._batch and g.role in (None, role) and g.index not in taken
        ]
        return sorted(room, key=lambda g: (g.role is None, g.holders, g.index))[:count]

    def _place(self, allotment: Allotment) -> Grant | None:
        """The GPUs of a batching fleet for `allotment`, or None if they are not free."""
        drafters = [] if allotment.algorithm == "nonsi" else self._pick("drafter", 1, set())
        targets = self._pick("target", allotment.servers, {g.index for g in drafters})
        if len(targets) + len(drafters) < allotment.gpus:
            return None
        for gpu, role in [*((g, "target") for g in targets), *((g, "drafter") for g in drafters)]:
            gpu.holders += 1
            gpu.role = role  # type: ignore[assignment]
        self.free = sum(gpu.holders < self._batch for gpu in self._gpus)
        return Grant(allotment, tuple(targets), drafters[0] if drafters else None)

    def _grant(self) -> None:
        while self._queue:
            index, future = self._queue[0]
            choice = self._policy.choose(self.free, len(self._queue) - 1, index)
            if choice is None:
                return
            if self._gpus:
                grant = self._place(choice)
                if grant is None:
                    return
            else:
                self.free -= choice.gpus
                grant = Grant(choice)
            self.census.change(0, -1)
            self._queue.popleft()
            future.set_result(grant)


class _Scenarios:
    """Each request's single-request scenario (its length, prompt and allotment's servers),
    made once per distinct combination."""

    def __init__(self, base: Scenario) -> None:
        self._base = base
        self._made: dict[tuple[int, int, int], Scenario] = {}

    def get(self, request: Request, servers: int) -> Scenario:
        key = (request.tokens, request.prompt_tokens, servers)
        if key not in self._made:
            self._made[key] = replace(
                self._base, tokens=key[0], prompt_tokens=key[1], servers=key[2], repeats=1
            )
        return self._made[key]


async def _run(grant: Grant, scenario: Scenario, index: int, lookahead: int) -> RunResult:
    """The request's single-request run: on servers of its own, or on its batching GPUs."""
    allotment = grant.allotment
    scheduler = REGISTRY[allotment.algorithm].scheduler(lookahead, allotment.servers)
    if not grant.targets:
        return await play(scheduler, scenario, index)
    pool = BatchedPool(
        grant.targets, grant.drafter, oracle_for(scenario, index), scenario.prompt_tokens
    )
    return await scheduler.generate(Generation(tokens=scenario.tokens, servers=pool))


async def _serve(
    request: Request,
    arrival_s: float,
    origin: float,
    fleet: Fleet,
    scenarios: _Scenarios,
    lookahead: int,
) -> RequestRecord:
    """One request: arrive, wait for an allotment, run its scheduler, free the GPUs."""
    loop = asyncio.get_running_loop()
    await wake_at(loop, origin + arrival_s, RANK_DEFAULT)
    grant = await fleet.admit(request.index)
    admitted = loop.time() - origin
    scenario = scenarios.get(request, grant.allotment.servers)
    try:
        result = await _run(grant, scenario, request.index, lookahead)
    finally:
        fleet.release(grant)
    truth = oracle_for(scenario, request.index).truth
    return RequestRecord(
        index=request.index,
        arrival_s=arrival_s,
        admitted_s=admitted,
        service_s=result.latency_s,
        first_token_after_s=result.first_token_s,
        tokens=result.tokens,
        allotment=grant.allotment,
        forwards=result.forwards,
        wasted_forwards=result.wasted_forwards,
        busy_s=result.busy_s,
        lossless=result.output_sha256 == digest(truth),
    )


async def play_policy(
    load: LoadScenario, rate: float, policy: Policy, progress: Progress | None = None
) -> PolicyRun:
    """Every request of `load` at `rate` under `policy`, on the running loop."""
    require(
        policy.min_gpus <= load.gpus,
        f"policy (--policy) {policy.name} holds {policy.min_gpus} GPUs per request and the "
        f"fleet (--gpus) has {load.gpus}",
    )
    loop = asyncio.get_running_loop()
    origin = loop.time()
    fleet = Fleet(load, policy)
    scenarios = _Scenarios(load.scenario)
    arrivals = load.workload.arrivals(rate)

    async def one(request: Request) -> RequestRecord:
        record = await _serve(
            request, arrivals[request.index], origin, fleet, scenarios, load.scenario.lookahead
        )
        if progress is not None:
            progress(1)
        return record

    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(one(r)) for r in load.workload.requests]
    fleet.census.change(0, 0)
    return PolicyRun(
        policy=policy,
        rate=rate,
        gpus=load.gpus,
        batch=load.batch,
        records=tuple(t.result() for t in running),
        in_system_s=fleet.census.system_s,
        in_queue_s=fleet.census.queue_s,
    )


async def play_load(
    load: LoadScenario,
    rate: float,
    policies: Sequence[Policy],
    progress: Progress | None = None,
) -> LoadResult:
    """Every policy at `rate`, concurrently on the running loop (they share its noise)."""
    check_rate(rate)
    clock: Clock = "virtual" if isinstance(asyncio.get_running_loop(), VirtualEventLoop) else "wall"
    async with asyncio.TaskGroup() as tasks:
        running = {
            p.name: tasks.create_task(play_policy(load, rate, p, progress)) for p in policies
        }
    check_no_leaks()
    return LoadResult(rate, clock, {name: task.result() for name, task in running.items()})


def run_load(
    load: LoadScenario,
    rate: float,
    policies: Sequence[Policy],
    clock: Clock = "virtual",
    progress: Progress | None = None,
) -> LoadResult:
    """Play `policies` on `load` at `rate` on `clock`; `progress(1)` after each request. On
    the wall clock the same requests are replayed on the virtual clock (`ideal`), so the
    wall clock's overhead is measured, as `run --clock wall` does; an adaptive policy's
    replay is pinned to the allotments it chose on the wall clock (`Policy.pin`)."""
    check_clock(clock)
    check_rate(rate)
    require(len(policies) > 0, "policy (--policy) needs at least one policy")
    result = run_on_clock(lambda: play_load(load, rate, policies, progress), clock)
    if clock == "virtual":
        return result
    replayed = [
        p.pin([r.allotment for r in result.runs[p.name].records]) if p.adaptive else p
        for p in policies
    ]
    ideal = run_on_clock(lambda: play_load(load, rate, replayed), "virtual")
    return replace(result, ideal=ideal)
