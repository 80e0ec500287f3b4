"""The heatmap grid: cell counts, resume, atomic files, backends, re-drawing and the CLI."""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError, MissingExtraError
from dsi_online.studies import heatmap as hm
from dsi_online.studies.heatmap import (
    BEST_FILE,
    JOURNAL_FILE,
    ROWS_FILE,
    HeatmapConfig,
    load_rows,
    run_heatmap,
)
from dsi_online.studies.heatmap_rows import CellRow, best_per_cell, read_rows
from dsi_online.studies.results import write_atomic
from dsi_online.units.engine import UnitsCell
from tests.helpers import one_error

TINY = HeatmapConfig(ndim=3, max_lookahead=4, tokens=60, repeats=3, seed=1)
TINY_ASYNC = HeatmapConfig(ndim=4, max_lookahead=3, tokens=30, repeats=2, seed=1, engine="async")
"""Constant latencies with 1/c an integer (c = 0.25, 0.5, 1): drafts and jobs finish at the
same instants, and cells share an event loop, so ties must be broken by rule to pass."""
BOTH = pytest.mark.parametrize("config", [TINY, TINY_ASYNC], ids=["units", "async"])


def brute_force_count(ndim: int, max_k: int, servers: int) -> int:
    """The paper's params.py, spelled out: clip c and a, drop duplicates and short-staffed
    cells; c = j / ndim (floored at 1/100) in exact fractions, as servers_needed means it."""
    cs = {max(Fraction(j, ndim), Fraction(1, 100)) for j in range(ndim + 1)}
    a_count = len({min(max(float(a), 0.01), 0.99) for a in np.linspace(0, 1, ndim + 1)})
    return a_count * sum(
        1 for c in cs for k in range(1, max_k + 1) if math.ceil(1 / (k * c)) <= servers
    )


def test_paper_grid_has_8463_cells() -> None:
    assert len(HeatmapConfig().cells()) == 8463  # docs/model.md, measured on the paper's code


@pytest.mark.parametrize(
    ("ndim", "max_k", "servers"),
    [
        (2, 20, 7),
        (3, 4, 7),
        (5, 10, 2),
        (35, 5, 1),
        pytest.param(100, 3, 7, marks=pytest.mark.slow),
    ],
)
def test_cell_count_small_grids(ndim: int, max_k: int, servers: int) -> None:
    config = HeatmapConfig(ndim=ndim, max_lookahead=max_k, servers=servers)
    cells = config.cells()
    assert len(cells) == brute_force_count(ndim, max_k, servers)
    assert len({hm.cell_key(cell) for cell in cells}) == len(cells)
    assert all(hm.servers_needed(cell.c, cell.k) <= servers for cell in cells)


def test_grid_clips_c_and_a() -> None:
    config = HeatmapConfig(ndim=2)
    assert config.c_values() == [0.01, 0.5, 1.0]
    assert config.a_values() == [0.01, 0.5, 0.99]
    assert len(HeatmapConfig(ndim=100).c_values()) == 100  # 0 and 0.01 both become 0.01


def files(out: Path) -> tuple[str, str]:
    return (out / ROWS_FILE).read_text(), (out / BEST_FILE).read_text()


def test_outputs_and_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = run_heatmap(
        TINY, tmp_path / "out", workers=1, progress=lambda d, t: seen.append((d, t))
    )
    total = len(TINY.cells())
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert result.computed == total and result.reused == 0
    assert not (tmp_path / "out" / JOURNAL_FILE).exists()
    rows = read_rows(tmp_path / "out" / ROWS_FILE)
    assert rows == result.rows and len(rows) == total
    assert all(r.dsi <= r.nonsi for r in rows)
    best_text = files(tmp_path / "out")[1]
    assert len(best_text.splitlines()) == 1 + len({(r.c, r.a) for r in rows})


def test_best_per_cell_takes_each_minimum() -> None:
    def row(k: int, si: float, dsi: float) -> CellRow:
        return CellRow(0.5, 0.5, k, 1, 100.0, si, dsi, 0.0, 0.0, 0.0)

    (best,) = best_per_cell([row(1, 120.0, 90.0), row(2, 80.0, 95.0), row(3, 80.0, 70.0)])
    assert (best.k_si, best.si, best.k_dsi, best.dsi) == (2, 80.0, 3, 70.0)  # ties: smaller k
    assert best.si_over_nonsi == 100 / 80 and best.dsi_over_si == 80 / 70
    assert best.dsi_over_nonsi == 100 / 70 and best.dsi_over_baseline == 80 / 70
    (slow_si,) = best_per_cell([row(1, 150.0, 99.0)])
    assert slow_si.baseline_algorithm == "nonsi" and slow_si.dsi_over_baseline == 100 / 99


