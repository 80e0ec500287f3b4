"""`dsi-online bench`: the suite's shape, the JSON contract and the regression gate.
The figures themselves are measured by the command, not asserted here."""

from __future__ import annotations

import json

import pytest

import dsi_online.cli.bench as bench_cli
from dsi_online.cli import main
from dsi_online.sim.scenario import Scenario
from dsi_online.studies.bench import SUITE, BenchCase, run_case, suite

TINY = BenchCase(
    "tiny",
    Scenario.from_ms(
        target_ms=5, drafter_ms=1, acceptance=0.8, lookahead=3, servers=2, tokens=15, repeats=2
    ),
    concurrency=2,
)


def test_suite_spans_the_benchmarked_ranges() -> None:
    scenarios = [case.scenario for case in SUITE]
    targets = {round(s.target.tpot.mean * 1e3) for s in scenarios}
    assert min(targets) == 5 and max(targets) == 100
    assert min(s.c for s in scenarios) == pytest.approx(0.01)
    assert max(s.c for s in scenarios) == pytest.approx(0.5)
    assert min(s.acceptance for s in scenarios) == 0.3
    assert max(s.acceptance for s in scenarios) == 0.95
    assert any(s.servers >= s.servers_needed for s in scenarios)
    assert any(s.servers < s.servers_needed for s in scenarios)
    assert {case.concurrency for case in SUITE} >= {1, 100}
    assert len({case.name for case in SUITE}) == len(SUITE)
    assert 0 < len(suite(quick=True)) < len(suite(quick=False))


@pytest.mark.wall
def test_wall_case_is_never_faster_than_its_ideal() -> None:
    """With constant latencies the wall clock can only add time to the ideal runs."""
    result = run_case(TINY)
    assert result.wall_s >= result.ideal_s - 1e-6
    assert result.forwards > 0
    assert result.result.lossless


@pytest.mark.subprocess
@pytest.mark.wall
def test_json_and_regression_gate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_cli, "suite", lambda quick: [TINY])
    monkeypatch.setattr(bench_cli, "virtual_forwards_per_s", lambda: 5.0)
    monkeypatch.setattr(bench_cli, "virtual_long_forwards_per_s", lambda: 4.0)
    monkeypatch.setattr(bench_cli, "virtual_load_forwards_per_s", lambda: 3.0)
    assert main(["bench", "--quick", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] and doc["machine"]["cores"] >= 1
    assert doc["virtual_forwards_per_s"] == 5.0
    assert doc["virtual_long_forwards_per_s"] is None  # the full suite only
    assert doc["virtual_load_forwards_per_s"] == 3.0
    assert main(["bench", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["virtual_long_forwards_per_s"] == 4.0
    (case,) = doc["scenarios"]
    for key in (
        "name",
        "scenario",
        "concurrency",
        "wall_s",
        "ideal_s",
        "overhead_pct",
        "per_forward_overhead_us",
        "speedup_wall",
        "speedup_ideal",
    ):
        assert key in case
    assert case["scenario"]["tokens"] == 15
    assert main(["bench", "--quick", "--min-forwards-per-s", "10"]) == 1
    assert "bench regression" in capsys.readouterr().err
    assert main(["bench", "--fail-above-pct", "-1"]) == 2
