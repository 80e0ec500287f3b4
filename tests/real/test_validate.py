"""`dsi-online validate` on the test pair: the whole pipeline, small."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsi_online.cli import main
from dsi_online.cli.validate import parse_seeds
from dsi_online.errors import InvalidParameterError
from dsi_online.pair import PairInfo, heldout_prompts
from dsi_online.real.calibrate import PROBES, Calibration
from dsi_online.real.handles import Workers
from dsi_online.real.heldout import (
    BOOTSTRAP,
    REPLICATE_TRACES,
    REPLICATES,
    Calibrations,
    Protocol,
    Replicates,
    calibration_factors,
    ci95,
    host_factors,
    predictive_draws,
    replicate_factors,
    sharing_runs_due,
    slices_due,
)
from dsi_online.real.validate import ValidateRequest
from dsi_online.schedulers.seam import Role
from dsi_online.sim.cost import monotone
from dsi_online.sim.profile import load_profile
from dsi_online.sim.trace import AcceptanceTrace, load_trace


def test_monotone_pools_adjacent_violators() -> None:
    assert monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert monotone([3.0, 2.0, 1.0]) == [2.0, 2.0, 2.0]
    assert monotone([1.0, 1.0, 2.0]) == [1.0, 1.0, 2.0]


def test_calibrations_merge_their_samples() -> None:
    def part(scale: float) -> Calibration:
        row = (scale, 2 * scale)
        return Calibration(
            role="target",
            counts=(1, 2),
            contexts=(10, 20),
            samples=((row, row), (row, row)),
            prefill_s=(scale,),
            layers=2,
            idle_ratios=((1.0,),) * 6,
            contended_ratios=(scale,),
        )

    merged = Calibration.merge([part(1.0), part(3.0)])
    assert merged.samples[0][0] == (1.0, 2.0, 3.0, 6.0)
    assert merged.prefill_s == (1.0, 3.0)
    assert merged.contended == 2.0
    cost = merged.cost()
    assert cost.mean_s == pytest.approx((3.0, 3.0))  # mean of 1, 2, 3, 6 at both counts
    assert cost.attention_s == pytest.approx(0.0)
    assert merged.rounds == 2
    spread = Calibration.spread([part(1.0), part(3.0), part(2.0)])  # one round, in slices
    assert spread.samples[0][0] == (1.0, 2.0, 3.0, 6.0, 2.0, 4.0) and spread.rounds == 1


@pytest.mark.parametrize(("prompts", "slices"), [(40, 8), (2, 8), (7, 3), (5, 5), (3, 10)])
def test_calibration_slices_are_spread_evenly_between_the_prompts(
    prompts: int, slices: int
) -> None:
    """Every slice of a round's calibration is taken once, in order, before some evaluation
    prompt's runs; consecutive slices are as far apart as the prompts allow (40 prompts, 8
    slices: one before every fifth prompt)."""
    due = [slices_due(index, prompts, slices) for index in range(prompts)]
    assert [j for found in due for j in found] == list(range(slices))
    counts = [len(found) for found in due]
    assert sum(counts) == slices and max(counts) - min(counts) <= max(1, slices // prompts)
    starts = [index for index, found in enumerate(due) if found]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(abs(g - prompts / slices) < 1 for g in gaps) or slices >= prompts
    if (prompts, slices) == (40, 8):
        assert starts == [0, 5, 10, 15, 20, 25, 30, 35]


@pytest.mark.parametrize(("prompts", "slices"), [(40, 8), (2, 8), (7, 3), (5, 5), (3, 10)])
def test_every_slice_keeps_a_dsi_run_and_every_prompt_follows_one(
    prompts: int, slices: int
) -> None:
    """With several target servers, the real DSI runs before each evaluation prompt, kept
    with the slices taken last (as `_measure_and_run` keeps them), leave no slice without
    one (a resampled calibration then always has some): one a prompt where the slices are
    no more than the prompts; none with one target server."""
    kept, taken = [0] * slices, 0
    for index in range(prompts):
        taken += len(slices_due(index, prompts, slices))
        runs = sharing_runs_due(index, prompts, slices, servers=2)
        assert runs >= 1 and sharing_runs_due(index, prompts, slices, servers=1) == 0
        for back in range(runs, 0, -1):
            kept[taken - back] += 1
    assert min(kept) >= 1
    assert slices > prompts or sum(kept) == prompts


def test_host_speed_is_the_probes_over_the_calibrations_own_forwards() -> None:
    """Probes between the runs 1.5x the calibration's one-token forwards: host_speed 1.5 (a
    diagnostic; the prediction's prices stay the calibration's); merged rounds pool their
    probes."""

    def part(probes: tuple[float, ...]) -> Calibration:
        return Calibration(
            role="target",
            counts=(1, 2),
            contexts=(10, 20),
            samples=(((1.0, 1.0), (2.0, 2.0)), ((1.0, 1.0), (2.0, 2.0))),
            prefill_s=(4.0,),
            layers=2,
            idle_ratios=((1.0,),) * 6,
            contended_ratios=(1.0,),
            probes_s=probes,
        )

    assert part(()).host_speed == 1.0
    merged = Calibration.merge([part((1.0, 1.5)), part((2.0,))])
    assert merged.probes_s == (1.0, 1.5, 2.0)
    assert merged.host_speed == pytest.approx(1.5)
    assert merged.cost().mean_s == pytest.approx((1.0, 2.0))


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"lookahead": 0}, "--lookahead/-k"),
        ({"servers": 65}, "--servers/-n"),
        ({"repeats": 0}, "--repeats/-r"),
        ({"workers": "fork"}, "--workers"),
        ({"calibration_samples": 2}, "--calibration-samples"),
    ],
)
def test_bad_requests_name_the_option(changes: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        ValidateRequest(**changes)  # type: ignore[arg-type]
    assert re.search(option, raised.value.cli_message)


@pytest.mark.torch
@pytest.mark.slow
def test_validate_end_to_end_on_the_test_pair(
    test_pair: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lossless real runs, the peer token for token, a prediction for each model, and the
    JSON contract; the traces and profile it writes drive `run` again. With two target
    servers, real DSI runs on calibration prompts (the set in turn) come right before each
    evaluation prompt's runs, one for each slice taken there (at least one), for the
    slowdowns beside busy servers."""
    from dsi_online.real.backend import RealBackend

    plays: list[tuple[str, tuple[int, ...]]] = []
    play = RealBackend.play

    def spy(backend: RealBackend, scheduler: Any, prompt: Sequence[int], tokens: int) -> Any:
        plays.append((scheduler.name, tuple(prompt)))
        return play(backend, scheduler, prompt, tokens)

    monkeypatch.setattr(RealBackend, "play", spy)
    document, trace, profile = tmp_path / "v.json", tmp_path / "t.json", tmp_path / "p.toml"
    args = ["validate", "--pair", str(test_pair), "-k", "3", "-n", "2", "--prompts", "2"]
    args += ["--calibration-prompts", "3"]
    args += ["--prompt-bytes", "16", "-S", "12", "-r", "1", "--calibration-samples", "3"]
    args += ["--workers", "thread", "--json", str(document), "--trace-out", str(trace)]
    assert main([*args, "--profile-out", str(profile)]) == 0
    data = json.loads(document.read_text())
    assert set(data) >= {"pair", "protocol", "scenario", "acceptance", "algorithms", "speedups"}
    protocol = data["protocol"]
    assert protocol["held_out"] is True
    calibration = {(p["file"], p["offset"]) for p in protocol["calibration_prompts"]}
    evaluation = {(p["file"], p["offset"]) for p in protocol["evaluation_prompts"]}
    assert len(calibration) == 3 and len(evaluation) == 2
    assert not calibration & evaluation
    assert set(data["transformers"]) == {"greedy_s", "assisted_s", "tokens_match"}
    assert data["transformers"]["tokens_match"] is True
    assert all(data["calibration"][role]["host_speed"] > 0 for role in ("target", "drafter"))
    for name in ("nonsi", "si", "dsi"):
        entry = data["algorithms"][name]
        assert entry["lossless"] is True
        assert entry["predicted_s"] > 0 and entry["actual_s"] > 0
        expected = 100 * (entry["predicted_s"] - entry["actual_s"]) / entry["actual_s"]
        assert entry["error_pct"] == pytest.approx(expected)
        assert set(entry["error_pct_by_model"]) == {"paper", "traced", "full"}
        low, high = entry["predicted_ci95_s"]
        assert low <= entry["predicted_s"] <= high
        assert entry["inside_ci95"] == (low <= entry["actual_s"] <= high)
        in_sample = entry["in_sample"]
        assert in_sample["error_pct"] == pytest.approx(
            100 * (in_sample["predicted_s"] - entry["actual_s"]) / entry["actual_s"]
        )
    for key in ("dsi_over_si", "dsi_over_nonsi", "si_over_nonsi"):
        speedup = data["speedups"][key]
        assert set(speedup) >= {"predicted", "predicted_ci95", "actual", "actual_ci95"}
        assert speedup["predicted_ci95"][0] <= speedup["predicted"] <= speedup["predicted_ci95"][1]
    assert 0 <= data["acceptance"]["rate"] <= 1
    for role in ("target", "drafter"):  # -n 2: a real DSI run with each evaluation prompt
        assert data["calibration"][role]["run_forwards"] > 0
    assert [name for name, _ in plays[:3]] == ["nonsi", "si", "dsi"]  # dispatch gaps
    evaluation_runs = {prompt for name, prompt in plays[3:] if name == "nonsi"}
    kinds = ["e" if prompt in evaluation_runs else name for name, prompt in plays[3:]]
    assert kinds == ["dsi", "dsi", "e", "e", "e", "dsi", "e", "e", "e"]  # 3 slices, 2 prompts
    sharing = [prompt for name, prompt in plays[3:] if prompt not in evaluation_runs]
    assert sharing[0] == plays[0][1] and len(set(sharing)) == 3  # the calibration set in turn
    assert load_trace(trace).traces == tuple(data["acceptance"]["traces"])
    assert load_profile(profile).target.latency.cost is not None
    capsys.readouterr()
    rerun = ["run", "--clock", "virtual", "--profile", str(profile), "--acceptance-trace"]
    rerun += [str(trace), "--prompt-tokens", "16", "-S", "12", "-k", "3", "-n", "2"]
    assert main(rerun) == 0
    assert "DSI" in capsys.readouterr().out


