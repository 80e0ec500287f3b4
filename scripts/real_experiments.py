"""Measurements behind docs/real.md: threads against processes, cancellation tails, what a
forward costs by the tokens it processes, prompt prefill, numerics, and the real peer.

    python scripts/real_experiments.py concurrency --pair DIR --workers process
    python scripts/real_experiments.py cancel --pair DIR
    python scripts/real_experiments.py costs --pair DIR
    python scripts/real_experiments.py numerics --pair DIR --dtype float32
    python scripts/real_experiments.py peer --pair DIR -k 5
    python scripts/real_experiments.py prefill --pair DIR -k 5 -n 3

Each prints one JSON document. Slow by design (seconds to minutes); benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsi_online.real.backend import RealBackend, RealRunResult, play_real, warm_up
from dsi_online.real.handles import WORKERS, WorkerHandle, Workers, start_worker
from dsi_online.real.peer import time_peer
from dsi_online.real.worker import ModelWorker, Prefill, Reply, Request, ThreadFlag, WorkerSpec
from dsi_online.schedulers import DSI, SI, NonSI, Scheduler

DECODE_SPAN = 128  # decode loops keep the context within prompt .. prompt + this


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _prompt(length: int, offset: int = 0) -> tuple[int, ...]:
    """A fixed byte prompt (Python source text), `length` bytes long."""
    text = (Path(__file__).read_bytes() * 8)[offset : offset + length]
    return tuple(text)


async def _start(kind: Workers, folder: Path, name: str, **spec: Any) -> WorkerHandle:
    handle = start_worker(kind, name, WorkerSpec(str(folder), **spec))
    await handle.ready()
    await warm_up(handle)
    return handle


async def _forward(handle: WorkerHandle, context: tuple[int, ...], first: int) -> Reply:
    return await handle.call(Request("forward", handle.new_id(), context, first))


@dataclass(frozen=True)
class DecodeStats:
    """A decode loop's figures: forwards per second, median round trip (submission to the
    loop holding the reply), median compute inside the worker (wall) and the worker
    thread's CPU time in it, in milliseconds. Compute minus CPU is time the worker waited:
    for the GIL (threads) or for a core (a loaded machine)."""

    forwards_per_s: float
    round_trip_ms: float
    compute_ms: float
    cpu_ms: float


async def _decode(handle: WorkerHandle, prompt: tuple[int, ...], until: float) -> DecodeStats:
    """One-token forwards back to back until `until` (loop time), the context cycling
    through prompt + 1 .. prompt + DECODE_SPAN tokens."""
    loop = asyncio.get_running_loop()
    trips: list[float] = []
    computes: list[float] = []
    cpus: list[float] = []
    context = prompt
    start = loop.time()
    while loop.time() < until:
        context = prompt if len(context) >= len(prompt) + DECODE_SPAN else context
        context = (*context, 32 + len(context) % 90)
        sent = loop.time()
        reply = await _forward(handle, context, len(context))
        trips.append(loop.time() - sent)
        computes.append(reply.ended - reply.started)
        cpus.append(reply.cpu_s)
    return DecodeStats(
        forwards_per_s=len(trips) / (loop.time() - start),
        round_trip_ms=1e3 * _median(trips),
        compute_ms=1e3 * _median(computes),
        cpu_ms=1e3 * _median(cpus),
    )


async def _ticks(stop: asyncio.Event, period: float = 0.001) -> list[float]:
    """How late the loop wakes a 1 ms sleeper, again and again until `stop`."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - start - period)
    return lags


@dataclass(frozen=True)
class Phase:
    """One phase of the concurrency experiment: what ran, its decode figures, and the
    loop's wake-up lag meanwhile (median and 99th percentile, milliseconds)."""

    name: str
    target: DecodeStats | None
    drafter: DecodeStats | None
    lag_median_ms: float
    lag_p99_ms: float


@dataclass(frozen=True)
class Concurrency:
    """Threads or processes: decode rates alone and together, loop lag, and the round trip
    of a request that runs no model (the transport alone)."""

    workers: str
    threads: int
    cpus: int
    load: str
    phases: tuple[Phase, ...]
    empty_request_round_trip_ms: float


