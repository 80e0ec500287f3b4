"""Devices and dtypes of the real backend: the plumbing runs on the CPU (one device, a list
of cpu devices, reduced precision); the CUDA path is checked where torch sees a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.pair import heldout_prompts
from dsi_online.real import RealBackend, play_real
from dsi_online.real.backend import server_devices
from dsi_online.schedulers import DSI, SI, NonSI

pytestmark = pytest.mark.torch
NO_CUDA = not torch.cuda.is_available()
cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")


def test_one_device_serves_every_server_and_a_list_names_each() -> None:
    assert server_devices("cpu", 2) == ("cpu", "cpu", "cpu")
    assert server_devices("cpu, cpu", 1) == ("cpu", "cpu")
    with pytest.raises(InvalidParameterError, match="one per target server"):
        server_devices("cpu,cpu", 2)
    with pytest.raises(InvalidParameterError, match="cpu, cuda or cuda:N"):
        server_devices("tpu", 1)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cpu,cuda:0"])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(
    test_pair: Path, device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidParameterError, match="torch sees no CUDA GPU"):
        server_devices(device, 1)
    assert main(["validate", "--pair", str(test_pair), "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA GPU" in err[0], err


def test_a_bad_dtype_is_one_line_and_exit_2(
    test_pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--pair", str(test_pair), "--dtype", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype" in err[0], err


def _lossless_on(pair: Path, device: str, dtype: str, servers: int = 1) -> None:
    prompts = heldout_prompts(pair, count=2, prompt_bytes=24, seed=3)
    with RealBackend(
        pair / "target",
        pair / "drafter",
        servers=servers,
        workers="thread",
        device=device,
        dtype=dtype,
    ) as backend:
        assert backend.settings.devices == server_devices(device, servers)
        for prompt in prompts:
            for scheduler in (NonSI(), SI(3), DSI(3, servers)):
                result = play_real(backend, scheduler, prompt, 16)
                assert result.lossless, (device, dtype, scheduler.name)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_list_of_cpu_devices_runs_lossless(test_pair: Path, dtype: str) -> None:
    _lossless_on(test_pair, "cpu,cpu,cpu", dtype, servers=2)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_runs_lossless_against_its_own_reference(test_pair: Path, dtype: str) -> None:
    _lossless_on(test_pair, "cuda", dtype)


@pytest.mark.cuda
@cuda
def test_a_cancelled_forward_on_cuda_leaves_the_cache_as_it_was(test_pair: Path) -> None:
    from dsi_online.real.worker import ModelWorker, Request, ThreadFlag, WorkerSpec

    flag = ThreadFlag()
    worker = ModelWorker(WorkerSpec(str(test_pair / "target"), device="cuda"), flag)
    prompt = (5, 6, 7, 8, 9)
    worker.handle(Request("forward", 1, prompt, len(prompt)))
    hook = worker.model.get_decoder().layers[0].register_forward_hook(lambda *_: flag.raise_to(2))
    reply = worker.handle(Request("forward", 2, (*prompt, 1, 2), len(prompt) + 1))
    hook.remove()
    assert reply.cancelled and reply.layers == 1 and reply.cached == len(prompt)
    assert all(layer.get_seq_length() == len(prompt) for layer in worker._cache.layers)