def test_predictive_draws_pair_algorithms_and_spread_as_both_samples() -> None:
    """The draws' spread is that of a mean over the calibration sample plus one over the
    evaluation set, s^2 (1/C + 1/E) (the bootstrap's own factor (C-1)/C aside); the same
    picks serve every algorithm."""
    rng = np.random.default_rng(1)
    prompts, evaluation = 60, 15
    effect = rng.normal(1.0, 0.2, size=prompts)
    latencies = {"a": np.repeat(effect[:, None], 4, axis=1)}
    latencies["b"] = 2 * latencies["a"]
    draws = predictive_draws(latencies, evaluation, runs=2, seed=0)
    assert np.allclose(draws["b"] / draws["a"], 2.0)
    s2 = effect.var(ddof=1) * (prompts - 1) / prompts
    expected = math.sqrt(s2 * (1 / prompts + 1 / evaluation))
    # the sd of BOOTSTRAP draws has a relative standard error of about 1 / sqrt(2 BOOTSTRAP)
    assert draws["a"].std() == pytest.approx(expected, rel=4 / math.sqrt(2 * BOOTSTRAP))


def test_calibration_replicates_keep_speedups_paired_and_their_own_noise() -> None:
    """Replicates that move every algorithm alike (the host's speed) leave a speedup's
    draws exact; replicates that move one against the other (a backend's own noise) spread
    it by their log difference, whole: the host's share is taken out of the common part
    only."""
    rng = np.random.default_rng(7)
    latencies = {"a": np.ones((50, 4))}
    latencies["b"] = 2 * latencies["a"]
    host = rng.lognormal(0.0, 0.1, size=80)
    alike = rng.lognormal(0.0, 0.05, size=REPLICATES)
    same = Replicates({"a": alike, "b": alike}, 16)
    draws = predictive_draws(latencies, 20, 2, seed=0, host=host, calibration=same)
    assert draws["b"] / draws["a"] == pytest.approx(np.full(BOOTSTRAP, 2.0))
    apart = rng.lognormal(0.0, 0.05, size=REPLICATES)
    split = Replicates({"a": alike, "b": alike * apart}, 16)
    draws = predictive_draws(latencies, 20, 2, seed=0, host=host, calibration=split)
    logs = np.log(draws["b"] / draws["a"] / 2)
    # the draws' log-ratio is normal with the replicates' log difference's sd; an sd over
    # BOOTSTRAP draws has a relative standard error of about 1/sqrt(2 BOOTSTRAP)
    expected = np.log(apart).std(ddof=1)
    assert logs.std() == pytest.approx(expected, rel=3 / math.sqrt(2 * BOOTSTRAP))


