"""Many requests on a fixed fleet (docs/model.md, "Many requests under load"): the model's
four checks, stability, common random numbers and cancellation."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.load import LoadScenario, play_load, run_load
from dsi_online.sim.policy import Choice, Policy, parse_policies
from dsi_online.sim.runner import run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.workload import Allotment, poisson
from dsi_online.studies.load_stats import batch_mean, summarize


def scenario(
    tokens: int = 30, cv: float = 0.0, servers: int = 3, target_ms: float = 30
) -> Scenario:
    return Scenario.from_ms(
        target_ms=target_ms,
        drafter_ms=target_ms / 10,
        acceptance=0.8,
        lookahead=5,
        servers=servers,
        tokens=tokens,
        latency_cv=cv,
        seed=7,
    )


def load_of(base: Scenario, requests: int, gpus: int, warmup: int = 0) -> LoadScenario:
    return LoadScenario(base, poisson(requests, base.tokens, 0, base.seed), gpus, warmup)


STATIC = ["nonsi", "si", "dsi:3"]


@pytest.mark.parametrize("cv", [0.0, 0.5])
def test_every_request_is_lossless(cv: float) -> None:
    base = scenario(cv=cv)
    load = load_of(base, 60, gpus=6)
    result = run_load(load, 3.0, parse_policies([*STATIC, "adaptive"], base, 6))
    for run in result.runs.values():
        assert len(run.records) == 60
        assert all(r.lossless for r in run.records)
        assert all(r.tokens == base.tokens for r in run.records)


@pytest.mark.parametrize("cv", [0.0, 0.4])
def test_rate_to_zero_equals_run_request_by_request(cv: float) -> None:
    """Alone in the system, request i is repeat i of `run`: the same latency, exactly."""
    base = scenario(cv=cv)
    requests = 12
    load = load_of(base, requests, gpus=4)
    result = run_load(load, 1e-4, parse_policies(STATIC, base, 4))
    single = run_scenario(
        Scenario.from_ms(
            target_ms=30,
            drafter_ms=3,
            acceptance=0.8,
            lookahead=5,
            servers=3,
            tokens=30,
            latency_cv=cv,
            seed=7,
            repeats=requests,
        )
    )
    for name, algorithm in (("nonsi", "nonsi"), ("si", "si"), ("dsi:3", "dsi")):
        records = result.runs[name].records
        assert all(r.wait_s == 0 for r in records)
        expected = single.algorithms[algorithm]
        # equal up to the clock's nanosecond grid: deadlines are rounded to whole
        # nanoseconds of absolute time, so one rounding per forward may differ by 1 ns
        for r, latency, ttft in zip(
            records, expected.latency_s, expected.first_token_s, strict=True
        ):
            assert abs(r.latency_s - latency) <= 1e-9 * r.forwards
            assert abs(r.ttft_s - ttft) <= 1e-9 * r.forwards
        # and so the mean agrees within its confidence interval
        estimate = batch_mean([r.latency_s for r in records])
        assert estimate.low <= expected.mean_s <= estimate.high


def _pk_wait(rate: float, mean_t: float, second_moment: float) -> float:
    rho = rate * mean_t
    return rate * second_moment / (2 * (1 - rho))


@pytest.mark.slow
@pytest.mark.parametrize("cv", [0.0, 1.0])
def test_nonsi_on_one_gpu_matches_pollaczek_khinchine(cv: float) -> None:
    """M/G/1 with service T = S forwards of the target (TTFT and TPOT alike): the mean wait
    must match W = lambda E[T^2] / (2 (1 - rho)). Tolerance: 3 standard errors of the
    batch-means interval (20 batches of consecutive requests, which absorbs the waits'
    correlation); the standard error must also be small (under 10% of W), or the test could
    not fail."""
    tokens, tpot = 10, 0.010
    base = Scenario.from_ms(
        target_ms=tpot * 1e3,
        drafter_ms=1,
        acceptance=0.8,
        lookahead=5,
        servers=1,
        tokens=tokens,
        latency_cv=cv,
        seed=3,
    )
    mean_t = tokens * tpot
    second = tokens * (cv * tpot) ** 2 + mean_t**2
    rate = 0.5 / mean_t
    warmup = 500
    load = load_of(base, 10_500, gpus=1, warmup=warmup)
    run = run_load(load, rate, parse_policies(["nonsi"], base, 1)).runs["nonsi"]
    waits = [r.wait_s for r in run.records[warmup:]]
    estimate = batch_mean(waits)
    se = (estimate.high - estimate.value) / 2.093  # t quantile, 19 degrees of freedom
    theory = _pk_wait(rate, mean_t, second)
    print(f"cv {cv}: mean wait {estimate.value:.5f} s (se {se:.5f}), P-K {theory:.5f} s")
    assert se < 0.1 * theory
    assert abs(estimate.value - theory) <= 3 * se, (estimate, theory)


@pytest.mark.slow
def test_littles_law_for_every_policy() -> None:
    """The fleet's census (requests in the system and in the queue, integrated over time)
    equals the sum of the records' latencies and waits: L = lambda W and Lq = lambda Wq on
    the run's own horizon. The arrival rate itself matches the nominal one within 3
    standard errors of a Poisson count (sqrt(n) / horizon)."""
    base = scenario(cv=0.3)
    load = load_of(base, 300, gpus=6)
    rate = 2.0
    result = run_load(load, rate, parse_policies([*STATIC, "adaptive"], base, 6))
    for run in result.runs.values():
        horizon = run.horizon_s
        latencies = [r.latency_s for r in run.records]
        waits = [r.wait_s for r in run.records]
        observed_rate = len(latencies) / horizon
        assert run.in_system_s / horizon == pytest.approx(observed_rate * np.mean(latencies))
        assert run.in_queue_s / horizon == pytest.approx(observed_rate * np.mean(waits))
        arrivals = [r.arrival_s for r in run.records]
        span = arrivals[-1]
        assert abs(len(arrivals) / span - rate) <= 3 * math.sqrt(len(arrivals)) / span


@pytest.mark.slow
@pytest.mark.parametrize("cv", [0.0, 0.5])
def test_more_gpus_never_raise_a_static_policys_latency(cv: float) -> None:
    base = scenario(cv=cv)
    policies = parse_policies(STATIC, base, 4)
    latencies = {}
    for gpus in (4, 5, 8, 12):
        result = run_load(load_of(base, 100, gpus), 2.5, policies)
        latencies[gpus] = {n: [r.latency_s for r in run.records] for n, run in result.runs.items()}
    for name in STATIC:
        for fewer, more in ((4, 5), (5, 8), (8, 12)):
            pairs = zip(latencies[more][name], latencies[fewer][name], strict=True)
            assert all(m <= f for m, f in pairs), (name, fewer, more)
        assert latencies[12][name] != latencies[4][name]  # the load was felt


def test_requests_are_the_same_across_policies_and_rates() -> None:
    base = scenario(cv=0.5)
    load = load_of(base, 40, gpus=8)
    policies = parse_policies(["nonsi", "si"], base, 8)
    slow, fast = run_load(load, 1e-4, policies), run_load(load, 2.0, policies)
    for name in ("nonsi", "si"):
        a, b = slow.runs[name].records, fast.runs[name].records
        assert [r.arrival_s * 1e-4 for r in a] == pytest.approx([r.arrival_s * 2 for r in b])
        for x, y in zip(a, b, strict=True):  # the same draws, alone or not (to the ns grid)
            assert abs(x.service_s - y.service_s) <= 1e-9 * x.forwards
    nonsi, si = fast.runs["nonsi"].records, fast.runs["si"].records
    assert [r.arrival_s for r in nonsi] == [r.arrival_s for r in si]


def test_overload_is_unstable_and_reports_no_latency() -> None:
    base = scenario()
    load = load_of(base, 200, gpus=2, warmup=20)
    policies = parse_policies(["nonsi"], base, 2)
    service = 0.030 * base.tokens  # constant latencies: non-SI takes S TPOTs
    capacity = 2 / service
    low = summarize(run_load(load, 0.4 * capacity, policies).runs["nonsi"], 20)
    high = summarize(run_load(load, 1.5 * capacity, policies).runs["nonsi"], 20)
    assert low.stable and low.latency is not None
    assert low.rho == pytest.approx(0.4, rel=0.1)
    assert not high.stable and high.latency is None and high.latency_at(99) is None


def test_adaptive_choice_rule() -> None:
    choices = (
        Choice(Allotment("nonsi"), 3.0),
        Choice(Allotment("si"), 1.2),
        Choice(Allotment("dsi", 1), 1.1),
        Choice(Allotment("dsi", 2), 0.95),
        Choice(Allotment("dsi", 7), 0.94),
    )
    adaptive = Policy("adaptive", choices, adaptive=True)
    # DSI:1 holds 2 GPUs for 2.2 GPU-s: the efficient choice; room is kept for one of it
    assert adaptive.choose(8, 0) == Allotment("dsi", 2)  # DSI:7 is within 5%, holds more
    assert adaptive.choose(4, 0) == Allotment("dsi", 1)  # (4 - 2) // 1 = 2: nothing faster
    assert adaptive.choose(8, 3) == Allotment("dsi", 1)  # (8 - 2) // 4 = 1
    assert adaptive.choose(1, 0) is None  # waits for the efficient choice
    static = Policy("si", (Choice(Allotment("si"), 1.2),))
    assert static.choose(1, 0) is None and static.choose(2, 5) == Allotment("si")


def test_a_pinned_policy_replays_the_given_allotments() -> None:
    """Pinned to its own choices, adaptive's virtual run is itself, record for record; pinned
    to non-SI for every request, it is the non-SI policy's run (the wall clock's replay)."""
    base = scenario(cv=0.3)
    load = load_of(base, 40, gpus=6)
    nonsi, adaptive = parse_policies(["nonsi", "adaptive"], base, 6)
    result = run_load(load, 3.0, [nonsi, adaptive])
    chosen = [r.allotment for r in result.runs["adaptive"].records]
    assert len(set(chosen)) > 1  # the rule did choose, so the pin has something to keep
    again = run_load(load, 3.0, [adaptive.pin(chosen)])
    assert again.runs["adaptive"].records == result.runs["adaptive"].records
    as_nonsi = run_load(load, 3.0, [adaptive.pin([Allotment("nonsi")] * 40)])
    assert as_nonsi.runs["adaptive"].records == result.runs["nonsi"].records


def test_bad_policies() -> None:
    base = scenario()
    with pytest.raises(InvalidParameterError, match="--gpus"):
        parse_policies(["dsi:7"], base, 4)
    with pytest.raises(InvalidParameterError, match="unknown policy"):
        parse_policies(["fast"], base, 4)
    with pytest.raises(InvalidParameterError, match="twice"):
        parse_policies(["si", "si"], base, 4)


def test_cancelled_load_leaves_no_task() -> None:
    """A load run cancelled midway (as Ctrl-C does) unwinds every request's task."""
    base = scenario(cv=0.5)
    load = load_of(base, 100, gpus=4)
    policies = parse_policies(STATIC, base, 4)

    async def main() -> set[asyncio.Task[object]]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(play_load(load, 3.0, policies), timeout=10.0)
        current = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t is not current}

    assert run_on_clock(main, "virtual") == set()


