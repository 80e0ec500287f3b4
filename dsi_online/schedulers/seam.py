"""The seam between the schedulers and whatever runs forward passes: a scheduler sees only
these protocols (a server whose forward pass returns tokens, a pool of them, the channel to
a target server) and the account every kind of server keeps. The simulated servers
(`dsi_online.sim.servers`) and the real ones (`dsi_online.real.server`) implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol

Role = Literal["target", "drafter"]


def whole_ns(seconds: float) -> float:
    """Round a duration to whole nanoseconds, the clocks' resolution: durations then do not
    depend on the absolute time at which they were measured (float noise)."""
    return round(seconds * 1e9) / 1e9


class Outcome(Enum):
    """What became of a forward pass."""

    USEFUL = "useful"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code


@dataclass(frozen=True)
class ServerStats:
    """One server's account of a run: forward passes by outcome, busy seconds, and the
    total lag between its forwards' deadlines and the moments its task resumed."""

    name: str
    role: Role
    forwards: int
    useful: int
    rejected: int
    cancelled: int
    busy_s: float
    lag_s: float = 0.0

    @property
    def wasted(self) -> int:
        return self.rejected + self.cancelled


class Server(Protocol):
    """A running instance of a model, as a scheduler sees it: a forward pass that returns
    tokens, and an account of what became of its forward passes."""

    name: str
    role: Role
    forwards: int

    @property
    def warm(self) -> bool:
        """Whether the server's prompt prefill is done (its next forward is a TPOT)."""
        ...

    @property
    def in_flight(self) -> bool:
        """Whether a forward pass is running now."""
        ...

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        """One forward pass over `prefix + drafts`, read when it starts. A target returns its
        tokens after `prefix` up to and including the first that differs from its draft; a
        drafter returns its one token for the position after `prefix + drafts`."""
        ...

    def tally(self, outcome: Outcome, count: int = 1) -> None:
        """Record the outcome of `count` forward passes."""
        ...

    def stats(self) -> ServerStats:
        """The server's account of the run so far."""
        ...


class Channel(Protocol):
    """The network between the drafter's host and one target server, as a scheduler sees it:
    every message (a job sent out, a result or rejection sent back) goes through `send`."""

    async def send(self) -> None:
        """Deliver one message."""
        ...


class InstantChannel:
    """A channel without delay, for servers on one machine."""

    async def send(self) -> None:
        """Deliver one message at once."""


class ServerPool(Protocol):
    """The servers of one generation, made on demand."""

    def target(self, index: int = 0) -> Server:
        """Target server `index` (0-based)."""
        ...

    @property
    def drafter(self) -> Server:
        """The drafter server."""
        ...

    def link(self, index: int = 0) -> Channel:
        """The channel between the drafter's host and target server `index`."""
        ...

    def stats(self) -> tuple[ServerStats, ...]:
        """Every server's account, in a fixed order."""
        ...


class Account:
    """What every kind of server counts: forward passes by outcome, busy and lag seconds."""

    def __init__(self, name: str, role: Role) -> None:
        self.name = name
        self.role = role
        self.forwards = 0
        self.busy_s = 0.0
        self.lag_s = 0.0
        self.in_flight = False
        self._tally = dict.fromkeys(Outcome, 0)

    @property
    def warm(self) -> bool:
        """Whether the server has started a forward (its next forward is a TPOT draw)."""
        return self.forwards > 0

    def tally(self, outcome: Outcome, count: int = 1) -> None:
        """Record the outcome of `count` forward passes."""
        self._tally[outcome] += count

    def stats(self) -> ServerStats:
        return ServerStats(
            name=self.name,
            role=self.role,
            forwards=self.forwards,
            useful=self._tally[Outcome.USEFUL],
            rejected=self._tally[Outcome.REJECTED],
            cancelled=self._tally[Outcome.CANCELLED],
            busy_s=self.busy_s,
            lag_s=self.lag_s,
        )