def test_held_out_intervals_cover_the_evaluation_mean() -> None:
    """Over many draws of a calibration and an evaluation set from one population of
    prompts (each with its own mean latency and run-to-run noise), the 95% interval covers
    the evaluation set's real mean about 95% of the time."""
    rng = np.random.default_rng(2)
    population = rng.lognormal(0.0, 0.25, size=5000)
    trials, covered, prompts, evaluation, runs = 300, 0, 40, 10, 2
    for trial in range(trials):
        picks = rng.choice(len(population), size=prompts + evaluation, replace=False)
        means = population[picks]
        simulated = means[evaluation:, None] * rng.lognormal(0.0, 0.05, size=(prompts, 8))
        real = means[:evaluation, None] * rng.lognormal(0.0, 0.05, size=(evaluation, runs))
        low, high = ci95(predictive_draws({"a": simulated}, evaluation, runs, trial)["a"])
        covered += low <= real.mean() <= high
    # binomial standard error of the coverage at 95%: sqrt(0.95 x 0.05 / trials) = 1.3%
    assert abs(covered / trials - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / trials)


def _probed(probes: dict[str, np.ndarray]) -> dict[str, Calibration]:
    row = (1.0, 1.0)
    return {
        role: Calibration(
            role=role,  # type: ignore[arg-type]
            counts=(1, 2),
            contexts=(10, 20),
            samples=((row, row), (row, row)),
            prefill_s=(1.0,),
            layers=2,
            idle_ratios=((1.0,),) * 6,
            contended_ratios=(1.0,),
            probes_s=tuple(float(x) for x in values.ravel()),
        )
        for role, values in probes.items()
    }


