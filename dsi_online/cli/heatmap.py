"""`dsi-online heatmap`: the paper's Figure 1 grid, computed, resumed or re-drawn.

The closing line (cells, seconds, cells/s) is the engine's benchmark.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console, RenderableType
from rich.progress import Progress

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    BackendOption,
    OutDir,
    Png,
    RayAddress,
    Resume,
    default_out,
    progress_bar,
    stderr,
    want_png,
)
from dsi_online.errors import InvalidParameterError, require
from dsi_online.heatmap import (
    CellBest,
    ClockName,
    Engine,
    HeatmapConfig,
    load_rows,
    run_heatmap,
)
from dsi_online.parallel import BACKENDS, Backend
from dsi_online.reports.heatmap_view import render_heatmap

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
        console.print(f"wrote {path}")


def _view(best: list[CellBest], console: Console) -> RenderableType:
    return render_heatmap(best, console.width, console.color_system is not None)


def _redraw(load: Path, out: Path | None, png: bool | None, console: Console) -> None:
    require(load.is_file(), f"load (--load) {load} is not a file")
    draw = want_png(png, "heatmap")
    rows, best = load_rows(load)
    console.print(_view(best, console))
    console.print(f"re-drew {len(rows)} rows ({len(best)} (c, a) cells) from {load}")
    if draw:
        _draw_pngs(best, out or load.parent, f"from {load.name}", console)


@app.command()
def heatmap(
    ndim: Annotated[
        int, typer.Option(help="Grid resolution: c and a in linspace(0, 1, ndim+1).")
    ] = 20,
    tokens: Annotated[int, typer.Option("--tokens", "-S", help="Tokens per run.")] = 1000,
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="Repeats per cell.")] = 5,
    servers: Annotated[
        int, typer.Option("--servers", "-n", help="DSI's target servers; cells needing more drop.")
    ] = 7,
    min_lookahead: Annotated[int, typer.Option(help="Smallest lookahead k tried.")] = 1,
    max_lookahead: Annotated[int, typer.Option(help="Largest lookahead k tried.")] = 20,
    seed: Annotated[int, typer.Option(help="Base seed; each cell derives its own.")] = 0,
    engine: Annotated[
        str, typer.Option(help="units (time-unit model, fast) or async (event loop).")
    ] = "units",
    clock: Annotated[str, typer.Option(help="virtual or wall (--engine async only).")] = "virtual",
    target_ms: Annotated[
        float, typer.Option(help="Target latency, ms (--engine async; drafter = c x target).")
    ] = 10.0,
    concurrency: Annotated[
        int, typer.Option(help="Repeats played at once in a worker's event loop (--engine async).")
    ] = 64,
    k_search: Annotated[
        str,
        typer.Option(
            help="all: every k on the grid; units: only each cell's best k for SI and DSI "
            "under the units engine (--engine async; hundreds of cells instead of thousands)."
        ),
    ] = "all",
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: all cores).", show_default=False)
    ] = None,
    backend: BackendOption = "process",
    ray_address: RayAddress = None,
    out: OutDir = None,
    resume: Resume = False,
    load: Annotated[
        Path | None, typer.Option(help="Re-draw a stored heatmap.csv without recomputing.")
    ] = None,
    png: Png = None,
) -> None:
    """Speedups of SI and DSI over the (c, a) grid at each cell's best lookahead (Figure 1)."""
    console = Console()
    if load is not None:
        require(not resume, "--load re-draws stored results; it cannot be combined with --resume")
        _redraw(load, out, png, console)
        return
    config = HeatmapConfig(
        ndim=ndim,
        min_lookahead=min_lookahead,
        max_lookahead=max_lookahead,
        servers=servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        engine=cast(Engine, engine),
        clock=cast(ClockName, clock),
        target_ms=target_ms,
        concurrency=concurrency,
        k_search=k_search,
    )
    require(backend in BACKENDS, f"backend (--backend) must be one of {BACKENDS}; got {backend!r}")
    require(not resume or out is not None, "--resume needs --out DIR, the folder of the run")
    draw = want_png(png, "heatmap")
    out_dir = out or default_out("heatmap")
    try:
        with ExitStack() as stack:
            bars: list[Progress] = []

            def report(done: int, cells: int) -> None:
                """Open the bar on the first report, so that bad settings print no bar."""
                if not bars:
                    bars.append(stack.enter_context(progress_bar(f"heatmap ({engine})", cells)))
                bars[0].update(bars[0].task_ids[0], completed=done)

            result = run_heatmap(
                config,
                out_dir,
                resume=resume,
                workers=workers,
                backend=cast(Backend, backend),
                ray_address=ray_address,
                progress=report,
            )
    except KeyboardInterrupt:
        stderr.print(
            f"interrupted: finished cells are kept in {out_dir}; continue with "
            f"dsi-online heatmap --resume --out {out_dir} (and the same settings)"
        )
        raise
    console.print(_view(result.best, console))
    console.print(f"wrote {result.rows_path} ({len(result.rows)} rows)")
    console.print(f"wrote {result.best_path} ({len(result.best)} (c, a) cells)")
    if draw:
        subtitle = (
            f"{config.engine} engine, S={config.tokens}, {config.repeats} repeats, "
            f"{config.servers} target servers"
        )
        _draw_pngs(result.best, out_dir, subtitle, console)
    rate = result.computed / result.elapsed_s if result.elapsed_s > 0 else float("inf")
    console.print(
        f"computed {result.computed} of {len(result.rows)} cells in {result.elapsed_s:.2f} s "
        f"({rate:.0f} cells/s; {result.reused} reused) with the {config.engine} engine, "
        f"backend {backend}, {result.workers} worker(s)"
    )
