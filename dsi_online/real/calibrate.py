"""Measure what the simulator needs from a real backend: a forward's latency by the tokens it
processes (a `TokenCost`), its TTFT and TPOT, and the drafter's real accept/reject traces.

Latency is measured as a scheduler sees it: from the call of a real server's `forward` to its
return on the loop (transfer to the worker, the model, transfer back, the loop's wake-up),
one forward at a time on an otherwise idle backend. A forward over `n` new tokens is made by
appending `n` fresh tokens to a context the cache already holds, so the cache keeps the
context and the model runs over exactly those `n` (the server's record says so, and it is
checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from dsi_online.errors import require
from dsi_online.measure.latency import unstable_timings
from dsi_online.real.backend import RealBackend
from dsi_online.real.runs import RunForward
from dsi_online.real.server import RealPool, RealServer
from dsi_online.real.worker import Prefill
from dsi_online.schedulers.seam import Role
from dsi_online.sim.cost import TokenCost, monotone
from dsi_online.sim.latency import Empirical, ModelLatency

COUNTS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64, 96)
"""Token counts a calibration measures: decodes, verifications, catch-ups and prefills."""
SMALL, SMALL_WEIGHT = 8, 3
"""Counts up to SMALL (decodes, drafts, verifications: most forwards of a run) get
SMALL_WEIGHT times the samples: their means carry most of a prediction."""
IDLE_S = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032)
"""Idle gaps before a forward that a calibration measures."""
CHAIN, ALTERNATIONS = 5, 4
"""A round of contention: ALTERNATIONS times a chain of CHAIN forwards alone, then beside
the busy servers; alternating cancels the host's drift (docs/validate.md, "Contention")."""
HOST_TOKENS = {"target": 4, "drafter": 1}
"""Tokens of the forwards that measure the host's effects: a verification, a draft."""
PROBES, WARMUP = 3, 4
"""One-token forwards per role that `probe` times before each evaluation prompt's runs,
after WARMUP untimed ones, as `_forwards_by_count` before each context's: a worker idle for
a while (between slices, while transformers generate) or after a long forward computes its
first forwards slower (x1.2-1.5 after 32 ms idle for the small pair), which back-to-back
forwards do not; cold probes priced the host 8-20% slower than it was (`-n 2` and `-n 3`
on 2026-12-06), cold calibrations DSI's drafter 6-22% (docs/validate.md, "Warm-up")."""
SHARING_MIN = 10
"""Forwards beside 1 (or 2 or more) busy servers that `Calibration.sharing` needs."""
ROLES: tuple[Role, ...] = ("target", "drafter")
Fresh = Callable[[int], list[int]]
"""fresh(n): n random token ids, from a calibration's own generator."""


