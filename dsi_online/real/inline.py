"""The inline backend of `dsi-online validate --workers auto` (non-SI and SI in the loop's
thread, DSI on processes): its calibration is DSI's, moved by the same forwards timed on
both backends in alternating blocks, so that the model's cost is measured once."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dsi_online.real.backend import RealBackend
from dsi_online.real.calibrate import (
    HOST_TOKENS,
    IDLE_S,
    SMALL_WEIGHT,
    Calibration,
    fresh_tokens,
    idle_round,
    neighbour_of,
    server_of,
    timed,
)
from dsi_online.real.server import RealPool
from dsi_online.schedulers.seam import Role


@dataclass(frozen=True)
class RoundTrips:
    """The same forwards timed on two backends of one model, in alternating blocks
    (`round_trips`): seconds each, as a scheduler sees them, on the calibrated backend and on
    the other, the other's (queued, delivery) transit and loop time per forward, and its
    slowdowns after each of IDLE_S idle ([gap] -> one ratio a block, `idle_round`)."""

    elapsed_s: tuple[float, ...]
    other_elapsed_s: tuple[float, ...]
    transit_s: tuple[tuple[float, float], ...]
    overhead_s: tuple[float, ...]
    idle_ratios: tuple[tuple[float, ...], ...]

    @classmethod
    def merge(cls, parts: Sequence[RoundTrips]) -> RoundTrips:
        """One set of round trips from several taken at different times (all their blocks)."""
        return cls(
            tuple(x for p in parts for x in p.elapsed_s),
            tuple(x for p in parts for x in p.other_elapsed_s),
            tuple(x for p in parts for x in p.transit_s),
            tuple(x for p in parts for x in p.overhead_s),
            tuple(tuple(x for p in parts for x in p.idle_ratios[g]) for g in range(len(IDLE_S))),
        )

    @property
    def shift_s(self) -> float:
        """How much longer a forward takes on the other backend (negative: shorter)."""
        return statistics.fmean(self.other_elapsed_s) - statistics.fmean(self.elapsed_s)


def round_trips(
    calibrated: RealBackend,
    other: RealBackend,
    role: Role,
    prompt: Sequence[int],
    samples: int,
    seed: int = 0,
    first: int = 0,
) -> RoundTrips:
    """`role`'s forwards on two backends of one model, for `moved`: `samples` blocks, each
    SMALL_WEIGHT forwards of one token and as many of HOST_TOKENS[role] after the prompt on
    one backend, then the same forwards on the other (which goes first alternates: the
    calibrated one in even blocks, counting from `first`), each timed as `calibrate` times
    them, so that both see the same moments of the host; then one round of the other's idle
    slowdowns (its own kind of idle: an inline backend computes the other model through a
    gap, `idle_round`)."""
    rng = np.random.default_rng(seed)
    elapsed: dict[bool, list[float]] = {False: [], True: []}
    transit: list[tuple[float, float]] = []
    overhead: list[float] = []
    idle: list[list[float]] = [[] for _ in IDLE_S]
    filled = other.settings.workers == "inline"
    fresh = fresh_tokens(rng)

    def block(suffixes: list[list[int]], on_other: bool) -> Callable[[RealPool], Any]:
        async def work(pool: RealPool) -> None:
            server = server_of(pool, role)
            await server.forward((), ())  # the prefill: the cache holds the prompt
            for suffix in suffixes:
                await server.forward((), ())  # crops the cache to the prompt
                found = (transit, overhead) if on_other else (None, None)
                elapsed[on_other].append(await timed(server, suffix, len(suffix), *found))
            if on_other:
                neighbour = neighbour_of(pool, role)
                for i, ratio in enumerate(await idle_round(server, neighbour, (), fresh, filled)):
                    idle[i].append(ratio)

        return work

    for index in range(first, first + samples):
        counts = (1, HOST_TOKENS[role]) * SMALL_WEIGHT
        suffixes = [fresh(n) for n in counts]
        for on_other in (False, True) if index % 2 == 0 else (True, False):
            (other if on_other else calibrated).with_pool(prompt, block(suffixes, on_other))
    return RoundTrips(
        tuple(elapsed[False]),
        tuple(elapsed[True]),
        tuple(transit),
        tuple(overhead),
        tuple(tuple(ratios) for ratios in idle),
    )


def moved(calibration: Calibration, trips: RoundTrips) -> Calibration:
    """`calibration` as it would have measured on another backend of the same model,
    from forwards timed on both in alternating blocks (`round_trips`): every forward
    shifted by how much longer they took there, that backend's transit, loop time and idle
    slowdowns kept, and no contention (an inline backend's forwards never overlap) or host
    probes.
    The model's cost by tokens and context is measured once, and the two backends'
    difference in pairs, so that a drifting host moves both alike."""
    shift = trips.shift_s
    return replace(
        calibration,
        samples=tuple(
            tuple(tuple(x + shift for x in row) for row in context)
            for context in calibration.samples
        ),
        prefill_s=tuple(x + shift for x in calibration.prefill_s),
        idle_ratios=trips.idle_ratios,
        contended_ratios=(),
        crowded_ratios=(),
        transit_s=trips.transit_s,
        overhead_s=trips.overhead_s,
        gaps_s=(),
        probes_s=(),
    )
