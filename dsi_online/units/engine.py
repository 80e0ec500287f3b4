"""The time-unit engine: non-SI, SI and DSI as in the paper's offline experiment, vectorised.

Latencies are in units of the target's forward pass (target = 1, drafter = `c`), constant,
TTFT = TPOT, exactly as docs/model.md ("The time-unit model") states:

- **non-SI** costs S, one target forward per token.
- Drafts are examined in chunks of `k`; near the end a chunk holds only
  `min(k, S - 1 - tokens so far)` drafts, possibly 0: the last token then costs one target
  forward alone (the paper's code does the same). A chunk accepts
  `min(size, Geometric(1 - a) - 1)` leading drafts, drawn afresh for each chunk.
- **SI**: a chunk costs `size * c + 1` and yields its accepted drafts plus one token, so every
  run commits exactly S tokens. (The paper's SI does not truncate the accepted count to the
  chunk size and may overshoot S in its last chunk; the cost is the same either way.)
- **DSI** (enough target servers): an iteration runs from a restart to the first chunk with a
  rejection (or with no drafts); each chunk adds `size * c`, the rejecting chunk adds 1 and
  one token, and the iteration costs `min(that sum, new tokens)`, what non-SI would pay for
  them. docs/model.md's exception (the first chunk after a rejection costs nothing when none of
  its drafts is accepted) needs no code of its own: such an iteration is that single chunk,
  yields one token, and the `min` already prices it at 1.

Randomness: each cell `(c, a, k)` draws from its own generator, seeded from
`(seed, c, a, k)`, so a cell's result does not depend on the batch, worker or backend it is
computed in. SI and DSI of one repeat read the same draws (common random numbers): chunk `i`
of either algorithm accepts `min(size, draws[i])` drafts (see `chunk_draws`).

The loop runs over chunk indices only; each step updates every unfinished
(cell, repeat, algorithm) lane at once with numpy.

`dsi_online.units.scenario` prices the same model on given per-position coins instead (the
asyncio engine's oracles'), one repeat at a time, so the two engines compare repeat by
repeat on the same coins (docs/engines.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dsi_online.errors import require
from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.sim.scenario import servers_needed as exact_servers_needed

_BLOCK = 256
"""Chunk draws per repeat fetched from a cell's generator at a time."""

_MAX_BATCH_DRAWS = 4_000_000
"""Upper bound on draws held in memory by one batch (rows x block)."""

