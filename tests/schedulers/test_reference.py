"""The schedulers against an independent discrete-event reference of docs/model.md
(tests/reference.py), on the same coins, to the nanosecond; and a case for each of three
scheduler defects, each shown to exercise its defect (the reference with that defect is
slower)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsi_online.sim.runner import oracle_for, run_scenario
from dsi_online.sim.scenario import Scenario
from tests.reference import (
    MODEL,
    Latencies,
    Rules,
    reference_dsi,
    reference_nonsi,
    reference_si,
)


def play(
    target_us: int,
    drafter_us: int,
    acceptance: float,
    lookahead: int,
    servers: int,
    tokens: int,
    repeats: int,
    seed: int,
    target_ttft_us: int | None = None,
    drafter_ttft_us: int | None = None,
) -> tuple[Scenario, dict[str, list[int]], Latencies]:
    """Run a constant-latency scenario (latencies in whole microseconds); its latencies in ns."""
    target_ttft_us = target_us if target_ttft_us is None else target_ttft_us
    drafter_ttft_us = drafter_us if drafter_ttft_us is None else drafter_ttft_us
    scenario = Scenario.from_ms(
        target_ms=target_us / 1e3,
        target_ttft_ms=target_ttft_us / 1e3,
        drafter_ms=drafter_us / 1e3,
        drafter_ttft_ms=drafter_ttft_us / 1e3,
        acceptance=acceptance,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
    )
    result = run_scenario(scenario)
    ns = {
        name: [round(s * 1e9) for s in summary.latency_s]
        for name, summary in result.algorithms.items()
    }
    lat = Latencies(
        target_ttft_us * 1000, target_us * 1000, drafter_ttft_us * 1000, drafter_us * 1000
    )
    return scenario, ns, lat


def coins_of(scenario: Scenario) -> list[list[bool]]:
    return [oracle_for(scenario, r).coins for r in range(scenario.repeats)]


@st.composite
def constant_cases(draw: st.DrawFn) -> tuple[int, ...]:
    """Latencies in whole microseconds; drafters that divide the target evenly are drawn
    often, since they make drafts and jobs finish at the same instants."""
    target_us = draw(st.sampled_from([10_000, 12_000]) | st.integers(1_000, 100_000))
    divisor = draw(st.sampled_from([1, 2, 3, 4, 5, 10, 20]))
    drafter_us = draw(st.just(target_us // divisor) | st.integers(100, 2 * target_us))
    ttft = draw(st.booleans())
    return (
        target_us,
        drafter_us,
        draw(st.sampled_from([0.0, 0.9, 1.0]) | st.floats(0.0, 1.0)),
        draw(st.integers(1, 10)),
        draw(st.integers(1, 8)),
        draw(st.integers(1, 80)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(target_us // 5, 5 * target_us)) if ttft else target_us,
        draw(st.integers(max(1, drafter_us // 5), 5 * drafter_us)) if ttft else drafter_us,
    )


@pytest.mark.slow
@settings(max_examples=120)
@given(constant_cases())
def test_schedulers_equal_the_reference_to_the_nanosecond(case: tuple[int, ...]) -> None:
    target_us, drafter_us, a, k, n, tokens, seed, target_ttft_us, drafter_ttft_us = case
    scenario, ns, lat = play(
        target_us, drafter_us, a, k, n, tokens, 2, seed, target_ttft_us, drafter_ttft_us
    )
    for repeat, coins in enumerate(coins_of(scenario)):
        assert ns["nonsi"][repeat] == reference_nonsi(lat, tokens)
        assert ns["si"][repeat] == reference_si(coins, lat, k, tokens)
        assert ns["dsi"][repeat] == reference_dsi(coins, lat, k, n, tokens), repeat


def assert_equal_and_defect_slower(
    scenario: Scenario, ns: dict[str, list[int]], lat: Latencies, defect: Rules
) -> float:
    """DSI equals the reference on every repeat; the reference with `defect` is slower on
    average. Returns the defect's mean slowdown."""
    k, n, tokens = scenario.lookahead, scenario.servers, scenario.tokens
    model, broken = [], []
    for repeat, coins in enumerate(coins_of(scenario)):
        model.append(reference_dsi(coins, lat, k, n, tokens, MODEL))
        broken.append(reference_dsi(coins, lat, k, n, tokens, defect))
        assert ns["dsi"][repeat] == model[-1], repeat
    slowdown = float(np.mean(broken) / np.mean(model))
    assert slowdown > 1
    return slowdown


@pytest.mark.parametrize(("tokens", "lookahead"), [(5, 5), (10, 10)])
def test_defect_a_a_job_when_the_last_needed_draft_is_made(tokens: int, lookahead: int) -> None:
    """Defect (a), no job when the last needed draft is made: 100 ms / 10 ms, a = 0.9,
    2 servers, seed 2. Without the job over the partial last chunk the tail waited for the
    next commit (DSI 0.257 s against SI 0.186 s)."""
    scenario, ns, lat = play(100_000, 10_000, 0.9, lookahead, 2, tokens, 100, seed=2)
    assert_equal_and_defect_slower(scenario, ns, lat, Rules(launch_at_last_draft=False))
    assert np.mean(ns["dsi"]) < np.mean(ns["si"])


def test_defect_b_commit_time_launches_keep_the_grid() -> None:
    """Defect (b), every launch restarting the every-k count: c = 0.2558, k = 5 (k c > 1:
    commits come faster than k drafts), seed 0. A grid restarted at every launch never
    fired; it cost 5.7% in the audit."""
    scenario, ns, lat = play(10_000, 2_558, 0.9, 5, 2, 200, 10, seed=0)
    assert scenario.lookahead * scenario.c > 1
    assert_equal_and_defect_slower(scenario, ns, lat, Rules(grid_from_restart=False))


@pytest.mark.parametrize(
    ("drafter_us", "lookahead", "servers"), [(1_000, 5, 2), (2_500, 2, 2), (5_000, 1, 2)]
)
def test_defect_c_a_draft_is_handled_before_a_job_at_the_same_instant(
    drafter_us: int, lookahead: int, servers: int
) -> None:
    """Defect (c), a job handled before a draft at the same instant: constant latencies
    with 1/c an integer and N = ceil(1/(k c)) servers, so commits land exactly when drafts
    complete; a job handled first covered one draft fewer."""
    scenario, ns, lat = play(10_000, drafter_us, 0.9, lookahead, servers, 300, 8, seed=0)
    assert scenario.servers_needed == servers
    assert assert_equal_and_defect_slower(scenario, ns, lat, Rules(drafts_first=False)) > 1.01
