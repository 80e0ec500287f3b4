"""Batching under load (`--batch B`, dsi_online.sim.batching): a batch's forward is one
forward in the paper's model, or costs its total tokens with a token-cost profile."""

from __future__ import annotations

import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.sim.cost import TokenCost
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.load import LoadScenario, run_load
from dsi_online.sim.policy import parse_policies
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.workload import Request, Workload, poisson

TOKENS = 20
TPOT = 0.01


def two_at_once() -> Workload:
    """Two requests arriving together, and a third long after."""
    return Workload(
        (Request(0, 0.0, TOKENS, 0), Request(1, 0.0, TOKENS, 0), Request(2, 100.0, TOKENS, 0))
    )


def constant(tokens: int = TOKENS) -> Scenario:
    return Scenario.from_ms(
        target_ms=TPOT * 1e3, drafter_ms=1, acceptance=0.8, lookahead=4, servers=2, tokens=tokens
    )


@pytest.mark.parametrize(("batch", "second_s"), [(1, 2 * TOKENS * TPOT), (2, TOKENS * TPOT)])
def test_a_batched_forward_costs_one_forward(batch: int, second_s: float) -> None:
    """One GPU, non-SI, two requests at once: without batching the second waits for the
    first; with B = 2 both ride the same forwards and finish together after S forwards."""
    base = constant()
    load = LoadScenario(base, two_at_once(), 1, 0, batch)
    records = run_load(load, 1.0, parse_policies(["nonsi"], base, 1)).runs["nonsi"].records
    assert records[0].latency_s == pytest.approx(TOKENS * TPOT)
    assert records[1].latency_s == pytest.approx(second_s)
    assert all(r.lossless for r in records)


def test_a_batched_forward_costs_its_total_tokens_with_a_token_cost_profile() -> None:
    cost = TokenCost(tokens=(1, 9), mean_s=(0.010, 0.018), reference_context=0)
    model = ModelLatency(ttft=constant().target.ttft, tpot=constant().target.tpot, cost=cost)
    base = Scenario(
        target=model,
        drafter=constant().drafter,
        acceptance=0.8,
        lookahead=4,
        servers=2,
        tokens=TOKENS,
    )
    load = LoadScenario(base, two_at_once(), 1, 0, 2)
    records = run_load(load, 1.0, parse_policies(["nonsi"], base, 1)).runs["nonsi"].records
    # every forward of the first two processes one token of each: 2 tokens, 11 ms
    assert records[0].service_s == pytest.approx(TOKENS * cost.mean(2, 0))
    assert records[1].service_s == pytest.approx(TOKENS * cost.mean(2, 0))
    assert records[2].service_s == pytest.approx(TOKENS * cost.mean(1, 0))  # alone


@pytest.mark.slow
@pytest.mark.parametrize("cv", [0.0, 0.5])
def test_batched_requests_are_lossless_under_every_policy(cv: float) -> None:
    base = Scenario.from_ms(
        target_ms=30,
        drafter_ms=3,
        acceptance=0.8,
        lookahead=5,
        servers=3,
        tokens=30,
        latency_cv=cv,
        seed=2,
    )
    load = LoadScenario(base, poisson(80, 30, 0, 2), 6, 0, 3)
    result = run_load(load, 4.0, parse_policies(["nonsi", "si", "dsi:3", "adaptive"], base, 6))
    for run in result.runs.values():
        assert len(run.records) == 80 and all(r.lossless for r in run.records)
        busy = sum(r.busy_s for r in run.records)
        assert 0 < busy <= 6 * run.horizon_s  # shares of GPU forwards: no GPU counted twice


def test_batching_with_a_comm_delay_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        LoadScenario(
            Scenario.from_ms(
                target_ms=30,
                drafter_ms=3,
                acceptance=0.8,
                lookahead=5,
                servers=3,
                tokens=10,
                comm_ms=1,
            ),
            two_at_once(),
            4,
            0,
            2,
        )
    assert "(--batch)" in raised.value.cli_message
    assert main(["load", "--batch", "0", "--requests", "10", "--warmup", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
