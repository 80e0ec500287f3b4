"""The report of `dsi-online sweep`: rich tables, a bar chart of DSI latency, the knees, JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from dsi_online.runner import ALGORITHMS
from dsi_online.stats import Speedup
from dsi_online.sweep import AxisValue, Knee, SweepResult, SweepRow, SweepRun, row_json

LABELS = {"nonsi": "non-SI", "si": "SI", "dsi": "DSI"}
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


def _caption(result: SweepResult, needed: set[int]) -> str:
    caption = [
        "latency: mean seconds (DSI ± sem)",
        "GPU-ms/tok: busy time of all servers per token",
    ]
    if len(needed) == 1:
        caption.append(f"DSI needs {min(needed)} target servers (ceil(1/kc))")
    if "servers" in result.config.names:
        caption.append("gain: DSI ms saved vs the previous server count (* significant at 95%)")
    caption.append("95% CIs of speedups and gains in sweep.csv")
    return "; ".join(caption)


def render_tables(result: SweepResult) -> list[Table]:
    """One row per cell (a table per value of the second axis): mean latencies, speedups,
    GPU-ms per token and, for a servers axis, DSI's marginal gain; the knees in bold."""
    first = result.config.names[0]
    servers = "servers" in result.config.names
    needed = {row.runs.servers_needed for row in result.rows}
    headers = [
        first,
        "non-SI",
        "SI",
        "DSI",
        "DSI/SI",
        "DSI/nSI",
        "SI/nSI",
        "GPU-ms/tok\nnSI/SI/DSI",
    ]
    headers += ["need"] * (len(needed) > 1) + ["gain ms"] * servers
    grouped = groups(result)
    tables = []
    for index, (label, rows) in enumerate(grouped.items()):
        last = index == len(grouped) - 1
        table = Table(
            title="\n".join(t for t in (_title(result) if index == 0 else "", label) if t),
            caption=_caption(result, needed) if last else None,
            box=box.SIMPLE_HEAD,
            padding=0,
            pad_edge=False,
        )
        for header in headers:
            table.add_column(header, justify="right")
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
                "/".join(f"{row.gpu_s_per_token(a) * 1e3:.3g}" for a in ALGORITHMS),
            ]
            cells += [str(row.runs.servers_needed)] * (len(needed) > 1)
            cells += [_gain(row)] * servers
            table.add_row(*cells, style="bold" if row.stops_helping else None)
        tables.append(table)
    return tables


def render_chart(result: SweepResult) -> Table:
    """DSI's mean latency per cell as horizontal bars, grouped by the second axis; the knee of
    each servers group marked."""
    first = result.config.names[0]
    table = Table(title="DSI latency per cell (s)", box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right")
    table.add_column()
    table.add_column(justify="right")
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
    """Where more target servers stop helping DSI, in one sentence."""
    names = [n for n in result.config.names if n != "servers"]
    where = f" at {_label(names, knee.group)}" if names else ""
    return (
        f"DSI{where}: {knee.servers} target server(s) are enough ({knee.dsi_s:.4g} s, "
        f"{knee.reason}: {knee.best_s:.4g} s with {knee.best_servers})."
    )


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
                "reason": k.reason,
            }
            for k in result.knees
        ],
        "csv": str(run.csv_path),
        "computed": run.computed,
        "reused": run.reused,
    }