@dataclass(frozen=True)
class Calibration:
    """One model's measured latencies: per token count, seconds at two contexts."""

    role: Role
    counts: tuple[int, ...]
    contexts: tuple[int, int]  # tokens in the cache after the forward, besides the new ones
    samples: tuple[tuple[tuple[float, ...], ...], ...]  # [context][count] -> seconds
    prefill_s: tuple[float, ...]  # cold first forwards over the prompt alone
    layers: int
    idle_ratios: tuple[tuple[float, ...], ...]  # [gap] -> after IDLE_S[gap] idle / back to back
    contended_ratios: tuple[float, ...]  # per round: while the other model computes / alone
    rounds: int = 1  # calibrations merged into this one, their samples in order
    transit_s: tuple[tuple[float, float], ...] = ()  # per forward: (queued, delivery)
    overhead_s: tuple[float, ...] = ()  # per forward: its seconds on the loop beyond transit
    gaps_s: tuple[float, ...] = ()  # real schedulers' loop time before a forward (dispatch_gaps)
    run_forwards: tuple[RunForward, ...] = ()  # of real DSI runs kept with it (`sharing`)
    probes_s: tuple[float, ...] = ()  # one-token forwards at the first context, between runs
    interruptible: bool = True  # the real server's settings
    prefill: Prefill = "finish"

    @classmethod
    def merge(cls, parts: Sequence[Calibration]) -> Calibration:
        """One calibration from several taken at different times (all their samples)."""
        first = parts[0]
        require(
            all(p.role == first.role and p.counts == first.counts for p in parts),
            "calibrations to merge must measure the same model at the same token counts",
        )
        return cls(
            role=first.role,
            counts=first.counts,
            contexts=first.contexts,
            samples=tuple(
                tuple(
                    tuple(x for p in parts for x in p.samples[c][i])
                    for i in range(len(first.counts))
                )
                for c in range(2)
            ),
            prefill_s=tuple(x for p in parts for x in p.prefill_s),
            layers=first.layers,
            idle_ratios=tuple(
                tuple(x for p in parts for x in p.idle_ratios[g]) for g in range(len(IDLE_S))
            ),
            contended_ratios=tuple(x for p in parts for x in p.contended_ratios),
            rounds=sum(p.rounds for p in parts),
            transit_s=tuple(x for p in parts for x in p.transit_s),
            overhead_s=tuple(x for p in parts for x in p.overhead_s),
            gaps_s=tuple(x for p in parts for x in p.gaps_s),
            run_forwards=tuple(x for p in parts for x in p.run_forwards),
            probes_s=tuple(x for p in parts for x in p.probes_s),
            interruptible=first.interruptible,
            prefill=first.prefill,
        )

    @classmethod
    def spread(cls, slices: Sequence[Calibration]) -> Calibration:
        """One round's calibration taken in `slices` spread over its runs: all their samples,
        counted as one round (its drift between slices is the host's, which the runs share,
        not a change under one measurement)."""
        return replace(cls.merge(slices), rounds=1)

    def with_forwards(self, found: dict[Role, list[RunForward]]) -> Calibration:
        """This calibration with its role's forwards of one more real DSI run (`run_forwards`)."""
        return replace(self, run_forwards=(*self.run_forwards, *found[self.role]))

    @property
    def warnings(self) -> tuple[str, ...]:
        """Timings that repeated samples cannot explain, at the first context: a count's
        medians drifting between rounds, forwards of n tokens slower than n one-token ones
        (measure.latency.unstable_timings, a block per round)."""
        counts = list(zip(self.counts, self.samples[0], strict=True))
        shapes = [(f"forwards of {n} tokens", samples) for n, samples in counts]
        step = self.samples[0][self.counts.index(1)]
        return unstable_timings(self.role, shapes, counts, step, blocks=self.rounds)

    @property
    def host_speed(self) -> float:
        """How much slower the host ran while the runs ran than while the calibration's
        forwards did: the mean one-token round trip probed between the runs (`probe`) over
        the calibration's own, at the same context; 1 without probes. A diagnostic: scaling
        the calibration by it made the prediction's bias worse over six prompt seeds
        (docs/validate.md), so the prediction does not; the probes' spread feeds the
        held-out interval (`dsi_online.real.heldout.host_factors`)."""
        if not self.probes_s:
            return 1.0
        own = self.samples[0][self.counts.index(1)]
        return statistics.fmean(self.probes_s) / statistics.fmean(own)

    @property
    def idle_factor(self) -> tuple[float, ...]:
        """Slowdown after each of IDLE_S idle: medians of the ratios, made non-decreasing."""
        return tuple(monotone([statistics.median(r) for r in self.idle_ratios]))

    @property
    def contended(self) -> float:
        """Slowdown while the other model computes: the median of the per-round ratios; 1
        where none were measured."""
        return statistics.median(self.contended_ratios) if self.contended_ratios else 1.0

    def cost(self) -> TokenCost:
        """The token-cost model, fitted to every sample: attention's cost per processed
        token per context token by least squares through the origin on the two contexts'
        differences (n x span; a negative fit, noise, is 0: more context is not cheaper),
        the mean of each count at the first context from both contexts' samples (the
        second's moved back by that cost), made non-decreasing in the token count (a
        forward over more tokens is not cheaper: a dip is noise), the spread as ratios to
        the fitted means, the slowdown beside the other model busy (median; `sharing` with
        several target servers), the cold prefill's mean, the mean transit out and back, the
        real server's settings, and the dispatch time: the mean loop time the real schedulers
        spent before a forward less what a calibration forward spent on the loop (both
        measured, so that the loop's share is counted once)."""
        low, high = self.samples
        span = self.contexts[1] - self.contexts[0]
        gaps = [statistics.fmean(b) - statistics.fmean(a) for a, b in zip(low, high, strict=True)]
        weights = [n * span for n in self.counts]
        attention = max(
            0.0,
            sum(d * w for d, w in zip(gaps, weights, strict=True)) / sum(w * w for w in weights),
        )
        means = monotone(
            [
                statistics.fmean([*a, *(x - attention * w for x in b)])
                for a, b, w in zip(low, high, weights, strict=True)
            ]
        )
        ratios = [
            x / (mean + attention * w * c)
            for c, context in enumerate(self.samples)
            for row, mean, w in zip(context, means, weights, strict=True)
            for x in row
        ]
        cost = TokenCost(
            tokens=self.counts,
            mean_s=tuple(means),
            reference_context=self.contexts[0],
            attention_s=attention,
            ratios=tuple(round(r, 6) for r in ratios),
            layers=self.layers,
            idle_s=IDLE_S,
            idle_factor=self.idle_factor,
            contended=self.contended,
            prefill_tokens=self.contexts[0] if self.prefill_s else 0,
            prefill_s=statistics.fmean(self.prefill_s) if self.prefill_s else 0.0,
            transit_s=(
                (
                    statistics.fmean(q for q, _ in self.transit_s),
                    statistics.fmean(d for _, d in self.transit_s),
                )
                if self.transit_s
                else (0.0, 0.0)
            ),
            interruptible=self.interruptible,
            prefill=self.prefill,
            dispatch_s=statistics.fmean(self.gaps_s) - statistics.fmean(self.overhead_s)
            if self.gaps_s and self.overhead_s
            else 0.0,
        )
        return self.sharing(cost)

    def sharing(self, cost: TokenCost) -> TokenCost:
        """`cost` with its slowdowns beside 1 (`contended`) and 2 or more (`crowded`) busy
        servers read from the real DSI runs kept with the slices (`run_forwards`), each where
        SHARING_MIN or more forwards give it: a ratio of sums, their seconds plus the loop
        time a calibration forward's price includes (`overhead_s`) over `cost`'s price with
        the idle slowdown; a cancelled one as the simulator prices it (`CostStream.stop`:
        transit out, its share of the layers it ran, no reply). docs/validate.md, "Several
        target servers share the host"."""
        overhead = statistics.fmean(self.overhead_s) if self.overhead_s else 0.0
        out, back = cost.transit_s
        spent, priced, count = [0.0, 0.0], [0.0, 0.0], [0, 0]
        for forward in self.run_forwards:
            if forward.busy >= 1:
                group, share = min(forward.busy, 2) - 1, forward.layers / cost.layers
                unpaid = share * (out + back) - out if forward.cancelled else 0.0
                spent[group] += forward.seconds + share * overhead + unpaid
                price = cost.mean(forward.tokens, forward.context)
                priced[group] += share * price * cost.host_factor(forward.idle_s, 0)
                count[group] += 1
        if count[0] >= SHARING_MIN:
            cost = replace(cost, contended=spent[0] / priced[0])
        if count[1] >= SHARING_MIN:
            cost = replace(cost, crowded=(spent[1] / priced[1],))
        return cost

    def latency(self) -> ModelLatency:
        """TTFT (the cold prefills) and TPOT (one-token forwards) as measured samples, and
        the token-cost model."""
        decodes = self.samples[0][self.counts.index(1)] + self.samples[1][self.counts.index(1)]
        return ModelLatency(Empirical(self.prefill_s), Empirical(decodes), self.cost())