def test_host_factors_keep_the_hosts_spread_and_drop_the_forwards_noise() -> None:
    """A host whose speed moves from probe to probe (every forward of a probe equal): the
    factors are those speeds over their mean. Forwards noisy around one speed: the spread is
    noise, and the factors shrink to 1."""
    speeds = np.array([1.0, 1.5, 1.0, 2.5])
    steady = np.repeat(speeds[:, None], PROBES, axis=1)
    factors = host_factors(_probed({"target": steady, "drafter": 0.3 * steady}))
    assert factors == pytest.approx(speeds / speeds.mean())
    rng = np.random.default_rng(3)
    noisy = rng.lognormal(0.0, 0.2, size=(400, PROBES))
    factors = host_factors(_probed({"target": noisy, "drafter": noisy[::-1]}))
    assert factors.std() < 0.1 * noisy.mean(axis=1).std()  # the noise, shrunk away
    assert host_factors(_probed({"target": np.zeros((0, 3)), "drafter": np.zeros((0, 3))})) == 1


def test_held_out_intervals_cover_an_evaluation_mean_on_a_drifting_host() -> None:
    """Real runs each slowed by the host's speed at their moment, and the calibration by its
    mean speed over the moments of its slices (factors from the distribution the probes
    sample): with the probes' factors and the slices resampled (`calibration_factors`, here
    on the slices' speeds alone) in the bootstrap, the 95% interval covers the evaluation
    set's real mean about 95% of the time, as the test above checks without a host."""
    rng = np.random.default_rng(4)
    population = rng.lognormal(0.0, 0.1, size=5000)
    trials, covered, prompts, evaluation, runs, slices = 300, 0, 60, 30, 2, 16

    def host(size: int) -> np.ndarray:
        return rng.choice([1.0, 1.0, 1.0, 1.8], size=size)  # slow bursts a quarter of the time

    for trial in range(trials):
        picks = rng.choice(len(population), size=prompts + evaluation, replace=False)
        means = population[picks]
        simulated = means[evaluation:, None] * np.ones((prompts, 8))
        real = means[:evaluation, None] * host(evaluation * runs).reshape(evaluation, runs)
        probes = np.repeat(host(evaluation * runs)[:, None], PROBES, axis=1)
        factors = host_factors(_probed({"target": probes, "drafter": probes}))
        speeds = host(slices)
        replicates = speeds[rng.integers(0, slices, size=(REPLICATES, slices))].mean(axis=1)
        calibration = Replicates({"a": replicate_factors(replicates, slices)}, slices)
        calibrated = simulated * speeds.mean()
        draws = predictive_draws({"a": calibrated}, evaluation, runs, trial, factors, calibration)
        low, high = ci95(draws["a"])
        covered += low <= real.mean() <= high
    # binomial standard error of the coverage at 95%: sqrt(0.95 x 0.05 / trials) = 1.3%;
    # measured 93.0%; 67.0% without `calibration` (the calibration taken as exact)
    assert abs(covered / trials - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / trials)


