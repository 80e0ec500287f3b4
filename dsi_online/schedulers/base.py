"""What every scheduler shares: its inputs (a Generation) and its result (a RunResult)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from dsi_online.schedulers.seam import ServerPool, ServerStats, whole_ns
from dsi_online.schedulers.tokens import digest


@dataclass(frozen=True)
class RunResult:
    """One algorithm's run over one repeat."""

    algorithm: str
    latency_s: float
    first_token_s: float
    tokens: int
    output_sha256: str
    servers: tuple[ServerStats, ...]
    max_queue_wait_s: float = 0.0
    timer_slack_s: float = 0.0

    @property
    def target_forwards(self) -> int:
        return sum(s.forwards for s in self.servers if s.role == "target")

    @property
    def drafter_forwards(self) -> int:
        return sum(s.forwards for s in self.servers if s.role == "drafter")

    @property
    def wasted_forwards(self) -> int:
        return sum(s.wasted for s in self.servers)

    @property
    def forwards(self) -> int:
        return sum(s.forwards for s in self.servers)

    @property
    def lag_s(self) -> float:
        """Wake-up lag summed over every completed forward pass."""
        return sum(s.lag_s for s in self.servers)

    @property
    def busy_s(self) -> float:
        """GPU-seconds: busy time summed over every server."""
        return sum(s.busy_s for s in self.servers)


@dataclass
class Generation:
    """One generation of `tokens` tokens: the servers to run on (their forwards return the
    tokens) and what has been committed so far (always a prefix of the target's output)."""

    tokens: int
    servers: ServerPool
    committed: list[int] = field(default_factory=list)
    _start: float = 0.0
    _first_token: float | None = None

    def begin(self) -> None:
        """Mark the start of the run on the running loop's clock."""
        self._start = asyncio.get_running_loop().time()

    def commit(self, token: int) -> None:
        """Append one token to the output."""
        if self._first_token is None:
            self._first_token = asyncio.get_running_loop().time()
        self.committed.append(token)

    @property
    def done(self) -> bool:
        return len(self.committed) >= self.tokens

    def result(self, algorithm: str, max_queue_wait_s: float = 0.0) -> RunResult:
        """The run's result, timed at this moment."""
        now = asyncio.get_running_loop().time()
        first = self._first_token if self._first_token is not None else now
        return RunResult(
            algorithm=algorithm,
            latency_s=whole_ns(now - self._start),
            first_token_s=whole_ns(first - self._start),
            tokens=len(self.committed),
            output_sha256=digest(self.committed),
            servers=self.servers.stats(),
            max_queue_wait_s=max_queue_wait_s,
        )


class Scheduler(Protocol):
    """An inference algorithm: generates `gen.tokens` tokens on `gen.servers`."""

    name: str

    @property
    def target_servers(self) -> int:
        """How many target servers it uses (a backend starts that many)."""
        ...

    async def generate(self, gen: Generation) -> RunResult:
        """Run the algorithm to the last token and return what it did."""
        ...
