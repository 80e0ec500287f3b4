"""Hypothesis strategies for random scenarios on the virtual clock."""

from __future__ import annotations

from hypothesis import strategies as st

from dsi_online.sim.scenario import Scenario


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_tokens: int = 60,
    repeats: int = 1,
    constant: bool = True,
    max_servers: int = 8,
    comm: bool = False,
) -> Scenario:
    """A random scenario: any acceptance, lookahead, servers, drafter speed (slower than the
    target included) and TTFT, with constant or lognormal latencies."""
    target_ms = draw(st.floats(1.0, 100.0))
    c = draw(st.floats(0.01, 2.0))
    return Scenario.from_ms(
        target_ms=target_ms,
        target_ttft_ms=target_ms * draw(st.floats(0.2, 5.0)),
        drafter_ms=target_ms * c,
        drafter_ttft_ms=target_ms * c * draw(st.floats(0.2, 5.0)),
        acceptance=draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)),
        lookahead=draw(st.integers(1, 10)),
        servers=draw(st.integers(1, max_servers)),
        tokens=draw(st.integers(1, max_tokens)),
        repeats=repeats,
        seed=draw(st.integers(0, 2**32 - 1)),
        latency_cv=0.0 if constant else draw(st.floats(0.05, 1.0)),
        comm_ms=draw(st.floats(0.01, 20.0)) if comm else 0.0,
    )
