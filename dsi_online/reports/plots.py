"""PNG drawings of the heatmap with matplotlib (optional extra `[plot]`), one function a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from dsi_online.errors import MissingExtraError
from dsi_online.reports.heatmap_view import LOOKAHEAD_BANDS, SPEEDUP_BANDS, Band
from dsi_online.studies.heatmap_rows import PANELS, CellBest, PanelGrid, panel_grid

INSTALL_HINT = "pip install 'dsi-online[plot]'"


def matplotlib_available() -> bool:
    """Whether PNGs can be drawn here."""
    try:
        pyplot()
    except MissingExtraError:
        return False
    return True


def pyplot(command: str = "heatmap") -> Any:
    """matplotlib.pyplot on the Agg backend; MissingExtraError naming the extra if absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError(
            f"dsi-online {command} --png needs matplotlib: {INSTALL_HINT}"
        ) from exc
    return plt


def _draw(ax: Any, grid: PanelGrid, bands: Sequence[Band], title: str, label: str) -> None:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    values = np.array(
        [[np.nan if v is None else v for v in line] for line in grid.values], dtype=float
    )
    finite = values[np.isfinite(values)]
    top = max(float(finite.max()) if finite.size else 1.0, bands[-1].low) + 1.0
    bottom = min(float(finite.min()) if finite.size else 0.0, bands[1].low) - 1.0
    edges = [bottom, *(b.high for b in bands[:-1]), top]
    cmap = ListedColormap([b.colour for b in bands]).with_extremes(bad="#dddddd")
    mesh = ax.pcolormesh(
        grid.c_values,
        grid.a_values,
        np.ma.masked_invalid(values),
        cmap=cmap,
        norm=BoundaryNorm(edges, cmap.N),
        shading="nearest",
    )
    bar = ax.figure.colorbar(mesh, ax=ax, ticks=[(lo + hi) / 2 for lo, hi in pairwise(edges)])
    bar.ax.set_yticklabels([b.label for b in bands])
    bar.set_label(label)
    _span_grid(ax, grid)
    ax.set_title(title)
    ax.set_xlabel("drafter latency c (drafter / target)")
    ax.set_ylabel("acceptance rate a")


def _edges(values: Sequence[float]) -> tuple[float, float]:
    """The outer edges of cells centred on `values` (half a step beyond the ends)."""
    if len(values) < 2:
        return values[0] - 0.5, values[0] + 0.5
    return values[0] - (values[1] - values[0]) / 2, values[-1] + (values[-1] - values[-2]) / 2


def _ticks(values: Sequence[float], most: int = 11) -> list[float]:
    step = max(1, math.ceil(len(values) / most))
    return list(values[::step])


def _span_grid(ax: Any, grid: PanelGrid) -> None:
    """Axes that span the grid's cells, ticked at grid values, whatever part of [0, 1]
    the grid covers."""
    ax.set_xlim(*_edges(grid.c_values))
    ax.set_ylim(*_edges(grid.a_values))
    ax.set_xticks(_ticks(grid.c_values), [f"{c:.3g}" for c in _ticks(grid.c_values)])
    ax.set_yticks(_ticks(grid.a_values), [f"{a:.3g}" for a in _ticks(grid.a_values)])


def plot_speedups(best: Sequence[CellBest], path: Path, subtitle: str = "") -> Path:
    """Figure 1: the four speedup panels, each (c, a) cell at its best lookahead."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 10.5), constrained_layout=True)
    for ax, panel in zip(axes.flat, PANELS, strict=True):
        _draw(ax, panel_grid(best, panel.attribute), SPEEDUP_BANDS, panel.title, "speedup (x)")
    fig.suptitle(f"Speedups at the best lookahead{f' ({subtitle})' if subtitle else ''}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_best_lookahead(best: Sequence[CellBest], path: Path, subtitle: str = "") -> Path:
    """DSI's best lookahead k per (c, a) cell."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5), constrained_layout=True)
    title = f"DSI's best lookahead{f' ({subtitle})' if subtitle else ''}"
    _draw(ax, panel_grid(best, "k_dsi"), LOOKAHEAD_BANDS, title, "lookahead k")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
