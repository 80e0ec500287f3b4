"""Simulated servers priced by the tokens they process (a profile's token-cost model)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import numpy as np
import pytest

from dsi_online.schedulers import Generation
from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.cost import CostStream, TokenCost
from dsi_online.sim.latency import Constant, ModelLatency
from dsi_online.sim.oracle import SimulatedOracle
from dsi_online.sim.runner import oracle_for, run_scenario, schedulers_for
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.servers import Activity, ServerSet, SimForward, SimulatedServer
from tests.schedulers.test_invariants import assert_accounted, assert_lossless

# 10 ms for one token, +1 ms per token more; the drafter 1 ms a token.
TARGET = TokenCost(tokens=(1, 2), mean_s=(0.010, 0.011), reference_context=0, layers=4)
DRAFTER = TokenCost(tokens=(1, 2), mean_s=(0.001, 0.002), reference_context=0, layers=1)


def scenario(**changes: object) -> Scenario:
    base = Scenario(
        target=ModelLatency(Constant(0.010), Constant(0.010), TARGET),
        drafter=ModelLatency(Constant(0.001), Constant(0.001), DRAFTER),
        acceptance=1.0,
        lookahead=3,
        servers=1,
        tokens=9,
        prompt_tokens=5,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_nonsi_pays_the_prompt_once_then_one_token_a_step() -> None:
    result = run_scenario(scenario())
    # prefill: 5 prompt tokens (+0 of the output): 10 + 4 ms; then 8 one-token decodes
    assert result.algorithms["nonsi"].latency_s == [pytest.approx(0.014 + 8 * 0.010)]


def test_si_pays_k_plus_one_tokens_per_verification() -> None:
    result = run_scenario(scenario())
    # The drafter: prefill of 5 prompt tokens (5 ms) for its first draft, then 1 ms a draft,
    # and after each verification it catches up the bonus token with its next draft (2 ms).
    # Target: the first verification runs prompt + 3 drafts (8 tokens, 17 ms), the second
    # the bonus + 3 drafts (4 tokens, 13 ms), the last the bonus alone (10 ms).
    drafts = (0.005 + 0.001 + 0.001) + (0.002 + 0.001 + 0.001)
    assert result.algorithms["si"].latency_s == [pytest.approx(drafts + 0.017 + 0.013 + 0.010)]


def test_runs_stay_lossless_and_accounted_with_random_coins() -> None:
    for servers in (1, 2, 4):
        result = run_scenario(scenario(acceptance=0.6, servers=servers, tokens=80, repeats=5))
        assert_lossless(result)
        assert_accounted(result)


def dsi_target_records(sc: Scenario) -> list[SimForward]:
    """Every target forward of DSI's run of repeat 0 of `sc`, as its servers recorded them."""

    async def play() -> list[SimForward]:
        oracle = oracle_for(sc, 0)
        servers = ServerSet(sc.target, sc.drafter, oracle, sc.seed, 0, None, 0.0, sc.prompt_tokens)
        await schedulers_for(sc)["dsi"].generate(Generation(tokens=sc.tokens, servers=servers))
        return [r for i in range(sc.servers) for r in servers.target(i).records]

    return run_on_clock(play, "virtual")


def test_a_cancelled_forward_keeps_its_server_until_the_next_layer() -> None:
    """With a = 0 every job over drafts is cancelled by the rejection the frontier job finds.
    A forward of one layer runs to its end when cancelled, and keeps its cache (issue 15 a);
    one of 1000 layers stops almost at once and keeps nothing: the first holds its server
    longer. (Under either, a forward cancelled before it began never runs.)"""

    def dsi(layers: int) -> tuple[float, list[SimForward]]:
        cost = replace(TARGET, layers=layers)
        target = ModelLatency(Constant(0.010), Constant(0.010), cost)
        base = scenario(acceptance=0.0, servers=3, tokens=40)
        result = run_scenario(replace(base, target=target))
        assert_lossless(result)
        (run,) = result.algorithms["dsi"].runs
        assert sum(s.cancelled for s in run.servers if s.role == "target") > 0
        return run.busy_s, dsi_target_records(replace(base, target=target))

    busy_whole, stopped_whole = dsi(1)
    busy_stopped, stopped_early = dsi(1000)
    assert busy_whole > busy_stopped
    assert all(r.layers == 0 for r in stopped_whole if r.stopped)
    assert any(0 < r.layers < 1000 for r in stopped_early if r.stopped)


