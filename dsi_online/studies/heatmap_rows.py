"""The heatmap's rows and what is made of them: one row per (c, a, k) cell, the per-(c, a)
minima at the best lookahead, the four panels of the paper's Figure 1, and their CSV files
(heatmap.csv, best.csv and the journal)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from dsi_online.errors import InvalidParameterError, require
from dsi_online.studies.grid import JournalFormat
from dsi_online.units.engine import UnitsCell


def unique_sorted(values: Iterable[float]) -> list[float]:
    """The distinct values, ascending: a grid axis."""
    return sorted(set(values))


@dataclass(frozen=True)
class CellRow:
    """One (c, a, k): mean latencies over the repeats and their standard errors."""

    c: float
    a: float
    k: int
    servers_needed: int
    nonsi: float
    si: float
    dsi: float
    nonsi_sem: float
    si_sem: float
    dsi_sem: float

    @property
    def key(self) -> tuple[int, int, int]:
        """The identity of the row in a grid (c and a rounded to 9 decimals)."""
        return (round(self.c * 1e9), round(self.a * 1e9), self.k)


ROW_COLUMNS = tuple(f.name for f in fields(CellRow))


def cell_key(cell: UnitsCell) -> tuple[int, int, int]:
    """The identity of a cell in a grid (c and a rounded to 9 decimals)."""
    return (round(cell.c * 1e9), round(cell.a * 1e9), cell.k)


@dataclass(frozen=True)
class CellBest:
    """One (c, a): each algorithm at its best lookahead, and the four speedups of Figure 1."""

    c: float
    a: float
    nonsi: float
    si: float
    k_si: int
    dsi: float
    k_dsi: int
    baseline: float
    baseline_algorithm: str

    @property
    def si_over_nonsi(self) -> float:
        """Panel 1: SI (best k) over non-SI."""
        return self.nonsi / self.si

    @property
    def dsi_over_si(self) -> float:
        """Panel 2: DSI (best k) over SI (its own best k)."""
        return self.si / self.dsi

    @property
    def dsi_over_nonsi(self) -> float:
        """Panel 3: DSI (best k) over non-SI."""
        return self.nonsi / self.dsi

    @property
    def dsi_over_baseline(self) -> float:
        """Panel 4: DSI (best k) over the better of SI (best k) and non-SI."""
        return self.baseline / self.dsi


BEST_COLUMNS = (
    *(f.name for f in fields(CellBest)),
    "si_over_nonsi",
    "dsi_over_si",
    "dsi_over_nonsi",
    "dsi_over_baseline",
)


@dataclass(frozen=True)
class Panel:
    """One heatmap of Figure 1: the CellBest attribute it shows and its title."""

    attribute: str
    title: str
    lookahead: str


PANELS = (
    Panel("si_over_nonsi", "SI over non-SI", "k_si"),
    Panel("dsi_over_si", "DSI over SI", "k_dsi"),
    Panel("dsi_over_nonsi", "DSI over non-SI", "k_dsi"),
    Panel("dsi_over_baseline", "DSI over the better of SI and non-SI", "k_dsi"),
)


def best_per_cell(rows: Iterable[CellRow]) -> list[CellBest]:
    """Per (c, a): min over k of each algorithm's latency (ties: the smaller k), as the paper."""
    groups: dict[tuple[int, int], list[CellRow]] = {}
    for row in rows:
        groups.setdefault(row.key[:2], []).append(row)
    best: list[CellBest] = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: r.k)
        si = min(group, key=lambda r: r.si)
        dsi = min(group, key=lambda r: r.dsi)
        nonsi = min(r.nonsi for r in group)
        baseline, algorithm = (si.si, "si") if si.si < nonsi else (nonsi, "nonsi")
        best.append(
            CellBest(
                c=group[0].c,
                a=group[0].a,
                nonsi=nonsi,
                si=si.si,
                k_si=si.k,
                dsi=dsi.dsi,
                k_dsi=dsi.k,
                baseline=baseline,
                baseline_algorithm=algorithm,
            )
        )
    return best


