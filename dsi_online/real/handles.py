"""The event loop's side of a worker: a thread or a process that runs one `ModelWorker`.

Both take requests without blocking the loop and resolve a future per request when the
worker replies: a thread through `call_soon_threadsafe`, a process through its socket,
which the loop watches (`add_reader`). The loop itself never runs a model. Cancelling a
forward raises the worker's cancel flag; the worker stops at its next decoder layer and still
replies, so every forward has a reply (and a record), cancelled or not.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

import dsi_online
from dsi_online.errors import DSIOnlineError
from dsi_online.real.worker import ModelWorker, Reply, Request, SharedFlag, ThreadFlag, WorkerSpec

Workers = Literal["process", "thread"]
WORKERS: tuple[Workers, ...] = ("process", "thread")
STOP_TIMEOUT_S = 10.0


class RealBackendError(DSIOnlineError, RuntimeError):
    """A worker failed: its model did not load, a forward raised, or its process died."""


class WorkerHandle(abc.ABC):
    """What the servers use of a worker, whichever kind it is (module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.layers = 0  # decoder layers of its model, known once it has loaded
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ready: asyncio.Future[Reply] = self._loop.create_future()
        self._stopped: asyncio.Future[Reply] = self._loop.create_future()
        self._last_id = 0

    def new_id(self) -> int:
        """A fresh request id (ids grow, so a cancel flag at id n covers every earlier one)."""
        self._last_id = next(self._ids)
        return self._last_id

    def submit(self, request: Request) -> asyncio.Future[Reply]:
        """Queue `request` behind the worker's earlier requests; its reply's future."""
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[request.id] = future
        self._send(request)
        return future

    async def call(self, request: Request) -> Reply:
        """Submit `request` and wait for its reply."""
        return await self.submit(request)

    @property
    def busy(self) -> bool:
        """Whether a request is still unanswered."""
        return bool(self._pending)

    def cancel(self, forward_id: int) -> None:
        """Stop forward `forward_id` (and anything earlier) at its next layer."""
        self._flag_raise(forward_id)

    def _deliver(self, reply: Reply) -> None:
        if reply.kind == "stop":
            if not self._stopped.done():
                self._stopped.set_result(reply)
            return
        if not self._ready.done():
            self._on_ready(reply)
            return
        future = self._pending.pop(reply.id, None)
        if future is None or future.done():
            return
        if reply.error is not None:
            future.set_exception(RealBackendError(f"{self.name}: {reply.error}"))
        else:
            future.set_result(reply)

    def _on_ready(self, reply: Reply) -> None:
        if reply.error is not None:
            self._ready.set_exception(
                RealBackendError(f"{self.name}: the model did not load: {reply.error}")
            )
        else:
            self.layers = reply.layers
            self._ready.set_result(reply)

    def _fail_all(self, message: str | None) -> None:
        """End every unanswered request: with an error naming `message`, or (None, at close)
        cancelled."""
        for future in [self._ready, *self._pending.values()]:
            if future.done():
                continue
            if message is None:
                future.cancel()
            else:
                future.set_exception(RealBackendError(f"{self.name}: {message}"))
        self._pending.clear()

    async def ready(self) -> None:
        """Wait until the worker has loaded its model."""
        await self._ready

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop whatever runs, stop the worker and release it (waits at most a few seconds)."""

    @abc.abstractmethod
    def _send(self, request: Request) -> None: ...

    @abc.abstractmethod
    def _flag_raise(self, forward_id: int) -> None: ...


class ThreadHandle(WorkerHandle):
    """A worker in a thread of this process: forwards hold the GIL while in Python code."""

    def __init__(self, name: str, spec: WorkerSpec) -> None:
        super().__init__(name)
        self._flag = ThreadFlag()
        self._queue: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._main, args=(spec,), name=f"dsi-online-{name}", daemon=True
        )
        self._thread.start()

    def _post(self, reply: Reply) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._deliver, reply)

    def _main(self, spec: WorkerSpec) -> None:
        try:
            worker = ModelWorker(spec, self._flag)
        except Exception as exc:  # reported to the loop, which raises it
            self._post(Reply(kind="reset", id=0, error=f"{exc.__class__.__name__}: {exc}"))
            return
        self._post(Reply(kind="reset", id=0, layers=worker.layer_count))
        while True:
            request = self._queue.get()
            if request.kind == "stop":
                self._post(Reply(kind="stop", id=request.id))
                return
            try:
                reply = worker.handle(request)
            except Exception as exc:  # reported to the loop, which raises it
                reply = Reply(kind=request.kind, id=request.id, error=repr(exc))
            self._post(reply)

    def _send(self, request: Request) -> None:
        self._queue.put(request)

    def _flag_raise(self, forward_id: int) -> None:
        self._flag.raise_to(forward_id)

    async def close(self) -> None:
        if self._thread.is_alive():
            self._flag.raise_to(self._last_id)
            self._queue.put(Request(kind="stop", id=self.new_id()))
            await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)
        self._fail_all(None)


def _package_root() -> str:
    return str(Path(dsi_online.__file__).resolve().parent.parent)


class ProcessHandle(WorkerHandle):
    """A worker in its own process (`python -m dsi_online.real.serve`), talking over a
    socket pair; its cancel flag is a shared memory word. Its torch threads are pinned
    through the environment too, so the process never starts a thread per core."""

    def __init__(self, name: str, spec: WorkerSpec) -> None:
        super().__init__(name)
        parent, child = socket.socketpair()
        with tempfile.TemporaryFile() as flag_file:
            flag_fd = os.dup(flag_file.fileno())
        self._flag = SharedFlag(flag_fd)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_package_root(), *filter(None, [env.get("PYTHONPATH")])]
        )
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[variable] = str(spec.threads)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "dsi_online.real.serve", str(child.fileno()), str(flag_fd)],
                pass_fds=(child.fileno(), flag_fd),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._conn.send(spec)
        self._loop.add_reader(self._conn.fileno(), self._readable)
        self._reading = True
        self._killed = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                self._deliver(self._conn.recv())
        except (EOFError, OSError):
            self._stop_reading()
            self._fail_all(f"its process exited (code {self._process.poll()})")
        except Exception as exc:  # an unreadable reply: nothing more can be trusted
            self._stop_reading()
            self._fail_all(f"unreadable reply ({exc.__class__.__name__}: {exc})")

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._conn.fileno())
            self._reading = False

    def _send(self, request: Request) -> None:
        try:
            self._conn.send(request)
        except OSError as exc:
            self._pending.pop(request.id).set_exception(
                RealBackendError(f"{self.name}: its process is gone ({exc})")
            )

    def _flag_raise(self, forward_id: int) -> None:
        self._flag.raise_to(forward_id)

    async def close(self) -> None:
        if self._process.poll() is None and self._reading:
            self._flag.raise_to(self._last_id)
            try:
                self._conn.send(Request(kind="stop", id=self.new_id()))
                await asyncio.wait_for(asyncio.shield(self._stopped), STOP_TIMEOUT_S)
            except (OSError, TimeoutError):
                pass
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # other workers stop meanwhile
        self.kill()

    def kill(self) -> None:
        """Release the process and its resources now (synchronous; safe to repeat)."""
        if self._killed:
            return
        self._killed = True
        self._stop_reading()
        if self._process.poll() is None:
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S if self._stopped.done() else 0.5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._conn.close()
        self._flag.close()
        os.close(self._flag.fd)
        self._fail_all(None)


def start_worker(kind: Workers, name: str, spec: WorkerSpec) -> WorkerHandle:
    """A worker of `kind` loading `spec` (call `ready()` to wait for it); on the running loop."""
    return ProcessHandle(name, spec) if kind == "process" else ThreadHandle(name, spec)
