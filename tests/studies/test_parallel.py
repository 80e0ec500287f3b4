"""dsi_online.studies.parallel: chunks of work in this process or on a local process pool;
the Ray backend's addresses and failures (a stand-in for ray where no cluster is needed)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import pytest

from dsi_online.errors import BackendError, InvalidParameterError
from dsi_online.studies.parallel import check_ray_address, run_chunks
from tests.helpers import SMALL_HEATMAP, one_error

R = TypeVar("R")


def square(x: int) -> tuple[int, int]:
    """The chunk's square and the process that computed it."""
    return x * x, os.getpid()


def scaled(x: int, factor: int) -> tuple[int, int]:
    return x * factor, os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"chunk {x} failed")
    return x


def on_processes(func: Callable[[int], R], chunks: int, workers: int) -> list[R]:
    """run_chunks on the process backend, results in the order they came back."""
    with ExitStack() as stack:
        return list(
            run_chunks(
                func,
                list(range(chunks)),
                workers=workers,
                backend="process",
                ray_address=None,
                stack=stack,
                command="test",
            )
        )


@pytest.mark.subprocess
def test_a_pool_returns_every_result_from_its_workers() -> None:
    results = on_processes(square, chunks=8, workers=2)
    assert sorted(value for value, _ in results) == [x * x for x in range(8)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert multiprocessing.active_children() == []  # the pool was joined


@pytest.mark.subprocess
def test_a_pool_takes_a_partial_of_a_module_function() -> None:
    results = on_processes(functools.partial(scaled, factor=3), chunks=4, workers=2)
    assert sorted(value for value, _ in results) == [0, 3, 6, 9]
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize(("chunks", "workers"), [(5, 1), (1, 4)])
def test_one_worker_or_one_chunk_runs_here_in_order(chunks: int, workers: int) -> None:
    results = on_processes(square, chunks=chunks, workers=workers)
    assert results == [(x * x, os.getpid()) for x in range(chunks)]


def test_one_worker_is_lazy_and_stops_at_the_first_error() -> None:
    done: list[int] = []

    def record(x: int) -> int:
        done.append(fail_on_three(x))
        return x

    with ExitStack() as stack:
        results = run_chunks(
            record,
            list(range(6)),
            workers=1,
            backend="process",
            ray_address=None,
            stack=stack,
            command="test",
        )
        assert done == []  # nothing runs before the caller asks
        with pytest.raises(ValueError, match="chunk 3 failed"):
            list(results)
    assert done == [0, 1, 2]


@pytest.mark.subprocess
def test_an_error_in_a_worker_is_raised_once_and_ends_the_pool() -> None:
    with pytest.raises(ValueError, match=r"^chunk 3 failed$"):
        on_processes(fail_on_three, chunks=8, workers=2)
    assert multiprocessing.active_children() == []  # terminated, not left running


# --- the Ray backend: addresses and failures -------------------------------------------


@pytest.mark.parametrize(
    "address", ["nonsense", "host", "h:0", "h:99999", "ray://", "a b:1", "[::1:1"]
)
def test_malformed_ray_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidParameterError, match="HOST:PORT"):
        check_ray_address(address)


def test_an_address_nothing_listens_on_is_refused_at_once() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}: no Ray cluster answers there"):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    check_ray_address("auto")  # ray finds the cluster itself: nothing to check


def test_ray_address_nothing_listening_is_one_line_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    args = [*SMALL_HEATMAP, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}"]
    assert "no Ray cluster answers" in one_error(capsys, args)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("nonsense", "HOST:PORT"),
        pytest.param("ray://127.0.0.1:10001", "ray[client]", marks=pytest.mark.ray),
        ("h:99999", "HOST"),
    ],
)
def test_bad_ray_addresses_are_one_line(
    address: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if address.startswith("ray://"):
        pytest.importorskip("ray")
        try:
            import grpc  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("ray[client] is installed: ray:// addresses are allowed")
    args = [*SMALL_HEATMAP, "--backend", "ray", "--ray-address", address]
    assert needle in one_error(capsys, args)


def test_a_ray_cluster_that_dies_mid_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in for ray whose cluster fails at the first result: one `error:` line, exit 2,
    the folder kept for --resume."""
    import types

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        pass

    class Remote:
        def remote(self, *args: object) -> object:
            return object()

    fake = types.SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kwargs: None,
        shutdown=lambda: None,
        remote=lambda func: Remote(),
        put=lambda value: value,
        wait=lambda pending, num_returns: (pending[:1], pending[1:]),
        get=lambda ref: (_ for _ in ()).throw(RayError("node died\nlog line 2")),
        exceptions=types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    out = tmp_path / "h"
    line = one_error(capsys, [*SMALL_HEATMAP, "--backend", "ray", "--out", str(out)])
    assert "Ray cluster failed during the run: node died" in line
    assert (out / "run.json").is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_local_ray_leaves_no_process_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's agents outlive `ray.shutdown` until they notice their raylet gone: a process the
    local instance started and left running is killed after the grace; one that was running
    before it started is left alone."""
    import subprocess
    import types

    from dsi_online.studies import parallel

    ignores_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    before = subprocess.Popen([sys.executable, "-c", ignores_term])
    started: list[subprocess.Popen[bytes]] = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kwargs: started.append(
            subprocess.Popen([sys.executable, "-c", ignores_term])
        ),
        shutdown=lambda: None,
        remote=lambda func: types.SimpleNamespace(remote=func),
        put=lambda value: value,
        wait=lambda pending, num_returns: (pending[:1], pending[1:]),
        get=lambda ref: ref,
        exceptions=types.SimpleNamespace(RayError=OSError, RayTaskError=OSError),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(parallel, "RAY_SHUTDOWN_GRACE_S", 0.5)
    try:
        with ExitStack() as stack:
            results = run_chunks(
                abs, [-1, -2], workers=1, backend="ray", ray_address=None, stack=stack, command="t"
            )
            assert list(results) == [1, 2]
        assert started[0].wait(timeout=5) == -9
        assert before.poll() is None
    finally:
        for process in (before, *started):
            process.kill()
            process.wait()
