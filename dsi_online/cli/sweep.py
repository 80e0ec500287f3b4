"""`dsi-online sweep`: vary one or two scenario parameters; latency, speedups, GPU-seconds.

The closing line (cells, seconds, cells/s) is the sweep's benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    Acceptance,
    BackendOption,
    CommMs,
    DrafterMs,
    DrafterTtftMs,
    JsonPath,
    LatencyCorrelation,
    LatencyCv,
    Lookahead,
    OutDir,
    Png,
    ProfileName,
    RayAddress,
    Resume,
    Servers,
    TargetMs,
    TargetTtftMs,
    Tokens,
    default_out,
    output_console,
    progress_bar,
    stderr,
    want_png,
    write_json,
)
from dsi_online.cli.run import DEFAULT_DRAFTER_MS, DEFAULT_TARGET_MS, build_scenario
from dsi_online.clock import check_clock
from dsi_online.errors import InvalidParameterError, require
from dsi_online.parallel import BACKENDS, Backend
from dsi_online.reports.sweep_view import knee_sentence, render_chart, render_tables, to_json
from dsi_online.sweep import (
    CSV_FILE,
    RANGE_HELP,
    LatencySettings,
    SweepConfig,
    SweepResult,
    parse_axis,
    run_sweep,
)

PNG_FILE = "sweep.png"


def _draw_png(result: SweepResult, out_dir: Path, console: Console) -> None:
    from dsi_online.reports.sweep_plots import plot_sweep

    try:
        path = plot_sweep(result, out_dir / PNG_FILE)
    except OSError as exc:
        raise InvalidParameterError(
            f"out (--out) {out_dir} cannot be written: {exc.strerror or exc}"
        ) from exc
    console.print(f"wrote {path}")


@app.command()
def sweep(
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary",
            help=(
                "NAME=VALUES, once or twice. NAME: servers, lookahead, acceptance, drafter_ms, "
                "target_ms, latency_cv, comm_ms, latency_correlation. VALUES: 0.5,0.7,0.9 or "
                "1:8 (integers) or start:stop:count (decimals)."
            ),
            show_default=False,
        ),
    ] = None,
    target_ms: TargetMs = None,
    target_ttft_ms: TargetTtftMs = None,
    drafter_ms: DrafterMs = None,
    drafter_ttft_ms: DrafterTtftMs = None,
    acceptance: Acceptance = None,
    lookahead: Lookahead = 5,
    servers: Servers = 7,
    tokens: Tokens = 100,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="Repeats (seeds), shared by every cell.")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Base seed, the same in every cell.")] = 0,
    clock: Annotated[str, typer.Option(help="virtual (instant) or wall (real time).")] = "virtual",
    concurrency: Annotated[
        int, typer.Option(help="Repeats at a time in one event loop (--clock wall).")
    ] = 1,
    latency_cv: LatencyCv = None,
    profile: ProfileName = None,
    comm_ms: CommMs = 0.0,
    latency_correlation: LatencyCorrelation = 0.0,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes \\[default: all cores; 1 on --clock wall].", show_default=False
        ),
    ] = None,
    backend: BackendOption = "process",
    ray_address: RayAddress = None,
    out: OutDir = None,
    resume: Resume = False,
    png: Png = None,
    json_path: JsonPath = None,
) -> None:
    """Vary one or two parameters: latency, speedups and GPU-seconds per token in each cell."""
    require(bool(vary), f"--vary is required (once or twice): {RANGE_HELP}")
    axes = tuple(parse_axis(spec) for spec in vary or ())
    checked_clock = check_clock(clock)
    require(backend in BACKENDS, f"backend (--backend) must be one of {BACKENDS}; got {backend!r}")
    require(not resume or out is not None, "--resume needs --out DIR, the folder of the sweep")
    base = build_scenario(
        target_ms=target_ms,
        target_ttft_ms=target_ttft_ms,
        drafter_ms=drafter_ms,
        drafter_ttft_ms=drafter_ttft_ms,
        acceptance=acceptance,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        latency_cv=latency_cv,
        profile=profile,
        comm_ms=comm_ms,
        latency_correlation=latency_correlation,
    )
    latency = None
    if profile is None:
        latency = LatencySettings(
            target_ms=DEFAULT_TARGET_MS if target_ms is None else target_ms,
            drafter_ms=DEFAULT_DRAFTER_MS if drafter_ms is None else drafter_ms,
            target_ttft_ms=target_ttft_ms,
            drafter_ttft_ms=drafter_ttft_ms,
            latency_cv=0.0 if latency_cv is None else latency_cv,
            comm_ms=comm_ms,
        )
    config = SweepConfig(axes, base, latency, checked_clock, concurrency)
    draw = want_png(png, "sweep")
    out_dir = out or default_out("sweep")
    total = len(config.cells())
    try:
        with progress_bar(f"sweep ({checked_clock} clock): cells", total) as bar:
            task = bar.task_ids[0]
            run = run_sweep(
                config,
                out_dir,
                resume=resume,
                workers=workers,
                backend=cast(Backend, backend),
                ray_address=ray_address,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
    except KeyboardInterrupt:
        stderr.print(
            f"interrupted: finished cells are kept in {out_dir}; continue with "
            f"dsi-online sweep --resume --out {out_dir} (and the same settings)"
        )
        raise
    console = output_console(json_path)
    result = run.result
    for table in render_tables(result):
        console.print(table)
    console.print(render_chart(result))
    for knee in result.knees:
        console.print(knee_sentence(knee, result))
    if not all(row.runs.lossless for row in result.rows):
        console.print("[bold red]warning: an algorithm's output differed (not lossless)")
    console.print(f"wrote {out_dir / CSV_FILE} ({len(result.rows)} cells)")
    if draw:
        _draw_png(result, out_dir, console)
    rate = run.computed / run.elapsed_s if run.elapsed_s > 0 else float("inf")
    console.print(
        f"computed {run.computed} of {total} cells in {run.elapsed_s:.2f} s "
        f"({rate:.1f} cells/s; {run.reused} reused), {checked_clock} clock, backend {backend}, "
        f"{run.workers} worker(s)"
    )
    if json_path is not None:
        write_json(to_json(run), json_path)
