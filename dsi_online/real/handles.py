"""The event loop's side of a worker: a process, a thread, or the loop's own thread (inline)
running one `ModelWorker`.

Both take requests without blocking the loop and resolve a future per request when the
worker replies: a thread through `call_soon_threadsafe`, a process through its socket,
which the loop watches (`add_reader`). The loop itself never runs a model. Cancelling a
forward raises the worker's cancel flag; the worker stops at its next decoder layer and still
replies, so every forward has a reply (and a record), cancelled or not.

Nothing waits without a deadline (`Deadlines`): a worker that has not loaded its model in
time, or leaves a request unanswered past its deadline, is stopped (a process is killed) and
every request waiting on it fails with one line naming the worker and what it missed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import os
import pickle
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dsi_online
from dsi_online.errors import DSIOnlineError
from dsi_online.real.frames import Delta, Frames, decode_reply, frame
from dsi_online.real.worker import ModelWorker, Reply, Request, SharedFlag, ThreadFlag, WorkerSpec

Workers = Literal["process", "thread", "inline"]
WORKERS: tuple[Workers, ...] = ("process", "thread", "inline")
READ_BYTES = 1 << 16
GREEDY_TOKENS_PER_CALL = 64
"""A `greedy` request's deadline is `call_s` per this many tokens it decodes (at least one)."""


@dataclass(frozen=True)
class Deadlines:
    """Seconds a worker gets: to load its model and say so (`start_s`), to answer one request
    (`call_s`; a `greedy` decoding gets it per `GREEDY_TOKENS_PER_CALL` tokens), and to stop
    once asked before it is killed (`stop_s`)."""

    start_s: float = 300.0
    call_s: float = 60.0
    stop_s: float = 2.0

    def of(self, request: Request) -> float:
        """The deadline of `request`, in seconds from its submission."""
        if request.kind == "greedy":
            return self.call_s * max(1.0, request.count / GREEDY_TOKENS_PER_CALL)
        return self.call_s


class RealBackendError(DSIOnlineError, RuntimeError):
    """A worker failed: its model did not load, a forward raised, or its process died."""


class _Call:
    """An unanswered request: its future, its deadline's timer, and what to do with a reply
    nobody awaits any more (a cancelled forward's record)."""

    __slots__ = ("future", "orphan", "timer")

    def __init__(
        self,
        future: asyncio.Future[Reply],
        timer: asyncio.TimerHandle,
        orphan: Callable[[Reply], object] | None,
    ) -> None:
        self.future = future
        self.timer = timer
        self.orphan = orphan