def server_of(pool: RealPool, role: Role) -> RealServer:
    return pool.target(0) if role == "target" else pool.drafter


def neighbour_of(pool: RealPool, role: Role) -> RealServer:
    """The other model's server: the one that computes between `role`'s forwards."""
    return server_of(pool, "drafter" if role == "target" else "target")


def fresh_tokens(rng: np.random.Generator) -> Fresh:
    """A `Fresh` drawing from `rng`: token ids below 256, which every vocabulary holds."""
    return lambda n: [int(t) for t in rng.integers(0, 256, size=n)]


async def timed(
    server: RealServer,
    prefix: Sequence[int],
    expect: int,
    transit: list[tuple[float, float]] | None = None,
    overhead: list[float] | None = None,
) -> float:
    """Seconds of one forward as a scheduler sees it; its (queued, delivery) to `transit`,
    and its seconds on the loop outside the round trip (before submission, after delivery)
    to `overhead`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await server.forward(prefix, ())
    elapsed = loop.time() - start
    await asyncio.sleep(0)  # the record's callback
    record = server.records[-1]
    require(
        record.processed == expect,
        f"calibration forward ran {record.processed} tokens, not {expect}",
    )
    if transit is not None:
        transit.append((record.queued_s, record.delivery_s))
    if overhead is not None:
        overhead.append(elapsed - (record.delivered_s - record.submitted_s))
    return elapsed


def calibrate(
    backend: RealBackend,
    role: Role,
    prompt: Sequence[int],
    output_tokens: int,
    samples: int = 15,
    seed: int = 0,
    counts: Sequence[int] = COUNTS,
    contention: bool = True,
) -> Calibration:
    """Measure `role`'s model: `samples` forwards of every token count at two contexts (the
    prompt alone, and the prompt plus `output_tokens`), `samples` cold prefills, and the
    host's effects (`samples` rounds; the slowdown beside busy servers only with
    `contention`: a backend that never runs two forwards at once, non-SI's and SI's, has
    none), each on a fresh pool."""
    rng = np.random.default_rng(seed)
    contexts = (0, output_tokens)
    transit: list[tuple[float, float]] = []
    overhead: list[float] = []

    tokens = fresh_tokens(rng)
    measured = backend.with_pool(
        prompt,
        lambda pool: _forwards_by_count(
            server_of(pool, role), contexts, counts, samples, tokens, transit, overhead
        ),
    )
    prefills = tuple(
        backend.with_pool(prompt, lambda pool: timed(server_of(pool, role), (), len(prompt)))
        for _ in range(samples)
    )
    filled = backend.settings.workers == "inline"
    half = output_tokens // 2
    idle, contended = backend.with_pool(
        prompt,
        lambda pool: host_effects(pool, role, samples, half, tokens, filled, contention),
    )
    return Calibration(
        role=role,
        counts=tuple(counts),
        contexts=(len(prompt) + contexts[0], len(prompt) + contexts[1]),
        samples=measured,
        prefill_s=prefills,
        layers=backend.layers(role),
        idle_ratios=tuple(tuple(r) for r in idle),
        contended_ratios=tuple(contended),
        transit_s=tuple(transit),
        overhead_s=tuple(overhead),
        interruptible=backend.settings.interruptible,
        prefill=backend.settings.prefill,
    )


def probe(
    backend: RealBackend, prompt: Sequence[int], count: int = PROBES, seed: int = 0
) -> dict[Role, tuple[float, ...]]:
    """The host's speed now: per role, `count` one-token forwards after `prompt` (after
    WARMUP untimed ones), timed as the calibration times its one-token forwards at its
    first context, back to back, on a fresh pool."""
    rng = np.random.default_rng(seed)

    async def work(pool: RealPool) -> dict[Role, tuple[float, ...]]:
        found: dict[Role, tuple[float, ...]] = {}
        for role in ROLES:
            server = server_of(pool, role)
            await server.forward((), ())  # the prefill: the cache holds the prompt
            times = []
            for _ in range(WARMUP + count):
                await server.forward((), ())  # crops the cache to the prompt
                times.append(await timed(server, [int(rng.integers(0, 256))], 1))
            found[role] = tuple(times[WARMUP:])
        return found

    return backend.with_pool(prompt, work)


async def _forwards_by_count(
    server: RealServer,
    contexts: tuple[int, int],
    counts: Sequence[int],
    samples: int,
    tokens: Fresh,
    transit: list[tuple[float, float]],
    overhead: list[float],
) -> tuple[tuple[tuple[float, ...], ...], ...]:
    """Seconds of forwards of every token count (`samples` of each, SMALL_WEIGHT times as
    many up to SMALL) after each of `contexts` fresh tokens beyond the prompt:
    [context][count] -> seconds."""
    await server.forward((), ())  # the prefill: the cache holds the prompt
    table: list[tuple[tuple[float, ...], ...]] = []
    for extra in contexts:
        base = tokens(extra)
        for _ in range(WARMUP):  # after idle or the last context's 96 tokens: slow (WARMUP)
            await server.forward(base, ())  # crops the cache to prompt + base
            await server.forward(base + tokens(1), ())
        rows: list[tuple[float, ...]] = []
        for n in counts:  # a count's samples back to back, as a run repeats its forwards
            row = []
            for _ in range(samples * (SMALL_WEIGHT if n <= SMALL else 1)):
                await server.forward(base, ())  # crops the cache to prompt + base
                row.append(await timed(server, base + tokens(n), n, transit, overhead))
            rows.append(tuple(row))
        table.append(tuple(rows))
    return tuple(table)


async def fill_gap(other: RealServer, base: Sequence[int], tokens: Fresh, gap: float) -> None:
    """Keep `other` computing for `gap` seconds, as an inline thread spends SI's gap: forwards
    of a draft's or verification's size after `base`, each after a crop back to it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + gap
    while loop.time() < end:
        await other.forward(base, ())  # crops the other's cache to prompt + base
        await other.forward([*base, *tokens(HOST_TOKENS[other.role])], ())


