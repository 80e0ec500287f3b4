"""`dsi-online bench`: how faithful is the wall clock, and how fast is the virtual one?"""

from __future__ import annotations

import math
import statistics
from typing import Annotated

import typer
from rich.table import Table

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    JsonPath,
    advance,
    announce,
    check_output,
    keeping,
    output_console,
    progress_bar,
    write_json,
)
from dsi_online.errors import require
from dsi_online.reports.run import COMPACT, number_column
from dsi_online.studies.bench import (
    LOAD_GPUS,
    LOAD_POLICIES,
    LOAD_RATE,
    LOAD_REQUESTS,
    SUITE_VERSION,
    CaseResult,
    machine,
    run_case,
    suite,
    virtual_forwards_per_s,
    virtual_load_forwards_per_s,
    virtual_long_forwards_per_s,
)


@app.command()
def bench(
    quick: Annotated[
        bool,
        typer.Option(help="A subset that runs in under a minute.", rich_help_panel=EXECUTION),
    ] = False,
    json_path: JsonPath = None,
    fail_above_pct: Annotated[
        float | None,
        typer.Option(
            help="Exit 1 if any case's overhead exceeds this percentage (for CI) "
            "\\[default: no gate].",
            show_default=False,
            rich_help_panel=EXECUTION,
        ),
    ] = None,
    min_forwards_per_s: Annotated[
        float | None,
        typer.Option(
            help="Exit 1 if the virtual clock simulates fewer forwards per CPU-s "
            "\\[default: no gate].",
            show_default=False,
            rich_help_panel=EXECUTION,
        ),
    ] = None,
) -> None:
    """Play a fixed suite on the wall clock and measure its overhead against the ideal."""
    if fail_above_pct is not None:
        require(
            math.isfinite(fail_above_pct) and fail_above_pct > 0,
            f"--fail-above-pct must be a finite number > 0; got {fail_above_pct}",
        )
    if min_forwards_per_s is not None:
        require(
            math.isfinite(min_forwards_per_s) and min_forwards_per_s > 0,
            f"--min-forwards-per-s must be a finite number > 0; got {min_forwards_per_s}",
        )
    check_output(json_path, "--json")
    cases = suite(quick)
    total = sum(case.scenario.repeats for case in cases)
    results = []
    with keeping("nothing is kept (bench reports at the end)"):
        announce(f"bench: suite v{SUITE_VERSION}, {len(cases)} cases, {total} repeats")
        with progress_bar(f"bench v{SUITE_VERSION}: repeats", total) as bar:
            for case in cases:
                results.append(run_case(case, lambda n: advance(bar, n)))
    fps = virtual_forwards_per_s()
    long_fps = None if quick else virtual_long_forwards_per_s()
    load_fps = virtual_load_forwards_per_s()

    console = output_console(json_path)
    console.print(_results_table(results, quick))
    median_us = statistics.median(r.per_forward_overhead_us for r in results)
    worst = max(results, key=lambda r: r.overhead_pct)
    console.print(
        f"median overhead per forward: {median_us:.1f} µs; worst overhead: "
        f"{worst.overhead_pct:.2f}% ({worst.case.name}); largest speedup gap: "
        f"{max(r.speedup_error_pct for r in results):.2f}%; virtual clock: "
        f"{fps:,.0f} forwards per CPU-second"
        + ("" if long_fps is None else f" ({long_fps:,.0f} with 20,000 tokens)")
        + f"; under load {load_fps:,.0f} ({load_fps / fps:.0%} of it; the load case: "
        f"{LOAD_REQUESTS} requests at {LOAD_RATE:g}/s on {LOAD_GPUS} GPUs, "
        f"{', '.join(LOAD_POLICIES)})"
    )
    if json_path is not None:
        write_json(
            {
                "version": SUITE_VERSION,
                "machine": machine(),
                "quick": quick,
                "scenarios": [r.to_json() for r in results],
                "median_per_forward_overhead_us": median_us,
                "virtual_forwards_per_s": fps,
                "virtual_long_forwards_per_s": long_fps,
                "virtual_load_forwards_per_s": load_fps,
            },
            json_path,
        )
    failures = []
    if fail_above_pct is not None and worst.overhead_pct > fail_above_pct:
        failures.append(
            f"overhead {worst.overhead_pct:.2f}% > {fail_above_pct}% in {worst.case.name}"
        )
    if min_forwards_per_s is not None and fps < min_forwards_per_s:
        failures.append(f"virtual clock {fps:,.0f} forwards/s < {min_forwards_per_s:,.0f}")
    if failures:
        typer.echo("bench regression: " + "; ".join(failures), err=True)
        raise typer.Exit(1)


def _results_table(results: list[CaseResult], quick: bool) -> Table:
    """One row per case: wall and ideal time, overhead, and the DSI/SI speedup's gap."""
    table = Table(
        title=f"dsi-online bench v{SUITE_VERSION}{' (quick)' if quick else ''}",
        **COMPACT,
    )
    table.add_column("case", overflow="fold")
    for column in ("M", "wall s", "ideal s", "overhead", "µs/fwd", "DSI/SI wall", "ideal", "gap"):
        number_column(table, column)
    for r in results:
        table.add_row(
            r.case.name,
            str(r.case.concurrency),
            f"{r.wall_s:.3f}",
            f"{r.ideal_s:.3f}",
            f"{r.overhead_pct:+.2f}%",
            f"{r.per_forward_overhead_us:.1f}",
            f"{r.speedup_wall:.4f}",
            f"{r.speedup_ideal:.4f}",
            f"{r.speedup_error_pct:.2f}%",
        )
    return table
