"""dsi_online.reports.plots: the hint for the missing plot extra, the heatmap PNG's axes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsi_online.cli import main
from tests.helpers import SMALL_HEATMAP


def test_plot_extra_hint_keeps_its_brackets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("dsi_online.reports.plots.matplotlib_available", lambda: False)
    args = [a for a in SMALL_HEATMAP if a != "--no-png"]
    assert main([*args, "--out", str(tmp_path / "h")]) == 0
    assert "pip install 'dsi-online[plot]'" in capsys.readouterr().err


def test_heatmap_png_axes_span_the_grid(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dsi_online.reports.plots import _span_grid, pyplot
    from dsi_online.studies.heatmap_rows import CellBest

    plt = pyplot()
    fig, ax = plt.subplots()
    best = [CellBest(c, a, 1.0, 1.0, 1, 1.0, 1, 1.0, "si") for c in (0.3, 0.4) for a in (0.6, 0.8)]
    from dsi_online.studies.heatmap_rows import panel_grid

    _span_grid(ax, panel_grid(best, "dsi_over_si"))
    assert ax.get_xlim() == pytest.approx((0.25, 0.45)) and ax.get_ylim() == pytest.approx(
        (0.5, 0.9)
    )
    plt.close(fig)
