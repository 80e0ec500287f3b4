"""`dsi-online heatmap`: the paper's Figure 1 grid, computed, resumed or re-drawn.

The closing line (cells, seconds, cells/s) is the engine's benchmark.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console, RenderableType
from rich.progress import Progress
from rich.text import Text

from dsi_online.assumptions import notes
from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    OUTPUT,
    SCENARIO,
    BackendOption,
    ClockChoice,
    OutDir,
    Png,
    RayAddress,
    Resume,
    Workers,
    announce,
    check_out_dir,
    default_out,
    given_path,
    keeping,
    make_console,
    progress_bar,
    resumed_options,
    set_progress,
    want_png,
)
from dsi_online.errors import InvalidParameterError, require
from dsi_online.reports.heatmap_view import render_heatmap
from dsi_online.studies.heatmap import CONFIG_FILE, HeatmapConfig, load_rows, run_heatmap
from dsi_online.studies.heatmap_rows import CellBest
from dsi_online.studies.parallel import check_ray_address
from dsi_online.studies.results import read_settings

SPEEDUPS_PNG = "heatmap.png"
LOOKAHEAD_PNG = "best-lookahead.png"


def _draw_pngs(best: list[CellBest], out_dir: Path, subtitle: str, console: Console) -> None:
    from dsi_online.reports.plots import plot_best_lookahead, plot_speedups

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = (
            plot_speedups(best, out_dir / SPEEDUPS_PNG, subtitle),
            plot_best_lookahead(best, out_dir / LOOKAHEAD_PNG, subtitle),
        )
    except OSError as exc:
        raise InvalidParameterError(
            f"out (--out) {out_dir} cannot be written: {exc.strerror or exc}"
        ) from exc
    for path in paths:
        console.print(Text(f"wrote {path}"))


def _view(best: list[CellBest], console: Console) -> RenderableType:
    return render_heatmap(best, console.width)


def _redraw(load: Path, out: Path | None, png: bool | None, console: Console) -> None:
    require(load.is_file(), f"load (--load) {load} is not a file")
    draw = want_png(png, "heatmap")
    if draw:
        check_out_dir(out or load.parent)
    rows, best = load_rows(load)
    console.print(_view(best, console))
    console.print(Text(f"re-drew {len(rows)} rows ({len(best)} (c, a) cells) from {load}"))
    if draw:
        _draw_pngs(best, out or load.parent, f"from {load.name}", console)


def _config(
    ctx: typer.Context, options: dict[str, Any], out: Path | None, resume: bool
) -> HeatmapConfig:
    """The grid's settings: the options given, or with --resume the ones saved in --out."""
    if not resume:
        return HeatmapConfig(**options)
    require(out is not None, "--resume needs --out DIR, the folder of the run")
    assert out is not None
    saved = read_settings(out, CONFIG_FILE, "heatmap run")
    require(
        set(saved) == set(options),
        f"out (--out) {out / CONFIG_FILE} does not hold a heatmap run's settings",
    )
    return HeatmapConfig(**resumed_options(ctx, saved, out))


