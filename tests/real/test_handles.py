"""dsi_online.real.handles: a worker in a thread or in its own process, as the event loop
sees it, on the test pair's target: ready, forwards answered with the target's greedy
tokens, a cancelled forward stopped between layers and still answered, errors raised on the
loop, and nothing left running after close."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from dsi_online.real.handles import (
    ProcessHandle,
    RealBackendError,
    WorkerHandle,
    Workers,
    start_worker,
)
from dsi_online.real.worker import Request, WorkerSpec

pytestmark = pytest.mark.torch

T = TypeVar("T")
CONTEXT = tuple(b"def main():\n    return")
STOPPABLE = "stop"
"""The workers' prefill policy here: a cancelled prefill stops like any forward."""


def with_worker(kind: Workers, spec: WorkerSpec, body: Callable[[WorkerHandle], Awaitable[T]]) -> T:
    """Start a worker of `kind` on a fresh loop, run `body` on it, close it."""

    async def main() -> T:
        handle = start_worker(kind, "target-0", spec)
        try:
            return await body(handle)
        finally:
            await handle.close()

    return asyncio.run(main())


def forward(handle: WorkerHandle, context: tuple[int, ...]) -> Request:
    return Request(kind="forward", id=handle.new_id(), context=context, first=len(context))


async def fresh(handle: WorkerHandle) -> None:
    """Wait for the model, then empty the cache (the next forward is a prefill)."""
    await handle.ready()
    await handle.call(Request(kind="reset", id=handle.new_id()))


async def answers_with_the_targets_greedy_tokens(handle: WorkerHandle) -> None:
    await fresh(handle)
    assert handle.layers > 0 and not handle.busy
    greedy = await handle.call(Request(kind="greedy", id=handle.new_id(), context=CONTEXT, count=3))
    first = handle.submit(forward(handle, CONTEXT))
    assert handle.busy
    reply = await first
    assert reply.tokens == greedy.tokens[:1] and not reply.cancelled
    assert reply.processed == len(CONTEXT) and reply.cached == len(CONTEXT)
    # the next forward keeps the cache: it runs over the one new token only
    reply = await handle.call(forward(handle, (*CONTEXT, greedy.tokens[0])))
    assert reply.tokens == greedy.tokens[1:2] and reply.processed == 1
    assert not handle.busy


async def stops_a_cancelled_forward_and_still_answers(handle: WorkerHandle) -> None:
    """Cancelled as soon as it is submitted (a prefill, which the `stop` policy lets stop):
    it stops, its reply says so, the cache is as it was, and the same forward again gives
    the target's token."""
    await fresh(handle)
    request = forward(handle, CONTEXT)
    pending = handle.submit(request)
    handle.cancel(request.id)
    stopped = await pending
    assert stopped.cancelled and stopped.tokens == () and stopped.layers < handle.layers
    assert stopped.cached == 0  # cropped back to what it held: nothing
    again = await handle.call(forward(handle, CONTEXT))
    assert not again.cancelled and len(again.tokens) == 1


async def reports_a_forward_that_raises_and_goes_on(handle: WorkerHandle) -> None:
    await fresh(handle)
    with pytest.raises(RealBackendError, match=r"^target-0: "):
        await handle.call(forward(handle, (10**9,)))  # no such token in the vocabulary
    reply = await handle.call(forward(handle, CONTEXT))
    assert len(reply.tokens) == 1


BEHAVIOURS = [
    answers_with_the_targets_greedy_tokens,
    stops_a_cancelled_forward_and_still_answers,
    reports_a_forward_that_raises_and_goes_on,
]


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.__name__)
def test_a_thread_worker(
    behaviour: Callable[[WorkerHandle], Awaitable[None]], test_pair: Path
) -> None:
    with_worker("thread", WorkerSpec(str(test_pair / "target"), prefill=STOPPABLE), behaviour)


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_process_worker_then_its_death(test_pair: Path) -> None:
    """The thread worker's behaviours on one process worker (it starts in seconds); then the
    process is killed: its pending request fails, and close reaps it."""

    async def body(handle: WorkerHandle) -> None:
        assert isinstance(handle, ProcessHandle)
        for behaviour in BEHAVIOURS:
            await behaviour(handle)
        pending = handle.submit(
            Request(kind="greedy", id=handle.new_id(), context=CONTEXT, count=200)
        )
        os.kill(handle.pid, signal.SIGKILL)
        with pytest.raises(RealBackendError, match="target-0: its process exited"):
            await pending
        await handle.close()
        assert handle._process.poll() == -signal.SIGKILL  # reaped, not left a zombie

    with_worker("process", WorkerSpec(str(test_pair / "target"), prefill=STOPPABLE), body)


@pytest.mark.parametrize(
    "kind",
    ["thread", pytest.param("process", marks=[pytest.mark.subprocess, pytest.mark.slow])],
)
def test_a_model_that_does_not_load_is_an_error_on_the_loop(kind: Workers, tmp_path: Path) -> None:
    async def body(handle: WorkerHandle) -> None:
        with pytest.raises(
            RealBackendError, match=r"target-0: its model \(.*no-model\) did not load"
        ):
            await handle.ready()

    with_worker(kind, WorkerSpec(str(tmp_path / "no-model")), body)


def test_close_ends_the_thread_and_its_unanswered_requests(test_pair: Path) -> None:
    async def main() -> None:
        handle = start_worker("thread", "target-0", WorkerSpec(str(test_pair / "target")))
        await handle.ready()
        (thread,) = [t for t in threading.enumerate() if t.name == "dsi-online-target-0"]
        long = Request(kind="greedy", id=handle.new_id(), context=CONTEXT, count=500)
        pending = handle.submit(long)
        await handle.close()
        assert not thread.is_alive() and not handle.busy
        # stopped at its next layer (the worker's reply is an error) or cancelled by close
        assert pending.cancelled() or isinstance(pending.exception(), RealBackendError)

    asyncio.run(main())