class WorkerHandle(abc.ABC):
    """What the servers use of a worker, whichever kind it is (module docstring)."""

    def __init__(self, name: str, spec: WorkerSpec, deadlines: Deadlines) -> None:
        self.name = name
        self.spec = spec
        self.deadlines = deadlines
        self.layers = 0  # decoder layers of its model, known once it has loaded
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Call] = {}
        self._idle: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[Reply] = self._loop.create_future()
        self._stopped: asyncio.Future[Reply] = self._loop.create_future()
        self._last_id = 0
        self._failure: str | None = None  # why the worker is unusable, once it is
        self._start_timer = self._loop.call_later(
            deadlines.start_s,
            self._fail,
            f"its model did not load within {deadlines.start_s:g} s",
        )

    def new_id(self) -> int:
        """A fresh request id (ids grow, so a cancel flag at id n covers every earlier one)."""
        self._last_id = next(self._ids)
        return self._last_id

    def submit(
        self, request: Request, orphan: Callable[[Reply], object] | None = None
    ) -> asyncio.Future[Reply]:
        """Queue `request` behind the worker's earlier requests; its reply's future. If that
        future is cancelled, the reply still comes, and goes to `orphan`."""
        future: asyncio.Future[Reply] = self._loop.create_future()
        if self._failure is not None:
            future.set_exception(RealBackendError(f"{self.name}: {self._failure}"))
            return future
        deadline = self.deadlines.of(request)
        timer = self._loop.call_later(deadline, self._late, request.kind, deadline)
        self._pending[request.id] = _Call(future, timer, orphan)
        self._send(request)
        return future

    async def call(self, request: Request) -> Reply:
        """Submit `request` and wait for its reply."""
        return await self.submit(request)

    @property
    def busy(self) -> bool:
        """Whether a request is still unanswered."""
        return bool(self._pending)

    async def idle(self, timeout_s: float | None = None) -> None:
        """Wait until every request sent has been answered or has failed (each has its
        deadline); `timeout_s` at most if given."""
        if not self._pending:
            return
        if self._idle is None:
            self._idle = self._loop.create_future()
        await asyncio.wait([self._idle], timeout=timeout_s)

    def cancel(self, forward_id: int) -> None:
        """Stop forward `forward_id` (and anything earlier) at its next layer."""
        self._flag_raise(forward_id)

    def _deliver(self, reply: Reply) -> None:
        if reply.kind == "stop":
            if not self._stopped.done():
                self._stopped.set_result(reply)
            return
        if not self._ready.done():
            self._start_timer.cancel()
            self._on_ready(reply)
            return
        call = self._pending.pop(reply.id, None)
        if call is None:
            return
        call.timer.cancel()
        future = call.future
        if not future.done():
            if reply.error is not None:
                future.set_exception(RealBackendError(f"{self.name}: {reply.error}"))
            else:
                future.set_result(reply)
        elif call.orphan is not None and reply.error is None:
            call.orphan(reply)
        if not self._pending:
            self._now_idle()

    def _now_idle(self) -> None:
        if self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    def _on_ready(self, reply: Reply) -> None:
        if reply.error is not None:
            self._fail(f"its model ({self.spec.model_dir}) did not load: {reply.error}")
        else:
            self.layers = reply.layers
            self._ready.set_result(reply)

    def _late(self, kind: str, deadline: float) -> None:
        self._fail(f"no reply to a {kind} within {deadline:g} s: the worker was stopped")

    def _fail(self, message: str) -> None:
        """The worker is unusable (`message` says why, in one line): stop it, and fail every
        request waiting on it and every later one."""
        if self._failure is None:
            self._failure = " ".join(message.split())
            self._abandon()
        self._fail_all(self._failure)

    def _fail_all(self, message: str | None) -> None:
        """End every unanswered request: with an error naming `message`, or (None, at close)
        cancelled."""
        self._start_timer.cancel()
        for call in self._pending.values():
            call.timer.cancel()
        for future in [self._ready, *(call.future for call in self._pending.values())]:
            if future.done():
                continue
            if message is None:
                future.cancel()
            else:
                future.set_exception(RealBackendError(f"{self.name}: {message}"))
        self._pending.clear()
        self._now_idle()

    async def ready(self) -> None:
        """Wait until the worker has loaded its model (at most `deadlines.start_s`)."""
        await self._ready

    @property
    def loaded(self) -> bool:
        """Whether the worker has loaded its model (and answers requests)."""
        return self._ready.done() and not self._ready.cancelled() and self._failure is None

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop whatever runs, stop the worker and release it (waits at most a few seconds)."""

    @abc.abstractmethod
    def _abandon(self) -> None:
        """Stop a worker that failed, without waiting for it."""

    @abc.abstractmethod
    def _send(self, request: Request) -> None: ...

    @abc.abstractmethod
    def _flag_raise(self, forward_id: int) -> None: ...


class ThreadHandle(WorkerHandle):
    """A worker in a thread of this process: forwards hold the GIL while in Python code. A
    thread cannot be killed: one that misses a deadline is abandoned (it is a daemon) and
    its requests fail."""

    def __init__(self, name: str, spec: WorkerSpec, deadlines: Deadlines) -> None:
        super().__init__(name, spec, deadlines)
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

    def _abandon(self) -> None:
        self._flag.raise_to(self._last_id)
        self._queue.put(Request(kind="stop", id=self.new_id()))

    async def close(self) -> None:
        """Ask the thread to stop; wait for it `stop_s` at most, and only if it has loaded
        (one still loading exits once loaded: it reads the stop request then)."""
        if self._thread.is_alive():
            self._abandon()
            if self.loaded:
                await asyncio.to_thread(self._thread.join, self.deadlines.stop_s)
        self._fail_all(None)


class InlineHandle(WorkerHandle):
    """A worker in the loop's own thread: a request runs on the loop's next pass after it is
    submitted, and the loop waits for it. Nothing travels and no process or thread wakes up
    (no transit but one loop pass), and nothing runs beside it: right for non-SI and SI,
    which never run two forwards at once; DSI's servers then take turns, and a forward is
    stopped only if it is cancelled before it begins (the loop that would cancel it later
    is busy running it)."""

    def __init__(self, name: str, spec: WorkerSpec, deadlines: Deadlines) -> None:
        super().__init__(name, spec, deadlines)
        self._flag = ThreadFlag()
        self._worker: ModelWorker | None = None
        try:
            self._worker = ModelWorker(spec, self._flag)
        except Exception as exc:  # reported like a worker's, which the loop raises
            self._deliver(Reply(kind="reset", id=0, error=f"{exc.__class__.__name__}: {exc}"))
            return
        self._deliver(Reply(kind="reset", id=0, layers=self._worker.layer_count))

    def _send(self, request: Request) -> None:
        self._loop.call_soon(self._answer, request)

    def _answer(self, request: Request) -> None:
        if self._worker is None:
            return  # closed or failed meanwhile: its future has ended already
        try:
            reply = self._worker.handle(request)
        except Exception as exc:  # reported to the caller, as a worker's failure is
            reply = Reply(kind=request.kind, id=request.id, error=repr(exc))
        self._deliver(reply)

    def _flag_raise(self, forward_id: int) -> None:
        self._flag.raise_to(forward_id)

    def _abandon(self) -> None:
        self._worker = None

    async def close(self) -> None:
        self._abandon()
        self._fail_all(None)


def _package_root() -> str:
    return str(Path(dsi_online.__file__).resolve().parent.parent)


class ProcessHandle(WorkerHandle):
    """A worker in its own process (`python -m dsi_online.real.serve`), talking over a
    socket pair in binary frames that carry only what changed (`dsi_online.real.frames`),
    read without blocking as they arrive; its cancel flag is a shared memory word. Its torch
    threads are pinned through the environment too, so the process never starts a thread
    per core. It dies
    with this process, even after `kill -9` (a parent-death signal and a watchdog,
    `dsi_online.interrupts.worker_init`)."""

    def __init__(self, name: str, spec: WorkerSpec, deadlines: Deadlines) -> None:
        super().__init__(name, spec, deadlines)
        self._reading = False
        self._killed = False
        parent, child = socket.socketpair()
        flag_fd = -1
        try:
            with tempfile.TemporaryFile() as flag_file:
                flag_fd = os.dup(flag_file.fileno())
            self._flag = SharedFlag(flag_fd)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [_package_root(), *filter(None, [env.get("PYTHONPATH")])]
            )
            for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[variable] = str(spec.threads)
            argv = [str(child.fileno()), str(flag_fd), str(os.getpid())]
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "dsi_online.real.serve", *argv],
                    pass_fds=(child.fileno(), flag_fd),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    process_group=0,  # a terminal's Ctrl-C is the parent's alone
                )
            except OSError as exc:
                raise RealBackendError(f"{name}: its process did not start ({exc})") from None
        except BaseException:
            self._start_timer.cancel()
            parent.close()
            if flag_fd >= 0:
                if hasattr(self, "_flag"):
                    self._flag.close()
                os.close(flag_fd)
            raise
        finally:
            child.close()
        self._sock = parent
        self._frames = Frames()
        self._delta = Delta()
        self._sock.sendall(frame(pickle.dumps(spec)))
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._reading = True

    @property
    def pid(self) -> int:
        return self._process.pid

    def _readable(self) -> None:
        """The socket is readable: one non-blocking read, and every reply it completes (the
        loop calls again while more is waiting)."""
        try:
            data = self._sock.recv(READ_BYTES, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            self._fail(f"its process exited (code {self._exit_code()})")
            return
        try:
            replies = [decode_reply(payload) for payload in self._frames.feed(data)]
        except Exception as exc:  # an unreadable reply: nothing more can be trusted
            self._fail(f"unreadable reply ({exc.__class__.__name__}: {exc})")
            return
        for reply in replies:
            self._deliver(reply)

    def _exit_code(self) -> int | None:
        """The code of a process whose socket has closed (it is exiting: a moment's wait)."""
        try:
            return self._process.wait(timeout=self.deadlines.stop_s)
        except subprocess.TimeoutExpired:
            return None

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _send(self, request: Request) -> None:
        try:
            self._sock.sendall(self._delta.encode(request))
        except OSError as exc:
            self._fail(f"its process is gone ({exc})")

    def _flag_raise(self, forward_id: int) -> None:
        self._flag.raise_to(forward_id)

    def _abandon(self) -> None:
        self._stop_reading()
        if self._process.poll() is None:
            self._process.kill()

    async def close(self) -> None:
        """Stop the worker: one that has loaded is asked (its forward stops at the next
        layer) and gets `stop_s` in all to answer and exit; one still loading, or late, is
        killed."""
        if self.loaded and self._process.poll() is None and self._reading:
            deadline = time.monotonic() + self.deadlines.stop_s
            self._flag.raise_to(self._last_id)
            try:
                self._sock.sendall(self._delta.encode(Request(kind="stop", id=self.new_id())))
                await asyncio.wait_for(asyncio.shield(self._stopped), self.deadlines.stop_s)
            except (OSError, TimeoutError):
                pass
            while self._process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # other workers stop meanwhile
        self.kill()

    def kill(self) -> None:
        """Release the process and its resources now: killed unless it has exited
        (synchronous; safe to repeat)."""
        if self._killed:
            return
        self._killed = True
        self._stop_reading()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._sock.close()
        self._flag.close()
        os.close(self._flag.fd)
        self._fail_all(None)


def start_worker(
    kind: Workers, name: str, spec: WorkerSpec, deadlines: Deadlines | None = None
) -> WorkerHandle:
    """A worker of `kind` loading `spec` (call `ready()` to wait for it); on the running loop."""
    deadlines = deadlines or Deadlines()
    if kind == "process":
        return ProcessHandle(name, spec, deadlines)
    if kind == "inline":
        return InlineHandle(name, spec, deadlines)
    return ThreadHandle(name, spec, deadlines)
