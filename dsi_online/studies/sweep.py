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

import csv
import functools
import io
import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import stdtrit

from dsi_online.errors import InvalidParameterError, require
from dsi_online.schedulers.registry import ALGORITHMS, gpus_held
from dsi_online.sim.clock import Clock
from dsi_online.sim.runner import Speedups, run_many
from dsi_online.sim.scenario import MAX_LOOKAHEAD, MAX_SERVERS, Scenario
from dsi_online.sim.stats import Speedup, Summary
from dsi_online.studies.grid import Execution, Journal, JournalFormat, Progress, drive
from dsi_online.studies.parallel import Backend
from dsi_online.studies.results import OPTIONS, prepare_out_dir, write_atomic

AxisValue = int | float

CONFIG_FILE = "sweep.json"
JOURNAL_FILE = "cells.jsonl"
CSV_FILE = "sweep.csv"

NEAR_BEST = 0.01
"""A server count within this fraction of the best DSI latency counts as enough."""
CONFIDENCE = 0.95
"""Confidence of the paired intervals of the marginal gains."""
MAX_CHUNK = 8
"""Most cells one task computes (bounds the wait for results and for an interrupt)."""
MAX_CELLS = 10_000
"""Most cells in one sweep (each is a full comparison of the three algorithms)."""

RANGE_HELP = (
    "NAME=VALUES with VALUES a comma list (acceptance=0.5,0.7,0.9), an inclusive integer "
    "range start:stop (servers=1:8) or, for decimal parameters, start:stop:count "
    "(drafter_ms=1:10:10)"
)


@dataclass(frozen=True)
class Parameter:
    """A scenario parameter a sweep can vary, and the values it allows."""

    name: str
    integer: bool
    minimum: float
    open_minimum: bool = False
    maximum: float | None = None

    @property
    def allowed(self) -> str:
        """The allowed values in words, for error messages."""
        kind = "an integer" if self.integer else "a number"
        low = f"> {self.minimum:g}" if self.open_minimum else f">= {self.minimum:g}"
        if self.maximum is not None:
            high = str(int(self.maximum)) if self.integer else f"{self.maximum:g}"
            return f"{kind} within [{self.minimum:g}, {high}]"
        return f"{kind} {low}"

    def allows(self, value: float) -> bool:
        """Whether `value` is a valid value of this parameter."""
        if not math.isfinite(value):
            return False
        above = value > self.minimum if self.open_minimum else value >= self.minimum
        return above and (self.maximum is None or value <= self.maximum)


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("servers", integer=True, minimum=1, maximum=MAX_SERVERS),
        Parameter("lookahead", integer=True, minimum=1, maximum=MAX_LOOKAHEAD),
        Parameter("acceptance", integer=False, minimum=0, maximum=1),
        Parameter("drafter_ms", integer=False, minimum=0, open_minimum=True),
        Parameter("target_ms", integer=False, minimum=0, open_minimum=True),
        Parameter("latency_cv", integer=False, minimum=0),
        Parameter("comm_ms", integer=False, minimum=0),
        Parameter("latency_correlation", integer=False, minimum=0, maximum=1),
    )
}
LATENCY_PARAMETERS = ("drafter_ms", "target_ms", "latency_cv", "comm_ms")
"""Parameters that rebuild the latency models (so they need latencies in ms, not a profile)."""


@dataclass(frozen=True)
class SweepAxis:
    """One varied parameter and its values, in the order given."""

    name: str
    values: tuple[AxisValue, ...]


def _bad_spec(spec: str, why: str) -> InvalidParameterError:
    return InvalidParameterError(f"--vary {spec!r}: {why}; the form is {RANGE_HELP}")


def _number(text: str, parameter: Parameter, spec: str) -> AxisValue:
    try:
        value: AxisValue = int(text) if parameter.integer else float(text)
    except ValueError:
        raise _bad_spec(spec, f"{text!r} is not {parameter.allowed}") from None
    if not parameter.allows(value):
        raise _bad_spec(spec, f"{parameter.name} must be {parameter.allowed}; got {text}")
    return value


