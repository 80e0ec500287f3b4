"""The time-unit engine against the asyncio engine on the virtual clock, on the same coins
(constant latencies, TTFT = TPOT), repeat by repeat: SI is the same algorithm in both and
must agree exactly; the time-unit model's DSI is a conservative bound (docs/engines.md)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsi_online.sim.runner import ScenarioResult, oracle_for, run_scenario
from dsi_online.sim.scenario import Scenario, servers_needed
from dsi_online.units import compare as engines_compare
from dsi_online.units.compare import compare, report
from dsi_online.units.engine import UnitsResult
from dsi_online.units.scenario import simulate_scenario

TARGET_US = 10_000
RELATIVE = 1e-12  # latencies are whole microseconds, so only the model's float sums round


def paired(
    drafter_us: int, a: float, k: int, servers: int | None, tokens: int, repeats: int, seed: int
) -> tuple[ScenarioResult, UnitsResult]:
    """Both engines on one scenario and the same coins; servers None: ceil(1/(k c))."""
    scenario = Scenario.from_ms(
        target_ms=TARGET_US / 1e3,
        drafter_ms=drafter_us / 1e3,
        acceptance=a,
        lookahead=k,
        servers=1 if servers is None else servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
    )
    if servers is None:
        scenario = replace(scenario, servers=scenario.servers_needed)
    coins = [oracle_for(scenario, r).coins for r in range(repeats)]
    return run_scenario(scenario), simulate_scenario(scenario, coins)


def seconds(units: UnitsResult, name: str) -> np.ndarray:
    return units.latencies(name) * (TARGET_US / 1e6)


@pytest.mark.slow
@settings(max_examples=15)
@given(
    st.integers(100, TARGET_US),
    st.floats(0.0, 1.0),
    st.integers(1, 10),
    st.integers(1, 120),
    st.integers(0, 2**32 - 1),
)
def test_si_is_the_same_in_both_engines_repeat_by_repeat(
    drafter_us: int, a: float, k: int, tokens: int, seed: int
) -> None:
    events, units = paired(drafter_us, a, k, None, tokens, 5, seed)
    si = np.array(events.algorithms["si"].latency_s)
    assert np.allclose(si, seconds(units, "si"), rtol=RELATIVE, atol=0)
    nonsi = np.array(events.algorithms["nonsi"].latency_s)
    assert np.allclose(nonsi, seconds(units, "nonsi"), rtol=RELATIVE, atol=0)


@settings(max_examples=25)
@given(
    st.integers(500, TARGET_US),
    st.floats(0.0, 1.0) | st.sampled_from([0.95, 1.0]),
    st.integers(1, 10),
    st.integers(1, 80),
    st.integers(0, 2**32 - 1),
)
def test_with_servers_to_spare_dsi_is_never_slower_than_the_time_unit_model(
    drafter_us: int, a: float, k: int, tokens: int, seed: int
) -> None:
    """No job waits for a server (checked): then on every repeat the event-driven DSI is at
    least as fast as the time-unit model, which verifies whole chunks only."""
    servers = 2 * tokens + servers_needed(Fraction(drafter_us, TARGET_US), k)
    events, units = paired(drafter_us, a, k, servers, tokens, 3, seed)
    dsi = events.algorithms["dsi"]
    assert max(dsi.max_queue_wait_s) == 0
    bound = seconds(units, "dsi") * (1 + RELATIVE)
    assert np.all(np.array(dsi.latency_s) <= bound), (dsi.latency_s, bound)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("c", "a", "k"),
    [(0.1, 0.8, 5), (0.1, 0.95, 5), (0.05, 0.95, 3), (0.3, 0.6, 1), (0.6, 0.8, 5), (0.5, 0.75, 2)],
)
def test_with_the_servers_it_needs_dsi_is_not_slower_on_average(c: float, a: float, k: int) -> None:
    """docs/model.md: the time-unit model bounds the event-driven DSI's mean from above (paired,
    same coins). With ceil(1/(k c)) servers that holds on the long outputs of
    docs/engines.md's grid, not everywhere (short outputs; see there)."""
    events, units = paired(round(c * TARGET_US), a, k, None, 300, 20, seed=5)
    assert events.algorithms["dsi"].mean_s <= seconds(units, "dsi").mean()


def test_the_comparison_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m dsi_online.units.compare` (docs/engines.md): a table and a summary;
    bad input is one line and exit code 2."""
    scenario = Scenario.from_ms(
        target_ms=10, drafter_ms=1, acceptance=0.8, lookahead=5, servers=2, tokens=50, repeats=3
    )
    text = report([compare(scenario)])
    assert "| 0.1 | 0.8 | 5 | 2 |" in text and "slower on average in 0 of 1" in text
    assert engines_compare.main(["--tokens", "0"]) == 2
    assert engines_compare.main(["--extra-servers", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--tokens" in err[0] and "--extra-servers" in err[1]
