"""Latencies correlated across target servers by decoding step (--latency-correlation)."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.latency import CorrelatedStream, ModelLatency, StepDraws, empirical_ms
from dsi_online.sim.runner import run_scenario
from dsi_online.sim.scenario import Scenario

Z = 4.0
MEAN_S, CV = 0.010, 0.5


def streams(rho: float, count: int, seed: int = 0) -> list[CorrelatedStream]:
    """`count` target servers' streams sharing one repeat's step draws."""
    steps = StepDraws(np.random.default_rng([seed, 99]))
    model = ModelLatency.lognormal(MEAN_S, CV)
    return [
        CorrelatedStream(model, np.random.default_rng([seed, i]), steps, rho) for i in range(count)
    ]


def draws(stream: CorrelatedStream, steps: range) -> np.ndarray:
    return np.array([stream.next(range(step)) for step in steps])


@pytest.mark.parametrize("rho", [0.3, 1.0])
def test_each_draw_keeps_the_models_mean_and_cv(rho: float) -> None:
    """Over distinct steps one server's draws are independent lognormals of the given mean
    and CV: log-mean and log-variance within their standard errors, and the mean too."""
    n = 20_000
    (stream,) = streams(rho, 1)
    values = draws(stream, range(n))
    sigma2 = math.log1p(CV**2)
    mu = math.log(MEAN_S) - sigma2 / 2
    logs = np.log(values)
    assert abs(logs.mean() - mu) <= Z * math.sqrt(sigma2 / n)
    assert abs(logs.var(ddof=1) - sigma2) <= Z * sigma2 * math.sqrt(2 / (n - 1))
    assert abs(values.mean() - MEAN_S) <= Z * values.std(ddof=1) / math.sqrt(n)
    cv = values.std(ddof=1) / values.mean()
    assert abs(cv - CV) <= 0.05  # the CV's own standard error here is about 0.006


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8])
def test_two_servers_from_the_same_step_correlate_by_rho(rho: float) -> None:
    n = 5_000
    first, second = streams(rho, 2)
    a, b = np.log(draws(first, range(n))), np.log(draws(second, range(n)))
    r = np.corrcoef(a, b)[0, 1]
    assert abs(math.atanh(r) - math.atanh(rho)) <= Z / math.sqrt(n - 3)


def test_at_one_every_target_server_draws_alike_at_a_step() -> None:
    """rho = 1: forwards from the same prefix length take the same time on every target
    server, whatever their order and whatever else each server did before."""
    orders = ([5, 3, 9, 5, 0], [9, 0, 3], [3, 5, 0, 9, 9, 3])
    seen: dict[int, set[float]] = {}
    for stream, steps in zip(streams(1.0, len(orders)), orders, strict=True):
        for step in steps:
            seen.setdefault(step, set()).add(stream.next(range(step)))
    assert all(len(values) == 1 for values in seen.values())
    assert len({v for values in seen.values() for v in values}) == len(seen)


def test_zero_keeps_todays_independent_draws() -> None:
    """--latency-correlation 0 draws exactly what the code drew before the option existed
    (these latencies were recorded at commit 8fd6178)."""
    scenario = Scenario.from_ms(
        target_ms=30,
        drafter_ms=3,
        acceptance=0.5,
        lookahead=3,
        servers=2,
        tokens=20,
        repeats=2,
        seed=7,
        latency_cv=0.5,
        latency_correlation=0.0,
    )
    result = run_scenario(scenario).algorithms
    assert result["nonsi"].latency_s == [0.573565257, 0.726889001]
    assert result["dsi"].latency_s == [0.314629601, 0.435417699]


def test_with_no_draft_accepted_and_full_correlation_dsi_is_non_si() -> None:
    """a = 0: DSI's only gain is racing redundant jobs for the same token. At rho = 0 the
    fastest of several independent draws wins; at rho = 1 they take equally long, and DSI's
    latency is non-SI's on every repeat."""

    def play(rho: float) -> tuple[np.ndarray, np.ndarray]:
        scenario = Scenario.from_ms(
            target_ms=30,
            drafter_ms=27,
            acceptance=0.0,
            lookahead=1,
            servers=8,
            tokens=40,
            repeats=20,
            latency_cv=1.0,
            latency_correlation=rho,
        )
        result = run_scenario(scenario).algorithms
        return np.array(result["dsi"].latency_s), np.array(result["nonsi"].latency_s)

    dsi, nonsi = play(1.0)
    assert np.array_equal(dsi, nonsi)
    dsi, nonsi = play(0.0)
    gain = nonsi - dsi
    assert gain.mean() - Z * gain.std(ddof=1) / math.sqrt(gain.size) > 0


@pytest.mark.parametrize("rho", [-0.1, 1.5, math.nan])
def test_out_of_range_is_refused(rho: float) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        Scenario.from_ms(
            target_ms=30,
            drafter_ms=3,
            acceptance=0.5,
            lookahead=3,
            servers=2,
            tokens=10,
            latency_cv=0.5,
            latency_correlation=rho,
        )
    assert re.search(r"--latency-correlation\) must be within", raised.value.cli_message)


def test_empirical_latencies_are_refused() -> None:
    base = Scenario.from_ms(
        target_ms=30, drafter_ms=3, acceptance=0.5, lookahead=3, servers=2, tokens=10
    )
    measured = ModelLatency(empirical_ms([30, 31]), empirical_ms([30, 31]))
    with pytest.raises(InvalidParameterError, match="needs lognormal or constant"):
        replace(base, target=measured, latency_correlation=0.5)
