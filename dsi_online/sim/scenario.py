"""A scenario: one target/drafter pair, its acceptance rate and the algorithms' settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from dsi_online.errors import require
from dsi_online.sim.latency import (
    MAX_CV,
    MAX_MS,
    MIN_MS,
    LatencyModel,
    LogNormal,
    ModelLatency,
    check_correlation,
    correlatable,
)
from dsi_online.sim.trace import AcceptanceTrace

MAX_TOKENS = 1_000_000
"""Most tokens a run generates: the oracle draws them all up front (and real outputs are
far shorter)."""
MAX_REPEATS = 100_000
"""Most repeats of a scenario: every repeat's results are kept in memory."""
MAX_SERVERS = 1_000_000
"""Most target servers of DSI: servers are made on demand, so the bound only keeps the
numbers sane; a run uses as many as its jobs overlap."""
MAX_LOOKAHEAD = 1_000
"""Largest lookahead k: a chunk of drafts longer than this gains nothing measurable."""


def check_int(
    value: int, name: str, option: str, minimum: int = 1, maximum: int | None = None
) -> None:
    """Raise InvalidParameterError unless `value` is an integer within [minimum, maximum]."""
    allowed = f">= {minimum}" if maximum is None else f"within [{minimum}, {maximum}]"
    require(
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum),
        f"{name} ({option}) must be an integer {allowed}; got {value}",
    )


def check_acceptance(value: float, option: str = "--acceptance/-a") -> None:
    """Raise InvalidParameterError unless 0 <= value <= 1."""
    require(
        isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1,
        f"acceptance rate ({option}) must be within [0, 1]; got {value}",
    )


def check_ms(value: float, name: str, option: str) -> None:
    """Raise InvalidParameterError unless `value` is a latency within [MIN_MS, MAX_MS] ms
    (the clocks count whole nanoseconds: shorter latencies would round away)."""
    require(
        isinstance(value, int | float) and math.isfinite(value) and MIN_MS <= value <= MAX_MS,
        f"{name} ({option}) must be a number of milliseconds within [{MIN_MS:g}, {MAX_MS:g}]; "
        f"got {value}",
    )


def check_cv(value: float) -> None:
    """Raise InvalidParameterError unless the coefficient of variation is within [0, MAX_CV]."""
    require(
        isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= MAX_CV,
        f"latency coefficient of variation (--latency-cv) must be a number within "
        f"[0, {MAX_CV:g}]; got {value}",
    )


def check_comm_ms(value: float) -> None:
    """Raise InvalidParameterError unless the communication delay is 0 or a valid latency."""
    require(
        isinstance(value, int | float)
        and math.isfinite(value)
        and (value == 0 or MIN_MS <= value <= MAX_MS),
        f"communication delay (--comm-ms) must be 0 or a number of milliseconds within "
        f"[{MIN_MS:g}, {MAX_MS:g}]; got {value}",
    )


_RESOLUTION = 10**9


def exact(value: float) -> Fraction:
    """`value` as the nearest fraction with a denominator of at most 10^9: a latency in
    seconds given to the nanosecond (the virtual clock's grid), or a grid ratio such as 1/3,
    is exact, so float noise (0.01 / 0.1 = 0.09999999999999999) cannot move a ceiling."""
    return Fraction(value).limit_denominator(_RESOLUTION)


def servers_needed(c: float | Fraction, lookahead: int) -> int:
    """Target servers DSI needs so that no verification waits for one: ceil(1 / (k c)), where
    c = drafter latency / target latency, in exact arithmetic (a float c goes through
    `exact`). In floats, 100 ms and 10 ms at k = 5 give c = 0.09999999999999999 and
    ceil(2.0000000000000004) = 3, though a target forward lasts exactly two chunks of
    drafts and 2 servers suffice."""
    ratio = c if isinstance(c, Fraction) else exact(c)
    return math.ceil(1 / (lookahead * ratio))


def _latency_ms(model: LatencyModel) -> float:
    return model.mean * 1e3


