"""The requests of a load run and the policies that serve them (docs/model.md, "Many requests
under load").

Arrivals are kept at unit rate (one request per second on average) and scaled to each
rate by dividing by it: request i arrives at the same point of the same process at every
rate, and its length, coins and latency draws (seeded by its index, see
`dsi_online.sim.load`) are the same under every policy (common random numbers).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np

from dsi_online.errors import InvalidParameterError, require
from dsi_online.schedulers.registry import LABELS, gpus_held
from dsi_online.schedulers.seam import whole_ns
from dsi_online.sim.scenario import MAX_TOKENS

ARRIVAL_KEY = 0xA771
"""Spawn key of the arrival process's stream, apart from every request's (seed, i, ...)."""
MAX_REQUESTS = 1_000_000
"""Most requests of a load run: every request's record is kept in memory."""
TRACE_COLUMNS = ("arrival_s", "output_tokens", "prompt_tokens")


@dataclass(frozen=True)
class Request:
    """One request: its arrival time at unit rate, its output and prompt lengths."""

    index: int
    arrival: float
    tokens: int
    prompt_tokens: int


@dataclass(frozen=True)
class Workload:
    """The requests of a load run at unit rate; `trace` names the file they came from."""

    requests: tuple[Request, ...]
    trace: str | None = None
    trace_rate: float | None = None
    """A trace's own mean arrival rate (requests per second), used when no rate is given."""

    def arrivals(self, rate: float) -> list[float]:
        """Every request's arrival time, in seconds (to the nanosecond, the clocks' grain), at
        `rate` requests per second."""
        return [whole_ns(r.arrival / rate) for r in self.requests]

    @property
    def mean_tokens(self) -> float:
        return sum(r.tokens for r in self.requests) / len(self.requests)


def check_requests(requests: int, warmup: int) -> None:
    """InvalidParameterError unless 1 <= requests <= MAX_REQUESTS and 0 <= warmup < requests."""
    require(
        isinstance(requests, int) and 2 <= requests <= MAX_REQUESTS,
        f"requests (--requests) must be an integer within [2, {MAX_REQUESTS}]; got {requests}",
    )
    require(
        isinstance(warmup, int) and 0 <= warmup <= requests - 2,
        f"warm-up requests (--warmup) must be an integer within [0, {requests - 2}] "
        f"(--requests minus 2); got {warmup}",
    )


def poisson(requests: int, tokens: int, prompt_tokens: int, seed: int) -> Workload:
    """`requests` arrivals of a unit-rate Poisson process, each of `tokens` output tokens."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ARRIVAL_KEY,)))
    times = np.cumsum(rng.exponential(1.0, size=requests))
    return Workload(tuple(Request(i, float(t), tokens, prompt_tokens) for i, t in enumerate(times)))


def _bad_trace(path: str, line: int, why: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"trace (--trace) {path} line {line}: {why}; each row is "
        f"{','.join(TRACE_COLUMNS)} (seconds, then two integers)"
    )


def _row(path: str, line: int, cells: list[str]) -> tuple[float, int, int]:
    if len(cells) != len(TRACE_COLUMNS):
        raise _bad_trace(path, line, f"{len(cells)} columns, expected {len(TRACE_COLUMNS)}")
    try:
        arrival, tokens, prompt = float(cells[0]), int(cells[1]), int(cells[2])
    except ValueError:
        raise _bad_trace(path, line, f"not numbers: {','.join(cells)!r}") from None
    if not (math.isfinite(arrival) and arrival >= 0):
        raise _bad_trace(path, line, f"arrival time must be a number >= 0; got {cells[0]}")
    if not 1 <= tokens <= MAX_TOKENS:
        raise _bad_trace(path, line, f"output tokens must be within [1, {MAX_TOKENS}]")
    if not 0 <= prompt <= MAX_TOKENS:
        raise _bad_trace(path, line, f"prompt tokens must be within [0, {MAX_TOKENS}]")
    return arrival, tokens, prompt


def load_trace_csv(path: str, limit: int | None = None) -> Workload:
    """Requests from a CSV trace (arrival_s, output_tokens, prompt_tokens; a header row of
    those names is optional), sorted by arrival and rescaled to unit rate (mean rate 1)."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            lines = [row for row in csv.reader(file) if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"trace (--trace) {path} cannot be read: {exc}") from None
    start = 1 if lines and [c.strip() for c in lines[0]] == list(TRACE_COLUMNS) else 0
    rows = [
        _row(path, number + 1, [c.strip() for c in cells])
        for number, cells in enumerate(lines[start:], start=start)
    ]
    rows = sorted(rows, key=lambda row: row[0])[:limit]
    require(len(rows) >= 2, f"trace (--trace) {path} must hold at least 2 requests")
    first, last = rows[0][0], rows[-1][0]
    require(
        last > first, f"trace (--trace) {path}: the arrivals must span some time; all are {first}"
    )
    scale = (len(rows) - 1) / (last - first)  # the trace's own rate becomes 1
    return Workload(
        tuple(
            Request(i, (arrival - first) * scale, tokens, prompt)
            for i, (arrival, tokens, prompt) in enumerate(rows)
        ),
        trace=path,
        trace_rate=scale,
    )


@dataclass(frozen=True, order=True)
class Allotment:
    """What one request is served with: an algorithm and its target servers."""

    algorithm: str
    servers: int = 1

    @property
    def gpus(self) -> int:
        return gpus_held(self.algorithm, self.servers)

    @property
    def label(self) -> str:
        if self.algorithm == "dsi":
            return f"DSI:{self.servers}"
        return LABELS[self.algorithm]
