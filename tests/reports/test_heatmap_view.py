"""dsi_online.reports.heatmap_view: the text heatmap's cells and colour bands."""

from __future__ import annotations

import re

from dsi_online.reports.heatmap_view import SPEEDUP_BANDS, band_of, render_grid
from tests.helpers import render


def test_heatmap_cells_have_gaps() -> None:
    from dsi_online.studies.heatmap_rows import PanelGrid

    grid = PanelGrid([0.1, 0.2, 0.3], [0.5, 0.9], [[1.0, 1.0, 1.0], [1.24, 2.5, 0.8]])
    text = render(render_grid(grid, "t", SPEEDUP_BANDS, False), 80)
    assert re.search(r"\d\.\d\d\.\d", text) is None and "1.0 1.0 1.0" in text


def test_colour_bands_separate_no_gain_from_24_percent() -> None:
    assert band_of(1.0, SPEEDUP_BANDS) != band_of(1.24, SPEEDUP_BANDS)
    assert band_of(0.99, SPEEDUP_BANDS) != band_of(1.0, SPEEDUP_BANDS)