async def _phase(
    name: str, target: WorkerHandle | None, drafter: WorkerHandle | None, seconds: float
) -> Phase:
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(_ticks(stop))
    prompt = _prompt(64)
    jobs = [
        _decode(h, prompt, until) if h is not None else asyncio.sleep(seconds)
        for h in (target, drafter)
    ]
    results = await asyncio.gather(*jobs)
    stop.set()
    lags = sorted(await ticker)
    return Phase(
        name=name,
        target=results[0] if target is not None else None,
        drafter=results[1] if drafter is not None else None,
        lag_median_ms=1e3 * _median(lags),
        lag_p99_ms=1e3 * lags[int(0.99 * (len(lags) - 1))] if lags else float("nan"),
    )


async def _concurrency(pair: Path, workers: Workers, threads: int, seconds: float) -> Concurrency:
    target = await _start(workers, pair / "target", "target-0", threads=threads)
    drafter = await _start(workers, pair / "drafter", "drafter-0", threads=threads)
    try:
        phases = (
            await _phase("idle", None, None, min(seconds, 1.0)),
            await _phase("target alone", target, None, seconds),
            await _phase("drafter alone", None, drafter, seconds),
            await _phase("target and drafter", target, drafter, seconds),
        )
        trips = []
        for _ in range(200):  # a request that runs no model: the transport alone
            sent = time.monotonic()
            await target.call(Request("reset", target.new_id()))
            trips.append(time.monotonic() - sent)
    finally:
        await asyncio.gather(target.close(), drafter.close())
    return Concurrency(
        workers=workers,
        threads=threads,
        cpus=os.cpu_count() or 1,
        load=_load(),
        phases=phases,
        empty_request_round_trip_ms=1e3 * _median(trips),
    )


def concurrency(
    pair: Path, workers: Workers, threads: int = 1, seconds: float = 5.0
) -> Concurrency:
    """Decode rates of the target and the drafter alone and together, and the loop's lag."""
    return asyncio.run(_concurrency(pair, workers, threads, seconds))


@dataclass(frozen=True)
class CancelTrial:
    """Forwards cancelled a fraction of the way through: the median tail (cancel to the
    worker being free again) of those the cancel caught running, and how many stopped early."""

    fraction: float
    tail_ms: float
    caught: int
    stopped: int
    trials: int


@dataclass(frozen=True)
class Cancellation:
    """Cancelling a prefill of `prompt` tokens, with and without the check between layers."""

    workers: str
    prompt: int
    layers: int
    prefill_ms: float
    prefill_ms_without_hooks: float
    decode_ms: float
    decode_ms_without_hooks: float
    interruptible: tuple[CancelTrial, ...]
    uninterruptible: tuple[CancelTrial, ...]
    load: str


async def _cancel_trials(
    handle: WorkerHandle, prompt: tuple[int, ...], full_s: float, trials: int
) -> tuple[CancelTrial, ...]:
    out = []
    for fraction in (0.1, 0.5, 0.9):
        tails, stopped = [], 0
        for _ in range(trials):
            await handle.call(Request("reset", handle.new_id()))
            request = Request("forward", handle.new_id(), prompt, len(prompt))
            future = handle.submit(request)
            await asyncio.sleep(fraction * full_s)
            cancelled_at = time.monotonic()
            handle.cancel(request.id)
            reply = await future
            if reply.ended > cancelled_at:  # the cancel caught it running
                tails.append(reply.ended - cancelled_at)
            stopped += reply.cancelled
        out.append(CancelTrial(fraction, 1e3 * _median(tails), len(tails), stopped, trials))
    return tuple(out)


async def _timed(
    handle: WorkerHandle, prompt: tuple[int, ...], repeats: int
) -> tuple[float, float]:
    """Median prefill of `prompt` and median one-token decode after it, in seconds."""
    prefills, decodes = [], []
    for _ in range(repeats):
        await handle.call(Request("reset", handle.new_id()))
        reply = await _forward(handle, prompt, len(prompt))
        prefills.append(reply.ended - reply.started)
        reply = await _forward(handle, (*prompt, 65), len(prompt) + 1)
        decodes.append(reply.ended - reply.started)
    return _median(prefills), _median(decodes)


