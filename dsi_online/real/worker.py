"""One model server's compute: a model, its own KV cache, and forwards that can be stopped.

A `ModelWorker` runs in a thread or in its own process (`python -m dsi_online.real.serve`);
it never touches the event loop. A forward gets the whole context (prompt + committed prefix
+ drafts) and keeps what its cache already holds: it crops the cache to the longest common
prefix of what it holds and the new context and runs the model over the rest in one forward
(cache catch-up; a rejected suffix is cropped the same way; the last token is always run,
as `dsi_online.sim.kvcache` models it). It keeps each cached position's greedy token, so the
tokens a forward returns need no recomputation of positions it holds.

A forward stops between two decoder layers once its cancel flag covers it (a forward
pre-hook on every layer reads the flag), and its cache is cropped back to what it held before
the forward, layer by layer: a stopped forward leaves no trace in the cache. A prefill (a
forward that builds the prompt's cache) is the exception by default (`prefill="finish"`):
once begun it runs to its end, so the server ends warm (docs/real.md says why).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dsi_online.measure.torch_runtime import cached, torch_module, transformers_module

DTYPES = ("float32", "bfloat16", "float16", "float64")
Kind = Literal["forward", "greedy", "reset", "stop"]
Prefill = Literal["stop", "finish"]
PREFILLS: tuple[Prefill, ...] = ("stop", "finish")
_FLAG = struct.Struct("q")
_LOAD_LOCK = threading.Lock()  # from_pretrained patches global torch state while it loads


class CancelFlag(Protocol):
    """The id of the latest forward to stop (every forward with an id up to it stops)."""

    def get(self) -> int: ...

    def raise_to(self, forward_id: int) -> None: ...


class ThreadFlag:
    """A cancel flag shared by threads of one process."""

    def __init__(self) -> None:
        self._value = 0

    def get(self) -> int:
        return self._value

    def raise_to(self, forward_id: int) -> None:
        self._value = max(self._value, forward_id)


class SharedFlag:
    """A cancel flag in 8 bytes of memory shared with a worker process (an mmap of one file
    that both processes map), readable without a system call."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        if os.fstat(fd).st_size < _FLAG.size:
            os.ftruncate(fd, _FLAG.size)
        self._map = mmap.mmap(fd, _FLAG.size)

    def get(self) -> int:
        return int(_FLAG.unpack_from(self._map)[0])

    def raise_to(self, forward_id: int) -> None:
        if forward_id > self.get():
            _FLAG.pack_into(self._map, 0, forward_id)

    def close(self) -> None:
        self._map.close()


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker loads and how it runs: one model, its dtype, attention implementation
    and torch CPU threads, whether its forwards stop between layers when cancelled, what
    a cancelled prefill does: `stop` (it stops like any forward: the server stays cold) or
    `finish` (a forward that builds the prompt's cache is not stopped once it has begun: it
    runs to its end and the server ends warm), and the device it runs on (`cpu`, `cuda`,
    `cuda:N`)."""

    model_dir: str
    dtype: str = "float32"
    attention: str = "sdpa"
    threads: int = 1
    interruptible: bool = True
    prefill: Prefill = "finish"
    device: str = "cpu"


@dataclass(frozen=True)
class Request:
    """A message to a worker. A forward over `context` returns the greedy tokens of the
    positions `first` .. len(context) (each predicted from the tokens before it); `greedy`
    decodes `count` tokens after `context` one forward per token, from a cold cache."""

    kind: Kind
    id: int = 0
    context: tuple[int, ...] = ()
    first: int = 0
    count: int = 0
    prompt: int = 0  # the prompt's length: context[:prompt] is the prompt


@dataclass(frozen=True)
class Reply:
    """A worker's answer. Times are `time.monotonic()` readings (one clock for every process
    of the machine); `kept` is what the cache held of the context, `processed` what the
    forward ran the model over; `cached` the cache's length after it."""

    kind: Kind
    id: int
    tokens: tuple[int, ...] = ()
    kept: int = 0
    processed: int = 0
    cached: int = 0
    cancelled: bool = False
    layers: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0
    error: str | None = None


class _Stopped(Exception):
    """Raised by a layer's pre-hook when the running forward's cancel flag is up."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of `a` and `b` (slice comparisons run in C)."""
    x, y = tuple(a), tuple(b)
    low, high = 0, min(len(x), len(y))  # the answer lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if x[low:middle] == y[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def decoder_layers(model: Any) -> Any:
    """The decoder layers of a transformers causal LM (Llama-like: `model.model.layers`)."""
    return model.get_decoder().layers