async def idle_round(
    server: RealServer, other: RealServer, base: Sequence[int], tokens: Fresh, filled: bool
) -> list[float]:
    """One round of `server`'s slowdowns after each of IDLE_S idle: a forward of
    HOST_TOKENS[role] new tokens after `base`, over the median of 3 back to back in the same
    round. A worker sleeps through the gap; an inline backend's thread never does while a run
    goes on (`filled`): it computes the `other` model through it, which slows a forward far
    less (scripts/idle_bench.py; docs/validate.md, "Where the models run")."""
    n = HOST_TOKENS[server.role]
    if filled:
        await other.forward(base, ())  # its cache holds prompt + base: the fills are light

    async def one(idle: float) -> float:
        await server.forward(base, ())  # crops the cache to prompt + base
        if filled:
            await fill_gap(other, base, tokens, idle)
        elif idle > 0:
            await asyncio.sleep(idle)
        return await timed(server, [*base, *tokens(n)], n)

    alone = statistics.median([await one(0.0) for _ in range(3)])
    return [await one(gap) / alone for gap in IDLE_S]


async def host_effects(
    pool: RealPool,
    role: Role,
    samples: int,
    context: int,
    tokens: Fresh,
    filled: bool,
    contention: bool = True,
    chains: tuple[int, int] = (ALTERNATIONS, CHAIN),
) -> tuple[list[list[float]], list[float]]:
    """The host's effects on `role`'s forwards after `context` tokens, each measured against
    back-to-back forwards taken in the same round, so that the machine drifting between
    rounds cancels out of the ratios: after each idle gap (`idle_round`; `filled` on an
    inline backend), and (`contention`) beside the other model busy, alternately (`chains`:
    alternations, forwards a chain; CHAIN); `samples` rounds. With several target servers,
    real DSI runs give the slowdowns beside busy servers instead (`Calibration.sharing`)."""
    server, n = server_of(pool, role), HOST_TOKENS[role]
    neighbour = neighbour_of(pool, role)
    await server.forward((), ())
    await neighbour.forward((), ())
    base = tokens(context)
    on, stopped = asyncio.Event(), asyncio.Event()

    async def keep_busy() -> None:
        while True:
            stopped.set()
            await on.wait()
            stopped.clear()
            await neighbour.forward(tokens(HOST_TOKENS[neighbour.role]), ())

    async def chain(count: int) -> list[float]:
        """Latencies of `count` forwards of n new tokens back to back, as a drafter drafts
        (each new suffix differs at its first token, so the cache keeps `base`)."""
        await server.forward(base, ())  # crops the cache to prompt + base
        times, last = [], -1
        for _ in range(count):
            suffix = tokens(n)
            while suffix[0] == last:
                suffix = tokens(n)
            last = suffix[0]
            times.append(await timed(server, base + suffix, n))
        return times

    idle_ratios: list[list[float]] = [[] for _ in IDLE_S]
    contended_ratios: list[float] = []
    background = asyncio.create_task(keep_busy()) if contention else None
    try:
        for _ in range(samples):
            ratios = await idle_round(server, neighbour, base, tokens, filled)
            for row, ratio in zip(idle_ratios, ratios, strict=True):
                row.append(ratio)
            if background is None:
                continue
            alone: list[float] = []
            busy: list[float] = []
            for _ in range(chains[0]):
                alone += await chain(chains[1])
                on.set()
                await chain(2)  # the neighbour's first forwards after idle: not counted
                busy += await chain(chains[1])
                on.clear()
                await stopped.wait()
            contended_ratios.append(statistics.fmean(busy) / statistics.fmean(alone))
    finally:
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
    return idle_ratios, contended_ratios
