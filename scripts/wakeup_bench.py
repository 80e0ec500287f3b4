"""The floor under a process worker's transit on this host: a round trip between two Python
processes over a socket pair, with nothing but the wake-ups, beside 0, 1 and 2 busy
processes (as a real backend's workers compute beside the loop).

    python scripts/wakeup_bench.py [--trips 3000]

Two figures per load: a blocking round trip (send, then a blocking `recv`: the waiting side
stays runnable for a moment) and one whose parent waits on an asyncio reader, as the real
backend's loop does (`dsi_online.real.handles.ProcessHandle`). The child echoes each
message with a blocking `recv`, as a worker waits for its next request
(`dsi_online.real.serve`). Compare with `scripts/transit_bench.py`, whose round trip runs
our frames, futures and deadlines too.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import time
from multiprocessing.synchronize import Event

MESSAGE = b"x" * 16


def _echo(sock: socket.socket) -> None:
    """The worker's side: echo every message until told to stop."""
    while (data := sock.recv(64)) not in (b"", b"q"):
        sock.sendall(data)


def _busy(stop: Event) -> None:
    """A process that computes until `stop`, as a model's forwards do."""
    count = 0
    while not stop.is_set():
        for _ in range(10_000):
            count += 1


def _blocking(sock: socket.socket, trips: int) -> list[float]:
    """Round trips whose sender waits in a blocking `recv`."""
    times = []
    for _ in range(trips):
        sent = time.perf_counter()
        sock.sendall(MESSAGE)
        sock.recv(64)
        times.append(time.perf_counter() - sent)
    return times


async def _through_loop(sock: socket.socket, trips: int) -> list[float]:
    """Round trips whose sender waits on an asyncio reader, as the real backend's loop."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    waiting: list[asyncio.Future[None]] = []

    def readable() -> None:
        sock.recv(64)
        waiting.pop().set_result(None)

    loop.add_reader(sock.fileno(), readable)
    times = []
    try:
        for _ in range(trips):
            reply = loop.create_future()
            waiting.append(reply)
            sent = time.perf_counter()
            sock.send(MESSAGE)
            await reply
            times.append(time.perf_counter() - sent)
    finally:
        loop.remove_reader(sock.fileno())
        sock.setblocking(True)
    return times


def _line(load: int, name: str, times: list[float]) -> str:
    """One figure's median, mean and 90th percentile, in microseconds."""
    ordered = sorted(times)
    return (
        f"beside {load} busy: {name:9s} round trip median {1e6 * statistics.median(times):6.1f}"
        f" us, mean {1e6 * statistics.fmean(times):6.1f} us,"
        f" p90 {1e6 * ordered[int(0.9 * len(ordered))]:6.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python scripts/wakeup_bench.py")
    parser.add_argument("--trips", type=int, default=3000)
    args = parser.parse_args()
    context = mp.get_context("fork")
    for load in (0, 1, 2):
        stop = context.Event()
        busy = [context.Process(target=_busy, args=(stop,)) for _ in range(load)]
        ours, theirs = socket.socketpair()
        echo = context.Process(target=_echo, args=(theirs,))
        for process in (*busy, echo):
            process.start()
        try:
            time.sleep(0.3)
            blocking = _blocking(ours, args.trips)
            looped = asyncio.run(_through_loop(ours, args.trips))
        finally:
            ours.sendall(b"q")
            stop.set()
            for process in (*busy, echo):
                process.join()
            ours.close()
            theirs.close()
        print(_line(load, "blocking", blocking))
        print(_line(load, "asyncio", looped))


if __name__ == "__main__":
    main()