def _range(parts: list[str], parameter: Parameter, spec: str) -> list[AxisValue]:
    if parameter.integer:
        if len(parts) != 2:
            raise _bad_spec(spec, f"{parameter.name} takes an integer range start:stop")
        start, stop = (int(_number(p, parameter, spec)) for p in parts)
        if stop < start:
            raise _bad_spec(spec, f"the range {start}:{stop} is empty")
        if stop - start + 1 > MAX_CELLS:
            raise _bad_spec(
                spec, f"{stop - start + 1:,} values; a sweep has at most {MAX_CELLS:,} cells"
            )
        return list(range(start, stop + 1))
    if len(parts) != 3:
        raise _bad_spec(spec, f"{parameter.name} takes start:stop:count (a count of values)")
    low, high = (_number(p, parameter, spec) for p in parts[:2])
    count = parts[2]
    if not count.isdigit() or not 2 <= int(count) <= MAX_CELLS:
        raise _bad_spec(
            spec, f"the count must be an integer within [2, {MAX_CELLS}] (cells); got {count!r}"
        )
    return [float(v) for v in np.linspace(low, high, int(count))]


def parse_axis(spec: str) -> SweepAxis:
    """Parse one `--vary` specification, e.g. 'servers=1:8' or 'acceptance=0.5,0.7,0.9'."""
    name, sep, values_text = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values_text.strip():
        raise _bad_spec(spec, "expected NAME=VALUES")
    parameter = PARAMETERS.get(name)
    if parameter is None:
        raise _bad_spec(spec, f"NAME must be one of {', '.join(PARAMETERS)}; got {name!r}")
    text = values_text.replace(" ", "")
    if ":" in text:
        values = _range(text.split(":"), parameter, spec)
    else:
        values = [_number(part, parameter, spec) for part in text.split(",")]
    if len(set(values)) != len(values):
        raise _bad_spec(spec, "a value is listed twice")
    return SweepAxis(name, tuple(values))


@dataclass(frozen=True)
class LatencySettings:
    """The latencies a scenario was built from, in ms: what latency axes vary."""

    target_ms: float
    drafter_ms: float
    target_ttft_ms: float | None = None
    drafter_ttft_ms: float | None = None
    latency_cv: float = 0.0
    comm_ms: float = 0.0

    def scenario(self, like: Scenario) -> Scenario:
        """A scenario with these latencies and every other setting of `like`."""
        return Scenario.from_ms(
            target_ms=self.target_ms,
            drafter_ms=self.drafter_ms,
            target_ttft_ms=self.target_ttft_ms,
            drafter_ttft_ms=self.drafter_ttft_ms,
            latency_cv=self.latency_cv,
            acceptance=like.acceptance,
            lookahead=like.lookahead,
            servers=like.servers,
            tokens=like.tokens,
            repeats=like.repeats,
            seed=like.seed,
            comm_ms=self.comm_ms,
            latency_correlation=like.latency_correlation,
        )


