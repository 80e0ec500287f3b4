"""The real backend on the test pair: lossless runs, cache catch-up, cancellation between
layers, the transformers peer, and no leaked threads, processes or tasks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from dsi_online.errors import InvalidParameterError
from dsi_online.pair import heldout_prompts
from dsi_online.real import RealBackend, RealRunResult, play_real
from dsi_online.real.calibrate import (
    ALTERNATIONS,
    CHAIN,
    HOST_TOKENS,
    IDLE_S,
    host_effects,
    idle_round,
)
from dsi_online.real.peer import time_peer
from dsi_online.real.server import ForwardRecord, RealPool
from dsi_online.real.worker import ModelWorker, Prefill, Request, ThreadFlag, WorkerSpec
from dsi_online.schedulers import DSI, SI, Generation, NonSI, RunResult

pytestmark = pytest.mark.torch

TOKENS = 24


def _children() -> set[int]:
    """Process ids of this process's children (Linux)."""
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return {int(pid) for pid in path.read_text().split()} if path.exists() else set()


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dsi-online-")]


@pytest.fixture(scope="module")
def prompts(test_pair: Path) -> list[list[int]]:
    return heldout_prompts(test_pair, count=3, prompt_bytes=32, seed=1)


@pytest.fixture(scope="module")
def backend(test_pair: Path) -> Iterator[RealBackend]:
    """Thread workers: two target servers and the drafter."""
    with RealBackend(test_pair / "target", test_pair / "drafter", servers=2, workers="thread") as b:
        yield b


def _worker(test_pair: Path, flag: ThreadFlag | None = None) -> ModelWorker:
    return ModelWorker(WorkerSpec(str(test_pair / "target")), flag or ThreadFlag())


def _forward(worker: ModelWorker, rid: int, context: list[int], first: int) -> Any:
    return worker.forward(Request(kind="forward", id=rid, context=tuple(context), first=first))


@pytest.mark.parametrize("lookahead", [1, 4])
def test_real_runs_equal_the_target_greedy_decoding(
    backend: RealBackend, prompts: list[list[int]], lookahead: int
) -> None:
    for prompt in prompts:
        reference = backend.reference(prompt, TOKENS)
        assert len(reference) == TOKENS
        for scheduler in (NonSI(), SI(lookahead), DSI(lookahead, 2)):
            result = play_real(backend, scheduler, prompt, TOKENS)
            assert result.output == reference, (scheduler.name, lookahead)
            assert result.lossless
            assert result.run.tokens == TOKENS


def test_records_account_for_every_forward(backend: RealBackend, prompts: list[list[int]]) -> None:
    result = play_real(backend, DSI(3, 2), prompts[0], TOKENS)
    assert isinstance(result, RealRunResult)
    stats = {s.name: s for s in result.run.servers}
    for server in result.servers:
        assert len(server.records) == stats[server.name].forwards
        first = server.records[0]
        assert first.kept == 0 and first.prompt == len(prompts[0])  # every run starts cold
        for record in server.records:
            assert record.processed == record.context - record.kept
            assert record.started_s >= record.submitted_s - 1e-6
            assert record.ended_s >= record.started_s
            assert record.stopped <= record.cancelled  # only a cancelled forward is stopped
    targets = result.breakdown("target")
    assert targets.forwards == result.run.target_forwards
    assert targets.prompt >= len(prompts[0])  # at least one prefill
    assert targets.compute_s > 0
    nonsi = play_real(backend, NonSI(), prompts[0], TOKENS)
    (target,) = nonsi.servers[1:]
    # non-SI processes the prompt once, then exactly one new token per forward
    assert [r.processed for r in target.records] == [len(prompts[0])] + [1] * (TOKENS - 1)


def test_catch_up_processes_exactly_the_missing_tokens(
    test_pair: Path, prompts: list[list[int]]
) -> None:
    worker, fresh = _worker(test_pair), _worker(test_pair)
    prompt = prompts[0]
    reply = _forward(worker, 1, prompt, len(prompt))
    assert (reply.kept, reply.processed, reply.cached) == (0, len(prompt), len(prompt))
    stale = [*prompt, 10, 11, 12, 13]  # four tokens the cache lacks
    reply = _forward(worker, 2, stale, len(prompt) + 1)
    assert (reply.kept, reply.processed, reply.cached) == (len(prompt), 4, len(prompt) + 4)
    rejected = [*prompt, 10, 99, 98]  # the suffix after position len(prompt) + 1 is cropped
    reply = _forward(worker, 3, rejected, len(prompt) + 1)
    assert (reply.kept, reply.processed, reply.cached) == (len(prompt) + 1, 2, len(rejected))
    fresh_reply = _forward(fresh, 1, rejected, len(prompt) + 1)
    assert reply.tokens == fresh_reply.tokens
    again = _forward(worker, 4, rejected, len(prompt) + 1)  # all cached: the last token runs
    assert (again.kept, again.processed, again.tokens) == (len(rejected) - 1, 1, reply.tokens)


