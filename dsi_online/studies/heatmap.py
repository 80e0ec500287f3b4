"""The paper's Figure 1 grid: speedups of SI and DSI over (c, a), each cell at its best lookahead.

Every (c, a, k) row is simulated (time-unit engine or the asyncio engine), appended to a journal
as soon as it is known, and finally written, sorted, to `heatmap.csv` together with the per-(c, a)
minima in `best.csv` (both atomically). A run interrupted at any point continues with `resume`
without recomputing the rows already in the journal. Cells are independent and seeded from
(seed, c, a, k), so the files do not depend on the backend, the worker count or the chunking.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dsi_online.errors import require
from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.sim.latency import MAX_MS, MIN_MS
from dsi_online.sim.scenario import MAX_REPEATS, MAX_SERVERS, MAX_TOKENS
from dsi_online.studies.grid import Execution, Journal, Progress, drive
from dsi_online.studies.heatmap_rows import (
    ROWS_JOURNAL,
    CellBest,
    CellRow,
    best_csv,
    best_per_cell,
    cell_key,
    read_rows,
    rows_csv,
    unique_sorted,
)
from dsi_online.studies.parallel import Executor
from dsi_online.studies.results import prepare_out_dir, write_atomic
from dsi_online.units.engine import UnitsCell, expected_chunks, servers_needed, simulate_units_batch

Engine = Literal["units", "async"]
ClockName = Literal["virtual", "wall"]
ENGINES: tuple[Engine, ...] = ("units", "async")
CLOCKS: tuple[ClockName, ...] = ("virtual", "wall")
K_SEARCHES = ("all", "units")

C_MIN = 0.01
A_MIN = 0.01
A_MAX = 0.99
ROWS_FILE = "heatmap.csv"
BEST_FILE = "best.csv"
JOURNAL_FILE = "rows.journal.csv"
CONFIG_FILE = "run.json"
MAX_CHUNK = {"units": 1200, "async": 16}
"""Most cells one task computes per engine (bounds memory and the wait on an interrupt)."""

MAX_NDIM = 200
"""Finest grid: 201 x 201 (c, a) points, 100 times the paper's 441."""
MAX_GRID_LOOKAHEAD = 100
"""Largest lookahead k a grid tries (the paper's: 20)."""
MAX_CELLS = 1_000_000
"""Most (c, a, k) cells in one heatmap (the paper's grid: 8,463)."""