@dataclass(frozen=True)
class SweepCell:
    """One point of the grid: the varied values and the scenario they make."""

    values: tuple[AxisValue, ...]
    scenario: Scenario


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep simulates: a base scenario, one or two axes, and the clock."""

    axes: tuple[SweepAxis, ...]
    base: Scenario
    latency: LatencySettings | None
    clock: Clock = "virtual"
    concurrency: int = 1

    def __post_init__(self) -> None:
        require(
            1 <= len(self.axes) <= 2,
            f"--vary must be given once or twice (one or two axes); got {len(self.axes)}",
        )
        names = [axis.name for axis in self.axes]
        require(len(set(names)) == len(names), f"--vary names {names[0]} twice")
        require(
            isinstance(self.concurrency, int) and self.concurrency >= 1,
            f"concurrency (--concurrency) must be an integer >= 1; got {self.concurrency}",
        )
        size = math.prod(len(axis.values) for axis in self.axes)
        require(
            size <= MAX_CELLS,
            f"--vary makes {size:,} cells ({' x '.join(str(len(a.values)) for a in self.axes)}); "
            f"a sweep has at most {MAX_CELLS:,}",
        )
        for name in names:
            if name in LATENCY_PARAMETERS:
                require(
                    self.latency is not None,
                    f"--vary {name} cannot be combined with --profile: the profile fixes the "
                    "latency distributions (drop one of the two)",
                )
        self.cells()  # every cell must make a valid scenario

    @property
    def names(self) -> tuple[str, ...]:
        """The varied parameters, in axis order."""
        return tuple(axis.name for axis in self.axes)

    def scenario_for(self, values: Sequence[AxisValue]) -> Scenario:
        """The scenario of the cell at `values` (one per axis)."""
        changes: dict[str, Any] = dict(zip(self.names, values, strict=True))
        latency_changes = {k: v for k, v in changes.items() if k in LATENCY_PARAMETERS}
        scenario = self.base
        if latency_changes and self.latency is not None:  # __post_init__ checked the latter
            scenario = replace(self.latency, **latency_changes).scenario(self.base)
        others = {k: v for k, v in changes.items() if k not in LATENCY_PARAMETERS}
        return replace(scenario, **others) if others else scenario

    def cells(self) -> list[SweepCell]:
        """Every cell, the first axis outermost."""
        return [
            SweepCell(values, self.scenario_for(values))
            for values in itertools.product(*(axis.values for axis in self.axes))
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (stored in sweep.json and compared on resume)."""
        return {
            "axes": [{"name": a.name, "values": list(a.values)} for a in self.axes],
            "base": self.base.to_dict(),
            "clock": self.clock,
            "concurrency": self.concurrency if self.clock == "wall" else None,
        }


# --- computing cells -------------------------------------------------------------------------


@dataclass(frozen=True)
class AlgorithmRuns:
    """One algorithm's latency and GPU-seconds in every repeat of a cell."""

    latency_s: tuple[float, ...]
    busy_s: tuple[float, ...]


@dataclass(frozen=True)
class CellRuns:
    """The raw outcome of one cell, as journaled: per-repeat figures of each algorithm."""

    values: tuple[AxisValue, ...]
    tokens: int
    c: float
    servers_needed: int
    lossless: bool
    algorithms: dict[str, AlgorithmRuns]
    servers: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (one journal line)."""
        return {
            "values": list(self.values),
            "tokens": self.tokens,
            "c": self.c,
            "servers_needed": self.servers_needed,
            "lossless": self.lossless,
            "servers": self.servers,
            "algorithms": {
                name: {"latency_s": list(r.latency_s), "busy_s": list(r.busy_s)}
                for name, r in self.algorithms.items()
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CellRuns:
        """Read back one journal line."""
        return cls(
            values=tuple(doc["values"]),
            tokens=int(doc["tokens"]),
            c=float(doc["c"]),
            servers_needed=int(doc["servers_needed"]),
            lossless=bool(doc["lossless"]),
            algorithms={
                name: AlgorithmRuns(
                    tuple(float(v) for v in doc["algorithms"][name]["latency_s"]),
                    tuple(float(v) for v in doc["algorithms"][name]["busy_s"]),
                )
                for name in ALGORITHMS
            },
            servers=int(doc["servers"]),
        )


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


# --- analysis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """mean(before - after) over paired repeats, with a two-sided 95% t-interval (None with a
    single repeat)."""

    mean: float
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, before: Sequence[float], after: Sequence[float]) -> PairedDifference:
        d = np.asarray(before, dtype=float) - np.asarray(after, dtype=float)
        mean = float(d.mean())
        if len(d) < 2:
            return cls(mean, None, None)
        half = float(stdtrit(len(d) - 1, (1 + CONFIDENCE) / 2)) * float(
            d.std(ddof=1) / math.sqrt(len(d))
        )
        return cls(mean, mean - half, mean + half)

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0 on the positive side (None with one repeat)."""
        return None if self.ci_low is None else self.ci_low > 0