def test_a_stopped_forward_leaves_the_cache_as_it_was(
    test_pair: Path, prompts: list[list[int]]
) -> None:
    flag = ThreadFlag()
    worker, fresh = _worker(test_pair, flag), _worker(test_pair)
    prompt = prompts[0]
    _forward(worker, 1, prompt, len(prompt))
    layers = worker.model.get_decoder().layers
    assert len(layers) >= 2
    # the cancel arrives while layer 0 runs: the check before layer 1 stops the forward
    hook = layers[0].register_forward_hook(lambda *_: flag.raise_to(2))
    context = [*prompt, 5, 6, 7]
    reply = _forward(worker, 2, context, len(prompt) + 1)
    hook.remove()
    assert reply.cancelled and reply.tokens == () and reply.layers == 1
    assert reply.cached == len(prompt)
    assert all(layer.get_seq_length() == len(prompt) for layer in worker._cache.layers)
    reply = _forward(worker, 3, context, len(prompt) + 1)  # the next forward is correct
    assert not reply.cancelled and reply.processed == 3
    assert reply.tokens == _forward(fresh, 1, context, len(prompt) + 1).tokens


@pytest.mark.parametrize("policy", ["stop", "finish"])
def test_a_cancelled_prefill_leaves_the_server_as_its_policy_says(
    test_pair: Path, prompts: list[list[int]], policy: Prefill
) -> None:
    flag = ThreadFlag()
    worker = ModelWorker(WorkerSpec(str(test_pair / "target"), prefill=policy), flag)
    prompt = prompts[0]
    context = (*prompt, 7, 8)
    flag.raise_to(1)  # cancelled before it began: it never runs, whatever the policy
    reply = worker.forward(Request("forward", 1, context, len(prompt) + 1, prompt=len(prompt)))
    assert reply.cancelled and reply.cached == 0 and reply.layers == 0
    layers = worker.model.get_decoder().layers
    hook = layers[0].register_forward_hook(lambda *_: flag.raise_to(2))  # cancelled midway
    reply = worker.forward(Request("forward", 2, context, len(prompt) + 1, prompt=len(prompt)))
    hook.remove()
    if policy == "stop":  # stopped at the next layer: the server stays cold
        assert reply.cancelled and reply.cached == 0 and reply.layers == 1
    else:  # ran to its end: the server ends warm
        assert not reply.cancelled and reply.cached == len(context)
        assert reply.layers == worker.layer_count
    reply = worker.forward(Request("forward", 3, context, len(prompt) + 1, prompt=len(prompt)))
    fresh = _worker(test_pair)
    assert reply.tokens == _forward(fresh, 1, list(context), len(prompt) + 1).tokens


class _CancelMidRun:
    """A scheduler that starts `inner` and cancels it after `forwards` target forwards."""

    name = "cancel-mid-run"

    def __init__(self, inner: Any, forwards: int) -> None:
        self.inner = inner
        self.forwards = forwards
        self.target_servers = inner.target_servers

    async def generate(self, gen: Generation) -> RunResult:
        task = asyncio.ensure_future(self.inner.generate(gen))
        while not task.done() and gen.servers.target(0).forwards < self.forwards:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise RuntimeError("stopped mid-run")


def test_cancelling_a_run_leaves_workers_consistent(
    backend: RealBackend, prompts: list[list[int]]
) -> None:
    with pytest.raises(RuntimeError, match="stopped mid-run"):
        play_real(backend, _CancelMidRun(DSI(2, 2), forwards=3), prompts[1], TOKENS)
    result = play_real(backend, DSI(2, 2), prompts[1], TOKENS)
    assert result.lossless


def test_transformers_peer_agrees_token_for_token(
    test_pair: Path, backend: RealBackend, prompts: list[list[int]]
) -> None:
    peer = time_peer(test_pair / "target", test_pair / "drafter", prompts[:2], TOKENS, 3, warmup=0)
    assert peer.tokens_match
    for run in peer.greedy:
        assert run.output == backend.reference(prompts[run.prompt], TOKENS)
    assert peer.greedy_s > 0 and peer.assisted_s > 0


@pytest.mark.subprocess
@pytest.mark.slow
def test_process_workers_run_lossless_and_leave_nothing_behind(
    test_pair: Path, prompts: list[list[int]]
) -> None:
    before_children, before_threads = _children(), _worker_threads()
    with RealBackend(test_pair / "target", test_pair / "drafter", workers="process") as backend:
        assert len(_children() - before_children) == 2  # a target and the drafter
        for scheduler in (NonSI(), SI(3), DSI(3, 1)):
            assert play_real(backend, scheduler, prompts[2], TOKENS).lossless
        with pytest.raises(RuntimeError, match="stopped mid-run"):
            play_real(backend, _CancelMidRun(DSI(3, 1), forwards=2), prompts[2], TOKENS)
        assert play_real(backend, DSI(3, 1), prompts[2], TOKENS).lossless
    assert _children() == before_children
    assert _worker_threads() == before_threads


