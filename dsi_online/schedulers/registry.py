"""The one registry of algorithms: each one's name, label, GPUs held and how to build its
scheduler. Everything that needs a name, a label or a GPU count reads it from here, so a new
algorithm is one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsi_online.schedulers.base import Scheduler
from dsi_online.schedulers.dsi import DSI
from dsi_online.schedulers.nonsi import NonSI
from dsi_online.schedulers.si import SI


@dataclass(frozen=True)
class Algorithm:
    """One inference algorithm: `name` in files and JSON, `label` in reports, the GPUs it
    holds for its whole latency given DSI's target servers, and its scheduler's factory."""

    name: str
    label: str
    holds: Callable[[int], int]
    build: Callable[[int, int], Scheduler]

    def gpus(self, servers: int) -> int:
        """GPUs held for the whole latency with `servers` target servers (used by DSI)."""
        return self.holds(servers)

    def scheduler(self, lookahead: int, servers: int) -> Scheduler:
        """The algorithm's scheduler for lookahead `lookahead` and `servers` target servers."""
        return self.build(lookahead, servers)


REGISTRY: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("nonsi", "non-SI", lambda servers: 1, lambda lookahead, servers: NonSI()),
        Algorithm("si", "SI", lambda servers: 2, lambda lookahead, servers: SI(lookahead)),
        Algorithm(
            "dsi",
            "DSI",
            lambda servers: servers + 1,
            lambda lookahead, servers: DSI(lookahead, servers),
        ),
    )
}
"""Every algorithm by name, in the order reports show them."""

ALGORITHMS: tuple[str, ...] = tuple(REGISTRY)
"""The algorithms' names in report order: nonsi, si, dsi."""

LABELS: dict[str, str] = {a.name: a.label for a in REGISTRY.values()}
"""Each algorithm's label in reports: non-SI, SI, DSI."""


def gpus_held(algorithm: str, servers: int) -> int:
    """GPUs an algorithm holds for its whole latency: non-SI its target server, SI a target
    and a drafter server, DSI its `servers` target servers and a drafter server."""
    return REGISTRY[algorithm].gpus(servers)


def schedulers(lookahead: int, servers: int) -> dict[str, Scheduler]:
    """Every algorithm's scheduler, by name in report order."""
    return {name: a.scheduler(lookahead, servers) for name, a in REGISTRY.items()}