@dataclass(frozen=True)
class SweepRow:
    """One cell, summarised: latencies, speedups, GPU-seconds per token, marginal gain."""

    runs: CellRuns
    gain: PairedDifference | None
    stops_helping: bool

    @property
    def values(self) -> tuple[AxisValue, ...]:
        """The varied values of the cell."""
        return self.runs.values

    def latency(self, algorithm: str) -> Summary:
        """Mean, std and sem of an algorithm's latency over the repeats, seconds."""
        return Summary.of(self.runs.algorithms[algorithm].latency_s)

    def gpu_s_per_token(self, algorithm: str) -> float:
        """An algorithm's busy GPU-seconds (compute time of all its servers) per token."""
        busy = self.runs.algorithms[algorithm].busy_s
        return sum(busy) / len(busy) / self.runs.tokens

    def reserved_gpu_s_per_token(self, algorithm: str) -> float:
        """An algorithm's reserved GPU-seconds per token: its latency times the GPUs it
        holds for all of it (runner.gpus_held), busy or not."""
        latency = self.runs.algorithms[algorithm].latency_s
        gpus = gpus_held(algorithm, self.runs.servers)
        return sum(latency) / len(latency) * gpus / self.runs.tokens

    @property
    def speedups(self) -> Speedups:
        """The three paired speedups of the cell."""
        lat = {name: runs.latency_s for name, runs in self.runs.algorithms.items()}
        return Speedups(
            dsi_over_si=Speedup.paired(lat["si"], lat["dsi"]),
            dsi_over_nonsi=Speedup.paired(lat["nonsi"], lat["dsi"]),
            si_over_nonsi=Speedup.paired(lat["nonsi"], lat["si"]),
        )


@dataclass(frozen=True)
class Knee:
    """Where more target servers stop helping DSI, for one value of the other axis.

    `servers` is the fewest servers whose DSI latency is within NEAR_BEST of the best's at
    95% confidence (paired repeats). The knee is `conclusive` when every smaller count is
    significantly more than NEAR_BEST slower than the best; otherwise fewer servers may be
    enough too, and only more repeats can tell (always so with one repeat)."""

    group: tuple[AxisValue, ...]
    servers: int
    dsi_s: float
    best_servers: int
    best_s: float
    conclusive: bool


@dataclass(frozen=True)
class SweepResult:
    """The analysed cells of a sweep (those computed so far) and, for servers, the knees."""

    config: SweepConfig
    rows: list[SweepRow]
    knees: list[Knee]


def _knee(rows: Sequence[CellRuns]) -> tuple[int, bool]:
    """The knee of a servers group (see Knee): its index, and whether it is conclusive."""
    dsi = [r.algorithms["dsi"].latency_s for r in rows]
    means = [float(np.mean(x)) for x in dsi]
    best = int(np.argmin(means))
    tolerance = NEAR_BEST * means[best]
    differences = [PairedDifference.of(x, dsi[best]) for x in dsi]
    if differences[0].ci_high is None:  # one repeat: no interval
        return best, False
    knee = next(
        i
        for i, d in enumerate(differences)
        if i == best or (d.ci_high is not None and d.ci_high <= tolerance)
    )
    conclusive = all(d.ci_low is not None and d.ci_low > tolerance for d in differences[:knee])
    return knee, conclusive


