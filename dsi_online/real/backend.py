"""The real backend: model workers for N target servers and a drafter, and real runs of the
unchanged schedulers on them.

    with RealBackend(pair / "target", pair / "drafter", servers=2) as backend:
        result = play_real(backend, DSI(lookahead=5, servers=2), prompt, tokens=64)
        assert result.lossless

Runs happen on a plain asyncio event loop (the backend's own `asyncio.Runner`), not on the
simulator's wall clock: that loop spins before timer deadlines and takes timer slack out of
its clock, while a real run has no timers to meet (links are instant) and must not take a
core from the workers; a plain loop sleeps in epoll until a worker answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from dsi_online.errors import InvalidParameterError, require
from dsi_online.interrupts import run_interruptible
from dsi_online.measure.torch_runtime import is_cuda, resolve_device
from dsi_online.real.handles import WORKERS, Deadlines, WorkerHandle, Workers, start_worker
from dsi_online.real.server import ForwardRecord, RealPool
from dsi_online.real.worker import DTYPES, PREFILLS, Prefill, Request, WorkerSpec
from dsi_online.schedulers import Generation, RunResult, Scheduler
from dsi_online.schedulers.seam import Role
from dsi_online.sim.runner import check_no_leaks

T = TypeVar("T")
ATTENTIONS = ("sdpa", "eager")
WARMUP_ROUNDS = 3
CONFIG_KEYS = ("model_type", "num_hidden_layers")
"""Keys a checkpoint's config.json must hold for the backend (a transformers causal LM)."""
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""A checkpoint's weights: one of these files (transformers' names)."""


def check_vocabularies(folder: Path) -> None:
    """InvalidParameterError, before any model loads, unless the pair's target and drafter
    share a vocabulary (their config.json's vocab_size): a drafter's token ids must be the
    target's, or no draft can be verified."""
    sizes = {}
    for role in ("target", "drafter"):
        config = folder / role / "config.json"
        try:
            sizes[role] = json.loads(config.read_text(encoding="utf-8"))["vocab_size"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterError(
                f"pair (--pair) {folder}: cannot read the vocabulary size from {config} "
                f"({exc.__class__.__name__})"
            ) from None
    require(
        sizes["target"] == sizes["drafter"],
        f"pair (--pair) {folder}: the drafter's vocabulary ({sizes['drafter']} tokens) differs "
        f"from the target's ({sizes['target']}): target and drafter must share a tokenizer",
    )


def check_checkpoint(folder: str | Path, what: str) -> dict[str, Any]:
    """The config of the checkpoint in `folder`; InvalidParameterError, in one line naming
    `what` (target or drafter) and the folder, when it lacks its config, a config key the
    backend reads, or its weights (weights that are present but do not load fail at the
    worker's start, before any work)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    require(
        config_file.is_file(),
        f"{what} folder {folder} holds no transformers checkpoint (config.json)",
    )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(
            f"{what} checkpoint {config_file} is unreadable: {exc}"
        ) from None
    require(isinstance(config, dict), f"{what} checkpoint {config_file} is not a JSON object")
    missing = [key for key in CONFIG_KEYS if key not in config]
    require(not missing, f"{what} checkpoint {config_file} lacks {', '.join(missing)}")
    layers = config["num_hidden_layers"]
    require(
        isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1,
        f"{what} checkpoint {config_file}: num_hidden_layers must be an integer >= 1; "
        f"got {layers!r}",
    )
    require(
        any((folder / name).is_file() for name in WEIGHTS),
        f"{what} folder {folder} holds no weights ({' or '.join(WEIGHTS[::2])})",
    )
    checked: dict[str, Any] = config
    return checked


async def warm_up(worker: WorkerHandle) -> None:
    """A few untimed forwards of every shape a run uses (a prefill, one-token decodes,
    a multi-token verification): a fresh worker's first forwards are several times
    slower (allocations, kernel selection)."""
    for _ in range(WARMUP_ROUNDS):
        await worker.call(Request(kind="greedy", id=worker.new_id(), context=(0,) * 16, count=4))
        context = tuple(range(24))
        await worker.call(
            Request(kind="forward", id=worker.new_id(), context=context[:16], first=16)
        )
        await worker.call(Request(kind="forward", id=worker.new_id(), context=context, first=17))
        await worker.call(Request(kind="reset", id=worker.new_id()))


@dataclass(frozen=True)
class ServerRecords:
    """One server's forwards in a run, in the order it ran them."""

    name: str
    role: Role
    records: tuple[ForwardRecord, ...]


@dataclass(frozen=True)
class Breakdown:
    """Where one server role's time went in a run: forwards, tokens the model ran over (of
    them prompt and catch-up tokens), and seconds summed over forwards: computing, queued
    (transfer out, and waits behind a forward still winding down), delivered (transfer back
    and loop wake-up), and busy after a cancel (tails)."""

    forwards: int
    cancelled: int
    processed: int
    prompt: int
    catchup: int
    compute_s: float
    queued_s: float
    delivery_s: float
    tail_s: float

    @classmethod
    def of(cls, records: Sequence[ForwardRecord]) -> Breakdown:
        return cls(
            forwards=len(records),
            cancelled=sum(r.cancelled for r in records),
            processed=sum(r.processed for r in records),
            prompt=sum(r.prompt for r in records),
            catchup=sum(r.catchup for r in records),
            compute_s=sum(r.compute_s for r in records),
            queued_s=sum(r.queued_s for r in records),
            delivery_s=sum(r.delivery_s for r in records),
            tail_s=sum(r.tail_s for r in records),
        )


@dataclass(frozen=True)
class RealRunResult:
    """A scheduler's run on real models: its `RunResult`, the output and the target's own
    greedy decoding of the same prompt (the reference), and every forward's record."""

    run: RunResult
    prompt: tuple[int, ...]
    output: tuple[int, ...]
    reference: tuple[int, ...]
    servers: tuple[ServerRecords, ...]

    @property
    def lossless(self) -> bool:
        """Whether the output equals the target's greedy decoding, token for token."""
        return self.output == self.reference

    @property
    def records(self) -> tuple[ForwardRecord, ...]:
        """Every forward of every server, by submission time."""
        every = [r for server in self.servers for r in server.records]
        return tuple(sorted(every, key=lambda r: r.submitted_s))

    def breakdown(self, role: Role) -> Breakdown:
        """Where the time of the servers of `role` went."""
        return Breakdown.of([r for r in self.records if r.role == role])


@dataclass(frozen=True)
class BackendSettings:
    """How a backend runs its models (the provenance of its figures)."""

    target_dir: str
    drafter_dir: str
    servers: int
    workers: Workers
    threads: int
    dtype: str
    attention: str
    interruptible: bool
    prefill: Prefill
    device: str = "cpu"

    @property
    def devices(self) -> tuple[str, ...]:
        """Each target server's device, then the drafter's (`server_devices`)."""
        return server_devices(self.device, self.servers)


def server_devices(device: str, servers: int) -> tuple[str, ...]:
    """The device of each target server, then the drafter's, from `device`: one device
    (`cpu`, `cuda`, `cuda:N`) for all, or a comma-separated list of servers + 1 (target 0,
    target 1, ..., then the drafter). Checked before any worker starts: a CUDA device torch
    does not see is refused in one line."""
    names = [name.strip() for name in str(device).split(",")]
    require(
        len(names) in (1, servers + 1),
        f"device (--device) must name one device, or {servers + 1} (one per target server, "
        f"then the drafter's); got {len(names)}: {device!r}",
    )
    for name in names:
        require(
            name == "cpu" or is_cuda(name),
            f"device (--device) must be cpu, cuda or cuda:N (or a list of them); got {name!r}",
        )
    for name in sorted(set(names)):
        if name != "cpu":
            resolve_device(name)
    return tuple(names * (servers + 1)) if len(names) == 1 else tuple(names)


def _check(settings: BackendSettings) -> None:
    require(
        isinstance(settings.servers, int) and settings.servers >= 1,
        f"target servers (servers) must be an integer >= 1; got {settings.servers}",
    )
    require(
        settings.workers in WORKERS,
        f"workers must be one of {', '.join(WORKERS)}; got {settings.workers!r}",
    )
    require(
        isinstance(settings.threads, int) and settings.threads >= 1,
        f"torch threads per worker (threads) must be an integer >= 1; got {settings.threads}",
    )
    require(
        settings.dtype in DTYPES,
        f"dtype must be one of {', '.join(DTYPES)}; got {settings.dtype!r}",
    )
    require(
        settings.attention in ATTENTIONS,
        f"attention must be one of {', '.join(ATTENTIONS)}; got {settings.attention!r}",
    )
    require(
        settings.prefill in PREFILLS,
        f"prefill must be one of {', '.join(PREFILLS)}; got {settings.prefill!r}",
    )
    for what, folder in (("target", settings.target_dir), ("drafter", settings.drafter_dir)):
        check_checkpoint(folder, what)
    server_devices(settings.device, settings.servers)


@dataclass
class RealBackend:
    """N target workers and one drafter worker, each a process (default: DSI runs its drafter
    and targets at once, and threads share one GIL; docs/real.md) or a thread, with its own
    model copy, KV cache and
    `threads` torch threads. A context manager: workers start on entry and are stopped on
    exit, on an exception or Ctrl-C too (those started before a failed start as well).
    `deadlines` bound every wait on a worker (`Deadlines`)."""

    target_dir: str | Path
    drafter_dir: str | Path
    servers: int = 1
    workers: Workers = "process"
    threads: int = 1
    dtype: str = "float32"
    attention: str = "sdpa"
    interruptible: bool = True
    prefill: Prefill = "finish"
    device: str = "cpu"
    deadlines: Deadlines = field(default_factory=Deadlines)
    settings: BackendSettings = field(init=False)
    _runner: asyncio.Runner | None = field(init=False, default=None)
    _targets: list[WorkerHandle] = field(init=False, default_factory=list)
    _drafter: WorkerHandle | None = field(init=False, default=None)
    _references: dict[tuple[tuple[int, ...], int], tuple[int, ...]] = field(
        init=False, default_factory=dict
    )
    _threads: ExitStack = field(init=False, default_factory=ExitStack)
    _devices: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.settings = BackendSettings(
            target_dir=str(self.target_dir),
            drafter_dir=str(self.drafter_dir),
            servers=self.servers,
            workers=self.workers,
            threads=self.threads,
            dtype=self.dtype,
            attention=self.attention,
            interruptible=self.interruptible,
            prefill=self.prefill,
            device=",".join(name.strip() for name in str(self.device).split(",")),
        )
        _check(self.settings)
        self._devices = server_devices(self.settings.device, self.settings.servers)

    def _spec(self, folder: str, device: str) -> WorkerSpec:
        s = self.settings
        return WorkerSpec(
            folder, s.dtype, s.attention, s.threads, s.interruptible, s.prefill, device
        )

    def __enter__(self) -> RealBackend:
        if self.settings.workers in ("thread", "inline"):  # workers here set torch's threads
            from dsi_online.measure.torch_runtime import torch_threads

            self._threads.enter_context(torch_threads())
        self._runner = asyncio.Runner()
        try:
            run_interruptible(self._runner, self._start())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def _start(self) -> None:
        s = self.settings
        *targets, drafter = self._devices
        for i, device in enumerate(targets):  # each kept as it starts: a failed start stops all
            spec = self._spec(s.target_dir, device)
            self._targets.append(start_worker(s.workers, f"target-{i}", spec, self.deadlines))
        spec = self._spec(s.drafter_dir, drafter)
        self._drafter = start_worker(s.workers, "drafter-0", spec, self.deadlines)
        await asyncio.gather(*(h.ready() for h in self._handles()))
        await asyncio.gather(*(warm_up(h) for h in self._handles()))

    def _handles(self) -> list[WorkerHandle]:
        return [*self._targets, *([] if self._drafter is None else [self._drafter])]

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.run(self._close())
        finally:
            for handle in self._handles():
                kill = getattr(handle, "kill", None)
                if kill is not None:
                    kill()
            runner.close()
            self._targets, self._drafter = [], None
            self._threads.close()

    async def _close(self) -> None:
        await asyncio.gather(*(h.close() for h in self._handles()), return_exceptions=True)

    def _run(self, coroutine: Any) -> Any:
        if self._runner is None:
            coroutine.close()
            raise RuntimeError("the real backend is not running: use it as a context manager")
        return run_interruptible(self._runner, coroutine)

    def play(self, scheduler: Scheduler, prompt: Sequence[int], tokens: int) -> RealRunResult:
        """Run `scheduler` for `tokens` tokens after `prompt` on the real servers, from cold
        caches; check its output against the target's greedy decoding."""
        prompt = tuple(int(t) for t in prompt)
        require(len(prompt) >= 1, "prompt must hold at least one token")
        require(
            isinstance(tokens, int) and tokens >= 1,
            f"tokens (-S) must be an integer >= 1; got {tokens}",
        )
        wanted = scheduler.target_servers
        require(
            wanted <= self.settings.servers,
            f"the scheduler wants {wanted} target servers; the backend runs "
            f"{self.settings.servers} (servers=)",
        )
        result: RealRunResult = self._run(self._play(scheduler, prompt, tokens))
        return result

    def with_pool(self, prompt: Sequence[int], work: Callable[[RealPool], Awaitable[T]]) -> T:
        """Run `work` on a fresh pool of real servers for `prompt` (cold caches), on the
        backend's loop; every forward it sent is answered before this returns."""
        result: T = self._run(self._with_pool(tuple(int(t) for t in prompt), work))
        return result

    async def _with_pool(
        self, prompt: tuple[int, ...], work: Callable[[RealPool], Awaitable[T]]
    ) -> T:
        assert self._drafter is not None
        await self._reset()
        pool = RealPool(self._targets, self._drafter, prompt, asyncio.get_running_loop().time())
        try:
            return await work(pool)
        finally:
            await self._drain(pool)

    async def _drain(self, pool: RealPool) -> None:
        """Wait for the pool's forwards to wind down (the workers end idle); after a
        cancellation (Ctrl-C), `stop_s` at most: closing the backend stops the rest."""
        task = asyncio.current_task()
        stopping = task is not None and task.cancelling() > 0
        await pool.drain(self.deadlines.stop_s if stopping else None)

    def layers(self, role: Role) -> int:
        """Decoder layers of `role`'s model (from its checkpoint's config)."""
        folder = self.settings.target_dir if role == "target" else self.settings.drafter_dir
        return int(check_checkpoint(folder, role)["num_hidden_layers"])

    def predictions(self, role: Role, context: Sequence[int], first: int) -> tuple[int, ...]:
        """The greedy tokens `role`'s model predicts for positions `first`..len(context) of
        `context`, from one forward over it (on target worker 0 or the drafter)."""
        result: tuple[int, ...] = self._run(self._predictions(role, tuple(context), first))
        return result

    async def _predictions(
        self, role: Role, context: tuple[int, ...], first: int
    ) -> tuple[int, ...]:
        worker = self._targets[0] if role == "target" else self._drafter
        assert worker is not None
        await worker.call(Request(kind="reset", id=worker.new_id()))
        reply = await worker.call(
            Request(kind="forward", id=worker.new_id(), context=context, first=first)
        )
        await worker.call(Request(kind="reset", id=worker.new_id()))
        return reply.tokens

    @property
    def reference_device(self) -> str:
        """Where the reference decoding runs: target server 0's device (in the backend's
        dtype). Lossless means equal to the target's greedy decoding there: reduced
        precision can break greedy ties differently on another device or dtype."""
        return self._devices[0]

    def reference(self, prompt: Sequence[int], tokens: int) -> tuple[int, ...]:
        """The target's greedy decoding of `tokens` tokens after `prompt` (one forward per
        token after a prompt prefill, like `generate(do_sample=False)`), on target server
        0's device and in the backend's dtype; cached."""
        result: tuple[int, ...] = self._run(self._reference(tuple(prompt), tokens))
        return result

    async def _reference(self, prompt: tuple[int, ...], tokens: int) -> tuple[int, ...]:
        key = (prompt, tokens)
        if key not in self._references:
            worker = self._targets[0]
            reply = await worker.call(
                Request(kind="greedy", id=worker.new_id(), context=prompt, count=tokens)
            )
            self._references[key] = reply.tokens
        return self._references[key]

    async def _reset(self) -> None:
        await asyncio.gather(
            *(h.call(Request(kind="reset", id=h.new_id())) for h in self._handles())
        )

    async def _play(
        self, scheduler: Scheduler, prompt: tuple[int, ...], tokens: int
    ) -> RealRunResult:
        assert self._drafter is not None
        await self._reset()
        loop = asyncio.get_running_loop()
        pool = RealPool(self._targets, self._drafter, prompt, origin=loop.time())
        gen = Generation(tokens=tokens, servers=pool)
        try:
            run = await scheduler.generate(gen)
        finally:
            await self._drain(pool)
        check_no_leaks()
        reference = await self._reference(prompt, tokens)
        return RealRunResult(
            run=run,
            prompt=prompt,
            output=tuple(gen.committed),
            reference=reference,
            servers=tuple(ServerRecords(s.name, s.role, tuple(s.records)) for s in pool.made()),
        )


def play_real(
    backend: RealBackend, scheduler: Scheduler, prompt: Sequence[int], tokens: int
) -> RealRunResult:
    """Run `scheduler` on the real backend (see `RealBackend.play`)."""
    return backend.play(scheduler, prompt, tokens)
