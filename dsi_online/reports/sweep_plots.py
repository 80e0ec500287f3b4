"""PNG drawing of a sweep with matplotlib (optional extra `[plot]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsi_online.reports.plots import pyplot
from dsi_online.schedulers.registry import ALGORITHMS, LABELS
from dsi_online.studies.sweep_analysis import SweepResult, SweepRow
from dsi_online.studies.sweep_grid import PARAMETERS

COLOURS = {"nonsi": "#7f7f7f", "si": "#1f77b4", "dsi": "#d62728"}
KNEE_LABEL = "open circle: enough servers (conclusive knee)"


def _one_axis(ax: Any, result: SweepResult) -> None:
    name = result.config.names[0]
    rows = result.rows
    x = [row.values[0] for row in rows]
    for algorithm in ALGORITHMS:
        ax.errorbar(
            x,
            [row.latency(algorithm).mean for row in rows],
            yerr=[row.latency(algorithm).sem for row in rows],
            marker="o",
            capsize=3,
            color=COLOURS[algorithm],
            label=f"{LABELS[algorithm]} latency",
        )
    for row in rows:
        if row.stops_helping:
            ax.axvline(
                row.values[0], color="green", linestyle=":", label="enough servers (conclusive)"
            )
    gpu = ax.twinx()
    gpu.plot(
        x,
        [row.gpu_s_per_token("dsi") * 1e3 for row in rows],
        color=COLOURS["dsi"],
        linestyle="--",
        marker="s",
        label="DSI GPU-ms per token",
    )
    gpu.set_ylabel("DSI GPU-ms per token (dashed)")
    gpu.set_ylim(bottom=0)
    lines, labels = ax.get_legend_handles_labels()
    more_lines, more_labels = gpu.get_legend_handles_labels()
    ax.legend(lines + more_lines, labels + more_labels, loc="best", fontsize="small")
    ax.set_xlabel(name)


def _two_axes(ax: Any, result: SweepResult) -> None:
    first, second = result.config.names
    lines: dict[int | float, list[SweepRow]] = {}
    for row in result.rows:
        lines.setdefault(row.values[1], []).append(row)
    explained = False  # the open-circle marker gets one legend entry
    for value, rows in lines.items():
        drawn = ax.errorbar(
            [row.values[0] for row in rows],
            [row.latency("dsi").mean for row in rows],
            yerr=[row.latency("dsi").sem for row in rows],
            marker="o",
            capsize=3,
            label=f"DSI, {second}={value:g}",
        )
        knees = [row for row in rows if row.stops_helping]
        ax.scatter(
            [row.values[0] for row in knees],
            [row.latency("dsi").mean for row in knees],
            s=120,
            facecolors="none",
            edgecolors=drawn.lines[0].get_color(),
            label=None if explained or not knees else KNEE_LABEL,
        )
        explained = explained or bool(knees)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(first)


def plot_sweep(result: SweepResult, path: Path) -> Path:
    """Latency against the first varied parameter: the three algorithms and DSI's GPU-seconds
    per token for one axis; one DSI line per value of the second axis for two."""
    plt = pyplot("sweep")
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    if len(result.config.names) == 1:
        _one_axis(ax, result)
    else:
        _two_axes(ax, result)
    if PARAMETERS[result.config.names[0]].integer:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    s = result.config.base
    ax.set_ylabel(f"mean latency of {s.tokens} tokens (s, ± sem)")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"{' x '.join(result.config.names)} sweep ({s.repeats} repeats, {result.config.clock} "
        f"clock; base c={s.c:.3g} a={s.acceptance:g} k={s.lookahead} N={s.servers})",
        fontsize="medium",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