async def _cancellation(pair: Path, workers: Workers, prompt_len: int, trials: int) -> Cancellation:
    prompt = _prompt(prompt_len)
    hooked = await _start(workers, pair / "target", "hooked")
    plain = await _start(workers, pair / "target", "plain", interruptible=False)
    try:
        prefill, decode = await _timed(hooked, prompt, trials)
        prefill_plain, decode_plain = await _timed(plain, prompt, trials)
        interruptible = await _cancel_trials(hooked, prompt, prefill, trials)
        uninterruptible = await _cancel_trials(plain, prompt, prefill_plain, trials)
    finally:
        await asyncio.gather(hooked.close(), plain.close())
    return Cancellation(
        workers=workers,
        prompt=prompt_len,
        layers=hooked.layers,
        prefill_ms=1e3 * prefill,
        prefill_ms_without_hooks=1e3 * prefill_plain,
        decode_ms=1e3 * decode,
        decode_ms_without_hooks=1e3 * decode_plain,
        interruptible=interruptible,
        uninterruptible=uninterruptible,
        load=_load(),
    )


def cancellation(
    pair: Path, workers: Workers = "thread", prompt: int = 512, trials: int = 15
) -> Cancellation:
    """Tails of cancelled prefills with and without the check between layers."""
    return asyncio.run(_cancellation(pair, workers, prompt, trials))


@dataclass(frozen=True)
class Costs:
    """Median cost of a forward by tokens processed (after a cached context of `context`
    tokens), and of a prefill by prompt length, in milliseconds on one worker: wall time and
    the thread's CPU time (less disturbed by other jobs on a loaded machine)."""

    model: str
    context: int
    by_tokens_ms: dict[int, float]
    by_tokens_cpu_ms: dict[int, float]
    prefill_ms: dict[int, float]
    prefill_cpu_ms: dict[int, float]
    load: str


def costs(pair: Path, model: str = "target", context: int = 128, repeats: int = 15) -> Costs:
    """Forward cost by tokens processed (1 = decode, k + 1 = a verification, more = a catch-up)
    and by prompt length (prefill), measured in this thread with 1 torch thread."""
    from dsi_online.measure.torch_runtime import torch_module

    torch_module().set_num_threads(1)
    worker = ModelWorker(WorkerSpec(str(pair / model)), ThreadFlag())
    ids = iter(range(1, 1 << 30))
    base = _prompt(context)

    def run(ctx: tuple[int, ...], first: int) -> tuple[float, float]:
        reply = worker.forward(Request("forward", next(ids), ctx, first))
        return reply.ended - reply.started, reply.cpu_s

    def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
        return 1e3 * _median([w for w, _ in samples]), 1e3 * _median([c for _, c in samples])

    wall: dict[int, float] = {}
    cpu: dict[int, float] = {}
    run(base, len(base))
    for n in (1, 2, 3, 4, 6, 8, 12, 16, 32, 64):
        samples = []
        for r in range(repeats + 2):
            tail = tuple(40 + (r + i) % 50 for i in range(n))
            timing = run((*base, *tail), len(base) + 1)
            if r >= 2:
                samples.append(timing)
        wall[n], cpu[n] = medians(samples)
    prefill_wall: dict[int, float] = {}
    prefill_cpu: dict[int, float] = {}
    for length in (16, 32, 64, 128, 256, 512):
        samples = []
        for r in range(repeats + 2):
            worker.reset()
            timing = run(_prompt(length, r), length)
            if r >= 2:
                samples.append(timing)
        prefill_wall[length], prefill_cpu[length] = medians(samples)
    return Costs(model, context, wall, cpu, prefill_wall, prefill_cpu, _load())


@dataclass(frozen=True)
class Numerics:
    """Greedy tokens of a forward over many tokens against one forward per token."""

    dtype: str
    attention: str
    chunk: int
    prompts: int
    positions: int
    argmax_mismatches: int
    bitwise_equal_logits: int
    max_abs_logit_diff: float
    min_top2_margin: float  # smallest gap between the best and second logit seen