class Interrupt(KeyboardInterrupt):
    """Ctrl-C raised by the test after a number of chunks."""


REAL_COMPUTE = hm.compute_cells


def counting(calls: list[int], stop_after: int | None = None) -> Callable[..., list[CellRow]]:
    """compute_cells that records each chunk's size, and raises Ctrl-C after `stop_after` chunks."""

    def compute(cells: Sequence[UnitsCell], config: HeatmapConfig) -> list[CellRow]:
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupt
        calls.append(len(cells))
        return REAL_COMPUTE(cells, config)

    return compute


@BOTH
def test_resume_computes_only_the_missing_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: HeatmapConfig
) -> None:
    reference = run_heatmap(config, tmp_path / "reference", workers=1)
    out = tmp_path / "run"
    calls: list[int] = []
    monkeypatch.setattr(hm, "compute_cells", counting(calls, stop_after=2))
    with pytest.raises(Interrupt):
        run_heatmap(config, out, workers=1)
    saved = sum(calls)
    assert 0 < saved < len(config.cells())
    assert not (out / ROWS_FILE).exists() and not (out / BEST_FILE).exists()
    assert len(read_rows(out / JOURNAL_FILE)) == saved

    calls.clear()
    monkeypatch.setattr(hm, "compute_cells", counting(calls))
    resumed = run_heatmap(config, out, resume=True, workers=1)
    assert sum(calls) == len(config.cells()) - saved
    assert (resumed.reused, resumed.computed) == (saved, len(config.cells()) - saved)
    assert files(out) == files(reference.out_dir)

    calls.clear()
    again = run_heatmap(config, out, resume=True, workers=1)  # finished: nothing to do
    assert calls == [] and again.computed == 0 and files(out) == files(reference.out_dir)


def test_resume_drops_a_line_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = run_heatmap(TINY, tmp_path / "reference", workers=1)
    out = tmp_path / "run"
    calls: list[int] = []
    monkeypatch.setattr(hm, "compute_cells", counting(calls, stop_after=1))
    with pytest.raises(Interrupt):
        run_heatmap(TINY, out, workers=1)
    journal = out / JOURNAL_FILE
    complete = journal.read_text()
    journal.write_text(complete + "0.5,0.5,3,1,60.0,4")  # Ctrl-C in the middle of a write
    monkeypatch.setattr(hm, "compute_cells", counting(calls))
    run_heatmap(TINY, out, resume=True, workers=1)
    assert files(out) == files(reference.out_dir)


def test_resume_refuses_other_settings_and_fresh_runs_refuse_used_folders(
    tmp_path: Path,
) -> None:
    run_heatmap(TINY, tmp_path, workers=1)
    with pytest.raises(InvalidParameterError, match="--resume"):
        run_heatmap(TINY, tmp_path, workers=1)
    other = HeatmapConfig(ndim=3, max_lookahead=4, tokens=61, repeats=3, seed=1)
    with pytest.raises(InvalidParameterError, match="settings"):
        run_heatmap(other, tmp_path, resume=True, workers=1)
    with pytest.raises(InvalidParameterError, match="no heatmap run"):
        run_heatmap(TINY, tmp_path / "empty", resume=True, workers=1)


def test_atomic_write_leaves_the_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "heatmap.csv"
    target.write_text("old\n")

    def interrupted(src: object, dst: object) -> None:
        raise Interrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(Interrupt):
        write_atomic(target, "new\n" * 1000)
    assert target.read_text() == "old\n"


@pytest.mark.slow
@pytest.mark.subprocess
@BOTH
def test_workers_one_and_two_give_identical_files(tmp_path: Path, config: HeatmapConfig) -> None:
    one = run_heatmap(config, tmp_path / "one", workers=1)
    two = run_heatmap(config, tmp_path / "two", workers=2)
    assert files(one.out_dir) == files(two.out_dir)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module's Ray tests (starting one takes seconds)."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
@BOTH
def test_ray_backend_gives_identical_files(
    tmp_path: Path, config: HeatmapConfig, ray_instance: None
) -> None:
    local = run_heatmap(config, tmp_path / "local", workers=1)
    ray = run_heatmap(config, tmp_path / "ray", workers=2, backend="ray")
    assert files(local.out_dir) == files(ray.out_dir)


