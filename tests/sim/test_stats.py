"""dsi_online.sim.stats: paired speedups and their intervals, and how the report words them."""

from __future__ import annotations

from dsi_online.sim.stats import Speedup


def test_an_interval_spanning_one_is_inconclusive() -> None:
    spans = Speedup.paired([1.0, 1.2, 0.9, 1.1], [1.05, 1.1, 0.95, 1.0])
    assert spans.ci_low is not None and spans.ci_low < 1 < (spans.ci_high or 0)
    assert not spans.conclusive
    from dsi_online.reports.run import compare

    assert compare(spans, "SI").startswith("inconclusive against SI")
    assert compare(Speedup.paired([2.0, 2.1, 1.9], [1.0, 1.0, 1.0]), "SI").startswith("2x")
