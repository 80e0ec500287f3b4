"""PNG drawing of `dsi-online load` with matplotlib (optional extra `[plot]`)."""

from __future__ import annotations

from pathlib import Path

from dsi_online.reports.plots import pyplot
from dsi_online.studies.load import LoadStudy


def plot_load(study: LoadStudy, path: Path) -> Path:
    """p50 (dashed) and p99 (solid) latency of every policy against the rate, on a log
    latency axis; an unstable rate is a cross near the top edge, in the policy's colour."""
    plt = pyplot("load")
    fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    unstable_label = False
    for number, policy in enumerate(study.config.policies):
        colour = colours[number % len(colours)]
        cells = study.series(policy.name)
        stable = [c for c in cells if c.stable]
        rates = [c.rate for c in stable]
        ax.plot(rates, [c.latency_at(99) for c in stable], "-o", color=colour, label=policy.label)
        ax.plot(rates, [c.latency_at(50) for c in stable], "--", color=colour, alpha=0.7)
        for cell in cells:
            if not cell.stable:
                ax.plot(
                    [cell.rate],
                    [0.97 - 0.04 * number],  # stacked below the top edge, one per policy
                    "x",
                    color=colour,
                    markersize=9,
                    transform=ax.get_xaxis_transform(),
                    label=None if unstable_label else "unstable (queue grows)",
                )
                unstable_label = True
    slo = study.config.slo
    ax.axhline(
        slo.bound_s, color="grey", linestyle=":", label=f"SLO {slo.label} <= {slo.bound_s:g} s"
    )
    ax.set_yscale("log")
    ax.set_xlabel("arrival rate, requests per second")
    ax.set_ylabel("latency, s (solid p99, dashed p50)")
    ax.set_title(f"{study.config.load.gpus} GPUs, {study.config.clock} clock: latency against load")
    ax.legend(fontsize="small", loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
