"""The text tables of `run` and `table` at 80 columns: no number cut, no column wider than
the terminal."""

from __future__ import annotations

from tests.helpers import render


def test_tables_at_80_columns_cut_no_number() -> None:
    from dsi_online.cli.table import load_profiles, render_table
    from dsi_online.reports.run import render_table as render_run
    from dsi_online.sim.runner import run_scenario
    from dsi_online.sim.scenario import Scenario
    from dsi_online.studies.table import TableConfig, build_table

    config = TableConfig(acceptance=0.8, tokens=30, repeats=3, max_lookahead=3)
    rows = build_table(load_profiles(["tiny-llama-cpu"]), config)
    scenario = Scenario.from_ms(
        target_ms=30, drafter_ms=3, acceptance=0.8, lookahead=5, servers=7, tokens=50, repeats=3
    )
    for renderable in (render_table(rows, config), render_run(run_scenario(scenario))):
        text = render(renderable, 80)
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= 80
    text = render(render_table(rows, config), 80)
    assert text.count("tiny-llama-cpu") == 2  # whole in both tables' profile column