def _slices(speeds: Sequence[float]) -> dict[Workers, dict[Role, list[Calibration]]]:
    """One-sample calibrations of both backends and roles, the i-th all `speeds[i]` times
    slower than a base (the drafter a tenth of the target)."""

    def one(role: Role, ms: float) -> Calibration:
        row = ((ms,), (2 * ms,))
        return Calibration(
            role=role,
            counts=(1, 2),
            contexts=(10, 20),
            samples=(row, row),
            prefill_s=(3 * ms,),
            layers=2,
            idle_ratios=((1.0,),) * 6,
            contended_ratios=(1.0,),
        )

    bases: tuple[tuple[Role, float], ...] = (("target", 1e-3), ("drafter", 1e-4))
    kinds: tuple[Workers, ...] = ("process", "inline")
    return {
        kind: {role: [one(role, base * speed) for speed in speeds] for role, base in bases}
        for kind in kinds
    }


def _factors(speeds: Sequence[float]) -> dict[str, np.ndarray]:
    slices = _slices(speeds)
    merged: Calibrations = {
        kind: {role: Calibration.merge(parts) for role, parts in by_role.items()}
        for kind, by_role in slices.items()
    }
    traces = np.random.default_rng(5).random((REPLICATE_TRACES, 16)) < 0.7
    trace = AcceptanceTrace.from_matches(traces.tolist(), "test")
    request = ValidateRequest(lookahead=3, tokens=16, prompt_bytes=8)
    return calibration_factors(request, slices, merged, trace).factors


def test_calibration_factors_replay_one_simulation_under_resampled_slices() -> None:
    """Slices that agree give every replicate the same prediction: the factors are exactly
    1 (the replicates share their traces and seed; only the calibration differs)."""
    factors = _factors([1.0] * 8)
    assert set(factors) == {"nonsi", "si", "dsi"}
    for found in factors.values():
        assert len(found) == REPLICATES
        assert found == pytest.approx(np.ones(REPLICATES), abs=1e-12)


def test_calibration_factors_spread_as_the_slices_mean() -> None:
    """Slices at different speeds: non-SI's factors spread as a bootstrap mean of those
    speeds (sd(speeds) / sqrt(n) over their mean), and every algorithm's move together, the
    same slices resampled for both backends."""
    speeds = np.random.default_rng(6).lognormal(0.0, 0.3, size=16)
    factors = _factors(speeds.tolist())
    expected = speeds.std(ddof=1) / math.sqrt(len(speeds)) / speeds.mean()
    # an sd from REPLICATES draws has a relative standard error of about 1/sqrt(2 (R - 1))
    rel = 3 / math.sqrt(2 * (REPLICATES - 1))
    assert factors["nonsi"].std(ddof=1) == pytest.approx(expected, rel=rel)
    for name in ("si", "dsi"):
        assert np.corrcoef(factors["nonsi"], factors[name])[0, 1] > 0.9


