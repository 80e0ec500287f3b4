"""`dsi-online sweep`: vary one or two scenario parameters; latency, speedups, GPU-seconds.

The closing line (cells, seconds, cells/s) is the sweep's benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    SCENARIO,
    Acceptance,
    BackendOption,
    ClockChoice,
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
    announce,
    check_output,
    default_out,
    keeping,
    output_console,
    progress_bar,
    resumed_options,
    set_progress,
    want_png,
    write_json,
)
from dsi_online.cli.run import DEFAULT_DRAFTER_MS, DEFAULT_TARGET_MS, build_scenario
from dsi_online.errors import InvalidParameterError, require
from dsi_online.reports.sweep_view import (
    knee_sentence,
    render_chart,
    render_notes,
    render_tables,
    to_json,
)
from dsi_online.sim.clock import check_clock
from dsi_online.studies.parallel import check_ray_address
from dsi_online.studies.results import OPTIONS, read_settings
from dsi_online.studies.sweep import CONFIG_FILE, CSV_FILE, run_sweep
from dsi_online.studies.sweep_analysis import SweepResult
from dsi_online.studies.sweep_grid import RANGE_HELP, LatencySettings, SweepConfig, parse_axis

PNG_FILE = "sweep.png"


def _draw_png(result: SweepResult, out_dir: Path, console: Console) -> None:
    from dsi_online.reports.sweep_plots import plot_sweep

    try:
        path = plot_sweep(result, out_dir / PNG_FILE)
    except OSError as exc:
        raise InvalidParameterError(
            f"out (--out) {out_dir} cannot be written: {exc.strerror or exc}"
        ) from exc
    console.print(Text(f"wrote {path}"))


def _config(options: dict[str, Any]) -> SweepConfig:
    """The sweep the options describe (validated)."""
    vary = options["vary"]
    require(bool(vary), f"--vary is required (once or twice): {RANGE_HELP}")
    axes = tuple(parse_axis(spec) for spec in vary)
    clock = check_clock(options["clock"])
    scenario_options = {
        key: value for key, value in options.items() if key not in ("vary", "clock", "concurrency")
    }
    base = build_scenario(**scenario_options)
    latency = None
    if options["profile"] is None:
        latency = LatencySettings(
            target_ms=options["target_ms"]
            if options["target_ms"] is not None
            else DEFAULT_TARGET_MS,
            drafter_ms=options["drafter_ms"]
            if options["drafter_ms"] is not None
            else DEFAULT_DRAFTER_MS,
            target_ttft_ms=options["target_ttft_ms"],
            drafter_ttft_ms=options["drafter_ttft_ms"],
            latency_cv=0.0 if options["latency_cv"] is None else options["latency_cv"],
            comm_ms=options["comm_ms"],
        )
    return SweepConfig(axes, base, latency, clock, options["concurrency"])


def _saved_options(ctx: typer.Context, options: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """--resume: the options saved in --out; an option given here must agree with them."""
    require(out is not None, "--resume needs --out DIR, the folder of the sweep")
    assert out is not None
    saved = read_settings(out, CONFIG_FILE, "sweep").get(OPTIONS)
    require(
        isinstance(saved, dict) and set(saved) == set(options),
        f"out (--out) {out / CONFIG_FILE} holds no command-line options (made by an older "
        "dsi-online?): start a new --out",
    )
    assert isinstance(saved, dict)
    return resumed_options(ctx, saved, out)


@app.command()
def sweep(
    ctx: typer.Context,
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary",
            help=(
                "NAME=VALUES, once or twice. NAME: servers, lookahead, acceptance, drafter_ms, "
                "target_ms, latency_cv, comm_ms, latency_correlation. VALUES: 0.5,0.7,0.9 or "
                "1:8 (integers) or start:stop:count (decimals). Required."
            ),
            show_default=False,
            rich_help_panel=SCENARIO,
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
        int,
        typer.Option(
            "--repeats",
            "-r",
            help="Repeats (seeds), shared by every cell.",
            rich_help_panel=EXECUTION,
        ),
    ] = 10,
    seed: Annotated[
        int, typer.Option(help="Base seed, the same in every cell.", rich_help_panel=SCENARIO)
    ] = 0,
    clock: Annotated[
        ClockChoice,
        typer.Option(help="virtual (instant) or wall (real time).", rich_help_panel=EXECUTION),
    ] = "virtual",
    concurrency: Annotated[
        int,
        typer.Option(
            help="Repeats at a time in one event loop (--clock wall).", rich_help_panel=EXECUTION
        ),
    ] = 1,
    latency_cv: LatencyCv = None,
    profile: ProfileName = None,
    comm_ms: CommMs = 0.0,
    latency_correlation: LatencyCorrelation = 0.0,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes \\[default: all cores; 1 on --clock wall].",
            show_default=False,
            rich_help_panel=EXECUTION,
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
    options: dict[str, Any] = {
        "vary": list(vary or ()),
        "target_ms": target_ms,
        "target_ttft_ms": target_ttft_ms,
        "drafter_ms": drafter_ms,
        "drafter_ttft_ms": drafter_ttft_ms,
        "acceptance": acceptance,
        "lookahead": lookahead,
        "servers": servers,
        "tokens": tokens,
        "repeats": repeats,
        "seed": seed,
        "latency_cv": latency_cv,
        "profile": profile,
        "comm_ms": comm_ms,
        "latency_correlation": latency_correlation,
        "clock": clock,
        "concurrency": concurrency,
    }
    if resume:
        options = _saved_options(ctx, options, out)
    config = _config(options)
    if ray_address is not None and backend == "ray":
        check_ray_address(ray_address)  # before any work: an unreachable cluster would hang
    check_output(json_path, "--json")
    draw = want_png(png, "sweep")
    out_dir = out or default_out("sweep")
    total = len(config.cells())
    kept = (
        f"finished cells are kept in {out_dir}; continue with dsi-online sweep --resume "
        f"--out {out_dir}"
    )
    announce(
        f"sweep: {total:,} cells x {config.base.repeats} repeats x {config.base.tokens} tokens, "
        f"{config.clock} clock, backend {backend}"
    )
    with keeping(kept), progress_bar(f"sweep ({config.clock} clock): cells", total) as bar:
        run = run_sweep(
            config,
            out_dir,
            resume=resume,
            workers=workers,
            backend=backend,
            ray_address=ray_address,
            progress=lambda done, _total: set_progress(bar, done),
            options=options,
        )
    console = output_console(json_path)
    result = run.result
    for table in render_tables(result):
        console.print(table)
    console.print(render_chart(result))
    for knee in result.knees:
        console.print(Text(knee_sentence(knee, result)))
    if not all(row.runs.lossless for row in result.rows):
        console.print(
            Text("warning: an algorithm's output differed (not lossless)", style="bold red")
        )
    console.print(render_notes(result))
    console.print(Text(f"wrote {out_dir / CSV_FILE} ({len(result.rows)} cells)"))
    if draw:
        _draw_png(result, out_dir, console)
    rate = run.computed / run.elapsed_s if run.elapsed_s > 0 else float("inf")
    console.print(
        Text(
            f"computed {run.computed} of {total} cells in {run.elapsed_s:.2f} s "
            f"({rate:.1f} cells/s; {run.reused} reused), {config.clock} clock, backend "
            f"{backend}, {run.workers} worker(s)"
        )
    )
    if json_path is not None:
        write_json(to_json(run), json_path)
