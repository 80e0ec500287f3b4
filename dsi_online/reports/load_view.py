"""The report of `dsi-online load`: per-rate tables, a latency-against-rate chart, each
policy's capacity at the SLO, the verdict and its assumptions, the JSON and CSV documents."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dsi_online.reports.run import COMPACT, number_column
from dsi_online.studies.load import LoadStudy, verdict
from dsi_online.studies.load_stats import Estimate, PolicyRate

CHART_ROWS = 12
MARKERS = "NSDAEFGHJKLMPQRTUVWXYZ"

NO_BATCHING = (
    "no batching in the base model: a server serves one request at a time (production "
    "servers batch, which favours non-SI at high load)"
)
BATCHING = (
    "batching: a GPU serves up to B requests of one model at once, a batch's forward is "
    "priced as one forward (or, with a token-cost profile, by the batch's total tokens), and "
    "the latency draws are the GPU's, not the request's"
)
LOAD_ASSUMPTIONS = (
    NO_BATCHING,
    "a request holds its whole allotment from admission to its last token: its servers sit "
    "idle while it waits on its own drafts or verifications (this counts against DSI and SI)",
    "prompts and the KV caches they build are not shared between requests",
    "first come, first served: no request overtakes an earlier one, and a request's servers "
    "are cold when it is admitted (each pays its prefill)",
    "within its allotment each forward's latency is an independent draw, so DSI's redundant "
    "jobs gain from the fastest draw (with noisy latencies this flatters DSI)",
    "a forward's latency does not depend on how many tokens it verifies, and a cancelled "
    "forward frees its server at once (both flatter DSI), unless a profile prices forwards "
    "by their tokens",
)
"""The assumptions of `load`'s results that flatter DSI or non-SI (docs/model.md)."""


def assumptions(batch: int) -> list[str]:
    """The assumptions of a study with batch size `batch`."""
    return [BATCHING if batch > 1 and a == NO_BATCHING else a for a in LOAD_ASSUMPTIONS]


def _s(value: float | None) -> str:
    """Seconds to the millisecond below 10 s, to a tenth above (columns stay narrow)."""
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _cell(estimate: Estimate) -> Text:
    """A value over its 95% interval, dimmed."""
    text = Text(f"{estimate.value:.3g}\n")
    text.append(f"{estimate.low:.3g}-{estimate.high:.3g}", style="dim")
    return text


def render_tables(study: LoadStudy) -> Group:
    """Latency (mean and percentiles over their 95% intervals) per rate and policy, then
    waits, TTFT, throughput and utilisation."""
    load = study.config.load
    latency = Table(
        title=(
            f"latency s per rate, {load.gpus} GPUs"
            + (f" batching {load.batch}" if load.batch > 1 else "")
            + f", {len(load.workload.requests) - load.warmup} "
            f"requests measured after {load.warmup} warm-up ({study.config.clock} clock)"
        ),
        caption="under each value its 95% CI (mean: batch means; percentiles: order statistics)",
        **COMPACT,
    )
    latency.add_column("req/s", justify="right")
    latency.add_column("policy", no_wrap=True)
    for column in ("mean", "p50", "p90", "p99"):
        number_column(latency, column)
    work = Table(
        caption=(
            "wait: arrival to admission; TTFT: arrival to first token; util: busy GPU-s over "
            "GPUs x the run; wasted: forwards per request; rho: offered load"
        ),
        **COMPACT,
    )
    work.add_column("req/s", justify="right")
    work.add_column("policy", no_wrap=True)
    for column in ("wait", "wait p99", "TTFT", "TTFT p99", "tok/s", "util", "wasted", "rho"):
        number_column(work, column)
    for rate in study.rates_done():
        for number, policy in enumerate(study.config.policies):
            cell = study.cells[policy.name, rate]
            shown = f"{rate:.3g}" if number == 0 else ""
            if cell.latency is None:
                latency.add_row(shown, cell.label, Text("unstable", style="bold red"), "", "", "")
            else:
                lat = cell.latency
                latency.add_row(
                    shown,
                    cell.label,
                    _cell(lat.mean),
                    _cell(lat.p50),
                    _cell(lat.p90),
                    _cell(lat.p99),
                )
            work.add_row(
                shown,
                cell.label,
                _s(cell.wait_mean_s),
                _s(cell.wait_p99_s),
                _s(cell.ttft_mean_s),
                _s(cell.ttft_p99_s),
                f"{cell.tokens_per_s:.0f}",
                f"{cell.utilisation:.0%}",
                f"{cell.wasted_forwards:.3g}",
                f"{cell.rho:.2f}",
            )
    return Group(latency, work)