@pytest.mark.torch
def test_calibration_and_evaluation_prompts_are_disjoint(test_pair: Path) -> None:
    """One draw without replacement, split: the sets share no prompt, and the evaluation
    set is the draw's first prompts."""
    request = ValidateRequest(pair=test_pair, prompts=40, calibration_prompts=120)
    protocol = Protocol.draw(PairInfo.read(test_pair), request)
    evaluation = {(p.file, p.offset) for p in protocol.evaluation}
    calibration = {(p.file, p.offset) for p in protocol.calibration}
    assert len(evaluation) == 40 and len(calibration) == 120
    assert not evaluation & calibration
    drawn = heldout_prompts(test_pair, 160, request.prompt_bytes, request.draw_seed)
    assert [list(p.tokens) for p in protocol.evaluation] == drawn[:40]


def test_seeds_parse_ranges_and_lists() -> None:
    assert parse_seeds("1-6") == [1, 2, 3, 4, 5, 6]
    assert parse_seeds("1,3, 5") == [1, 3, 5]
    assert parse_seeds("4") == [4]
    for bad in ("x", "3-1", "1,1", "-2", "", "0-200"):
        with pytest.raises(InvalidParameterError) as raised:
            parse_seeds(bad)
        assert "(--seeds)" in raised.value.cli_message