_KEY_SCALE = 10**9
"""c and a enter a cell's seed rounded to 9 decimals, so 0.15 and 0.15000000000000002 agree."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class UnitsCell:
    """One configuration of the time-unit model: drafter latency, acceptance rate, lookahead."""

    c: float
    a: float
    k: int

    def __post_init__(self) -> None:
        validate_cell(self.c, self.a, self.k)


@dataclass(frozen=True)
class UnitsResult:
    """Per-repeat latencies (in target forwards) of non-SI, SI and DSI for one cell."""

    cell: UnitsCell
    tokens: int
    seed: int
    nonsi: FloatArray
    si: FloatArray
    dsi: FloatArray

    @property
    def repeats(self) -> int:
        """The number of repeats (paired runs) simulated."""
        return int(self.nonsi.size)

    def latencies(self, algorithm: str) -> FloatArray:
        """The per-repeat latencies of "nonsi", "si" or "dsi"."""
        require(
            algorithm in ALGORITHMS,
            f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}",
        )
        values: FloatArray = getattr(self, algorithm)
        return values

    def mean(self, algorithm: str) -> float:
        """Mean latency over the repeats, in target forwards."""
        return float(mean_and_sem(self.latencies(algorithm)[np.newaxis])[0][0])

    def sem(self, algorithm: str) -> float:
        """Standard error of the mean latency (0 with a single repeat)."""
        return float(mean_and_sem(self.latencies(algorithm)[np.newaxis])[1][0])


def validate_cell(c: float, a: float, k: int) -> None:
    """Raise InvalidParameterError unless 0 < c <= 1, 0 <= a <= 1 and k >= 1."""
    require(
        isinstance(c, int | float) and math.isfinite(c) and 0 < c <= 1,
        f"c (drafter latency / target latency) must be in (0, 1]; got {c}",
    )
    require(
        isinstance(a, int | float) and math.isfinite(a) and 0 <= a <= 1,
        f"a (acceptance rate) must be in [0, 1]; got {a}",
    )
    require(
        isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1,
        f"k (lookahead) must be an integer >= 1; got {k}",
    )


def validate_run(tokens: int, repeats: int, seed: int) -> None:
    """Raise InvalidParameterError unless tokens >= 1, repeats >= 1 and seed >= 0."""
    for name, value, low in (("tokens", tokens, 1), ("repeats", repeats, 1), ("seed", seed, 0)):
        require(
            isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= low,
            f"{name} (--{name}) must be an integer >= {low}; got {value}",
        )


def cell_rng(seed: int, cell: UnitsCell) -> np.random.Generator:
    """The generator of one cell, derived from (seed, c, a, k) alone."""
    key = [
        int(seed),
        round(cell.c * _KEY_SCALE),
        round(cell.a * _KEY_SCALE),
        int(cell.k),
    ]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def simulate_units(
    c: float, a: float, k: int, tokens: int, repeats: int, seed: int = 0
) -> UnitsResult:
    """Simulate one cell: `repeats` paired runs of non-SI, SI and DSI generating `tokens`."""
    return simulate_units_batch([UnitsCell(c, a, k)], tokens, repeats, seed).result(0)


@dataclass(frozen=True)
class UnitsBatch:
    """Per-repeat latencies (target forwards) of many cells: arrays of shape (cells, repeats)."""

    cells: tuple[UnitsCell, ...]
    tokens: int
    seed: int
    nonsi: FloatArray
    si: FloatArray
    dsi: FloatArray

    def latencies(self, algorithm: str) -> FloatArray:
        """The (cells, repeats) latencies of "nonsi", "si" or "dsi"."""
        require(
            algorithm in ALGORITHMS,
            f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}",
        )
        values: FloatArray = getattr(self, algorithm)
        return values

    def mean(self, algorithm: str) -> FloatArray:
        """Each cell's mean latency over its repeats."""
        return mean_and_sem(self.latencies(algorithm))[0]

    def sem(self, algorithm: str) -> FloatArray:
        """Each cell's standard error of the mean latency (0 with a single repeat)."""
        return mean_and_sem(self.latencies(algorithm))[1]

    def result(self, index: int) -> UnitsResult:
        """The result of one cell of the batch."""
        return UnitsResult(
            self.cells[index],
            self.tokens,
            self.seed,
            self.nonsi[index].copy(),
            self.si[index].copy(),
            self.dsi[index].copy(),
        )