def test_the_paper_model_is_unchanged_without_a_cost() -> None:
    plain = scenario(
        target=ModelLatency(Constant(0.010), Constant(0.010)),
        drafter=ModelLatency(Constant(0.001), Constant(0.001)),
    )
    result = run_scenario(plain)
    assert result.algorithms["nonsi"].latency_s == [pytest.approx(9 * 0.010)]


def test_attention_is_priced_at_the_context_cached_before_the_forward() -> None:
    """(issue 15 b) 1 ms per processed token per cached token: the prefill (5 tokens, an
    empty cache) pays none, the decodes 1 token x 5 and x 6 cached tokens."""
    cost = replace(TARGET, attention_s=0.001)
    target = ModelLatency(Constant(0.010), Constant(0.010), cost)
    result = run_scenario(scenario(target=target, tokens=3))
    assert result.algorithms["nonsi"].latency_s == [pytest.approx(0.014 + 0.015 + 0.016)]


def test_a_prefill_costs_the_measured_cold_prefill() -> None:
    """(issue 15 c) a 5-token prompt measured at 30 ms cold: non-SI pays it, then 8 decodes."""
    cost = replace(TARGET, prefill_tokens=5, prefill_s=0.030)
    target = ModelLatency(Constant(0.010), Constant(0.010), cost)
    result = run_scenario(scenario(target=target))
    assert result.algorithms["nonsi"].latency_s == [pytest.approx(0.030 + 8 * 0.010)]


def _server(cost: TokenCost, activity: Activity | None = None, name: str = "t") -> SimulatedServer:
    stream = CostStream(cost, np.random.default_rng(0))
    oracle = SimulatedOracle([1] * 8, [True] * 8)
    return SimulatedServer(name, "target", stream, oracle, 5, activity)


def test_a_first_forward_cancelled_at_once_leaves_the_server_cold() -> None:
    """(issue 15 d) a forward cancelled before it began never ran: the next is the prefill."""

    async def play() -> list[SimForward]:
        server = _server(TARGET)
        first = asyncio.ensure_future(server.forward([], []))
        await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert not server.warm
        await server.forward([], [])
        assert server.warm
        return server.records

    cancelled, prefill = run_on_clock(play, "virtual")
    assert (cancelled.layers, cancelled.stopped, prefill.prompt, prefill.kept) == (0, True, 5, 0)


def test_a_first_forward_pays_for_the_idle_time_since_the_run_began() -> None:
    """(issue 15 e) twice as slow after 1 ms idle: a first forward 2 ms into the run."""
    cost = replace(TARGET, idle_s=(0.001,), idle_factor=(2.0,))

    async def play() -> float:
        server = _server(cost)
        await asyncio.sleep(0.002)
        await server.forward([], [])
        return asyncio.get_running_loop().time()

    assert run_on_clock(play, "virtual") == pytest.approx(0.002 + 2 * 0.014)


def test_a_cancelled_forward_winding_down_contends() -> None:
    """(issue 15 f) a forward of 4 layers cancelled in its first still computes to the
    layer boundary: a forward another server starts meanwhile pays the contention factor;
    one started after it does not."""
    cost = replace(TARGET, contended=1.5)

    async def play() -> list[float]:
        activity = Activity()
        busy, other = _server(cost, activity, "a"), _server(cost, activity, "b")
        await busy.forward([], [])  # warm: the next forward is one token, 10 ms
        task = asyncio.ensure_future(busy.forward([1], []))
        await asyncio.sleep(0.001)
        task.cancel()  # it stops at 2.5 ms, the end of its first layer
        with contextlib.suppress(asyncio.CancelledError):
            await task
        loop = asyncio.get_running_loop()
        durations = []
        for _ in range(2):
            start = loop.time()
            await other.forward([], [])
            durations.append(loop.time() - start)
            await asyncio.sleep(0.005)
        return durations

    inside, after = run_on_clock(play, "virtual")
    assert inside == pytest.approx(1.5 * 0.014)  # its prefill, beside the tail
    assert after == pytest.approx(0.010)  # a decode, alone