def test_thread_workers_stop_on_an_exception(test_pair: Path, prompts: list[list[int]]) -> None:
    before = _worker_threads()
    with (
        pytest.raises(KeyError),
        RealBackend(test_pair / "target", test_pair / "drafter", workers="thread") as backend,
    ):
        play_real(backend, SI(2), prompts[0], 4)
        raise KeyError("boom")
    assert _worker_threads() == before


def test_bad_settings_raise_a_clear_error(test_pair: Path, backend: RealBackend) -> None:
    target, drafter = test_pair / "target", test_pair / "drafter"
    with pytest.raises(InvalidParameterError, match="servers"):
        RealBackend(target, drafter, servers=0)
    with pytest.raises(InvalidParameterError, match="workers"):
        RealBackend(target, drafter, workers="fork")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="checkpoint"):
        RealBackend(test_pair, drafter)
    with pytest.raises(InvalidParameterError, match="wants 3 target servers"):
        play_real(backend, DSI(2, 3), [1, 2, 3], 4)


def test_inline_workers_run_lossless_without_transit(
    test_pair: Path, prompts: list[list[int]]
) -> None:
    before = _worker_threads()
    with RealBackend(
        test_pair / "target", test_pair / "drafter", servers=2, workers="inline"
    ) as backend:
        for scheduler in (NonSI(), SI(3), DSI(3, 2)):
            result = play_real(backend, scheduler, prompts[0], TOKENS)
            assert result.lossless, scheduler.name
            if scheduler.name != "dsi":  # one forward at a time: none waits for another
                assert all(r.queued_s < 0.01 for r in result.records)
        with pytest.raises(RuntimeError, match="stopped mid-run"):
            play_real(backend, _CancelMidRun(DSI(3, 2), forwards=2), prompts[1], TOKENS)
        assert play_real(backend, DSI(3, 2), prompts[1], TOKENS).lossless
    assert _worker_threads() == before


def test_contention_alternates_chains_alone_and_beside_the_busy_target(
    test_pair: Path, prompts: list[list[int]], backend: RealBackend
) -> None:
    """A round of contention is ALTERNATIONS chains of the drafter alone, each followed by a
    chain beside the busy target: the target computes in ALTERNATIONS separate stretches a
    round, with at least CHAIN lone drafter forwards between two, and one ratio per round."""
    counter = iter(range(1, 10_000))

    def fresh(n: int) -> list[int]:
        return [next(counter) % 200 + 1 for _ in range(n)]

    async def work(pool: RealPool) -> tuple[list[float], list[ForwardRecord]]:
        _, contended = await host_effects(pool, "drafter", 2, 8, fresh, False)
        return contended, [*pool.target(0).records, *pool.drafter.records]

    contended, records = backend.with_pool(prompts[0], work)
    assert len(contended) == 2 and all(r > 0 for r in contended)
    busy = [r for r in records if r.role == "target" and r.processed == HOST_TOKENS["target"]]
    lone = [
        r
        for r in records
        if r.role == "drafter"
        and r.processed == HOST_TOKENS["drafter"]
        and not any(t.submitted_s < r.delivered_s and r.submitted_s < t.delivered_s for t in busy)
    ]
    busy.sort(key=lambda r: r.submitted_s)
    stretches = 1 + sum(
        sum(a.delivered_s <= r.submitted_s and r.delivered_s <= b.submitted_s for r in lone)
        >= CHAIN
        for a, b in itertools.pairwise(busy)
    )
    assert stretches == 2 * ALTERNATIONS


@pytest.mark.parametrize("filled", [True, False])
def test_an_inline_gap_is_spent_computing_the_other_model(
    test_pair: Path, prompts: list[list[int]], filled: bool
) -> None:
    """`idle_round` on an inline backend (`filled`) computes the other model through each
    idle gap, as inline SI does between a model's forwards; on a worker it sleeps and the
    other model runs nothing."""
    counter = iter(range(1, 10_000))

    def fresh(n: int) -> list[int]:
        return [next(counter) % 200 + 1 for _ in range(n)]

    async def work(pool: RealPool) -> tuple[list[float], list[ForwardRecord]]:
        await pool.target(0).forward((), ())
        await pool.drafter.forward((), ())
        ratios = await idle_round(pool.target(0), pool.drafter, fresh(8), fresh, filled)
        return ratios, list(pool.drafter.records)

    with RealBackend(test_pair / "target", test_pair / "drafter", workers="inline") as backend:
        ratios, drafter = backend.with_pool(prompts[0], work)
    assert len(ratios) == len(IDLE_S) and all(r > 0 for r in ratios)
    computed = [r for r in drafter if r.processed > 0][1:]  # after its prefill
    if filled:  # at least one of its forwards per gap, for at least the gap
        assert len(computed) >= len(IDLE_S)
        assert computed[-1].delivered_s - computed[0].submitted_s >= 0.9 * sum(IDLE_S)
    else:
        assert computed == []
