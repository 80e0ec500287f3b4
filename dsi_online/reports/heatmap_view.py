"""The heatmap in the terminal: coloured (a, c) grids with a legend, one per Figure 1 panel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dsi_online.studies.heatmap_rows import PANELS, CellBest, PanelGrid, panel_grid

MAX_COLUMNS = 21
"""Widest grid drawn in the terminal; finer grids show evenly spaced rows and columns."""

_LABEL_WIDTH = 6


@dataclass(frozen=True)
class Band:
    """A range of values [low, high) drawn in one colour, with its legend label."""

    low: float
    high: float
    colour: str
    label: str


SPEEDUP_BANDS = (
    Band(float("-inf"), 0.8, "#c51b7d", "<0.8"),
    Band(0.8, 0.995, "#f1b6da", "0.8-1"),
    Band(0.995, 1.005, "#f7f7f7", "1.00"),
    Band(1.005, 1.1, "#d9f0d3", "1-1.1"),
    Band(1.1, 1.25, "#a6dba0", "1.1-1.25"),
    Band(1.25, 1.5, "#5aae61", "1.25-1.5"),
    Band(1.5, 2.0, "#1b7837", "1.5-2"),
    Band(2.0, 3.0, "#21918c", "2-3"),
    Band(3.0, 5.0, "#3b528b", "3-5"),
    Band(5.0, float("inf"), "#440154", ">=5"),
)
"""Speedup colours, diverging around 1: pink where slower (as in the paper), white for no
change (1.00 after rounding), greens then blues for gains, with narrow bands near 1 so that
no gain and +24% never share a colour."""

LOOKAHEAD_BANDS = (
    Band(1, 2, "#0d0887", "1"),
    Band(2, 3, "#5302a3", "2"),
    Band(3, 5, "#8b0aa5", "3-4"),
    Band(5, 8, "#b83289", "5-7"),
    Band(8, 12, "#db5c68", "8-11"),
    Band(12, 17, "#f48849", "12-16"),
    Band(17, float("inf"), "#febd2a", ">=17"),
)
"""Best-lookahead colours (plasma)."""

_LIGHT = {"#f1b6da", "#f7f7f7", "#d9f0d3", "#a6dba0", "#5aae61", "#f48849", "#febd2a"}


def band_of(value: float, bands: Sequence[Band]) -> Band:
    """The band holding `value`."""
    return next(b for b in bands if b.low <= value < b.high)


def _style(band: Band) -> str:
    return f"{'black' if band.colour in _LIGHT else 'white'} on {band.colour}"


def _cell_text(value: float, integer: bool) -> str:
    """Three characters: '2.3', ' 17', '>99'."""
    if value >= 999.5:
        return ">99"
    if integer or value >= 9.95:
        return f"{value:3.0f}"
    return f"{value:3.1f}"


def _column_label(c: float) -> str:
    return f"{c:.2f}".removeprefix("0")[:3] if c < 1 else "1.0"


def _evenly(count: int, most: int) -> list[int]:
    if count <= most:
        return list(range(count))
    step = (count - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def render_grid(
    grid: PanelGrid,
    title: str,
    bands: Sequence[Band],
    integer: bool,
    width: int = 80,
) -> RenderableType:
    """One panel: its title, then a descending down the rows and c across, each cell coloured.

    Cells are three characters a space apart (coloured or not, so that numbers never run
    together); grids wider than `width` (or MAX_COLUMNS) show evenly spaced columns and
    rows.
    """
    gap = 1
    most = max(2, min(MAX_COLUMNS, (width - _LABEL_WIDTH) // (3 + gap)))
    columns = _evenly(len(grid.c_values), most)
    lines = _evenly(len(grid.a_values), MAX_COLUMNS)
    heading = Text(title, style="bold")
    if len(columns) < len(grid.c_values) or len(lines) < len(grid.a_values):
        heading.append(
            f" ({len(columns)} of {len(grid.c_values)} c, {len(lines)} of {len(grid.a_values)} a"
            " shown)",
            style="dim",
        )
    table = Table(box=None, padding=(0, 0, 0, gap), show_edge=False)
    table.add_column("a \\ c", justify="right", no_wrap=True)
    for j in columns:
        table.add_column(
            _column_label(grid.c_values[j]), justify="right", no_wrap=True, min_width=3, max_width=3
        )
    for i in reversed(lines):
        cells: list[Text | str] = [f"{grid.a_values[i]:.2f} "]
        for j in columns:
            value = grid.values[i][j]
            if value is None:
                cells.append(Text("  ·", style="dim"))
            else:
                cells.append(Text(_cell_text(value, integer), style=_style(band_of(value, bands))))
        table.add_row(*cells)
    return Group(heading, table)


def legend(bands: Sequence[Band], what: str) -> Text:
    """A line of colour swatches with their ranges."""
    text = Text(f"{what}: ")
    for band in bands:
        text.append(f" {band.label} ", style=_style(band))
        text.append(" ")
    return text


def render_heatmap(best: Sequence[CellBest], width: int = 80) -> RenderableType:
    """The four speedup panels of Figure 1 and the best DSI lookahead, each with its legend;
    `width` is the console's."""
    parts: list[RenderableType] = [
        Text("rows: acceptance rate a (top 0.99); columns: drafter latency c", style="dim"),
        Text(),
    ]
    for panel in PANELS:
        grid = panel_grid(best, panel.attribute)
        title = f"{panel.title} (x, each at its best k)"
        parts.append(render_grid(grid, title, SPEEDUP_BANDS, False, width))
        parts.append(Text())
    parts.append(legend(SPEEDUP_BANDS, "speedup"))
    parts.append(Text())
    grid = panel_grid(best, "k_dsi")
    parts.append(render_grid(grid, "DSI's best lookahead k", LOOKAHEAD_BANDS, True, width))
    parts.append(legend(LOOKAHEAD_BANDS, "lookahead k"))
    return Group(*parts)
