"""dsi_online.reports.sweep_view, rendered from hand-made cells: the tables' columns and
figures at 80 columns, the bar chart, the knee sentences and the JSON document.

The cells: servers 1..3 x acceptance 0.6 and 0.9, 50 tokens, 3 paired repeats. At acceptance
0.6 non-SI takes 1.5 s, SI 1 s and DSI 0.9, 0.6 and 0.61 s with 1, 2 and 3 servers; at 0.9
every latency is halved. Busy GPU-seconds are 0.8 of the latency."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dsi_online.reports.sweep_view import (
    BAR_WIDTH,
    groups,
    knee_sentence,
    render_chart,
    render_notes,
    render_tables,
    to_json,
)
from dsi_online.sim.scenario import Scenario
from dsi_online.studies.sweep import SweepRun
from dsi_online.studies.sweep_analysis import AlgorithmRuns, CellRuns, SweepResult, analyse
from dsi_online.studies.sweep_grid import SweepConfig, parse_axis
from tests.helpers import render

BASE = Scenario.from_ms(
    target_ms=30, drafter_ms=3, acceptance=0.8, lookahead=5, servers=7, tokens=50, repeats=3
)
DSI_S = {1: (0.90, 0.92, 0.88), 2: (0.60, 0.61, 0.59), 3: (0.61, 0.62, 0.60)}


def cell(
    values: tuple[int | float, ...],
    latency_s: dict[str, tuple[float, ...]],
    servers: int = 7,
    needed: int = 2,
) -> CellRuns:
    return CellRuns(
        values=values,
        tokens=50,
        c=0.1,
        servers_needed=needed,
        lossless=True,
        algorithms={
            name: AlgorithmRuns(lat, tuple(0.8 * x for x in lat)) for name, lat in latency_s.items()
        },
        servers=servers,
    )


def servers_sweep(dsi_s: dict[int, tuple[float, ...]] = DSI_S, repeats: int = 3) -> SweepResult:
    base = replace(BASE, repeats=repeats)
    config = SweepConfig(
        axes=(parse_axis("servers=1:3"), parse_axis("acceptance=0.6,0.9")),
        base=base,
        latency=None,
    )
    cells = []
    for servers in (1, 2, 3):
        for acceptance, scale in ((0.6, 1.0), (0.9, 0.5)):
            latency = {"nonsi": (1.5, 1.52, 1.48), "si": (1.0, 1.02, 0.98), "dsi": dsi_s[servers]}
            scaled = {k: tuple(scale * x for x in v[:repeats]) for k, v in latency.items()}
            cells.append(cell((servers, acceptance), scaled, servers=servers))
    return analyse(config, cells)


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def assert_fits(text: str, width: int = 80) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_servers_tables_show_every_figure_whole_at_80_columns() -> None:
    latency_06, cost_06, latency_09, cost_09 = (
        render(t, 80) for t in render_tables(servers_sweep())
    )
    for text in (latency_06, cost_06, latency_09, cost_09):
        assert_fits(text)
    assert "sweep of servers x acceptance: 50 tokens x 3 repeats, virtual clock" in latency_06
    assert "(base: c=0.1 a=0.8 k=5 N=7)" in latency_06
    assert "acceptance=0.6" in latency_06 and "acceptance=0.9" in latency_09
    header = ["servers", "non-SI", "SI", "DSI", "DSI/SI", "DSI/nSI", "SI/nSI", "gain", "ms"]
    assert header in rows(latency_06) and header in rows(latency_09)
    # speedups are ratios of mean latencies: 1/0.9, 1.5/0.9, 1.5/1; gains in ms saved
    assert ["1", "1.5", "1", "0.9±0.01", "1.11x", "1.67x", "1.50x", "—"] in rows(latency_06)
    assert ["2", "1.5", "1", "0.6±0.006", "1.67x", "2.50x", "1.50x", "+300.0*"] in rows(latency_06)
    assert ["3", "1.5", "1", "0.61±0.006", "1.64x", "2.46x", "1.50x", "-10.0"] in rows(latency_06)
    assert ["2", "0.75", "0.5", "0.3±0.003", "1.67x", "2.50x", "1.50x", "+150.0*"] in rows(
        latency_09
    )
    # busy: 0.8 x latency / 50 tokens; reserved: latency x GPUs (1, 2, servers + 1) / 50
    assert ["servers", "busy", "GPU-ms/tok", "reserved", "GPU-ms/tok"] in rows(cost_06)
    assert ["1", "24/16/14.4", "30/40/36"] in rows(cost_06)
    assert ["3", "24/16/9.76", "30/40/48.8"] in rows(cost_06)
    assert ["3", "12/8/4.88", "15/20/24.4"] in rows(cost_09)
    # the captions close the last group's tables only
    assert "gain: DSI ms saved" not in latency_06 and "gain: DSI ms saved" in latency_09
    assert "DSI needs 2 target servers (ceil(1/kc))" in " ".join(cost_09.split())
    assert "DSI needs" not in cost_06


def test_one_axis_has_one_group_and_no_gain_column() -> None:
    config = SweepConfig(axes=(parse_axis("lookahead=2,5"),), base=BASE, latency=None)
    latency = {"nonsi": (1.5, 1.5, 1.5), "si": (1.0, 1.1, 0.9), "dsi": (0.5, 0.6, 0.4)}
    result = analyse(config, [cell((2,), latency, needed=5), cell((5,), latency, needed=2)])
    latency_table, cost = (render(t, 80) for t in render_tables(result))
    assert_fits(latency_table)
    assert "sweep of lookahead: 50 tokens x 3 repeats" in latency_table
    assert list(groups(result)) == [""] and "gain ms" not in latency_table
    assert ["5", "1.5", "1", "0.5±0.06", "2.00x", "3.00x", "1.50x"] in rows(latency_table)
    # servers needed differs between the cells: a column instead of the caption's sentence
    assert ["lookahead", "busy", "GPU-ms/tok", "reserved", "GPU-ms/tok", "DSI", "needs"] in rows(
        cost
    )
    assert ["2", "24/16/8", "30/40/80", "5"] in rows(cost)
    assert "ceil(1/kc)" not in cost


def test_chart_bars_scale_with_dsi_latency_and_mark_the_knees() -> None:
    text = render(render_chart(servers_sweep()), 80)
    assert_fits(text)
    bars = {}
    group = ""
    for line in text.splitlines():
        words = line.split()
        if words and words[0].startswith("acceptance="):
            group = words[0]
        elif words and words[0].startswith("servers="):
            bars[group, words[0]] = (len(words[1]), words[2], " ".join(words[3:]))
    assert bars == {
        ("acceptance=0.6", "servers=1"): (BAR_WIDTH, "0.9", ""),
        ("acceptance=0.6", "servers=2"): (20, "0.6", "◀ enough servers"),
        ("acceptance=0.6", "servers=3"): (20, "0.61", ""),
        ("acceptance=0.9", "servers=1"): (15, "0.45", ""),
        ("acceptance=0.9", "servers=2"): (10, "0.3", "◀ enough servers"),
        ("acceptance=0.9", "servers=3"): (10, "0.305", ""),
    }


def test_knee_sentences_say_how_sure_they_are() -> None:
    result = servers_sweep()
    assert [knee_sentence(k, result) for k in result.knees] == [
        f"DSI at acceptance={a}: 2 target server(s) are enough ({s} s, within 1% of the best: "
        f"{s} s with 2, at 95% confidence over 3 paired repeats; fewer are significantly "
        "slower)."
        for a, s in (("0.6", "0.6"), ("0.9", "0.3"))
    ]
    one = servers_sweep(repeats=1)
    assert knee_sentence(one.knees[0], one) == (
        "DSI at acceptance=0.6: inconclusive with one repeat (no confidence interval); the "
        "lowest mean latency is 0.6 s with 2 target server(s)."
    )
    noisy = servers_sweep({1: (0.9, 0.5, 0.7), 2: (0.6, 0.61, 0.59), 3: (0.61, 0.62, 0.6)})
    sentence = knee_sentence(noisy.knees[0], noisy)
    assert sentence.startswith("DSI at acceptance=0.6: inconclusive: ")
    assert sentence.endswith("3 repeats cannot tell (raise -r).")
    assert not any(row.stops_helping for row in noisy.rows)  # no knee in bold


def test_notes_name_the_assumptions_that_hold() -> None:
    text = str(render_notes(servers_sweep()))
    assert "does not depend on how many tokens it verifies" in text
    assert "frees its server at once" in text and "racing" not in text


def test_json_document_has_rows_knees_and_where_the_csv_is() -> None:
    result = servers_sweep()
    run = SweepRun(result, Path("/out"), computed=4, reused=2, elapsed_s=1.0, workers=1)
    document = to_json(run)
    assert document["csv"] == "/out/sweep.csv"
    assert (document["computed"], document["reused"]) == (4, 2)
    assert len(document["rows"]) == 6 and document["config"]["axes"][0]["name"] == "servers"
    knee = document["knees"][1]
    assert knee["group"] == {"acceptance": 0.9}
    assert (knee["servers"], knee["best_servers"], knee["conclusive"]) == (2, 2, True)
    assert knee["sentence"] == knee_sentence(result.knees[1], result)
    assert document["assumptions"]