def render_overhead(study: LoadStudy) -> Table | None:
    """Wall clock only: each policy's mean latency against the same requests on the
    virtual clock."""
    if study.config.clock != "wall":
        return None
    table = Table(
        title="wall-clock fidelity: mean latency against the same requests, virtual clock",
        **COMPACT,
    )
    table.add_column("req/s", justify="right")
    table.add_column("policy", no_wrap=True)
    for column in ("wall s", "virtual s", "overhead"):
        number_column(table, column)
    for rate in study.rates_done():
        for policy in study.config.policies:
            cell = study.cells[policy.name, rate]
            overhead = cell.overhead_pct
            wall = cell.latency.mean.value if cell.latency is not None else None
            table.add_row(
                f"{rate:.3g}",
                cell.label,
                _s(wall),
                _s(cell.ideal_mean_s),
                "—" if overhead is None else f"{overhead:+.2f}%",
            )
    return table


def _log_row(value: float, low: float, high: float) -> int:
    """The chart row of `value` on a log axis from `low` (row 0) to `high`."""
    if high <= low:
        return 0
    span = math.log(high) - math.log(low)
    return round((CHART_ROWS - 1) * (math.log(value) - math.log(low)) / span)


def render_chart(study: LoadStudy) -> Text:
    """The SLO percentile of every policy against the rate, log latency axis; `x` marks an
    unstable rate on the top line."""
    q = study.config.slo.percentile
    rates = study.rates_done()
    policies = study.config.policies
    markers = {p.name: MARKERS[i % len(MARKERS)] for i, p in enumerate(policies)}
    values = [
        v for p in policies for c in study.series(p.name) if (v := c.latency_at(q)) is not None
    ]
    width = max(6, len(policies) + 1)
    grid = [[" "] * (width * len(rates)) for _ in range(CHART_ROWS + 1)]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    for p in policies:
        for column, cell in enumerate(study.series(p.name)):
            value = cell.latency_at(q)
            x = column * width + 1 + policies.index(p) % (width - 1)
            if value is None:
                grid[0][x] = "x"
            else:
                row = CHART_ROWS - _log_row(value, low, high)
                grid[row][x] = markers[p.name] if grid[row][x] == " " else "*"
    text = Text(f"{study.config.slo.label} latency s against the rate (log scale)\n")
    for number, line in enumerate(grid):
        if number == 0:
            label = "unstable"
        elif number in (1, CHART_ROWS):
            label = f"{high if number == 1 else low:.3g}"
        else:
            label = ""
        text.append(f"{label:>8} |{''.join(line)}\n")
    text.append(" " * 9 + "+" + "-" * (width * len(rates)) + "\n")
    text.append(" " * 10 + "".join(f"{r:<{width}.3g}" for r in rates) + "req/s\n")
    legend = ", ".join(f"{markers[p.name]} {p.label}" for p in policies)
    text.append(f"{legend}; * several; x unstable")
    return text


def capacity_lines(study: LoadStudy) -> Text:
    """Each policy's capacity at the SLO: the highest tested rate up to which it holds."""
    slo = study.config.slo
    text = Text(f"capacity at {slo.label} <= {slo.bound_s:g} s (highest tested rate that holds):")
    for policy in study.config.policies:
        capacity = study.capacity(policy.name)
        shown = "none of the rates tested" if capacity is None else f"{capacity:.3g} req/s"
        text.append(f"\n  {policy.label}: {shown}")
    return text