@dataclass
class ModelWorker:
    """A model with its KV cache (see the module docstring)."""

    spec: WorkerSpec
    flag: CancelFlag
    model: Any = field(init=False)
    layer_count: int = field(init=False)
    _tokens: list[int] = field(init=False, default_factory=list)
    _greedy: list[int] = field(init=False, default_factory=list)
    _cache: Any = field(init=False, default=None)
    _current: int = field(init=False, default=0)
    _layers_run: int = field(init=False, default=0)
    _protected: bool = field(init=False, default=False)
    _device: Any = field(init=False, default=None)
    _stream: Any = field(init=False, default=None)  # on CUDA: the stream the model runs on

    def __post_init__(self) -> None:
        torch = torch_module()
        transformers = transformers_module()
        torch.set_num_threads(self.spec.threads)
        self._device = torch.device(self.spec.device)
        with _LOAD_LOCK:
            self.model = (
                transformers.AutoModelForCausalLM.from_pretrained(
                    self.spec.model_dir,
                    dtype=getattr(torch, self.spec.dtype),
                    attn_implementation=self.spec.attention,
                )
                .to(self._device)
                .eval()
            )
        if self._device.type == "cuda":  # its own stream: thread workers share a process
            self._stream = torch.cuda.Stream(self._device)
            self._stream.wait_stream(torch.cuda.current_stream(self._device))  # the weights
        layers = decoder_layers(self.model)
        self.layer_count = len(layers)
        if self.spec.interruptible:
            for layer in layers:
                layer.register_forward_pre_hook(self._check)
        self.reset()

    def _check(self, module: Any, args: Any) -> None:
        """Before each decoder layer: stop if the flag covers the running forward. On CUDA
        the host only queues kernels, so it first waits for the queued layers to finish: the
        check then happens when the previous layer has run, not when it was queued (the
        price: the host cannot queue more than one layer ahead of the GPU)."""
        if self._protected:
            self._layers_run += 1
            return
        if self._stream is not None:
            self._stream.synchronize()
        if self.flag.get() >= self._current:
            raise _Stopped
        self._layers_run += 1

    def _synchronize(self) -> None:
        """Wait for the device's queued kernels, so that a clock reading after it is true."""
        if self._stream is not None:
            self._stream.synchronize()

    def reset(self) -> None:
        """Empty the cache: the next forward is a prefill."""
        self._cache = transformers_module().DynamicCache(config=self.model.config)
        self._tokens = []
        self._greedy = []

    def _crop(self, length: int) -> None:
        """Crop every layer of the cache to `length` positions (layers may differ in length
        after a stopped forward: those it reached hold its tokens, the others do not)."""
        if length == 0:
            self.reset()
            return
        for layer in self._cache.layers:
            excess = layer.get_seq_length() - length
            if excess > 0:
                layer.crop(-excess)
        del self._tokens[length:]
        del self._greedy[length:]

    def _run(self, tokens: tuple[int, ...]) -> list[int]:
        """One model forward over `tokens` after the cache; their greedy next tokens."""
        torch = torch_module()
        with torch.inference_mode():
            ids = torch.tensor([tokens], dtype=torch.long, device=self._device)
            out = self.model(input_ids=ids, use_cache=True, **cached(self.model, self._cache))
            return [int(t) for t in out.logits[0].argmax(dim=-1).tolist()]

    def _extend(self, tokens: tuple[int, ...]) -> None:
        """Run the model over `tokens` after the cache and keep them and their greedy tokens."""
        if tokens:
            greedy = self._run(tokens)
            self._tokens.extend(tokens)
            self._greedy.extend(greedy)

    def forward(self, request: Request) -> Reply:
        """Run one forward (module docstring); stopped early when the flag covers its id."""
        self._current = request.id
        self._layers_run = 0
        started = time.monotonic()
        cpu = time.thread_time()
        context = request.context
        # the last token is always processed (as `dsi_online.sim.kvcache` models it)
        kept = min(common_prefix(self._tokens, context), len(context) - 1)
        if kept < len(self._tokens):
            self._crop(kept)
        todo = context[kept:]
        cancelled = False
        # under `finish`, a forward that (re)builds the prompt's cache runs to its end once
        # it has begun; one cancelled before it began never runs
        self._protected = self.spec.prefill == "finish" and kept < request.prompt
        try:
            if self.flag.get() >= request.id:
                raise _Stopped
            self._extend(todo)
        except _Stopped:
            self._crop(kept)
            cancelled = True
        except BaseException:  # the cache must stay in step with the tokens whatever failed
            self._crop(kept)
            raise
        self._synchronize()  # a stopped forward's queued layers and crop finish first
        tokens = () if cancelled else tuple(self._greedy[request.first - 1 :])
        return Reply(
            kind="forward",
            id=request.id,
            tokens=tokens,
            kept=kept,
            processed=len(todo),
            cached=len(self._tokens),
            cancelled=cancelled,
            layers=self._layers_run
            if self.spec.interruptible
            else (0 if cancelled else self.layer_count),
            started=started,
            ended=time.monotonic(),
            cpu_s=time.thread_time() - cpu,
        )

    def greedy(self, request: Request) -> Reply:
        """Greedy decoding from a cold cache: the prompt in one forward, then one forward per
        token (what `generate(do_sample=False)` does): the reference every run must equal."""
        started = time.monotonic()
        self.reset()
        self._current = request.id
        self._protected = False
        out: list[int] = []
        step = request.context
        try:
            while len(out) < request.count:
                token = self._run(step)[-1]
                out.append(token)
                step = (token,)
        finally:
            self.reset()
        return Reply(kind="greedy", id=request.id, tokens=tuple(out), started=started)

    def handle(self, request: Request) -> Reply:
        """Answer one message (`stop` is the caller's to act on); on CUDA, every kernel on
        the worker's own stream."""
        on_stream = (
            contextlib.nullcontext()
            if self._stream is None
            else torch_module().cuda.stream(self._stream)
        )
        with on_stream:
            if request.kind == "forward":
                return self.forward(request)
            if request.kind == "greedy":
                return self.greedy(request)
            if request.kind == "reset":
                self.reset()
            return Reply(kind=request.kind, id=request.id)
