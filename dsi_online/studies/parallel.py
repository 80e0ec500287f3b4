"""Independent chunks of work, run in this process, on a local process pool, or as Ray
tasks; results come back as each chunk finishes. Used by the heatmap and the sweep.

On an interrupt or an error the pool is terminated at once, never waited for: the chunks
that have come back are the caller's to keep (see `dsi_online.interrupts`). Workers run
`interrupts.worker_init`, so they leave Ctrl-C to the parent and die with it. A local Ray
instance is shut down, and any of its processes still alive a second later is killed.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import Any, Literal, TypeVar

from dsi_online.errors import BackendError, InvalidParameterError, MissingExtraError
from dsi_online.interrupts import worker_init

Executor = Literal["process", "ray"]
"""Where a grid's chunks run: a local process pool or Ray tasks (the CLI's `--backend`; not
to be confused with the real-model backend of `dsi_online.real`)."""
EXECUTORS: tuple[Executor, ...] = ("process", "ray")

RAY_CONNECT_TIMEOUT_S = 5.0
"""How long a Ray address may take to accept a connection before it counts as unreachable."""
RAY_SHUTDOWN_GRACE_S = 1.0
"""How long a local Ray's processes have to exit after `ray.shutdown` before they are killed."""
RAY_ADDRESS_FORMS = "auto, HOST:PORT or ray://HOST:PORT"

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")

_HOST_PORT = re.compile(
    r"^(?:ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$"
)


def _pool_context(preload: str) -> multiprocessing.context.BaseContext:
    """fork on Linux while this process has one thread (workers start in milliseconds and
    inherit the imports); with other threads alive (a progress bar's), forkserver, whose
    server preloads `preload`; elsewhere the platform's default."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context()
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    return context


def _process_pool(
    func: Callable[[Chunk], Result], chunks: Sequence[Chunk], workers: int, stack: ExitStack
) -> Iterator[Result]:
    """Start the workers and hand them the chunks; `stack` closes the pool when the caller's
    block ends: joined after success, terminated at once after an interrupt or an error."""
    context = _pool_context(getattr(func, "func", func).__module__)
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process with threads; numpy's BLAS keeps one
        # (fork-safe through pthread_atfork) and the workers only run numpy code.
        warnings.filterwarnings(
            "ignore", r".*use of fork\(\) may lead to deadlocks", DeprecationWarning
        )
        pool = context.Pool(processes=min(workers, len(chunks)), initializer=worker_init)

    def close(
        kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if kind is None:
            pool.close()
        else:
            pool.terminate()
        pool.join()
        return False

    stack.push(close)
    return pool.imap_unordered(func, chunks)


def check_ray_address(address: str) -> None:
    """Refuse, in one line, a Ray address that is malformed, needs an extra that is missing,
    or does not accept a connection within RAY_CONNECT_TIMEOUT_S (ray.init would hang)."""
    if address == "auto":
        return
    match = _HOST_PORT.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise InvalidParameterError(
            f"ray address (--ray-address) must be {RAY_ADDRESS_FORMS}; got {address!r}"
        )
    if address.startswith("ray://"):
        try:
            importlib.import_module("grpc")
        except ImportError:
            raise MissingExtraError(
                "ray address (--ray-address) ray://... uses the Ray client, which needs "
                "pip install 'ray[client]'; or give the cluster's HOST:PORT"
            ) from None
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise BackendError(
            f"ray address (--ray-address) {address}: no Ray cluster answers there ({why} "
            f"after at most {RAY_CONNECT_TIMEOUT_S:g} s)"
        ) from None


def _apply(func: Callable[[Chunk], Result], chunk: Chunk) -> Result:
    """A Ray task: `ray.remote` takes plain functions only, not partials."""
    return func(chunk)


def _ray_tasks(
    func: Callable[[Chunk], Result],
    chunks: Sequence[Chunk],
    ray_address: str | None,
    workers: int,
    command: str,
) -> Iterator[Result]:
    """Chunks as Ray tasks: on `ray_address`'s cluster, or a local instance of `workers` CPUs.
    A cluster that cannot be reached or fails mid-run raises BackendError (one line)."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError(
            f"dsi-online {command} --backend ray needs ray: pip install 'dsi-online[ray]'"
        ) from exc
    if ray_address is not None:
        check_ray_address(ray_address)
    started_here = not ray.is_initialized()
    processes = _Below()
    try:
        if started_here:
            _start(ray, ray_address, workers)
        remote = ray.remote(_apply)
        func_ref = ray.put(func)
        pending = [remote.remote(func_ref, chunk) for chunk in chunks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                try:
                    result: Result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                except ray.exceptions.RayError as exc:
                    raise BackendError(
                        f"the Ray cluster failed during the run: {_first_line(exc)}"
                    ) from None
                yield result
    finally:
        if started_here:  # even when interrupted inside ray.init, its processes half started
            processes.seen()
            ray.shutdown()
            processes.end(RAY_SHUTDOWN_GRACE_S)


def _start(ray: Any, ray_address: str | None, workers: int) -> None:
    """Connect to `ray_address`'s cluster, or start a local instance of `workers` CPUs."""
    try:
        ray.init(
            address=ray_address,
            num_cpus=None if ray_address else workers,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {ray_address}" if ray_address else "locally"
        raise BackendError(
            f"cannot start or reach a Ray cluster {where}: {_first_line(exc)}"
        ) from None


def _live_stats() -> dict[int, int]:
    """Each live (not zombie) process's parent, from /proc; empty where there is none."""
    parents = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    """The processes below `root`, from each process's parent (`_live_stats`)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        below = children.get(todo.pop(), [])
        found.update(below)
        todo.extend(below)
    return found


class _Below:
    """The processes started below this one from now on (a local Ray's servers, agents and
    workers), so that none outlives the command: Ray's agents exit only when they next notice
    their raylet gone, and an interrupt inside `ray.init` leaves its servers running."""

    def __init__(self) -> None:
        self._before = _descendants(os.getpid(), _live_stats())
        self._seen: set[int] = set()

    def seen(self) -> set[int]:
        """Those of the new processes seen so far (the live ones added now: an orphan leaves
        the tree) that are still alive, from one reading of /proc."""
        live = _live_stats()
        self._seen |= _descendants(os.getpid(), live) - self._before
        return self._seen & live.keys()

    def end(self, grace_s: float) -> None:
        """Wait up to `grace_s` for them to exit, then stop what is left (so that none starts
        another or leaves an orphan meanwhile) and kill it."""
        deadline = time.monotonic() + grace_s
        while (left := self.seen()) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped: set[int] = set()
        while left := left - stopped:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= left
            left = self.seen()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else exc.__class__.__name__


def run_chunks(
    func: Callable[[Chunk], Result],
    chunks: Sequence[Chunk],
    *,
    workers: int,
    backend: Executor,
    ray_address: str | None,
    stack: ExitStack,
    command: str,
) -> Iterator[Result]:
    """`func(chunk)` for every chunk, results as they complete. `func` must be a module-level
    function (or a functools.partial of one) so that workers can import it."""
    if backend == "ray":
        return _ray_tasks(func, chunks, ray_address, workers, command)
    if workers == 1 or len(chunks) <= 1:
        return (func(chunk) for chunk in chunks)
    return _process_pool(func, chunks, workers, stack)