@app.command()
def heatmap(
    ctx: typer.Context,
    ndim: Annotated[
        int,
        typer.Option(
            help="Grid resolution: c and a in linspace(0, 1, ndim+1); at most 200.",
            rich_help_panel=SCENARIO,
        ),
    ] = 20,
    tokens: Annotated[
        int, typer.Option("--tokens", "-S", help="Tokens per run.", rich_help_panel=SCENARIO)
    ] = 1000,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="Repeats per cell.", rich_help_panel=SCENARIO)
    ] = 5,
    servers: Annotated[
        int,
        typer.Option(
            "--servers",
            "-n",
            help="DSI's target servers; cells needing more drop.",
            rich_help_panel=SCENARIO,
        ),
    ] = 7,
    min_lookahead: Annotated[
        int, typer.Option(help="Smallest lookahead k tried.", rich_help_panel=SCENARIO)
    ] = 1,
    max_lookahead: Annotated[
        int,
        typer.Option(help="Largest lookahead k tried; at most 100.", rich_help_panel=SCENARIO),
    ] = 20,
    seed: Annotated[
        int, typer.Option(help="Base seed; each cell derives its own.", rich_help_panel=SCENARIO)
    ] = 0,
    engine: Annotated[
        Literal["units", "async"],
        typer.Option(
            help="units (time-unit model, fast) or async (event loop).",
            rich_help_panel=EXECUTION,
        ),
    ] = "units",
    clock: Annotated[
        ClockChoice,
        typer.Option(help="virtual or wall (--engine async only).", rich_help_panel=EXECUTION),
    ] = "virtual",
    target_ms: Annotated[
        float,
        typer.Option(
            help="Target latency, ms (--engine async; drafter = c x target).",
            rich_help_panel=SCENARIO,
        ),
    ] = 10.0,
    concurrency: Annotated[
        int,
        typer.Option(
            help="Repeats played at once in a worker's event loop (--engine async).",
            rich_help_panel=EXECUTION,
        ),
    ] = 64,
    k_search: Annotated[
        Literal["all", "units"],
        typer.Option(
            help="all: every k on the grid; units: only each cell's best k for SI and DSI "
            "under the units engine (--engine async; hundreds of cells instead of thousands).",
            rich_help_panel=EXECUTION,
        ),
    ] = "all",
    workers: Workers = None,
    backend: BackendOption = "process",
    ray_address: RayAddress = None,
    out: OutDir = None,
    resume: Resume = False,
    load: Annotated[
        Path | None,
        typer.Option(
            parser=given_path,
            metavar="<path>",
            help="Re-draw a stored heatmap.csv without recomputing \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    png: Png = None,
) -> None:
    """Speedups of SI and DSI over the (c, a) grid at each cell's best lookahead (Figure 1)."""
    console = make_console()
    if load is not None:
        require(not resume, "--load re-draws stored results; it cannot be combined with --resume")
        _redraw(load, out, png, console)
        return
    options = {
        "ndim": ndim,
        "min_lookahead": min_lookahead,
        "max_lookahead": max_lookahead,
        "servers": servers,
        "tokens": tokens,
        "repeats": repeats,
        "seed": seed,
        "engine": engine,
        "clock": clock,
        "target_ms": target_ms,
        "concurrency": concurrency,
        "k_search": k_search,
    }
    config = _config(ctx, options, out, resume)
    if ray_address is not None and backend == "ray":
        check_ray_address(ray_address)  # before any work: an unreachable cluster would hang
    draw = want_png(png, "heatmap")
    out_dir = out or default_out("heatmap")
    count = workers or os.cpu_count() or 1
    kept = (
        f"finished cells are kept in {out_dir}; continue with dsi-online heatmap --resume "
        f"--out {out_dir}"
    )
    with ExitStack() as stack:
        bars: list[Progress] = []

        def report(done: int, cells: int) -> None:
            """Say the size of the work and open the bar at once, before any cell runs."""
            if not bars:
                announce(
                    f"heatmap: {cells:,} (c, a, k) cells ({done:,} already done), "
                    f"{config.repeats} repeats x {config.tokens} tokens each, "
                    f"{config.engine} engine, {count} worker(s), backend {backend}"
                )
                stack.enter_context(keeping(kept))
                bars.append(stack.enter_context(progress_bar(f"heatmap ({engine})", cells)))
            set_progress(bars[0], done)

        result = run_heatmap(
            config,
            out_dir,
            resume=resume,
            workers=workers,
            backend=backend,
            ray_address=ray_address,
            progress=report,
        )
    console.print(_view(result.best, console))
    console.print(Text(f"wrote {result.rows_path} ({len(result.rows)} rows)"))
    console.print(Text(f"wrote {result.best_path} ({len(result.best)} (c, a) cells)"))
    if draw:
        subtitle = (
            f"{config.engine} engine, S={config.tokens}, {config.repeats} repeats, "
            f"{config.servers} target servers"
        )
        _draw_pngs(result.best, out_dir, subtitle, console)
    rate = result.computed / result.elapsed_s if result.elapsed_s > 0 else float("inf")
    console.print(
        Text(
            f"computed {result.computed} of {len(result.rows)} cells in {result.elapsed_s:.2f} s "
            f"({rate:.0f} cells/s; {result.reused} reused) with the {config.engine} engine, "
            f"backend {backend}, {result.workers} worker(s)"
        )
    )
    console.print(Text(" ".join(notes(variable_latency=False, comm_delay=False))))
