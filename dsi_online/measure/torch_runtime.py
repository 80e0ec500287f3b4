"""torch and transformers, imported only when a measurement runs, and the machine they run on.

torch and transformers are an optional extra. They are imported here, inside functions, and
handed out as `Any`: the package and its type checks work without them.
"""

from __future__ import annotations

import datetime
import functools
import gc
import importlib
import inspect
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, MissingExtraError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float16", "bfloat16", "float32")
_EXTRA_HINT = "dsi-online measure needs torch and transformers: pip install 'dsi-online[measure]'"


def import_extra(module: str) -> Any:
    """Import torch or transformers; MissingExtraError naming the extra when absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(_EXTRA_HINT) from None


WAIT_POLICY = "OMP_WAIT_POLICY"


def passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE, unless the user
    chose a policy). Spinning threads fight whatever else runs on the cores: while another
    training ran, forwards of 2 or more tokens took 248 ms spinning and 1.9 ms sleeping
    (1.4 ms idle; issue 17), and 2-thread training ran 3x slower (docs/pair.md). OpenMP reads
    the variable once, when torch loads it: call this before torch is imported (processes
    started later, such as validate's workers, inherit it)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def torch_module() -> Any:
    """The torch module."""
    return import_extra("torch")


def transformers_module() -> Any:
    """The transformers module, with its progress bars and advice messages silenced."""
    transformers = import_extra("transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def cached(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that hands `cache` (a KV cache) to `model`'s forward: `cache` since
    transformers 5.25, `past_key_values` before it (now deprecated, with a FutureWarning)."""
    return {_cache_keyword(model.__class__): cache}


@functools.cache
def _cache_keyword(model_class: Any) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The KV cache a forward returned, under either transformers name."""
    cache = getattr(output, "cache", None)
    return output.past_key_values if cache is None else cache


_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def is_cuda(device: str) -> bool:
    """Whether `device` names a CUDA GPU (`cuda` or `cuda:N`)."""
    return device == "cuda" or _CUDA_INDEX.match(device) is not None


def check_device_and_dtype(device: str, dtype: str | None) -> None:
    """InvalidParameterError unless the names are known (checked before torch is imported):
    a device is auto, cpu, cuda or cuda:N."""
    if device not in DEVICES and _CUDA_INDEX.match(device) is None:
        raise InvalidParameterError(
            f"device (--device) must be one of {', '.join(DEVICES)} or cuda:N; got {device!r}"
        )
    if dtype is not None and dtype not in DTYPES:
        raise InvalidParameterError(
            f"dtype (--dtype) must be one of {', '.join(DTYPES)}; got {dtype!r}"
        )


def resolve_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N': `auto` picks CUDA when torch sees a GPU; a GPU torch does
    not see is refused in one line."""
    check_device_and_dtype(device, None)
    if device == "cpu":
        return device
    torch = torch_module()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise InvalidParameterError(f"device (--device) {device}: torch sees no CUDA GPU here")
    match = _CUDA_INDEX.match(device)
    count = int(torch.cuda.device_count())
    if match is not None and int(match.group(1)) >= count:
        raise InvalidParameterError(
            f"device (--device) {device}: torch sees {count} CUDA GPU(s) (cuda:0 .. "
            f"cuda:{count - 1})"
        )
    return device


def resolve_dtype(dtype: str | None, device: str) -> str:
    """The dtype name: float16 on CUDA and float32 on CPU unless given."""
    check_device_and_dtype(device, dtype)
    if dtype is None:
        return "float16" if is_cuda(device) else "float32"
    return dtype


DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
MEMORY_OVERHEAD = 1.2
"""Memory a model needs beyond its weights (activations, KV cache, allocator slack), as a
factor of the weights' size."""


def available_memory(device: str) -> int | None:
    """Bytes free for a new model on `device`: free GPU memory on CUDA; on the CPU, Linux's
    MemAvailable (else the free physical pages). None when unknown."""
    if is_cuda(device):
        free, _total = torch_module().cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def check_fits(models: list[tuple[str, str, int]], device: str, dtype: str) -> None:
    """Refuse, before building anything, models that cannot fit in `device`'s free memory
    together: `models` holds (option, name, parameters) for each model loaded at once."""
    available = available_memory(device)
    if available is None:
        return
    weights = sum(parameters for _, _, parameters in models) * DTYPE_BYTES[dtype]
    needed = weights * MEMORY_OVERHEAD
    if needed <= available:
        return
    what = " and ".join(f"{option} {name}" for option, name, _ in models)
    hints = []
    if device == "cpu":
        hints.append("a GPU (--device cuda)")
    if DTYPE_BYTES[dtype] > 2:
        hints.append("--dtype bfloat16 or float16 (half the memory)")
    hint = f": use {' or '.join(hints)}" if hints else ""
    raise InvalidParameterError(
        f"{what} need about {needed / 1e9:.1f} GB in {dtype} ({weights / 1e9:.1f} GB of weights) "
        f"and {device} has {available / 1e9:.1f} GB free{hint}"
    )


def synchronize(device: str) -> None:
    """Wait for the device's queued work, so that a host clock reading means what it says."""
    if is_cuda(device):
        torch_module().cuda.synchronize(device)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cuda_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else None


@dataclass(frozen=True)
class Environment:
    """Where and with what a measurement ran: its provenance."""

    hardware: str
    device: str
    dtype: str
    torch_version: str
    transformers_version: str
    cuda_runtime: str | None
    cuda_driver: str | None
    cpu_threads: int
    date: str

    @classmethod
    def detect(cls, device: str, dtype: str) -> Environment:
        """Describe this machine: the GPU's name on CUDA, the CPU model otherwise."""
        torch = torch_module()
        transformers = transformers_module()
        cpus = os.cpu_count() or 1
        if is_cuda(device):
            index = torch.cuda.current_device() if device == "cuda" else device
            hardware = str(torch.cuda.get_device_name(index))
        else:
            hardware = f"{_cpu_model()} ({cpus} logical CPUs)"
        return cls(
            hardware=hardware,
            device=device,
            dtype=dtype,
            torch_version=str(torch.__version__),
            transformers_version=str(transformers.__version__),
            cuda_runtime=None if torch.version.cuda is None else str(torch.version.cuda),
            cuda_driver=_cuda_driver() if is_cuda(device) else None,
            cpu_threads=int(torch.get_num_threads()),
            date=datetime.date.today().isoformat(),
        )

    def describe(self) -> str:
        """One line of software versions and settings, for a profile's provenance notes."""
        cuda = (
            f"CUDA runtime {self.cuda_runtime}, driver {self.cuda_driver or 'unknown'}"
            if is_cuda(self.device)
            else "no CUDA"
        )
        return (
            f"device {self.device}, dtype {self.dtype}, torch {self.torch_version}, "
            f"transformers {self.transformers_version}, {cuda}, "
            f"{self.cpu_threads} torch CPU threads"
        )


def free_memory() -> None:
    """Collect models no longer referenced, and hand their GPU memory back on CUDA."""
    gc.collect()
    torch = torch_module()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Run with `threads` torch CPU threads (None: keep the count, which the body may change,
    as thread workers do), then restore the count it had."""
    torch = torch_module()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