@pytest.mark.torch
@pytest.mark.slow
def test_validate_over_seeds_reports_every_run_and_the_means(
    test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Also the split placement (`--workers auto`, here with two target servers and a
    device for each): DSI on processes, calibrated with contention; non-SI and SI inline on
    one target server, calibrated in the same slices as DSI's backend (a cold prefill each),
    without contention: two inline forwards never overlap."""
    document = tmp_path / "s.json"
    args = ["validate", "--pair", str(test_pair), "-k", "3", "--prompts", "2"]
    args += ["--calibration-prompts", "3", "--prompt-bytes", "16", "-S", "12", "-r", "1"]
    args += ["--calibration-samples", "3", "--seeds", "1-2", "-n", "2", "--device", "cpu,cpu,cpu"]
    args += ["--workers", "auto"]
    assert main([*args, "--json", str(document)]) == 0
    data = json.loads(document.read_text())
    assert data["seeds"] == [1, 2]
    assert [run["scenario"]["prompt_seed"] for run in data["runs"]] == [1, 2]
    for run in data["runs"]:
        assert run["scenario"]["workers"] == "auto"
        placed = {name: entry["workers"] for name, entry in run["algorithms"].items()}
        assert placed == {"nonsi": "inline", "si": "inline", "dsi": "process"}
        assert all(entry["lossless"] for entry in run["algorithms"].values())
        for role in ("target", "drafter"):
            assert len(run["calibration_inline"][role]["prefill_ms"]) == 3
            assert len(run["calibration"][role]["prefill_ms"]) == 3
            assert run["calibration_inline"][role]["contended"] == 1.0
            assert run["calibration_inline"][role]["crowded"] == []
            assert run["calibration"][role]["contended"] != 1.0
            assert run["calibration"][role]["run_forwards"] > 0  # DSI runs among the prompts
            assert run["calibration_inline"][role]["run_forwards"] == 0
    for key in ("nonsi", "si", "dsi", "dsi_over_si", "dsi_over_nonsi", "si_over_nonsi"):
        summary = data["summary"][key]
        assert len(summary["error_pct"]) == len(summary["in_sample_error_pct"]) == 2
        assert summary["mean_error_pct"] == pytest.approx(sum(summary["error_pct"]) / 2)
        low, high = summary["mean_error_ci95"]
        assert low <= summary["mean_error_pct"] <= high
    assert "mean signed error" in capsys.readouterr().out
    assert main([*args, "--trace-out", str(tmp_path / "t.json")]) == 2


def _record(role: str, submitted: float, delivered: float, cancel: float | None = None) -> Any:
    from dsi_online.real.server import ForwardRecord

    return ForwardRecord(
        server=f"{role}-0",
        role=role,  # type: ignore[arg-type]
        context=1,
        kept=0,
        processed=1,
        prompt=0,
        catchup=0,
        layers=1,
        submitted_s=submitted,
        started_s=submitted,
        ended_s=delivered,
        delivered_s=delivered,
        cpu_s=0.0,
        stopped=False,
        cancel_s=cancel,
    )


def _real_run(*servers: tuple[str, str, tuple[Any, ...]]) -> Any:
    """A real run's result holding only these servers' records (name, role, records)."""
    from dsi_online.real.backend import RealRunResult, ServerRecords
    from dsi_online.schedulers import RunResult

    return RealRunResult(
        run=RunResult("dsi", 0.009, 0.001, 1, "", ()),
        prompt=(1,),
        output=(1,),
        reference=(1,),
        servers=tuple(ServerRecords(*server) for server in servers),
    )


def test_dispatch_gaps_run_from_the_reply_that_led_to_a_forward() -> None:
    """The loop's time before each forward: from the run's start for the first, then from
    the latest reply delivered before it, replies of cancelled forwards aside."""
    from dsi_online.real.runs import dispatch_gaps

    drafts = (_record("drafter", 0.001, 0.002), _record("drafter", 0.0023, 0.003))
    targets = (_record("target", 0.0031, 0.006, cancel=0.004), _record("target", 0.0062, 0.009))
    gaps = dispatch_gaps(_real_run(("drafter-0", "drafter", drafts), ("t", "target", targets)))
    assert gaps["drafter"] == pytest.approx([0.001, 0.0003])
    assert gaps["target"] == pytest.approx([0.0001, 0.0032])  # not from the cancelled reply


def test_run_forwards_count_the_servers_busy_at_each_submission() -> None:
    """A run's forwards in the simulator's terms: a forward begins at its submission or when
    its server's cancelled forward stopped, if later; busy = other servers' forwards between
    their begin and their delivery (a cancelled one's: its stop) at its begin; idle from the
    server's previous end; a cancelled one ends at its worker's stop; prefills and forwards
    cancelled before their first layer left out."""
    from dsi_online.real.runs import run_forwards

    prefill = replace(_record("drafter", 0.0, 0.001), prompt=4, processed=5)
    never_ran = replace(_record("drafter", 0.006, 0.0062, cancel=0.006), layers=0)
    drafts = (prefill, _record("drafter", 0.0015, 0.002), _record("drafter", 0.0045, 0.005))
    drafts += (never_ran,)
    first = replace(_record("target", 0.001, 0.004, cancel=0.003), ended_s=0.0035)
    second = (replace(_record("target", 0.0018, 0.0047), server="t1"),)
    found = run_forwards(
        _real_run(
            ("drafter-0", "drafter", drafts),
            ("t0", "target", (first, _record("target", 0.003, 0.0042))),
            ("t1", "target", second),
        )
    )
    # at 0.0015 t0 computes (until 0.0035), t1 not yet; at 0.0045 only t1 (until 0.0047)
    assert [(f.busy, f.tokens, f.context) for f in found["drafter"]] == [(1, 1, 0), (1, 1, 0)]
    assert [f.idle_s for f in found["drafter"]] == pytest.approx([0.0005, 0.0025])
    assert [f.seconds for f in found["drafter"]] == pytest.approx([0.0005, 0.0005])
    # t0's first, cancelled, alone at 0.001 until its stop at 0.0035; its second, sent at
    # 0.003, begins then, beside t1; t1 at 0.0018: the drafter's and t0's first compute
    assert [(f.busy, f.cancelled) for f in found["target"]] == [(0, True), (1, False), (2, False)]
    assert [f.idle_s for f in found["target"]] == pytest.approx([0.001, 0.0, 0.0018])
    assert [f.seconds for f in found["target"]] == pytest.approx([0.0025, 0.0007, 0.0029])


def _flat_calibration(role: Role, **fields: Any) -> Calibration:
    """A calibration whose forwards all took 1 s (1 or 2 tokens, either context; 2 layers,
    a 2 s cold prefill), with `fields` besides."""
    row = (1.0, 1.0)
    return Calibration(
        role=role,
        counts=(1, 2),
        contexts=(10, 20),
        samples=((row, row), (row, row)),
        prefill_s=(2.0,),
        layers=2,
        **fields,
    )


def _sharing_calibration(forwards: tuple[Any, ...]) -> Calibration:
    return _flat_calibration(
        "drafter",
        idle_ratios=((1.0,), (1.0,), (2.0,), (2.0,), (2.0,), (2.0,)),
        contended_ratios=(1.1,),
        overhead_s=(0.05, 0.15),
        run_forwards=forwards,
    )


def test_sharing_reads_the_slowdowns_beside_busy_servers_from_the_real_runs() -> None:
    """Where the real DSI runs had SHARING_MIN forwards beside 1 busy server, a forward
    beside 1 pays what those paid over their price, and likewise beside 2 or more (a ratio
    of sums, each forward's seconds plus the loop time a calibration forward's price holds,
    the idle slowdown priced in); a group with fewer keeps the chains' `contended` or no
    `crowded`."""
    from dsi_online.real.calibrate import SHARING_MIN
    from dsi_online.real.runs import RunForward

    half = SHARING_MIN // 2
    whole = {"layers": 2, "cancelled": False}
    beside_one = [RunForward(1, 1, 10, 0.0, 1.2, **whole), RunForward(1, 2, 10, 0.0, 1.0, **whole)]
    beside_one *= half
    beside_more = [
        RunForward(2, 1, 10, 0.0, 1.4, **whole),
        RunForward(3, 1, 10, 0.004, 2.8, **whole),
    ]
    beside_more *= half
    alone = [RunForward(0, 1, 10, 0.0, 9.0, **whole)]
    cost = _sharing_calibration((*beside_one, *beside_more, *alone)).cost()
    assert cost.contended == pytest.approx(1.2)  # (1.2 + 0.1 + 1.0 + 0.1) / 2
    assert cost.crowded == pytest.approx(((1.5 + 2.9) / (1.0 + 2.0),))  # after 4 ms idle: x2
    few = _sharing_calibration((*beside_one[:-1], *beside_more[:-1])).cost()
    assert (few.contended, few.crowded) == (pytest.approx(1.1), ())
    only_one = _sharing_calibration((*beside_one, *beside_more[:-1])).cost()
    assert (only_one.contended, only_one.crowded) == (pytest.approx(1.2), ())
    runs = [{"drafter": beside_one, "target": []}, {"drafter": [*beside_more, *alone]}]
    kept = _sharing_calibration(()).with_forwards(runs[0]).with_forwards(runs[1])
    assert kept.cost() == cost  # a slice keeps every run taken after it


def test_a_cancelled_forward_counts_as_the_simulator_prices_it() -> None:
    """A forward cancelled in its first of 2 layers took 0.7 s from its begin to its
    worker's stop (plus half the calibration's 0.1 s loop time): the slowdown read from it
    makes the simulator stop such a forward, cancelled at the same point, after as long."""
    from dsi_online.real.calibrate import SHARING_MIN
    from dsi_online.real.runs import RunForward
    from dsi_online.sim.cost import CostStream

    stopped = RunForward(1, 1, 10, 0.0, 0.7, layers=1, cancelled=True)
    calibration = replace(_sharing_calibration((stopped,) * SHARING_MIN), transit_s=((0.1, 0.2),))
    cost = calibration.cost()
    assert cost.contended == pytest.approx((0.7 + 0.05 + 0.5 * 0.3 - 0.1) / 0.5)
    stop = CostStream(cost, np.random.default_rng(0)).stop(
        0.0, cost.mean(1, 10) * cost.contended, now=0.5, protected=False
    )
    assert (stop.end, stop.layers, stop.completed) == (pytest.approx(0.75), 1, False)


def test_dispatch_is_the_schedulers_loop_time_less_the_calibrations() -> None:
    calibration = _flat_calibration(
        "target",
        idle_ratios=((1.0,),) * 6,
        contended_ratios=(1.0,),
        overhead_s=(0.1, 0.3),
        gaps_s=(0.5, 0.7),
    )
    assert calibration.cost().dispatch_s == pytest.approx(0.4)