def test_ray_backend_without_ray_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = importlib.import_module

    def no_ray(name: str, package: str | None = None) -> object:
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_ray)
    with pytest.raises(MissingExtraError, match=r"dsi-online\[ray\]"):
        run_heatmap(TINY, tmp_path, backend="ray")


def test_async_engine_runs_the_lead_engine(tmp_path: Path) -> None:
    config = HeatmapConfig(ndim=2, max_lookahead=2, tokens=20, repeats=2, engine="async")
    result = run_heatmap(config, tmp_path, workers=1)
    assert len(result.rows) == len(config.cells())
    for row in result.rows:
        assert row.nonsi == pytest.approx(20 * 0.010)  # 20 tokens x 10 ms, constant latencies
        assert row.dsi <= row.nonsi * (1 + 1e-9)


def test_load_redraws_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_heatmap(TINY, tmp_path, workers=1)
    rows, best = load_rows(tmp_path / ROWS_FILE)
    assert rows == result.rows and best == result.best
    calls: list[int] = []
    monkeypatch.setattr(hm, "compute_cells", counting(calls))
    assert main(["heatmap", "--load", str(tmp_path / ROWS_FILE), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert calls == []
    assert "DSI over the better of SI and non-SI" in out and "best lookahead" in out


def test_cli_runs_and_prints_the_benchmark_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = ["heatmap", "--ndim", "3", "--max-lookahead", "4", "-S", "60", "-r", "3", "--seed", "1"]
    assert main([*args, "--workers", "1", "--out", str(out), "--no-png"]) == 0
    printed = capsys.readouterr().out
    assert "cells/s" in printed and f"computed {len(TINY.cells())} of" in printed
    reference = run_heatmap(TINY, tmp_path / "api", workers=1)
    assert files(out) == files(reference.out_dir)


@pytest.mark.slow
def test_cli_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")
    run_heatmap(TINY, tmp_path, workers=1)
    assert main(["heatmap", "--load", str(tmp_path / ROWS_FILE), "--png"]) == 0
    for name in ("heatmap.png", "best-lookahead.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ndim", "1"], "ndim (--ndim) must be an integer within [2, 200]"),
        (["--min-lookahead", "5", "--max-lookahead", "3"], "lookahead range"),
        (["--max-lookahead", "0"], "max_lookahead (--max-lookahead)"),
        (["--servers", "0"], "servers (--servers)"),
        (["--tokens", "0"], "tokens (--tokens)"),
        (["--engine", "fast"], "--engine"),
        (["--clock", "wall"], "clock (--clock)"),
        (["--backend", "mpi"], "--backend"),
        (["--workers", "0"], "workers (--workers)"),
        (["--resume"], "--resume needs --out"),
        (["--load", "no-such.csv"], "load (--load)"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "out")] if "--resume" not in args else []
    assert main(["heatmap", *args, *out, "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert len(err.strip().splitlines()) == 1


def test_cli_unwritable_out_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["heatmap", "--ndim", "2", "--out", str(blocker / "sub"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert "cannot be made" in err and len(err.strip().splitlines()) == 1


def test_k_search_units_keeps_each_cells_best_lookaheads() -> None:
    """--k-search units: the asyncio engine plays only the lookaheads the units engine finds
    best for SI and for DSI in each (c, a) cell."""
    config = hm.HeatmapConfig(ndim=4, tokens=200, repeats=2, engine="async", k_search="units")
    full = hm.HeatmapConfig(ndim=4, tokens=200, repeats=2)
    best = hm.best_per_cell(hm.compute_cells(full.cells(), full))
    chosen = {hm.cell_key(cell) for cell in config.cells()}
    expected = {(round(b.c * 1e9), round(b.a * 1e9), k) for b in best for k in (b.k_si, b.k_dsi)}
    assert chosen == expected
    assert len(best) <= len(chosen) <= 2 * len(best) < len(full.cells())
    with pytest.raises(InvalidParameterError) as raised:
        hm.HeatmapConfig(k_search="units")
    assert re.search("--k-search", raised.value.cli_message)
    with pytest.raises(InvalidParameterError) as raised:
        hm.HeatmapConfig(engine="async", k_search="some")
    assert re.search("--k-search", raised.value.cli_message)


def test_unreadable_load_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "heatmap.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "UTF-8" in one_error(capsys, ["heatmap", "--load", str(binary), "--no-png"])
