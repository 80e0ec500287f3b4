"""Acceptance traces replayed as the oracle's coins."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.runner import oracle_for, run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.trace import AcceptanceTrace, load_trace


def si_latency(trace: str, tokens: int) -> float:
    scenario = Scenario.from_ms(
        target_ms=1000, drafter_ms=100, acceptance=0.5, lookahead=2, servers=1, tokens=tokens
    )
    replay = AcceptanceTrace((trace,), "test")
    traced = replace(scenario, trace=replay, acceptance=replay.rate)
    return run_scenario(traced).algorithms["si"].latency_s[0]


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        # chunk 1 accepts both drafts (+ bonus): 2c + 1; the last token alone: 1
        ("1101", 2 * 0.1 + 1 + 1),
        # chunk 1 rejects its 2nd draft: 2c + 1 for 2 tokens; chunk 2 (1 draft, accepted): c + 1
        ("1011", 2 * 0.1 + 1 + 0.1 + 1),
    ],
)
def test_si_follows_the_trace_chunk_by_chunk(trace: str, expected: float) -> None:
    assert si_latency(trace, 4) == pytest.approx(expected, abs=1e-9)


def test_repeats_cycle_through_the_traces_and_keep_them_as_coins() -> None:
    trace = AcceptanceTrace(("1100", "0011", "1010"), "test")
    scenario = replace(
        Scenario.from_ms(
            target_ms=10, drafter_ms=1, acceptance=0.5, lookahead=3, servers=2, tokens=4
        ),
        trace=trace,
        acceptance=trace.rate,
        repeats=4,
    )
    expected = ["1100", "0011", "1010", "1100"]
    for repeat, bits in enumerate(expected):
        assert oracle_for(scenario, repeat).coins == [b == "1" for b in bits]
    assert trace.rate == pytest.approx(6 / 12)
    assert run_scenario(scenario).lossless


def test_a_trace_of_ones_is_acceptance_one() -> None:
    base = Scenario.from_ms(
        target_ms=10, drafter_ms=1, acceptance=1.0, lookahead=4, servers=3, tokens=50, repeats=2
    )
    traced = replace(base, trace=AcceptanceTrace(("1" * 60,), "test"))
    for name in ("nonsi", "si", "dsi"):
        assert (
            run_scenario(traced).algorithms[name].latency_s
            == run_scenario(base).algorithms[name].latency_s
        )


def test_round_trip_and_bad_files(tmp_path: Path) -> None:
    trace = AcceptanceTrace(("101", "0"), "measured here")
    path = tmp_path / "t.json"
    path.write_text(trace.to_json(), encoding="utf-8")
    assert load_trace(path) == trace
    bad = tmp_path / "bad.json"
    for text in (
        "{",
        '{"format": "x"}',
        '{"format": "dsi-online acceptance trace", "traces": [1]}',
    ):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidParameterError) as raised:
            load_trace(bad)
        assert re.search("--acceptance-trace", raised.value.cli_message)
    with pytest.raises(InvalidParameterError, match="not found"):
        load_trace(tmp_path / "missing.json")
    with pytest.raises(InvalidParameterError, match="0 and 1"):
        AcceptanceTrace(("10x",), "s")


def test_an_output_longer_than_the_trace_is_refused() -> None:
    scenario = Scenario.from_ms(
        target_ms=10, drafter_ms=1, acceptance=0.5, lookahead=2, servers=1, tokens=5
    )
    with pytest.raises(InvalidParameterError) as raised:
        replace(scenario, trace=AcceptanceTrace(("101", "1111"), "s"), acceptance=6 / 7)
    assert re.search(r"--tokens/-S\) must be <= 3", raised.value.cli_message)
    with pytest.raises(InvalidParameterError, match="cannot be given with an acceptance trace"):
        replace(scenario, trace=AcceptanceTrace(("10101",), "s"))
