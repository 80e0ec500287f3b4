"""Simulated servers priced by the tokens they process (a profile's token-cost model)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dsi_online.sim.cost import TokenCost
from dsi_online.sim.latency import Constant, ModelLatency
from dsi_online.sim.runner import run_scenario
from dsi_online.sim.scenario import Scenario
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


def test_a_cancelled_forward_keeps_its_server_until_the_next_layer() -> None:
    """With a = 0 every job over drafts is cancelled by the rejection the frontier job finds.
    A forward of one layer runs to its end when cancelled; one of 1000 layers stops almost at
    once: the first holds its server longer, and DSI is never faster for it."""

    def dsi(layers: int) -> tuple[float, float]:
        cost = replace(TARGET, layers=layers)
        target = ModelLatency(Constant(0.010), Constant(0.010), cost)
        result = run_scenario(scenario(target=target, acceptance=0.0, servers=3, tokens=40))
        assert_lossless(result)
        (run,) = result.algorithms["dsi"].runs
        assert sum(s.cancelled for s in run.servers if s.role == "target") > 0
        return run.busy_s, run.latency_s

    busy_whole, latency_whole = dsi(1)
    busy_stopped, latency_stopped = dsi(1000)
    assert busy_whole > busy_stopped
    assert latency_whole >= latency_stopped


def test_the_paper_model_is_unchanged_without_a_cost() -> None:
    plain = scenario(
        target=ModelLatency(Constant(0.010), Constant(0.010)),
        drafter=ModelLatency(Constant(0.001), Constant(0.001)),
    )
    result = run_scenario(plain)
    assert result.algorithms["nonsi"].latency_s == [pytest.approx(9 * 0.010)]
