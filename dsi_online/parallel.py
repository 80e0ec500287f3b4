"""Independent chunks of work, run in this process, on a local process pool, or as Ray
tasks; results come back as each chunk finishes. Used by the heatmap and the sweep."""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from typing import Any, Literal, TypeVar

from dsi_online.errors import MissingExtraError

Backend = Literal["process", "ray"]
BACKENDS: tuple[Backend, ...] = ("process", "ray")

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops handing out work and keeps what it has."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    """Start the workers and hand them every chunk now; `stack` shuts the pool down."""
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=_pool_context(getattr(func, "func", func).__module__),
        initializer=_ignore_sigint,
    )
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process with threads; numpy's BLAS keeps one
        # (fork-safe through pthread_atfork) and the workers only run numpy code.
        warnings.filterwarnings(
            "ignore", r".*use of fork\(\) may lead to deadlocks", DeprecationWarning
        )
        pending: set[Future[Result]] = {pool.submit(func, chunk) for chunk in chunks}
    return _as_completed(pending)


def _as_completed(pending: set[Future[Result]]) -> Iterator[Result]:
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            yield future.result()


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
    """Chunks as Ray tasks: on `ray_address`'s cluster, or a local instance of `workers` CPUs."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError(
            f"dsi-online {command} --backend ray needs ray: pip install 'dsi-online[ray]'"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        local_cpus = None if ray_address else workers
        ray.init(
            address=ray_address, num_cpus=local_cpus, include_dashboard=False, log_to_driver=False
        )
    try:
        remote = ray.remote(_apply)
        func_ref = ray.put(func)
        pending = [remote.remote(func_ref, chunk) for chunk in chunks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                result: Result = ray.get(ref)
                yield result
    finally:
        if started_here:
            ray.shutdown()


def run_chunks(
    func: Callable[[Chunk], Result],
    chunks: Sequence[Chunk],
    *,
    workers: int,
    backend: Backend,
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