@dataclass(frozen=True)
class Scenario:
    """Everything that defines a comparison of non-SI, SI and DSI, except the clock."""

    target: ModelLatency
    drafter: ModelLatency
    acceptance: float
    lookahead: int
    servers: int
    tokens: int
    repeats: int = 1
    seed: int = 0
    profile: str | None = None
    link: LatencyModel | None = None
    latency_correlation: float = 0.0
    trace: AcceptanceTrace | None = None
    """Real accept/reject traces replayed as the coins; `acceptance` must be their rate."""
    prompt_tokens: int = 0
    """Prompt length, which a server's first forward processes: it matters only to latency
    models that price a forward by its tokens (`ModelLatency.cost`)."""

    def __post_init__(self) -> None:
        check_acceptance(self.acceptance)
        check_int(self.lookahead, "lookahead", "--lookahead/-k", maximum=MAX_LOOKAHEAD)
        check_int(self.servers, "target servers", "--servers/-n", maximum=MAX_SERVERS)
        check_int(self.tokens, "tokens", "--tokens/-S", maximum=MAX_TOKENS)
        check_int(self.repeats, "repeats", "--repeats/-r", maximum=MAX_REPEATS)
        check_int(self.seed, "seed", "--seed", minimum=0)
        check_correlation(self.latency_correlation)
        require(
            self.latency_correlation == 0
            or (correlatable(self.target.ttft) and correlatable(self.target.tpot)),
            "latency correlation (--latency-correlation) needs lognormal or constant target "
            "latencies (--latency-cv); this scenario's are "
            f"{self.target.tpot.describe()}",
        )
        require(
            self.latency_correlation == 0 or self.target.cost is None,
            "latency correlation (--latency-correlation) cannot be combined with a profile "
            "that prices forwards by their tokens",
        )
        check_int(self.prompt_tokens, "prompt tokens", "--prompt-tokens", 0, MAX_TOKENS)
        if self.trace is not None:
            require(
                self.acceptance == self.trace.rate,
                f"acceptance rate (--acceptance/-a) cannot be given with an acceptance trace, "
                f"whose rate is {self.trace.rate:.6g}; got {self.acceptance}",
            )
            require(
                self.tokens <= self.trace.shortest,
                f"tokens (--tokens/-S) must be <= {self.trace.shortest}, the shortest acceptance "
                f"trace; got {self.tokens}",
            )

    @classmethod
    def from_ms(
        cls,
        *,
        target_ms: float,
        drafter_ms: float,
        acceptance: float,
        lookahead: int,
        servers: int,
        tokens: int,
        repeats: int = 1,
        seed: int = 0,
        latency_cv: float = 0.0,
        target_ttft_ms: float | None = None,
        drafter_ttft_ms: float | None = None,
        comm_ms: float = 0.0,
        latency_correlation: float = 0.0,
    ) -> Scenario:
        """A scenario from latencies in milliseconds; cv 0 means constant latencies.
        `comm_ms` is the delay of each message between the drafter's host and a target
        server (0: none), drawn like the forwards. `latency_correlation` in [0, 1]
        correlates the target servers' draws by decoding step (0: independent; see
        `dsi_online.sim.latency.CorrelatedStream`)."""
        check_ms(target_ms, "target latency", "--target-ms")
        check_ms(drafter_ms, "drafter latency", "--drafter-ms")
        if target_ttft_ms is not None:
            check_ms(target_ttft_ms, "target TTFT", "--target-ttft-ms")
        if drafter_ttft_ms is not None:
            check_ms(drafter_ttft_ms, "drafter TTFT", "--drafter-ttft-ms")
        check_cv(latency_cv)
        check_comm_ms(comm_ms)

        def model(tpot_ms: float, ttft_ms: float | None) -> ModelLatency:
            ttft_s = None if ttft_ms is None else ttft_ms / 1e3
            if latency_cv == 0:
                return ModelLatency.constant(tpot_ms / 1e3, ttft_s)
            return ModelLatency.lognormal(tpot_ms / 1e3, latency_cv, ttft_s)

        return cls(
            target=model(target_ms, target_ttft_ms),
            drafter=model(drafter_ms, drafter_ttft_ms),
            acceptance=acceptance,
            lookahead=lookahead,
            servers=servers,
            tokens=tokens,
            repeats=repeats,
            seed=seed,
            link=None if comm_ms == 0 else model(comm_ms, None).tpot,
            latency_correlation=latency_correlation,
        )

    @property
    def c(self) -> float:
        """Drafter TPOT / target TPOT (means): the drafter's relative latency."""
        return self.drafter.tpot.mean / self.target.tpot.mean

    @property
    def servers_needed(self) -> int:
        """Target servers DSI needs to never wait for one: ceil(1 / (k c)), c computed
        exactly from the two mean latencies (see `servers_needed`)."""
        ratio = exact(self.drafter.tpot.mean) / exact(self.target.tpot.mean)
        return servers_needed(ratio, self.lookahead)

    def to_dict(self) -> dict[str, Any]:
        """Every parameter, resolved, as plain JSON values."""
        latency_cv = next(
            (m.cv for m in (self.target.tpot, self.drafter.tpot) if isinstance(m, LogNormal)), 0.0
        )
        return {
            "target_ms": _latency_ms(self.target.tpot),
            "target_ttft_ms": _latency_ms(self.target.ttft),
            "drafter_ms": _latency_ms(self.drafter.tpot),
            "drafter_ttft_ms": _latency_ms(self.drafter.ttft),
            "target_latency": {
                "ttft": self.target.ttft.describe(),
                "tpot": self.target.tpot.describe(),
            },
            "drafter_latency": {
                "ttft": self.drafter.ttft.describe(),
                "tpot": self.drafter.tpot.describe(),
            },
            "latency_cv": latency_cv,
            "latency_correlation": self.latency_correlation,
            "c": self.c,
            "acceptance": self.acceptance,
            "lookahead": self.lookahead,
            "servers": self.servers,
            "tokens": self.tokens,
            "repeats": self.repeats,
            "seed": self.seed,
            "profile": self.profile,
            "comm_ms": 0.0 if self.link is None else _latency_ms(self.link),
            "comm_latency": None if self.link is None else self.link.describe(),
            "acceptance_trace": None if self.trace is None else self.trace.source,
            "prompt_tokens": self.prompt_tokens,
            "token_cost": self.target.cost is not None or self.drafter.cost is not None,
        }
