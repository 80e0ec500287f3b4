"""dsi_online.reports.sweep_plots, drawn from the hand-made sweeps of test_sweep_view: what
each figure plots, its labels and ticks, and the PNG it writes."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from dsi_online.studies.sweep_analysis import analyse
from dsi_online.studies.sweep_grid import SweepConfig, parse_axis
from tests.reports.test_sweep_view import BASE, DSI_S, cell, servers_sweep

pytest.importorskip("matplotlib")

from matplotlib.collections import PathCollection

from dsi_online.reports import sweep_plots


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures plot_sweep draws, kept open instead of closed once saved."""
    kept: list[Any] = []
    plt = sweep_plots.pyplot("sweep")

    class Keeping:
        subplots = staticmethod(plt.subplots)

        @staticmethod
        def close(fig: Any) -> None:
            kept.append(fig)

    monkeypatch.setattr(sweep_plots, "pyplot", lambda extra: Keeping)
    yield kept
    for fig in kept:
        plt.close(fig)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_two_axes_draw_a_dsi_line_per_value_of_the_second(
    figures: list[Any], tmp_path: Path
) -> None:
    path = sweep_plots.plot_sweep(servers_sweep(), tmp_path / "sweep.png")
    assert png_size(path) == (880, 550)  # 8 x 5 inches at 110 dpi
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == (
        "servers x acceptance sweep (3 repeats, virtual clock; base c=0.1 a=0.8 k=5 N=7)"
    )
    assert ax.get_xlabel() == "servers"
    assert ax.get_ylabel() == "mean latency of 50 tokens (s, ± sem)"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(
        ["DSI, acceptance=0.6", "DSI, acceptance=0.9", sweep_plots.KNEE_LABEL]
    )
    means = [list(bars.lines[0].get_ydata()) for bars in ax.containers]  # the error bars' lines
    assert means == [pytest.approx([0.9, 0.6, 0.61]), pytest.approx([0.45, 0.3, 0.305])]
    circles = [c for c in ax.collections if isinstance(c, PathCollection)]  # the scatters
    knees = sorted((float(x), round(float(y), 9)) for c in circles for x, y in c.get_offsets())
    assert knees == [(2.0, 0.3), (2.0, 0.6)]  # open circles at the knees
    assert all(tick == int(tick) for tick in ax.get_xticks())  # servers: whole ticks


def test_one_axis_draws_the_three_algorithms_and_dsi_gpu_time(
    figures: list[Any], tmp_path: Path
) -> None:
    config = SweepConfig(axes=(parse_axis("servers=1:3"),), base=BASE, latency=None)
    latency = {"nonsi": (1.5, 1.52, 1.48), "si": (1.0, 1.02, 0.98)}
    result = analyse(
        config,
        [cell((n,), {**latency, "dsi": DSI_S[n]}, servers=n) for n in (1, 2, 3)],
    )
    sweep_plots.plot_sweep(result, tmp_path / "sweep.png")
    (fig,) = figures
    ax, gpu = fig.axes
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == [
        "enough servers (conclusive)",
        "non-SI latency",
        "SI latency",
        "DSI latency",
        "DSI GPU-ms per token",
    ]
    (knee,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert list(knee.get_xdata()) == [2, 2]
    (dashed,) = gpu.get_lines()
    # busy is 0.8 of the latency: 0.8 x 0.9 s / 50 tokens = 14.4 GPU-ms per token
    assert list(dashed.get_ydata()) == pytest.approx([14.4, 9.6, 9.76])
    assert gpu.get_ylabel() == "DSI GPU-ms per token (dashed)" and gpu.get_ylim()[0] == 0