@dataclass(frozen=True)
class HeatmapConfig:
    """What a heatmap simulates: the grid and the simulation settings (not how it is executed)."""

    ndim: int = 20
    min_lookahead: int = 1
    max_lookahead: int = 20
    servers: int = 7
    tokens: int = 1000
    repeats: int = 5
    seed: int = 0
    engine: Engine = "units"
    clock: ClockName = "virtual"
    target_ms: float = 10.0
    concurrency: int = 64
    k_search: str = "all"

    def __post_init__(self) -> None:
        ints: tuple[tuple[str, str, int, int, int | None], ...] = (
            ("ndim", "--ndim", self.ndim, 2, MAX_NDIM),
            ("min_lookahead", "--min-lookahead", self.min_lookahead, 1, MAX_GRID_LOOKAHEAD),
            ("max_lookahead", "--max-lookahead", self.max_lookahead, 1, MAX_GRID_LOOKAHEAD),
            ("servers", "--servers", self.servers, 1, MAX_SERVERS),
            ("tokens", "--tokens", self.tokens, 1, MAX_TOKENS),
            ("repeats", "--repeats", self.repeats, 1, MAX_REPEATS),
            ("seed", "--seed", self.seed, 0, None),
            ("concurrency", "--concurrency", self.concurrency, 1, MAX_REPEATS),
        )
        for name, option, value, low, high in ints:
            allowed = f">= {low}" if high is None else f"within [{low}, {high}]"
            require(
                isinstance(value, int)
                and not isinstance(value, bool)
                and value >= low
                and (high is None or value <= high),
                f"{name} ({option}) must be an integer {allowed}; got {value}",
            )
        require(
            self.min_lookahead <= self.max_lookahead,
            f"lookahead range (--min-lookahead, --max-lookahead) is empty: "
            f"{self.min_lookahead}..{self.max_lookahead}",
        )
        require(
            self.engine in ENGINES,
            f"engine (--engine) must be one of {', '.join(ENGINES)}; got {self.engine!r}",
        )
        require(
            self.clock in CLOCKS,
            f"clock (--clock) must be one of {', '.join(CLOCKS)}; got {self.clock!r}",
        )
        require(
            self.k_search in K_SEARCHES,
            f"lookahead search (--k-search) must be one of {', '.join(K_SEARCHES)}; "
            f"got {self.k_search!r}",
        )
        require(
            self.engine == "async" or self.k_search == "all",
            "lookahead search (--k-search) units applies to --engine async only",
        )
        require(
            self.engine == "async" or self.clock == "virtual",
            "clock (--clock) applies to --engine async only; the units engine counts time units",
        )
        fastest = MIN_MS / C_MIN  # the fastest drafter, c = C_MIN, must stay >= MIN_MS
        require(
            isinstance(self.target_ms, int | float)
            and math.isfinite(self.target_ms)
            and fastest <= self.target_ms <= MAX_MS,
            f"target latency (--target-ms) must be a number of milliseconds within "
            f"[{fastest:g}, {MAX_MS:g}] (the drafter's, c x target, is at least {MIN_MS:g}); "
            f"got {self.target_ms}",
        )
        size = (len(self.c_values()) * len(self.a_values())) * len(self.lookaheads())
        require(
            size <= MAX_CELLS,
            f"the grid (--ndim {self.ndim}, lookaheads {self.min_lookahead}.."
            f"{self.max_lookahead}) has up to {size:,} (c, a, k) cells; a heatmap has at most "
            f"{MAX_CELLS:,}",
        )

    @property
    def unit(self) -> str:
        """The unit of the latencies in the CSV files."""
        return "target forwards" if self.engine == "units" else "seconds"

    def c_values(self) -> list[float]:
        """Drafter latencies: linspace(0, 1, ndim + 1), floored at C_MIN, duplicates dropped."""
        return unique_sorted(np.maximum(np.linspace(0, 1, self.ndim + 1), C_MIN).tolist())

    def a_values(self) -> list[float]:
        """Acceptance rates: linspace(0, 1, ndim + 1) clipped to [A_MIN, A_MAX], deduplicated."""
        return unique_sorted(np.clip(np.linspace(0, 1, self.ndim + 1), A_MIN, A_MAX).tolist())

    def lookaheads(self) -> range:
        """The lookaheads k tried in every (c, a) cell."""
        return range(self.min_lookahead, self.max_lookahead + 1)

    def cells(self) -> list[UnitsCell]:
        """Every (c, a, k) of the grid that needs at most `servers` target servers, sorted;
        with k_search "units", only each (c, a)'s best k for SI and for DSI under the units
        engine (the asyncio engine then plays a few hundred cells instead of thousands)."""
        grid = [
            UnitsCell(c, a, k)
            for c in self.c_values()
            for a in self.a_values()
            for k in self.lookaheads()
            if servers_needed(c, k) <= self.servers
        ]
        return grid if self.k_search == "all" else _units_best_cells(self, tuple(grid))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (stored in run.json and compared on resume)."""
        return asdict(self)


@functools.cache
def _units_best_cells(config: HeatmapConfig, grid: tuple[UnitsCell, ...]) -> list[UnitsCell]:
    units = replace(config, engine="units", clock="virtual", k_search="all")
    best = best_per_cell(compute_cells(grid, units))
    wanted = {(round(b.c * 1e9), round(b.a * 1e9), k) for b in best for k in (b.k_si, b.k_dsi)}
    return [cell for cell in grid if cell_key(cell) in wanted]


# --- computing cells -------------------------------------------------------------------------


def compute_cells(cells: Sequence[UnitsCell], config: HeatmapConfig) -> list[CellRow]:
    """Simulate `cells` with the configured engine (runs inside a worker process or Ray task)."""
    if config.engine == "units":
        batch = simulate_units_batch(cells, config.tokens, config.repeats, config.seed)
        means = {name: batch.mean(name).tolist() for name in ALGORITHMS}
        sems = {name: batch.sem(name).tolist() for name in ALGORITHMS}
        return [
            CellRow(
                c=cell.c,
                a=cell.a,
                k=cell.k,
                servers_needed=servers_needed(cell.c, cell.k),
                nonsi=means["nonsi"][i],
                si=means["si"][i],
                dsi=means["dsi"][i],
                nonsi_sem=sems["nonsi"][i],
                si_sem=sems["si"][i],
                dsi_sem=sems["dsi"][i],
            )
            for i, cell in enumerate(cells)
        ]
    return _async_rows(cells, config)


def cell_seed(seed: int, cell: UnitsCell) -> int:
    """A per-cell seed for the asyncio engine, derived from (seed, c, a, k) alone."""
    c_key, a_key, k = cell_key(cell)
    return int(np.random.SeedSequence([seed, c_key, a_key, k]).generate_state(1)[0])


def _async_rows(cells: Sequence[UnitsCell], config: HeatmapConfig) -> list[CellRow]:
    """The asyncio engine: one constant-latency Scenario per cell, all in one event loop."""
    from dsi_online.sim.runner import run_many
    from dsi_online.sim.scenario import Scenario

    scenarios = [
        Scenario.from_ms(
            target_ms=config.target_ms,
            drafter_ms=cell.c * config.target_ms,
            acceptance=cell.a,
            lookahead=cell.k,
            servers=config.servers,
            tokens=config.tokens,
            repeats=config.repeats,
            seed=cell_seed(config.seed, cell),
        )
        for cell in cells
    ]
    results = run_many(scenarios, clock=config.clock, concurrency=config.concurrency)
    rows = []
    for cell, result in zip(cells, results, strict=True):
        algorithms = result.algorithms
        rows.append(
            CellRow(
                c=cell.c,
                a=cell.a,
                k=cell.k,
                servers_needed=servers_needed(cell.c, cell.k),
                nonsi=algorithms["nonsi"].mean_s,
                si=algorithms["si"].mean_s,
                dsi=algorithms["dsi"].mean_s,
                nonsi_sem=algorithms["nonsi"].sem_s,
                si_sem=algorithms["si"].sem_s,
                dsi_sem=algorithms["dsi"].sem_s,
            )
        )
    return rows


def _chunks(
    cells: Sequence[UnitsCell], workers: int, config: HeatmapConfig
) -> list[list[UnitsCell]]:
    """About four tasks per worker, none above MAX_CHUNK[engine] cells, each of cells that need
    about as much work (the units engine's loop then ends for all of a task's cells together);
    the longest tasks go first."""
    if not cells:
        return []
    size = min(MAX_CHUNK[config.engine], max(1, math.ceil(len(cells) / (4 * workers))))
    ordered = sorted(cells, key=lambda cell: -expected_chunks(cell, config.tokens))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapRun:
    """A finished heatmap: its rows, per-cell minima, files, and `elapsed_s` from the start of
    the computing (worker start-up included) to the final files written."""

    config: HeatmapConfig
    rows: list[CellRow]
    best: list[CellBest]
    out_dir: Path
    computed: int
    reused: int
    elapsed_s: float
    workers: int

    @property
    def rows_path(self) -> Path:
        """The CSV of every (c, a, k) row."""
        return self.out_dir / ROWS_FILE

    @property
    def best_path(self) -> Path:
        """The CSV of the per-(c, a) minima."""
        return self.out_dir / BEST_FILE


def run_heatmap(
    config: HeatmapConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    backend: Executor = "process",
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> HeatmapRun:
    """Simulate every cell of the grid not yet in `out_dir`, then write heatmap.csv and best.csv."""
    execution = Execution(
        (os.cpu_count() or 1) if workers is None else workers, backend, ray_address
    )
    prepare_out_dir(out_dir, config.to_dict(), CONFIG_FILE, "heatmap run", resume)
    cells = config.cells()
    start = time.perf_counter()
    with Journal(out_dir / JOURNAL_FILE, ROWS_JOURNAL) as journal:
        if (out_dir / ROWS_FILE).exists():  # a finished run: its rows are all there
            journal.add(r for r in read_rows(out_dir / ROWS_FILE) if r.key not in journal.items)
        done = drive(
            journal,
            cells,
            cell_key,
            functools.partial(_chunks, workers=execution.workers, config=config),
            functools.partial(compute_cells, config=config),
            execution,
            command="heatmap",
            progress=progress,
        )
    wanted = {cell_key(cell) for cell in cells}
    rows = sorted((r for k, r in journal.items.items() if k in wanted), key=lambda r: r.key)
    best = best_per_cell(rows)
    write_atomic(out_dir / ROWS_FILE, rows_csv(rows))
    write_atomic(out_dir / BEST_FILE, best_csv(best))
    (out_dir / JOURNAL_FILE).unlink()
    elapsed = time.perf_counter() - start
    return HeatmapRun(
        config, rows, best, out_dir, done.computed, done.reused, elapsed, execution.workers
    )


def load_rows(path: Path) -> tuple[list[CellRow], list[CellBest]]:
    """Stored rows (heatmap.csv or a journal) and their per-cell minima, for re-drawing."""
    rows = read_rows(path)
    require(bool(rows), f"{path} holds no rows to draw")
    return rows, best_per_cell(rows)
