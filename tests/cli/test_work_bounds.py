"""Bounds on work: huge grids are refused at once in one line; the size of the work is
announced before it starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dsi_online.cli import main
from tests.helpers import SMALL_HEATMAP, one_error


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["heatmap", "--ndim", "100000"], "[2, 200]"),
        (["heatmap", "--max-lookahead", "100000"], "[1, 100]"),
        (["heatmap", "--ndim", "200", "--max-lookahead", "100"], "at most 1,000,000"),
        (["table", "--max-lookahead", "100000"], "[1, 100]"),
        (["sweep", "--vary", "servers=1:100000"], "at most 10,000"),
        (["sweep", "--vary", "servers=1:2000000"], "[1, 1000000]"),
        (["sweep", "--vary", "servers=1:9999", "--vary", "lookahead=1:9"], "at most 10,000"),
        (["sweep", "--vary", "acceptance=0:1:99999999999"], "[2, 10000]"),
    ],
)
def test_huge_grids_are_refused_in_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    assert needle in one_error(capsys, args)
    assert time.monotonic() - start < 5


@pytest.mark.subprocess
def test_work_size_is_announced_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL_HEATMAP, "--out", str(tmp_path / "h")]) == 0
    assert capsys.readouterr().err.startswith("heatmap: 12 (c, a, k) cells")
    args = ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().err.startswith("sweep: 2 cells x 2 repeats x 10 tokens")
