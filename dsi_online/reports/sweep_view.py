"""The report of `dsi-online sweep`: rich tables, a bar chart of DSI latency, the knees, JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from dsi_online.assumptions import ASSUMPTIONS, notes
from dsi_online.reports.run import COMPACT, number_column
from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.sim.stats import Speedup
from dsi_online.studies.sweep import SweepRun
from dsi_online.studies.sweep_analysis import NEAR_BEST, Knee, SweepResult, SweepRow, row_json
from dsi_online.studies.sweep_grid import AxisValue

BAR_WIDTH = 30


def _value(value: AxisValue) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _speedup(s: Speedup) -> str:
    return f"{s.value:.2f}x"


def _gain(row: SweepRow) -> str:
    gain = row.gain
    if gain is None:
        return "—"
    mark = {True: "*", False: " ", None: "?"}[gain.significant]
    return f"{gain.mean * 1e3:+.1f}{mark}"


def _title(result: SweepResult) -> str:
    s = result.config.base
    return (
        f"sweep of {' x '.join(result.config.names)}: {s.tokens} tokens x {s.repeats} repeats, "
        f"{result.config.clock} clock (base: c={s.c:.3g} a={s.acceptance:g} "
        f"k={s.lookahead} N={s.servers})"
    )


def _label(names: Sequence[str], values: Sequence[AxisValue]) -> str:
    return " ".join(f"{n}={_value(v)}" for n, v in zip(names, values, strict=True))


def groups(result: SweepResult) -> dict[str, list[SweepRow]]:
    """The rows by value of the second axis (labelled 'name=value'); one group for one axis."""
    names = result.config.names
    grouped: dict[str, list[SweepRow]] = {}
    for row in result.rows:
        key = _label(names[1:], row.values[1:])
        grouped.setdefault(key, []).append(row)
    return grouped


def _caption(result: SweepResult) -> str:
    caption = ["latency: mean seconds (DSI ± sem); speedups: ratios of mean latencies"]
    if "servers" in result.config.names:
        caption.append("gain: DSI ms saved vs the previous server count (* significant at 95%)")
    caption.append("95% CIs of speedups and gains in sweep.csv")
    return "; ".join(caption)


def _cost_caption(needed: set[int]) -> str:
    caption = [
        "GPU-ms per token of non-SI/SI/DSI. busy: time the servers computed; reserved: "
        "latency x GPUs held (non-SI 1, SI 2, DSI its target servers + 1)"
    ]
    if len(needed) == 1:
        caption.append(f"DSI needs {min(needed)} target servers (ceil(1/kc))")
    return "; ".join(caption)


def _triple(values: Sequence[float]) -> str:
    return "/".join(f"{v * 1e3:.3g}" for v in values)


def render_tables(result: SweepResult) -> list[Table]:
    """Per value of the second axis, two tables that each fit 80 columns: mean latencies,
    speedups and, for a servers axis, DSI's marginal gain; then GPU-ms per token, busy and
    reserved. The conclusive knees in bold."""
    first = result.config.names[0]
    servers = "servers" in result.config.names
    needed = {row.runs.servers_needed for row in result.rows}
    grouped = groups(result)
    tables = []
    for index, (label, rows) in enumerate(grouped.items()):
        last = index == len(grouped) - 1
        latency = Table(
            title="\n".join(t for t in (_title(result) if index == 0 else "", label) if t),
            caption=_caption(result) if last else None,
            **COMPACT,
        )
        cost = Table(caption=_cost_caption(needed) if last else None, **COMPACT)
        number_column(latency, first)
        for header in ("non-SI", "SI", "DSI", "DSI/SI", "DSI/nSI", "SI/nSI"):
            number_column(latency, header)
        if servers:
            number_column(latency, "gain ms")
        number_column(cost, first)
        number_column(cost, "busy GPU-ms/tok")
        number_column(cost, "reserved GPU-ms/tok")
        if len(needed) > 1:
            number_column(cost, "DSI needs")
        for row in rows:
            sp = row.speedups
            dsi = row.latency("dsi")
            cells = [
                _value(row.values[0]),
                f"{row.latency('nonsi').mean:.4g}",
                f"{row.latency('si').mean:.4g}",
                f"{dsi.mean:.4g}±{dsi.sem:.1g}",
                _speedup(sp.dsi_over_si),
                _speedup(sp.dsi_over_nonsi),
                _speedup(sp.si_over_nonsi),
            ]
            cells += [_gain(row)] * servers
            style = "bold" if row.stops_helping else None
            latency.add_row(*cells, style=style)
            costs = [
                _value(row.values[0]),
                _triple([row.gpu_s_per_token(a) for a in ALGORITHMS]),
                _triple([row.reserved_gpu_s_per_token(a) for a in ALGORITHMS]),
            ]
            costs += [str(row.runs.servers_needed)] * (len(needed) > 1)
            cost.add_row(*costs, style=style)
        tables += [latency, cost]
    return tables


def render_chart(result: SweepResult) -> Table:
    """DSI's mean latency per cell as horizontal bars, grouped by the second axis; the knee of
    each servers group marked."""
    first = result.config.names[0]
    table = Table(title="DSI latency per cell (s)", box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right", overflow="fold")
    table.add_column()
    table.add_column(justify="right", overflow="fold")
    table.add_column()
    top = max((row.latency("dsi").mean for row in result.rows), default=0.0)
    for label, rows in groups(result).items():
        if label:
            table.add_row(Text(label, style="bold"), "", "", "")
        for row in rows:
            mean = row.latency("dsi").mean
            length = round(BAR_WIDTH * mean / top) if top > 0 else 0
            bar = Text("█" * max(length, 1), style="green" if row.stops_helping else "cyan")
            mark = "◀ enough servers" if row.stops_helping else ""
            table.add_row(f"{first}={_value(row.values[0])}", bar, f"{mean:.4g}", mark)
    return table


def knee_sentence(knee: Knee, result: SweepResult) -> str:
    """Where more target servers stop helping DSI, in one sentence; 'inconclusive' unless
    the paired repeats show it (see Knee)."""
    names = [n for n in result.config.names if n != "servers"]
    where = f" at {_label(names, knee.group)}" if names else ""
    best = f"the best: {knee.best_s:.4g} s with {knee.best_servers}"
    repeats = result.config.base.repeats
    if repeats < 2:
        return (
            f"DSI{where}: inconclusive with one repeat (no confidence interval); the lowest "
            f"mean latency is {knee.best_s:.4g} s with {knee.best_servers} target server(s)."
        )
    if knee.conclusive:
        return (
            f"DSI{where}: {knee.servers} target server(s) are enough ({knee.dsi_s:.4g} s, "
            f"within {NEAR_BEST:.0%} of {best}, at 95% confidence over {repeats} paired "
            "repeats; fewer are significantly slower)."
        )
    return (
        f"DSI{where}: inconclusive: {knee.servers} target server(s) are within "
        f"{NEAR_BEST:.0%} of {best} at 95% confidence, but fewer may be as good; "
        f"{repeats} repeats cannot tell (raise -r)."
    )


def render_notes(result: SweepResult) -> Text:
    """The assumptions that flatter DSI in these results (dsi_online.assumptions)."""
    scenarios = [cell.scenario for cell in result.config.cells()]
    variable = any(not (s.target.is_constant and s.drafter.is_constant) for s in scenarios)
    comm = any(s.link is not None for s in scenarios)
    priced = any(s.target.cost is not None for s in scenarios)  # one profile for every cell
    return Text(" ".join(notes(variable_latency=variable, comm_delay=comm, token_cost=priced)))


def to_json(run: SweepRun) -> dict[str, Any]:
    """The JSON document of a sweep: its settings, one object per cell (CSV columns), knees."""
    result = run.result
    return {
        "config": result.config.to_dict(),
        "rows": [row_json(row, result.config.names) for row in result.rows],
        "knees": [
            {
                "group": dict(
                    zip([n for n in result.config.names if n != "servers"], k.group, strict=True)
                ),
                "servers": k.servers,
                "dsi_s": k.dsi_s,
                "best_servers": k.best_servers,
                "best_s": k.best_s,
                "conclusive": k.conclusive,
                "sentence": knee_sentence(k, result),
            }
            for k in result.knees
        ],
        "assumptions": list(ASSUMPTIONS),
        "csv": str(run.csv_path),
        "computed": run.computed,
        "reused": run.reused,
    }