def analyse(config: SweepConfig, runs: Sequence[CellRuns]) -> SweepResult:
    """Rows in grid order; for a servers axis, the gain of each added server and the knees."""
    by_values = {r.values: r for r in runs}
    order = [cell.values for cell in config.cells() if cell.values in by_values]
    if "servers" not in config.names:
        rows = [SweepRow(by_values[v], None, False) for v in order]
        return SweepResult(config, rows, [])
    axis = config.names.index("servers")
    groups: dict[tuple[AxisValue, ...], list[tuple[AxisValue, ...]]] = {}
    for values in order:
        groups.setdefault(values[:axis] + values[axis + 1 :], []).append(values)
    gains: dict[tuple[AxisValue, ...], PairedDifference | None] = {}
    knees: dict[tuple[AxisValue, ...], Knee] = {}
    for group, members in groups.items():
        members.sort(key=lambda v: v[axis])
        cells = [by_values[v] for v in members]
        gains[members[0]] = None
        for before, after in itertools.pairwise(members):
            gains[after] = PairedDifference.of(
                by_values[before].algorithms["dsi"].latency_s,
                by_values[after].algorithms["dsi"].latency_s,
            )
        index, conclusive = _knee(cells)
        means = [float(np.mean(c.algorithms["dsi"].latency_s)) for c in cells]
        best = int(np.argmin(means))
        knees[members[index]] = Knee(
            group=group,
            servers=int(members[index][axis]),
            dsi_s=means[index],
            best_servers=int(members[best][axis]),
            best_s=means[best],
            conclusive=conclusive,
        )
    rows = [SweepRow(by_values[v], gains[v], v in knees and knees[v].conclusive) for v in order]
    return SweepResult(config, rows, list(knees.values()))


# --- files -----------------------------------------------------------------------------------

ROW_COLUMNS = (
    *(f"{a}_s" for a in ALGORITHMS),
    *(f"{a}_sem_s" for a in ALGORITHMS),
    *(
        f"{s}{part}"
        for s in ("dsi_over_si", "dsi_over_nonsi", "si_over_nonsi")
        for part in ("", "_ci_low", "_ci_high")
    ),
    *(f"{a}_gpu_s_per_token" for a in ALGORITHMS),
    *(f"{a}_reserved_gpu_s_per_token" for a in ALGORITHMS),
    "c",
    "dsi_servers_needed",
    "dsi_gain_s",
    "dsi_gain_ci_low",
    "dsi_gain_ci_high",
    "dsi_gain_significant",
    "dsi_stops_helping",
    "lossless",
)
"""sweep.csv's columns after the varied parameters (latencies in seconds; busy and reserved
GPU-seconds per token; gains vs the previous server count; CIs 95%, empty with one repeat;
dsi_stops_helping marks a conclusive knee only)."""


def csv_columns(config: SweepConfig) -> tuple[str, ...]:
    """Every column of sweep.csv: the varied parameters, then ROW_COLUMNS."""
    return (*config.names, *ROW_COLUMNS)


def _record(row: SweepRow) -> list[object]:
    sp = row.speedups
    gain = row.gain
    return [
        *row.values,
        *(row.latency(a).mean for a in ALGORITHMS),
        *(row.latency(a).sem for a in ALGORITHMS),
        *(
            v
            for s in (sp.dsi_over_si, sp.dsi_over_nonsi, sp.si_over_nonsi)
            for v in (s.value, s.ci_low, s.ci_high)
        ),
        *(row.gpu_s_per_token(a) for a in ALGORITHMS),
        *(row.reserved_gpu_s_per_token(a) for a in ALGORITHMS),
        row.runs.c,
        row.runs.servers_needed,
        None if gain is None else gain.mean,
        None if gain is None else gain.ci_low,
        None if gain is None else gain.ci_high,
        None if gain is None else gain.significant,
        row.stops_helping,
        row.runs.lossless,
    ]


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def sweep_csv(result: SweepResult) -> str:
    """The CSV text of the sweep, one row per computed cell in grid order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(result.config))
    for row in result.rows:
        writer.writerow([_cell_text(v) for v in _record(row)])
    return buffer.getvalue()


def row_json(row: SweepRow, names: Sequence[str]) -> dict[str, Any]:
    """One row as plain JSON values, keyed like the CSV columns."""
    keys = (*names, *ROW_COLUMNS)
    return dict(zip(keys, _record(row), strict=True))


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
    config: SweepConfig, workers: int | None, backend: Backend, ray_address: str | None
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
    backend: Backend = "process",
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
