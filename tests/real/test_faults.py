"""The real backend when things go wrong: a worker that never answers, one that dies
mid-forward, a start that fails part-way, a forward that raises, a malformed pair folder,
Ctrl-C while workers start and `kill -9` of their parent. Every case ends within its
deadline, with one line, and leaves no process, thread, descriptor or task behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from dsi_online.cli import main
from dsi_online.real import RealBackend, RealBackendError, play_real
from dsi_online.real.handles import Deadlines, ProcessHandle
from dsi_online.real.worker import ModelWorker, Request, ThreadFlag, WorkerSpec
from dsi_online.schedulers import NonSI

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(sys.platform != "linux", reason="/proc, prctl"),
]

SHORT = Deadlines(start_s=120.0, call_s=1.0, stop_s=1.0)
GONE_WITHIN_S = 5.0


def _children(pid: int | None = None) -> set[int]:
    """Live (not zombie) children of `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {c for c in map(int, path.read_text().split()) if _alive(c)} if path.exists() else set()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dsi-online-")]


@pytest.fixture
def clean(test_pair: Path) -> Iterator[None]:
    """Checks that the test leaves no worker process, worker thread or descriptor."""
    children, descriptors, threads = _children(), _descriptors(), _worker_threads()
    yield
    assert _children() == children
    assert _worker_threads() == threads
    assert _descriptors() <= descriptors


def _backend(pair: Path, **settings: Any) -> RealBackend:
    return RealBackend(pair / "target", pair / "drafter", deadlines=SHORT, **settings)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_worker_process_that_never_answers_is_killed_at_its_deadline(
    test_pair: Path, clean: None
) -> None:
    with _backend(test_pair) as backend:
        os.kill(backend._targets[0].pid, signal.SIGSTOP)  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(RealBackendError, match=r"target-0: no reply to a \w+ within 1 s"):
            play_real(backend, NonSI(), [1, 2, 3], 4)
        assert time.monotonic() - started < SHORT.call_s + 3
        with pytest.raises(RealBackendError, match="target-0: no reply"):  # it stays failed
            play_real(backend, NonSI(), [1, 2, 3], 4)


@pytest.mark.slow
@pytest.mark.subprocess
def test_closing_a_hung_worker_process_takes_its_stop_deadline_once(
    test_pair: Path, clean: None
) -> None:
    """A worker that never answers its stop request is killed `stop_s` after it was asked,
    not `stop_s` to answer and `stop_s` more to exit (it took twice the deadline)."""
    deadlines = Deadlines(start_s=120.0, call_s=1.0, stop_s=3.0)
    backend = RealBackend(test_pair / "target", test_pair / "drafter", deadlines=deadlines)
    with backend:
        os.kill(backend._targets[0].pid, signal.SIGSTOP)  # type: ignore[attr-defined]
        started = time.monotonic()
    assert time.monotonic() - started < deadlines.stop_s * 1.5


def test_a_worker_thread_that_never_answers_fails_at_its_deadline(
    test_pair: Path, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = ModelWorker.forward

    def hang(self: ModelWorker, request: Request) -> Any:
        release.wait()
        return original(self, request)

    with _backend(test_pair, workers="thread") as backend:
        monkeypatch.setattr(ModelWorker, "forward", hang)
        try:
            with pytest.raises(RealBackendError, match="target-0: no reply to a forward"):
                play_real(backend, NonSI(), [1, 2, 3], 4)
        finally:
            release.set()  # the abandoned thread then reads its stop request and exits
    deadline = time.monotonic() + GONE_WITHIN_S
    while _worker_threads() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_worker_that_dies_mid_forward_fails_its_request(test_pair: Path, clean: None) -> None:
    with _backend(test_pair) as backend:
        pid = backend._targets[0].pid  # type: ignore[attr-defined]
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            with pytest.raises(RealBackendError, match=r"target-0: its process exited \(code -9\)"):
                backend.reference([1, 2, 3], 100_000)  # a long greedy decoding, killed in it
        finally:
            killer.join()


@pytest.mark.subprocess
def test_a_start_that_fails_on_the_second_worker_stops_the_first(
    test_pair: Path, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    popen = subprocess.Popen
    calls = []

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise OSError(24, "Too many open files")
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", second_fails)
    with pytest.raises(RealBackendError, match="drafter-0: its process did not start"):
        _backend(test_pair).__enter__()


@pytest.fixture
def broken_pair(test_pair: Path, tmp_path: Path) -> Path:
    """A copy of the test pair, to break."""
    shutil.copytree(test_pair, tmp_path / "pair")
    return tmp_path / "pair"


@pytest.mark.slow
@pytest.mark.subprocess
def test_weights_that_do_not_load_fail_the_start_in_one_line(
    broken_pair: Path, clean: None
) -> None:
    (broken_pair / "drafter" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(RealBackendError, match=r"drafter-0: its model .* did not load") as info:
        _backend(broken_pair).__enter__()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no config", "holds no transformers checkpoint"),
        ("no layers", "lacks num_hidden_layers"),
        ("bad layers", "num_hidden_layers must be an integer"),
        ("bad json", "is unreadable"),
        ("no weights", "holds no weights"),
        ("bad pair.toml", "is not a readable pair description"),
        ("pair.toml value", "is not a readable pair description"),
    ],
)
def test_a_malformed_pair_is_refused_before_any_work(
    broken_pair: Path, damage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = broken_pair / "target" / "config.json"
    if damage == "no config":
        config.unlink()
    elif damage == "bad json":
        config.write_text("{", encoding="utf-8")
    elif damage == "no weights":
        (broken_pair / "target" / "model.safetensors").unlink()
    elif damage == "bad pair.toml":
        (broken_pair / "pair.toml").write_text("not = [toml", encoding="utf-8")
    elif damage == "pair.toml value":
        info = broken_pair / "pair.toml"
        text = info.read_text(encoding="utf-8")
        info.write_text(re.sub(r"seconds = [\d.]+", 'seconds = "fast"', text), encoding="utf-8")
    else:
        data = json.loads(config.read_text(encoding="utf-8"))
        if damage == "no layers":
            del data["num_hidden_layers"]
        else:
            data["num_hidden_layers"] = "four"
        config.write_text(json.dumps(data), encoding="utf-8")
    args = ["validate", "--pair", str(broken_pair), "--prompts", "2", "-S", "4", "-r", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_forward_that_raises_leaves_the_cache_in_step(test_pair: Path) -> None:
    worker = ModelWorker(WorkerSpec(str(test_pair / "target")), ThreadFlag())
    fresh = ModelWorker(WorkerSpec(str(test_pair / "target")), ThreadFlag())
    prompt = (5, 6, 7, 8, 9)
    worker.forward(Request("forward", 1, prompt, len(prompt)))

    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    hook = worker.model.get_decoder().layers[1].register_forward_pre_hook(boom)
    context = (*prompt, 10, 11)
    with pytest.raises(RuntimeError, match="boom"):
        worker.forward(Request("forward", 2, context, len(prompt) + 1))
    hook.remove()
    assert all(layer.get_seq_length() == len(prompt) for layer in worker._cache.layers)
    reply = worker.forward(Request("forward", 3, context, len(prompt) + 1))
    assert reply.kept == len(prompt) and reply.processed == 2
    assert reply.tokens == fresh.forward(Request("forward", 1, context, len(prompt) + 1)).tokens


class _Validate:
    """`dsi-online validate` on the test pair in its own process group, with the ids of
    the worker processes it started once they are up."""

    def __init__(self, pair: Path, servers: int = 1) -> None:
        args = ["validate", "--pair", str(pair), "-n", str(servers), "--prompts", "2", "-r", "1"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dsi_online", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> set[int]:
        deadline = time.monotonic() + timeout
        while len(workers := _children(self.process.pid)) < count:
            assert self.process.poll() is None, self.stderr()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.01)
        return workers

    def stderr(self) -> str:
        """Its stderr, once it has exited."""
        assert self.process.stderr is not None
        with self.process.stderr as stream:
            return stream.read().decode(errors="replace")


def _gone(pids: set[int], timeout: float) -> set[int]:
    """The processes of `pids` still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (alive := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_of_validate_while_its_workers_start_leaves_no_worker(test_pair: Path) -> None:
    command = _Validate(test_pair)
    workers = command.wait_for_workers(2)
    command.process.kill()
    command.process.wait()
    command.stderr()
    assert not _gone(workers, GONE_WITHIN_S)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.wall
def test_ctrl_c_while_workers_start_exits_130_within_about_a_second(test_pair: Path) -> None:
    command = _Validate(test_pair, servers=2)
    workers = command.wait_for_workers(3)
    time.sleep(0.5)  # the workers are importing torch and loading their models
    sent = time.monotonic()
    os.killpg(command.process.pid, signal.SIGINT)
    code = command.process.wait(timeout=30)
    elapsed = time.monotonic() - sent
    err = command.stderr()
    assert code == 130, err
    assert "Traceback" not in err
    assert elapsed < 2.5, elapsed  # about 1 s; slack for the shared test machine
    assert not _gone(workers, GONE_WITHIN_S)


def test_a_failed_process_start_releases_its_descriptors(
    test_pair: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(subprocess, "Popen", fails)
    before = _descriptors()

    async def start() -> None:
        ProcessHandle("target-0", WorkerSpec(str(test_pair / "target")), SHORT)

    with pytest.raises(RealBackendError, match="target-0: its process did not start"):
        asyncio.run(start())
    assert _descriptors() <= before


def test_pair_train_removes_the_folders_of_dead_trainers(test_pair: Path) -> None:
    from dsi_online.pair import train_pair

    dead = subprocess.Popen(["true"])
    dead.wait()
    pairs = test_pair.parent
    stale = pairs / f".tmp-{test_pair.name}-pid{dead.pid}-abc_1"
    live = pairs / f".tmp-{test_pair.name}-pid{os.getpid()}-abc_2"
    for folder in (stale, live):
        (folder / "target").mkdir(parents=True)
    try:
        assert train_pair("test", seed=0).path == test_pair  # cached: no training
        assert not stale.exists() and live.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)