def test_verdict_names_the_best_static_policy_per_rate_and_adaptives_gap() -> None:
    from dsi_online.studies.load import LoadConfig, LoadStudy, Slo, verdict
    from dsi_online.studies.load_stats import summarize

    base = scenario()
    load = load_of(base, 80, gpus=4, warmup=8)
    policies = tuple(parse_policies(["nonsi", "si", "adaptive"], base, 4))
    rates = (0.5, 40.0)
    config = LoadConfig(load, rates, policies, "virtual", Slo(99, 10.0))
    study = LoadStudy(config, {})
    for rate in rates:
        for name, run in run_load(load, rate, policies).runs.items():
            study.cells[name, rate] = summarize(run, load.warmup)
    text = verdict(study)
    si, nonsi = study.cells["si", 0.5], study.cells["nonsi", 0.5]
    assert si.latency_at(99) < nonsi.latency_at(99)  # type: ignore[operator]
    assert "SI at 0.5 req/s" in text
    assert "every static policy is unstable) at 40 req/s" in text
    assert "Adaptive" in text
    assert study.capacity("nonsi") == 0.5 and study.capacity("si") == 0.5


def test_a_queue_still_growing_at_the_end_is_unstable() -> None:
    """Rule (b): waits that climb from quarter to quarter mark the rate unstable even when
    rho is below 1; flat waits do not, nor do a stable queue's excursions at rho 0.8 and
    0.9."""
    from dsi_online.sim.load import RequestRecord
    from dsi_online.studies.load_stats import still_growing

    def records(wait: list[float]) -> list[RequestRecord]:
        return [
            RequestRecord(
                i, float(i), float(i) + w, 0.5, 0.1, 10, Allotment("nonsi"), 10, 0, 0.5, True
            )
            for i, w in enumerate(wait)
        ]

    flat = [0.2 * (i % 3) for i in range(200)]
    growing = [0.05 * i for i in range(200)]
    assert not still_growing(records(flat))
    assert still_growing(records(growing))
    base = scenario()
    load = load_of(base, 400, gpus=2, warmup=40)
    capacity = 2 / (0.030 * base.tokens)
    for rho in (0.8, 0.9):
        near = run_load(load, rho * capacity, parse_policies(["nonsi"], base, 2)).runs["nonsi"]
        assert summarize(near, 40).stable
