"""The grid of a sweep: the parameters it can vary, their axes as the command line writes
them (`servers=1:8`), and the configuration whose cells are full comparisons of non-SI, SI
and DSI on one scenario each."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dsi_online.errors import InvalidParameterError, require
from dsi_online.sim.clock import Clock
from dsi_online.sim.scenario import MAX_LOOKAHEAD, MAX_SERVERS, Scenario

AxisValue = int | float

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
