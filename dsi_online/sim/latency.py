"""Latency models of a forward pass and the per-server streams that draw from them.

A model's forward latency depends on its phase: the first forward of a server is a
prefill (TTFT), every later one a decoding step (TPOT). Values are in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from dsi_online.errors import require
from dsi_online.sim.cost import TokenCost

_BATCH = 512

MIN_MS = 1e-3
"""Shortest latency, ms (one microsecond): the clocks count whole nanoseconds, and below a
microsecond that rounding would distort the draws (at zero, a forward takes no time)."""
MAX_MS = 1e8
"""Longest mean latency, ms (about 28 hours a forward; the virtual clock reaches any deadline,
past asyncio's one-day cap on a wait)."""
MAX_CV = 100.0
"""Largest coefficient of variation of a lognormal latency (its sigma stays below 3.04)."""


class LatencyModel(Protocol):
    """A distribution of forward-pass latencies in seconds."""

    @property
    def mean(self) -> float:
        """Expected latency in seconds."""
        ...

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw `size` latencies from `rng`."""
        ...

    def describe(self) -> str:
        """A short human-readable form, e.g. 'lognormal(30 ms, cv 0.1)'."""
        ...


def _check_latency(value: float, what: str) -> None:
    require(
        math.isfinite(value) and MIN_MS / 1e3 <= value <= MAX_MS / 1e3,
        f"{what} must be within [{MIN_MS / 1e3:g}, {MAX_MS / 1e3:g}] seconds; got {value}",
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


@dataclass(frozen=True)
class Constant:
    """Every forward takes exactly `value` seconds."""

    value: float

    def __post_init__(self) -> None:
        _check_latency(self.value, "constant latency")

    @property
    def mean(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value)

    def describe(self) -> str:
        return _ms(self.value)


@dataclass(frozen=True)
class LogNormal:
    """Lognormal latencies with the given mean (seconds) and coefficient of variation."""

    mean_s: float
    cv: float

    def __post_init__(self) -> None:
        _check_latency(self.mean_s, "lognormal mean")
        require(
            math.isfinite(self.cv) and 0 < self.cv <= MAX_CV,
            f"latency coefficient of variation must be within (0, {MAX_CV:g}]; got {self.cv}",
        )

    @property
    def mean(self) -> float:
        return self.mean_s

    @cached_property
    def _frozen(self) -> Any:
        from scipy import stats  # deferred: importing scipy.stats costs most of a second

        sigma2 = math.log1p(self.cv**2)
        return stats.lognorm(s=math.sqrt(sigma2), scale=self.mean_s * math.exp(-sigma2 / 2))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.asarray(self._frozen.rvs(size=size, random_state=rng), dtype=float)

    def describe(self) -> str:
        return f"lognormal({_ms(self.mean_s)}, cv {self.cv:g})"


@dataclass(frozen=True)
class Empirical:
    """Measured latencies (seconds), resampled uniformly with replacement."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        require(len(self.samples) > 0, "empirical latency needs at least one sample")
        for value in self.samples:
            _check_latency(value, "empirical latency sample")

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(np.asarray(self.samples), size=size, replace=True)

    def describe(self) -> str:
        return f"empirical({len(self.samples)} samples, mean {_ms(self.mean)})"


@dataclass(frozen=True)
class ModelLatency:
    """The latency of one model: its prefill (first forward) and decoding phases, and, where
    a profile measured it, a forward's cost by the tokens it processes (`cost`), which then
    prices every simulated forward instead of the TTFT and TPOT draws."""

    ttft: LatencyModel
    tpot: LatencyModel
    cost: TokenCost | None = None

    @classmethod
    def constant(cls, tpot_s: float, ttft_s: float | None = None) -> ModelLatency:
        """Constant latencies; TTFT defaults to TPOT."""
        return cls(Constant(tpot_s if ttft_s is None else ttft_s), Constant(tpot_s))

    @classmethod
    def lognormal(cls, tpot_s: float, cv: float, ttft_s: float | None = None) -> ModelLatency:
        """Lognormal latencies with one coefficient of variation for both phases."""
        return cls(LogNormal(tpot_s if ttft_s is None else ttft_s, cv), LogNormal(tpot_s, cv))

    @property
    def is_constant(self) -> bool:
        return (
            self.cost is None
            and isinstance(self.ttft, Constant)
            and isinstance(self.tpot, Constant)
        )


@dataclass
class LatencyStream:
    """One server's draws: its first forward is a TTFT draw, every later one a TPOT draw.

    Draws come in batches from the server's own generator, so a stream is reproducible
    from its seed whatever other servers do. The first draws are made at construction,
    before any run is timed.
    """

    model: ModelLatency
    rng: np.random.Generator
    _buffer: list[float] = field(default_factory=list)  # next draw last

    def __post_init__(self) -> None:
        ttft = float(self.model.ttft.sample(self.rng, 1)[0])
        self._refill()
        self._buffer.append(ttft)

    def _refill(self) -> None:
        self._buffer = self.model.tpot.sample(self.rng, _BATCH)[::-1].tolist()

    def next(self, prefix: Sequence[int] = ()) -> float:
        """The latency of this server's next forward pass (over `prefix`, which independent
        draws ignore), in seconds."""
        try:
            return self._buffer.pop()
        except IndexError:
            self._refill()
            return self._buffer.pop()


def check_correlation(value: float) -> None:
    """Raise InvalidParameterError unless 0 <= value <= 1."""
    require(
        isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1,
        f"latency correlation (--latency-correlation) must be within [0, 1]; got {value}",
    )


def correlatable(model: LatencyModel) -> bool:
    """Whether correlated draws can keep `model` as their marginal: lognormal or constant."""
    return isinstance(model, LogNormal | Constant)


def _log_params(model: LatencyModel) -> tuple[float, float]:
    """(mu, sigma) of log(latency): lognormal(mean, cv), or a constant (sigma 0)."""
    if isinstance(model, LogNormal):
        sigma2 = math.log1p(model.cv**2)
        return math.log(model.mean_s) - sigma2 / 2, math.sqrt(sigma2)
    if isinstance(model, Constant):
        return math.log(model.value), 0.0
    raise TypeError(f"correlated draws need lognormal or constant latencies; got {model}")


class StepDraws:
    """One standard normal per decoding step (a prefix length), drawn in order from one
    generator, whatever order the steps are asked for in: the factor every target server of
    a repeat shares."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._values: list[float] = []

    def at(self, step: int) -> float:
        """The shared draw of `step`."""
        while step >= len(self._values):
            self._values.extend(self._rng.standard_normal(_BATCH).tolist())
        return self._values[step]


class CorrelatedStream:
    """One target server's draws, correlated with the other target servers' by decoding step.

    A forward over a prefix of length v takes exp(mu + sigma (sqrt(rho) Z_v + sqrt(1 - rho)
    E)): Z_v is the step's draw, shared by every target server (and every algorithm) of the
    repeat, E the server's own. Each draw is lognormal with the model's mean and CV (its
    first forward the TTFT model's, later ones the TPOT model's); rho is the correlation of
    the logs of two servers' forwards from the same prefix; at rho = 1 they are equal.
    """

    def __init__(
        self, model: ModelLatency, rng: np.random.Generator, steps: StepDraws, rho: float
    ) -> None:
        check_correlation(rho)
        self._phases = (_log_params(model.ttft), _log_params(model.tpot))
        self._rng = rng
        self._steps = steps
        self._shared = math.sqrt(rho)
        self._own = math.sqrt(1 - rho)
        self._warm = False
        self._buffer: list[float] = []

    def next(self, prefix: Sequence[int] = ()) -> float:
        """The latency of this server's next forward pass over `prefix`, in seconds."""
        mu, sigma = self._phases[self._warm]
        self._warm = True
        if not self._buffer:
            self._buffer = self._rng.standard_normal(_BATCH).tolist()
        z = self._shared * self._steps.at(len(prefix)) + self._own * self._buffer.pop()
        return math.exp(mu + sigma * z)


def empirical_ms(samples_ms: Sequence[float]) -> Empirical:
    """An empirical model from samples given in milliseconds."""
    return Empirical(tuple(float(s) / 1e3 for s in samples_ms))