def mean_and_sem(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Row means and standard errors of a (cells, repeats) array.

    Sums run over the repeats in a fixed order, element-wise across cells, so a cell's figures
    are bit-identical whatever batch it was computed in.
    """
    repeats = values.shape[1]
    total = values[:, 0].copy()
    for r in range(1, repeats):
        total += values[:, r]
    mean = total / repeats
    if repeats < 2:
        return mean, np.zeros_like(mean)
    squares = np.zeros_like(mean)
    for r in range(repeats):
        squares += (values[:, r] - mean) ** 2
    return mean, np.sqrt(squares / (repeats - 1)) / math.sqrt(repeats)


def simulate_units_batch(
    cells: Sequence[UnitsCell], tokens: int, repeats: int, seed: int = 0
) -> UnitsBatch:
    """Simulate many cells, vectorised across cells and repeats; rows follow `cells`' order.

    A cell's result is the same whatever other cells share its batch.
    """
    validate_run(tokens, repeats, seed)
    cells = tuple(cells)
    block = min(tokens, _BLOCK)
    per_batch = max(1, _MAX_BATCH_DRAWS // (repeats * block))
    si = np.empty((len(cells), repeats))
    dsi = np.empty((len(cells), repeats))
    # Batches of cells that need about as many chunks end together: fewer idle loop steps.
    order = sorted(range(len(cells)), key=lambda i: expected_chunks(cells[i], tokens))
    for start in range(0, len(cells), per_batch):
        part = order[start : start + per_batch]
        batch = [cells[i] for i in part]
        si[part], dsi[part] = _simulate_batch(batch, tokens, repeats, seed)
    nonsi = np.full((len(cells), repeats), float(tokens))
    return UnitsBatch(cells, tokens, seed, nonsi, si, dsi)


def expected_chunks(cell: UnitsCell, tokens: int) -> float:
    """About how many chunks SI needs for `tokens` tokens: a cost estimate for scheduling."""
    a, k = cell.a, cell.k
    per_chunk = k + 1 if a == 1 else (1 - a ** (k + 1)) / (1 - a)
    return tokens / per_chunk


def _inverse_rate(a: float) -> float:
    """1 / -ln(a): Exp(1) draws times this, floored, are Geometric(1 - a) - 1 (0 at a = 0)."""
    if a == 0:
        return 0.0
    if a == 1:
        return math.inf
    return -1.0 / math.log(a)


def _accepted_into(
    target: npt.NDArray[np.int64],
    exponentials: FloatArray,
    inverse_rate: FloatArray | float,
    k: npt.NDArray[np.int64] | int,
) -> None:
    """Write `min(Geometric(1 - a) - 1, k)` into `target` (overwriting `exponentials`).

    By inversion: `floor(E / -ln a)` with E ~ Exp(1) has the distribution of numpy's
    `geometric(1 - a) - 1` and is about twice as fast. fmin caps at k (and maps a = 1, where
    the product is infinite, to k); the cast to integers floors the non-negative values.
    """
    np.multiply(exponentials, inverse_rate, out=exponentials)
    np.fmin(exponentials, k, out=exponentials)
    target[...] = exponentials


def chunk_draws(cell: UnitsCell, tokens: int, repeats: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """The draws the engine reads for a cell, shape (repeats, chunks): chunk `i` of repeat `r` of
    SI and of DSI accepts `min(size_i, draws[r, i])` drafts. At least `tokens` chunks per repeat,
    which is more than either algorithm uses (every chunk yields a token or more)."""
    validate_run(tokens, repeats, seed)
    block = min(tokens, _BLOCK)
    rng = cell_rng(seed, cell)
    blocks = math.ceil(tokens / block)
    draws = np.empty((blocks, block, repeats), dtype=np.int64)
    for b in range(blocks):
        exponentials = rng.standard_exponential((block, repeats))
        _accepted_into(draws[b], exponentials, _inverse_rate(cell.a), cell.k)
    return draws.reshape(blocks * block, repeats).T


class _Draws:
    """The current block of draws of a batch: `values[cell, j, repeat]` is chunk `j` of the block.

    Each cell fetches its blocks, (block, repeats) at a time, in order from its own generator,
    exactly as `chunk_draws` does. A last cell of zeros holds the sink row (see _Lanes).
    """

    def __init__(self, cells: Sequence[UnitsCell], repeats: int, block: int, seed: int) -> None:
        self.repeats = repeats
        self.block = block
        self.rngs = [cell_rng(seed, cell) for cell in cells]
        self.inverse_rate = np.array([_inverse_rate(cell.a) for cell in cells])
        self.k = np.array([cell.k for cell in cells], dtype=np.int64)
        self.values = np.zeros((len(cells) + 1, block, repeats), dtype=np.int64)

    def refill(self, active_cells: npt.NDArray[np.int64]) -> None:
        """Fetch the next block for each cell that still has an unfinished lane."""
        raw = np.empty((active_cells.size, self.block, self.repeats))
        for j, index in enumerate(active_cells.tolist()):
            self.rngs[index].standard_exponential(out=raw[j])
        accepted = np.empty(raw.shape, dtype=np.int64)
        inverse_rate = self.inverse_rate[active_cells][:, None, None]
        _accepted_into(accepted, raw, inverse_rate, self.k[active_cells][:, None, None])
        self.values[active_cells] = accepted

    def chunk(self, step: int) -> npt.NDArray[np.int64]:
        """Chunk `step` of every row (cell * repeats + repeat), the sink row last."""
        return self.values[:, step % self.block, :].ravel()


@dataclass
class _Lanes:
    """The runs of one algorithm still in the loop: which draw row each reads, and its state.

    A run that finishes is recorded at once and parked on the `sink` row, whose draws are all 0;
    there its state stays put (`left == -1`) until parked runs make up a quarter of the lanes
    and are dropped. This keeps the arrays' compaction rare.
    """

    row: npt.NDArray[np.int64]
    k: npt.NDArray[np.int64]
    c: FloatArray
    left: npt.NDArray[np.int64]  # tokens - 1 - tokens committed (or accepted in this iteration)
    new: npt.NDArray[np.int64]  # tokens of the current DSI iteration
    spec: FloatArray  # cost of the current DSI iteration so far
    cost: FloatArray
    sink: int
    parked: int = 0

    @classmethod
    def start(cls, row_k: npt.NDArray[np.int64], row_c: FloatArray, tokens: int) -> _Lanes:
        n = row_k.size
        return cls(
            row=np.arange(n, dtype=np.int64),
            k=row_k,
            c=row_c,
            left=np.full(n, tokens - 1, dtype=np.int64),
            new=np.zeros(n, dtype=np.int64),
            spec=np.zeros(n),
            cost=np.zeros(n),
            sink=n,
        )

    def settle(self, out: FloatArray) -> None:
        """Record the cost of runs that just finished in `out`; compact when many are parked."""
        done = self.left < 0
        finished = int(np.count_nonzero(done))
        if finished == self.parked:
            return
        fresh = done & (self.row != self.sink)
        out[self.row[fresh]] = self.cost[fresh]
        self.row[fresh] = self.sink
        self.parked = finished
        if 4 * finished >= self.row.size:
            keep = ~done
            self.row, self.k, self.c = self.row[keep], self.k[keep], self.c[keep]
            self.left, self.new = self.left[keep], self.new[keep]
            self.spec, self.cost = self.spec[keep], self.cost[keep]
            self.parked = 0


def _si_step(lanes: _Lanes, draws: npt.NDArray[np.int64], out: FloatArray) -> None:
    """One chunk of SI: `size * c + 1`, its accepted drafts plus one token."""
    size = np.minimum(lanes.k, lanes.left)
    accepted = np.minimum(size, draws[lanes.row])
    lanes.cost += size * lanes.c + 1.0
    lanes.left -= accepted + 1
    lanes.settle(out)


def _dsi_step(lanes: _Lanes, draws: npt.NDArray[np.int64], out: FloatArray) -> None:
    """One chunk of DSI; a chunk with a rejection (or no drafts) closes the iteration."""
    size = np.minimum(lanes.k, lanes.left)
    accepted = np.minimum(size, draws[lanes.row])
    lanes.left -= accepted
    lanes.new += accepted
    lanes.spec += size * lanes.c
    ends = np.flatnonzero(accepted < np.maximum(size, 1))
    if ends.size == 0:
        return
    spec = lanes.spec[ends] + 1.0
    new = lanes.new[ends] + 1
    lanes.cost[ends] += np.minimum(spec, new)
    lanes.left[ends] -= 1
    lanes.new[ends] = 0
    lanes.spec[ends] = 0.0
    lanes.settle(out)


def _simulate_batch(
    cells: Sequence[UnitsCell], tokens: int, repeats: int, seed: int
) -> tuple[FloatArray, FloatArray]:
    rows = len(cells) * repeats
    draws = _Draws(cells, repeats, min(tokens, _BLOCK), seed)
    row_k = np.repeat(np.array([cell.k for cell in cells], dtype=np.int64), repeats)
    row_c = np.repeat(np.array([cell.c for cell in cells], dtype=np.float64), repeats)
    # SI and DSI lanes of a repeat read the same draws (common random numbers).
    si, dsi = _Lanes.start(row_k, row_c, tokens), _Lanes.start(row_k, row_c, tokens)
    si_out, dsi_out = np.empty(rows), np.empty(rows)
    step = 0
    while si.row.size or dsi.row.size:
        if step % draws.block == 0:
            live = np.concatenate([si.row, dsi.row])
            draws.refill(np.unique(live[live < rows] // repeats))
        chunk = draws.chunk(step)
        _si_step(si, chunk, si_out)
        _dsi_step(dsi, chunk, dsi_out)
        step += 1
    return si_out.reshape(len(cells), repeats), dsi_out.reshape(len(cells), repeats)


def servers_needed(c: float, k: int) -> int:
    """Target servers DSI needs so that no verification waits: ceil(1 / (k c)), computed
    exactly (`dsi_online.sim.scenario.servers_needed`, the one definition)."""
    validate_cell(c, 0.0, k)
    return exact_servers_needed(c, int(k))