@dataclass(frozen=True)
class PanelGrid:
    """One panel's values on the (a, c) grid: `values[i][j]` at a = a_values[i], c = c_values[j]."""

    c_values: list[float]
    a_values: list[float]
    values: list[list[float | None]]


def panel_grid(best: Sequence[CellBest], attribute: str) -> PanelGrid:
    """Lay a CellBest attribute (a speedup, or k_si / k_dsi) out on the grid; None where no cell."""
    c_values = unique_sorted(b.c for b in best)
    a_values = unique_sorted(b.a for b in best)
    column = {c: j for j, c in enumerate(c_values)}
    line = {a: i for i, a in enumerate(a_values)}
    values: list[list[float | None]] = [[None] * len(c_values) for _ in a_values]
    for b in best:
        values[line[b.a]][column[b.c]] = float(getattr(b, attribute))
    return PanelGrid(c_values, a_values, values)


# --- files -----------------------------------------------------------------------------------


def _format(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _csv_line(values: Sequence[object]) -> str:
    """One CSV line; the values are numbers and plain names, which need no quoting."""
    return ",".join(_format(v) for v in values) + "\n"


def _row_values(row: CellRow) -> list[object]:
    return [getattr(row, name) for name in ROW_COLUMNS]


def _best_values(best: CellBest) -> list[object]:
    return [getattr(best, name) for name in BEST_COLUMNS]


def rows_csv(rows: Iterable[CellRow]) -> str:
    """The CSV text of every (c, a, k) row, sorted by c, a, k."""
    ordered = sorted(rows, key=lambda r: r.key)
    return _csv_line(ROW_COLUMNS) + "".join(_csv_line(_row_values(r)) for r in ordered)


def best_csv(best: Iterable[CellBest]) -> str:
    """The CSV text of the per-(c, a) minima and speedups."""
    return _csv_line(BEST_COLUMNS) + "".join(_csv_line(_best_values(b)) for b in best)


def _parse_row(record: dict[str, str]) -> CellRow:
    return CellRow(
        c=float(record["c"]),
        a=float(record["a"]),
        k=int(record["k"]),
        servers_needed=int(record["servers_needed"]),
        nonsi=float(record["nonsi"]),
        si=float(record["si"]),
        dsi=float(record["dsi"]),
        nonsi_sem=float(record["nonsi_sem"]),
        si_sem=float(record["si_sem"]),
        dsi_sem=float(record["dsi_sem"]),
    )


def read_rows(path: Path) -> list[CellRow]:
    """Rows of a heatmap.csv or a journal; a last line cut short by an interrupt is ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidParameterError(f"cannot read results {path}: {exc.strerror}") from exc
    except ValueError as exc:  # UnicodeDecodeError: not a text file
        raise InvalidParameterError(
            f"{path} is not a heatmap rows CSV: it is not UTF-8 text ({exc.__class__.__name__})"
        ) from None
    return parse_rows(path, text)


def parse_rows(path: Path, text: str) -> list[CellRow]:
    """The rows of `text`, read from `path` (named in errors); a last line cut short by an
    interrupt is ignored."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    reader = csv.DictReader(lines)
    require(
        reader.fieldnames is not None and set(ROW_COLUMNS) <= set(reader.fieldnames),
        f"{path} is not a heatmap rows CSV: its header must hold {', '.join(ROW_COLUMNS)}",
    )
    try:
        return [_parse_row(record) for record in reader]
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{path} holds a malformed row: {exc}") from exc


ROWS_JOURNAL = JournalFormat[CellRow, tuple[int, int, int]](
    header=_csv_line(ROW_COLUMNS),
    encode=lambda row: _csv_line(_row_values(row)),
    decode=parse_rows,
    key=lambda row: row.key,
)
"""The heatmap's journal: heatmap.csv's header and rows, appended as they arrive."""
