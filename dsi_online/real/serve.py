"""A worker process: `python -m dsi_online.real.serve SOCKET_FD FLAG_FD PARENT_PID`.

It loads the model its spec names (the first message, the only pickled one), says so, then
answers requests in binary frames (`dsi_online.real.frames`) until `stop` or until the
parent goes away.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from collections import deque

from dsi_online.interrupts import worker_init
from dsi_online.real.frames import Delta, Frames, encode_reply
from dsi_online.real.worker import ModelWorker, Reply, SharedFlag, WorkerSpec

READ_BYTES = 1 << 16


class _Inbox:
    """The parent's frames, read as they come (blocking: the worker has nothing else to do)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames = Frames()
        self._ready: deque[bytes] = deque()

    def next(self) -> bytes | None:
        """The next frame's payload; None once the parent has closed its end."""
        while not self._ready:
            data = self._sock.recv(READ_BYTES)
            if not data:
                return None
            self._ready.extend(self._frames.feed(data))
        return self._ready.popleft()


def _serve(sock: socket.socket, flag_fd: int) -> None:
    inbox = _Inbox(sock)
    spec_payload = inbox.next()
    if spec_payload is None:
        return
    spec: WorkerSpec = pickle.loads(spec_payload)
    try:
        worker = ModelWorker(spec, SharedFlag(flag_fd))
    except Exception as exc:  # report any load failure to the parent, which raises it
        sock.sendall(encode_reply(Reply("reset", 0, error=f"{exc.__class__.__name__}: {exc}")))
        return
    sock.sendall(encode_reply(Reply("reset", 0, layers=worker.layer_count)))
    delta = Delta()
    while (payload := inbox.next()) is not None:
        request = delta.decode(payload)
        if request.kind == "stop":
            sock.sendall(encode_reply(Reply("stop", request.id)))
            return
        try:
            reply = worker.handle(request)
        except Exception as exc:  # a forward that fails is reported, not fatal to the loop
            reply = Reply(request.kind, request.id, error=repr(exc))
        sock.sendall(encode_reply(reply))


def main(argv: list[str]) -> None:
    """Serve the socket `argv[0]` with the cancel flag mapped from the file `argv[1]`, then
    exit at once (an interpreter's orderly teardown with torch loaded takes a second or
    more, and there is nothing to save). Ctrl-C is the parent's (pid `argv[2]`), which stops
    its workers; the worker dies with it, even after `kill -9`."""
    worker_init(int(argv[2]))
    sock = socket.socket(fileno=int(argv[0]))
    try:
        _serve(sock, int(argv[1]))
    except OSError:
        pass  # the parent went away: nobody is left to answer
    finally:
        sock.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