def _estimate(estimate: Estimate) -> dict[str, float]:
    return {"value": estimate.value, "ci95_low": estimate.low, "ci95_high": estimate.high}


def cell_json(cell: PolicyRate) -> dict[str, Any]:
    """One policy at one rate, as the JSON contract has it (latencies null when unstable)."""
    lat = cell.latency
    latency = None
    if lat is not None:
        latency = {
            "mean": lat.mean.value,
            "p50": lat.p50.value,
            "p90": lat.p90.value,
            "p99": lat.p99.value,
            "ci95_low": lat.mean.low,
            "ci95_high": lat.mean.high,
            "percentiles_ci95": {
                "p50": _estimate(lat.p50),
                "p90": _estimate(lat.p90),
                "p99": _estimate(lat.p99),
            },
        }
    stable = cell.stable
    return {
        "rate": cell.rate,
        "stable": stable,
        "rho": cell.rho,
        "completed": cell.completed,
        "warmup": cell.warmup,
        "latency_s": latency,
        "wait_s": {"mean": cell.wait_mean_s, "p99": cell.wait_p99_s} if stable else None,
        "ttft_s": {"mean": cell.ttft_mean_s, "p99": cell.ttft_p99_s} if stable else None,
        "tokens_per_s": cell.tokens_per_s,
        "utilisation": cell.utilisation,
        "wasted_forwards": cell.wasted_forwards,
        "lossless": cell.lossless,
        "allotments": cell.allotments,
        "wall_overhead_pct": cell.overhead_pct,
    }


def to_json(study: LoadStudy) -> dict[str, Any]:
    """The JSON document of `load` (the contract in the README and docs/load.md)."""
    config = study.config
    load = config.load
    return {
        "scenario": load.scenario.to_dict()
        | {
            "requests": len(load.workload.requests),
            "warmup": load.warmup,
            "trace": load.workload.trace,
        },
        "fleet": {"gpus": load.gpus, "batch": load.batch},
        "clock": config.clock,
        "policies": {
            p.name: {
                "label": p.label,
                "rates": [cell_json(c) for c in study.series(p.name)],
                "capacity_at_slo": study.capacity(p.name),
            }
            for p in config.policies
        },
        "slo": {"percentile": config.slo.percentile, "bound_s": config.slo.bound_s},
        "verdict": verdict(study),
        "assumptions": assumptions(load.batch),
    }


CSV_COLUMNS = [
    "policy",
    "rate",
    "stable",
    "rho",
    "completed",
    "mean_s",
    "mean_ci95_low",
    "mean_ci95_high",
    "p50_s",
    "p90_s",
    "p99_s",
    "p99_ci95_low",
    "p99_ci95_high",
    "wait_mean_s",
    "wait_p99_s",
    "ttft_mean_s",
    "ttft_p99_s",
    "tokens_per_s",
    "utilisation",
    "wasted_forwards",
    "lossless",
]


def to_csv(study: LoadStudy) -> str:
    """One row per policy and rate; unstable rates leave the latency columns empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for policy in study.config.policies:
        for c in study.series(policy.name):
            lat = c.latency
            figures: list[Any] = (
                [
                    lat.mean.value,
                    lat.mean.low,
                    lat.mean.high,
                    lat.p50.value,
                    lat.p90.value,
                    lat.p99.value,
                    lat.p99.low,
                    lat.p99.high,
                ]
                if lat is not None
                else [""] * 8
            )
            waits = [c.wait_mean_s, c.wait_p99_s, c.ttft_mean_s, c.ttft_p99_s]
            writer.writerow(
                [policy.name, c.rate, c.stable, c.rho, c.completed, *figures]
                + ["" if w is None else w for w in waits]
                + [c.tokens_per_s, c.utilisation, c.wasted_forwards, c.lossless]
            )
    return out.getvalue()
