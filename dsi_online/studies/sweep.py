"""Sweeps: one scenario with one or two of its parameters varied over a grid of cells.

Every cell is a full comparison of non-SI, SI and DSI. All cells share the base seed, so
repeat r of every cell draws the same coins and the same server latency streams (common
random numbers): differences between cells, e.g. one more target server, are paired
comparisons. Cells are appended to a journal (`cells.jsonl`) as soon as they are known and
`sweep.csv` is rewritten atomically after each batch; `resume` continues an interrupted
sweep without recomputing the journaled cells. On the virtual clock the results do not
depend on the backend, the worker count or the chunking.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, require
from dsi_online.sim.clock import Clock
from dsi_online.sim.runner import run_many
from dsi_online.studies.grid import Execution, Journal, JournalFormat, Progress, drive
from dsi_online.studies.parallel import Executor
from dsi_online.studies.results import OPTIONS, prepare_out_dir, write_atomic
from dsi_online.studies.sweep_analysis import (
    AlgorithmRuns,
    CellRuns,
    SweepResult,
    analyse,
    sweep_csv,
)
from dsi_online.studies.sweep_grid import (
    AxisValue,
    SweepCell,
    SweepConfig,
)

CONFIG_FILE = "sweep.json"
JOURNAL_FILE = "cells.jsonl"
CSV_FILE = "sweep.csv"

MAX_CHUNK = 8
"""Most cells one task computes (bounds the wait for results and for an interrupt)."""

# --- computing cells -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellChunk:
    """A task for one worker: cells to simulate on one event loop."""

    cells: tuple[SweepCell, ...]
    clock: Clock
    concurrency: int


def compute_chunk(chunk: CellChunk) -> list[CellRuns]:
    """Simulate the cells of `chunk` in one event loop (runs inside a worker or Ray task)."""
    scenarios = [cell.scenario for cell in chunk.cells]
    results = run_many(scenarios, chunk.clock, chunk.concurrency)
    return [
        CellRuns(
            values=cell.values,
            tokens=cell.scenario.tokens,
            c=cell.scenario.c,
            servers_needed=cell.scenario.servers_needed,
            lossless=result.lossless,
            algorithms={
                name: AlgorithmRuns(tuple(s.latency_s), tuple(s.busy_s))
                for name, s in result.algorithms.items()
            },
            servers=cell.scenario.servers,
        )
        for cell, result in zip(chunk.cells, results, strict=True)
    ]


def _chunks(cells: Sequence[SweepCell], config: SweepConfig, workers: int) -> list[CellChunk]:
    """Wall clock: enough cells a chunk to fill --concurrency repeats in one loop. Virtual
    clock: about four chunks a worker, none above MAX_CHUNK cells."""
    if not cells:
        return []
    if config.clock == "wall":
        size = max(1, math.ceil(config.concurrency / config.base.repeats))
    else:
        size = min(MAX_CHUNK, max(1, math.ceil(len(cells) / (4 * workers))))
    return [
        CellChunk(tuple(cells[i : i + size]), config.clock, config.concurrency)
        for i in range(0, len(cells), size)
    ]


def _journal_cells(path: Path, text: str) -> list[CellRuns]:
    cells = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            cells.append(CellRuns.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterError(
                f"{path} line {number} is not a sweep cell ({exc}); start a new --out"
            ) from None
    return cells


CELLS_JOURNAL = JournalFormat[CellRuns, tuple[AxisValue, ...]](
    header=None,
    encode=lambda cell: json.dumps(cell.to_json(), allow_nan=False) + "\n",
    decode=_journal_cells,
    key=lambda cell: cell.values,
)
"""The sweep's journal: one JSON line per cell, appended as cells arrive."""


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRun:
    """A finished sweep: its analysis, where it was written and what was computed."""

    result: SweepResult
    out_dir: Path
    computed: int
    reused: int
    elapsed_s: float
    workers: int

    @property
    def csv_path(self) -> Path:
        """The CSV of every cell."""
        return self.out_dir / CSV_FILE


def _execution(
    config: SweepConfig, workers: int | None, backend: Executor, ray_address: str | None
) -> Execution:
    if workers is None:
        workers = 1 if config.clock == "wall" else (os.cpu_count() or 1)
    execution = Execution(workers, backend, ray_address)
    if config.clock == "wall":
        require(
            workers == 1 and backend == "process",
            "--clock wall runs the cells in one event loop (set --concurrency); "
            "--workers and --backend ray apply to --clock virtual",
        )
    return execution


def run_sweep(
    config: SweepConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    backend: Executor = "process",
    ray_address: str | None = None,
    progress: Progress | None = None,
    options: dict[str, Any] | None = None,
) -> SweepRun:
    """Simulate every cell not yet journaled in `out_dir`, writing sweep.csv as cells arrive.
    `options` (the command line's) are saved in sweep.json for `--resume` to reuse."""
    execution = _execution(config, workers, backend, ray_address)
    settings = config.to_dict() | ({} if options is None else {OPTIONS: options})
    prepare_out_dir(out_dir, settings, CONFIG_FILE, "sweep", resume)
    cells = config.cells()
    start = time.perf_counter()
    with Journal(out_dir / JOURNAL_FILE, CELLS_JOURNAL) as journal:

        def write_csv() -> None:
            write_atomic(
                out_dir / CSV_FILE, sweep_csv(analyse(config, list(journal.items.values())))
            )

        done = drive(
            journal,
            cells,
            lambda cell: cell.values,
            functools.partial(_chunks, config=config, workers=execution.workers),
            compute_chunk,
            execution,
            command="sweep",
            progress=progress,
            after_batch=write_csv,
        )
    elapsed = time.perf_counter() - start
    wanted = {cell.values for cell in cells}
    result = analyse(config, [r for v, r in journal.items.items() if v in wanted])
    write_atomic(out_dir / CSV_FILE, sweep_csv(result))
    return SweepRun(result, out_dir, done.computed, done.reused, elapsed, execution.workers)
