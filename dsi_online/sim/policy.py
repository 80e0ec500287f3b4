"""Policies: how a request is served on a shared fleet (docs/model.md, "Many requests under
load"). A static policy gives every request the same allotment; `adaptive` chooses one at
admission from what is free and what waits.

The adaptive rule: the request at the head of the queue gets its fair share of the free
GPUs, `free // (1 + waiting)` (waiting: the requests queued behind it). When that share
holds at least one GPU, it takes the fastest allotment that fits in it, where allotments
within NEAR_FASTEST of the fastest count as ties, won by the one holding fewer GPUs (DSI
past the servers it needs gains nothing and strands GPUs others could use). When more
requests wait than GPUs are free, throughput decides: it takes the allotment with the
fewest expected reserved GPU-seconds (latency x GPUs) among those that fit in the free
GPUs. "Fastest" and "GPU-seconds" are each allotment's mean latency for one request on
servers of its own, measured once before the run on the virtual clock with a seed of its
own (CALIBRATION_REPEATS repeats), so the policy never sees the requests' own draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from dsi_online.errors import InvalidParameterError, require
from dsi_online.sim.runner import run_many
from dsi_online.sim.scenario import MAX_SERVERS, Scenario
from dsi_online.sim.workload import Allotment

NEAR_FASTEST = 0.05
"""Allotments within this fraction of the fastest one's latency count as equally fast."""
CALIBRATION_REPEATS = 16
"""Single-request runs that measure each allotment's mean latency for `adaptive`."""
_CALIBRATION_KEY = 0xCA1B
POLICY_HELP = "nonsi, si, dsi (with --servers target servers), dsi:N, adaptive"


@dataclass(frozen=True)
class Choice:
    """An allotment and its mean latency for one request on servers of its own."""

    allotment: Allotment
    expected_s: float

    @property
    def reserved_s(self) -> float:
        """Expected GPU-seconds reserved: the latency times the GPUs held."""
        return self.expected_s * self.allotment.gpus


@dataclass(frozen=True)
class Policy:
    """A way to serve requests: one allotment (static), or a choice among several."""

    name: str
    choices: tuple[Choice, ...]
    adaptive: bool = False
    pinned: tuple[Allotment, ...] = ()
    """Each request's allotment, by index, decided by an earlier run of this policy (see
    `pin`); empty: the policy decides."""

    @property
    def label(self) -> str:
        return "adaptive" if self.adaptive else self.choices[0].allotment.label

    @property
    def min_gpus(self) -> int:
        """The fewest GPUs a request of this policy can be served with."""
        return min(c.allotment.gpus for c in self.choices)

    def pin(self, allotments: Sequence[Allotment]) -> Policy:
        """This policy with request i's allotment fixed to `allotments[i]`: a replay of a run's
        decisions, so that two clocks compare the same work, not a threshold rule's reaction
        to microseconds (an adaptive choice flips when a release and an arrival swap order)."""
        return replace(self, pinned=tuple(allotments))

    def choose(self, free: int, waiting: int, index: int = 0) -> Allotment | None:
        """The allotment of request `index`, at the head of the queue, with `free` GPUs free
        and `waiting` requests queued behind it; None: it waits for more GPUs."""
        if self.pinned:
            return self.pinned[index] if self.pinned[index].gpus <= free else None
        if not self.adaptive:
            only = self.choices[0].allotment
            return only if only.gpus <= free else None
        efficient = min(self.choices, key=lambda c: (c.reserved_s, c.allotment.gpus))
        budget = (free - efficient.allotment.gpus) // (1 + waiting)
        faster = [
            c
            for c in self.choices
            if c.allotment.gpus <= budget and c.expected_s < efficient.expected_s
        ]
        if faster:
            fastest = min(c.expected_s for c in faster)
            near = [c for c in faster if c.expected_s <= fastest * (1 + NEAR_FASTEST)]
            return min(near, key=lambda c: (c.allotment.gpus, c.expected_s)).allotment
        return efficient.allotment if efficient.allotment.gpus <= free else None