def numerics(
    pair: Path,
    prompts: Sequence[Sequence[int]],
    tokens: int,
    chunk: int,
    dtype: str = "float32",
    attention: str = "sdpa",
) -> Numerics:
    """Decode `tokens` tokens one forward at a time (the reference), then run the same
    sequence in forwards of `chunk` tokens (as a verification does) and compare the logits of
    every position; 1 torch thread."""
    from dsi_online.measure.torch_runtime import cached, torch_module, transformers_module

    torch = torch_module()
    transformers = transformers_module()
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(pair / "target"), dtype=getattr(torch, dtype), attn_implementation=attention
    ).eval()
    mismatches = equal = positions = 0
    max_diff, margin = 0.0, float("inf")
    with torch.inference_mode():
        for prompt in prompts:
            cache = transformers.DynamicCache(config=model.config)
            step, out, single = list(prompt), [], []
            for _ in range(tokens):
                logits = model(torch.tensor([step]), **cached(model, cache)).logits[0, -1]
                single.append(logits)
                out.append(int(logits.argmax()))
                step = [out[-1]]
            top2 = torch.stack(single).topk(2, dim=-1).values
            margin = min(margin, float((top2[:, 0] - top2[:, 1]).min()))
            cache = transformers.DynamicCache(config=model.config)
            chunked = [model(torch.tensor([list(prompt)]), **cached(model, cache)).logits[0, -1]]
            sequence = out[:-1]
            for start in range(0, len(sequence), chunk):
                piece = sequence[start : start + chunk]
                chunked.extend(model(torch.tensor([piece]), **cached(model, cache)).logits[0])
            for a, b in zip(single, chunked, strict=True):
                positions += 1
                mismatches += int(a.argmax() != b.argmax())
                equal += int(torch.equal(a, b))
                max_diff = max(max_diff, float((a - b).abs().max()))
    return Numerics(
        dtype, attention, chunk, len(prompts), positions, mismatches, equal, max_diff, margin
    )


@dataclass(frozen=True)
class PeerComparison:
    """Our real non-SI, SI and DSI against transformers' greedy and assisted generation on
    the same prompts: mean wall seconds per generation, and whether all tokens agree."""

    workers: str
    lookahead: int
    servers: int
    tokens: int
    prompts: int
    ours_s: dict[str, float]
    transformers_greedy_s: float
    transformers_assisted_s: float
    lossless: bool
    tokens_match: bool
    load: str


def peer(
    pair: Path,
    prompts: Sequence[Sequence[int]],
    tokens: int,
    lookahead: int,
    servers: int = 1,
    workers: Workers = "thread",
    repeats: int = 1,
) -> PeerComparison:
    """Time ours and transformers' on the same prompts (1 torch thread everywhere)."""
    schedulers: list[Scheduler] = [NonSI(), SI(lookahead), DSI(lookahead, servers)]
    runs: dict[str, list[float]] = {s.name: [] for s in schedulers}
    lossless = True
    references = {}
    with RealBackend(pair / "target", pair / "drafter", servers=servers, workers=workers) as b:
        for _ in range(repeats):
            for prompt in prompts:
                for scheduler in schedulers:
                    result = play_real(b, scheduler, prompt, tokens)
                    runs[scheduler.name].append(result.run.latency_s)
                    lossless &= result.lossless
                    references[tuple(prompt)] = result.reference
    theirs = time_peer(
        pair / "target", pair / "drafter", prompts, tokens, lookahead, repeats=repeats
    )
    match = theirs.tokens_match and all(
        run.output == references[tuple(prompts[run.prompt])] for run in theirs.greedy
    )
    return PeerComparison(
        workers=workers,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        prompts=len(prompts),
        ours_s={name: statistics.fmean(values) for name, values in runs.items()},
        transformers_greedy_s=theirs.greedy_s,
        transformers_assisted_s=theirs.assisted_s,
        lossless=lossless,
        tokens_match=match,
        load=_load(),
    )


@dataclass(frozen=True)
class PrefillPolicy:
    """DSI on real servers under one policy for cancelled prefills: mean latency, and per
    run the prefills run, those cancelled, and the seconds all prefills computed."""

    policy: str
    latency_s: float
    latency_sem_s: float
    prefills_per_run: float
    cancelled_prefills_per_run: float
    prefill_compute_s_per_run: float
    lossless: bool


