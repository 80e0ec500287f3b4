"""What a sweep's cells say: per-repeat figures as journaled, paired marginal gains of one
more target server, the knee where DSI stops helping, and the rows of sweep.csv."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import stdtrit

from dsi_online.schedulers.registry import ALGORITHMS, gpus_held
from dsi_online.sim.runner import Speedups
from dsi_online.sim.stats import Speedup, Summary
from dsi_online.studies.sweep_grid import (
    AxisValue,
    SweepConfig,
)

NEAR_BEST = 0.01
"""A server count within this fraction of the best DSI latency counts as enough."""
CONFIDENCE = 0.95
"""Confidence of the paired intervals of the marginal gains."""


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