def _bad_policy(spec: str, why: str) -> InvalidParameterError:
    return InvalidParameterError(f"policy (--policy) {spec!r}: {why}; allowed: {POLICY_HELP}")


def parse_allotment(spec: str, servers: int) -> Allotment | None:
    """A static policy's allotment from its name ('dsi' takes `servers` target servers);
    None for 'adaptive'."""
    name, _, count = spec.strip().lower().partition(":")
    if name == "adaptive" and not count:
        return None
    if name in ("nonsi", "si") and not count:
        return Allotment(name)
    if name == "dsi":
        if not count:
            return Allotment("dsi", servers)
        if count.isdigit() and 1 <= int(count) <= MAX_SERVERS:
            return Allotment("dsi", int(count))
        raise _bad_policy(spec, f"N must be an integer within [1, {MAX_SERVERS}]")
    raise _bad_policy(spec, "unknown policy")


def _static(allotment: Allotment, expected: dict[Allotment, float]) -> Policy:
    name = "dsi:" + str(allotment.servers) if allotment.algorithm == "dsi" else allotment.algorithm
    return Policy(name, (Choice(allotment, expected.get(allotment, float("nan"))),))


def adaptive_options(servers: int, gpus: int) -> list[Allotment]:
    """What `adaptive` chooses from: non-SI, SI and DSI with 1 to `servers` target servers,
    those that fit in the fleet."""
    options = [Allotment("nonsi"), Allotment("si")]
    options += [Allotment("dsi", n) for n in range(1, servers + 1)]
    return [a for a in options if a.gpus <= gpus]


def parse_policies(specs: Sequence[str], scenario: Scenario, gpus: int) -> list[Policy]:
    """The policies named in `specs` for a fleet of `gpus` GPUs; an allotment larger than
    the fleet, or a policy named twice, is an InvalidParameterError."""
    require(len(specs) > 0, f"policy (--policy) needs at least one of: {POLICY_HELP}")
    allotments = [(spec, parse_allotment(spec, scenario.servers)) for spec in specs]
    for spec, allotment in allotments:
        if allotment is not None and allotment.gpus > gpus:
            raise _bad_policy(
                spec,
                f"it holds {allotment.gpus} GPUs per request and the fleet (--gpus) has {gpus}; "
                f"give --gpus {allotment.gpus} or more",
            )
    wanted = [a for _, a in allotments]
    require(len(set(wanted)) == len(wanted), f"policy (--policy) lists one twice: {list(specs)}")
    adaptive = None in wanted
    options = adaptive_options(scenario.servers, gpus) if adaptive else []
    expected = calibrate(scenario, options) if adaptive else {}
    return [
        Policy("adaptive", tuple(Choice(a, expected[a]) for a in options), adaptive=True)
        if allotment is None
        else _static(allotment, expected)
        for allotment in wanted
    ]


def calibrate(scenario: Scenario, options: Sequence[Allotment]) -> dict[Allotment, float]:
    """Each allotment's mean latency for one request on servers of its own, on the virtual
    clock, with a seed derived apart from the requests' (CALIBRATION_REPEATS repeats)."""
    sequence = np.random.SeedSequence(scenario.seed, spawn_key=(_CALIBRATION_KEY,))
    seed = int(sequence.generate_state(1)[0])
    base = replace(scenario, seed=seed, repeats=CALIBRATION_REPEATS)
    dsi_servers = sorted({a.servers for a in options if a.algorithm == "dsi"}) or [1]
    results = run_many([replace(base, servers=n) for n in dsi_servers], "virtual")
    expected: dict[Allotment, float] = {}
    for n, result in zip(dsi_servers, results, strict=True):
        expected[Allotment("dsi", n)] = result.algorithms["dsi"].mean_s
    expected[Allotment("nonsi")] = results[0].algorithms["nonsi"].mean_s
    expected[Allotment("si")] = results[0].algorithms["si"].mean_s
    return {a: expected[a] for a in options}