@dataclass(frozen=True)
class Prefills:
    """Both policies for cancelled prefills on the same prompts, runs alternating."""

    workers: str
    lookahead: int
    servers: int
    tokens: int
    prompts: int
    repeats: int
    policies: tuple[PrefillPolicy, ...]
    load: str


def prefills(
    pair: Path,
    prompts: Sequence[Sequence[int]],
    tokens: int,
    lookahead: int,
    servers: int,
    workers: Workers = "thread",
    repeats: int = 1,
) -> Prefills:
    """DSI with `prefill="stop"` against `prefill="finish"` (two backends side by side, runs
    alternating, so both see the same machine load)."""
    policies: tuple[Prefill, ...] = ("stop", "finish")
    runs: dict[str, list[RealRunResult]] = {p: [] for p in policies}
    target, drafter = pair / "target", pair / "drafter"
    with contextlib.ExitStack() as stack:
        backends = {
            p: stack.enter_context(
                RealBackend(target, drafter, servers=servers, workers=workers, prefill=p)
            )
            for p in policies
        }
        for _ in range(repeats):
            for prompt in prompts:
                for policy in policies:
                    scheduler = DSI(lookahead, servers)
                    runs[policy].append(play_real(backends[policy], scheduler, prompt, tokens))
    out = []
    for policy in policies:
        results = runs[policy]
        records = [r for result in results for r in result.records if r.prompt > 0]
        latencies = [r.run.latency_s for r in results]
        out.append(
            PrefillPolicy(
                policy=policy,
                latency_s=statistics.fmean(latencies),
                latency_sem_s=statistics.stdev(latencies) / len(latencies) ** 0.5
                if len(latencies) > 1
                else float("nan"),
                prefills_per_run=len(records) / len(results),
                cancelled_prefills_per_run=sum(r.cancelled for r in records) / len(results),
                prefill_compute_s_per_run=sum(r.compute_s for r in records) / len(results),
                lossless=all(r.lossless for r in results),
            )
        )
    return Prefills(workers, lookahead, servers, tokens, len(prompts), repeats, tuple(out), _load())


def _prompts(pair: Path, count: int, length: int) -> list[list[int]]:
    from dsi_online.pair import heldout_prompts

    return heldout_prompts(pair, count=count, prompt_bytes=length, seed=0)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one experiment and print its JSON."""
    parser = argparse.ArgumentParser(prog="python scripts/real_experiments.py")
    parser.add_argument(
        "experiment",
        choices=["concurrency", "cancel", "costs", "numerics", "peer", "prefill"],
    )
    parser.add_argument("--pair", type=Path, required=True, help="a folder with target/, drafter/")
    parser.add_argument("--workers", choices=WORKERS, default="process")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--prompt", type=int, default=64, help="prompt bytes")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("-S", "--tokens", type=int, default=64)
    parser.add_argument("-k", "--lookahead", type=int, default=5)
    parser.add_argument("-n", "--servers", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=6)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--model", default="target")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    result: Any
    if args.experiment == "concurrency":
        result = concurrency(args.pair, args.workers, args.threads, args.seconds)
    elif args.experiment == "cancel":
        result = cancellation(args.pair, args.workers, args.prompt)
    elif args.experiment == "costs":
        result = costs(args.pair, args.model)
    elif args.experiment == "numerics":
        prompts = _prompts(args.pair, args.prompts, args.prompt)
        result = numerics(args.pair, prompts, args.tokens, args.chunk, args.dtype, args.attention)
    elif args.experiment == "prefill":
        prompts = _prompts(args.pair, args.prompts, args.prompt)
        result = prefills(
            args.pair,
            prompts,
            args.tokens,
            args.lookahead,
            args.servers,
            args.workers,
            args.repeats,
        )
    else:
        prompts = _prompts(args.pair, args.prompts, args.prompt)
        result = peer(
            args.pair,
            prompts,
            args.tokens,
            args.lookahead,
            args.servers,
            args.workers,
            args.repeats,
        )
    json.dump(dataclasses.asdict(result), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
