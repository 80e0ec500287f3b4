"""An independent reference of docs/model.md's three algorithms for constant latencies.

Written from docs/model.md's text, not from the schedulers: DSI is a plain discrete-event
simulation over a heap of (time, rank, seq) events, with no asyncio. Times are integer
nanoseconds, so runs compare exactly with the virtual clock (which keeps whole
nanoseconds). Tokens are not modelled, only whether each draft is correct: per
docs/model.md, a draft for position p (0-based) made on a correct prefix is correct iff the
repeat's coin for p says so, and a draft on an incorrect prefix is never correct.

Where docs/model.md leaves a detail open, this reference chooses (and the schedulers agree):
- a commit that reaches the position the drafter is drafting (no draft exists there yet)
  makes the draft in flight useless: drafting restarts from the new committed prefix, and
  the every-k grid is counted from that restart;
- a free target server is chosen warm first, then cold (only warmth matters with constant
  latencies);
- a forward cancelled at the instant it was dispatched never ran: it leaves its server as it
  was (cold stays cold); a prefill cancelled later runs to its end (as the real backend's
  do): its server is warm from then on, and a job dispatched to it before starts then.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rules:
    """docs/model.md's DSI rules (the defaults) and, to show that a regression case exercises
    one, a defect an audit of the schedulers found in each: (a) no job when the last needed
    draft is made, (b) every launch restarts the every-k count, (c) at one instant a job
    before a draft."""

    launch_at_last_draft: bool = True
    grid_from_restart: bool = True
    drafts_first: bool = True

    @property
    def draft_rank(self) -> int:
        return 0 if self.drafts_first else 2

    @property
    def job_rank(self) -> int:
        return 1


MODEL = Rules()


@dataclass(frozen=True)
class Latencies:
    """Constant latencies in integer nanoseconds."""

    target_ttft: int
    target_tpot: int
    drafter_ttft: int
    drafter_tpot: int


def reference_nonsi(lat: Latencies, tokens: int) -> int:
    """non-SI: TTFT + (S - 1) TPOT."""
    return lat.target_ttft + (tokens - 1) * lat.target_tpot


def reference_si(coins: Sequence[bool], lat: Latencies, k: int, tokens: int) -> int:
    """SI: k drafts (fewer near the end), one verification, commit the accepted leading
    drafts plus one token; the drafter waits."""
    t, v = 0, 0
    drafter_warm = target_warm = False
    while v < tokens:
        size = min(k, tokens - v - 1)
        for _ in range(size):
            t += lat.drafter_tpot if drafter_warm else lat.drafter_ttft
            drafter_warm = True
        t += lat.target_tpot if target_warm else lat.target_ttft
        target_warm = True
        accepted = 0
        while accepted < size and coins[v + accepted]:
            accepted += 1
        v += accepted + 1
    return t


@dataclass
class _Job:
    """A verification job: a snapshot of the committed length and the drafts beyond it."""

    start: int  # committed length at launch
    drafts: tuple[bool, ...]  # correctness of the drafts in its snapshot
    server: int = -1
    dispatched_at: int = -1
    was_warm: bool = False

    @property
    def end(self) -> int:
        """Position of its bonus token."""
        return self.start + len(self.drafts)


@dataclass
class _DSI:
    """The state of one DSI run; each event handler applies docs/model.md's rules at once."""

    coins: Sequence[bool]
    lat: Latencies
    k: int
    pool: int
    tokens: int
    rules: Rules = MODEL
    now: int = 0
    committed: int = 0
    drafts: list[bool] = field(default_factory=list)
    drafted: int = 0  # drafts made since drafting (re)started: the every-k grid
    drafter_warm: bool = False
    draft_event: int | None = None
    draft_started: int = 0
    draft_prefill_ends: int | None = None  # the end of the draft in flight if a prefill
    drafter_free_at: int = 0  # the end of a cancelled prefill of the drafter
    warm: list[bool] = field(default_factory=list)  # per target server made so far
    free_at: dict[int, int] = field(default_factory=dict)  # server -> end of its prefill
    busy: dict[int, _Job] = field(default_factory=dict)  # server -> its job
    job_event: dict[int, int] = field(default_factory=dict)  # server -> event seq
    waiting: _Job | None = None
    events: list[tuple[int, int, int, str, int]] = field(default_factory=list)
    live: set[int] = field(default_factory=set)
    seq: int = 0

    def schedule(self, delay: int, rank: int, kind: str, payload: int) -> int:
        self.seq += 1
        heapq.heappush(self.events, (self.now + delay, rank, self.seq, kind, payload))
        self.live.add(self.seq)
        return self.seq

    # drafting

    def start_draft(self) -> None:
        if self.committed + len(self.drafts) < self.tokens - 1:
            delay = self.lat.drafter_tpot if self.drafter_warm else self.lat.drafter_ttft
            self.draft_prefill_ends = None if self.drafter_warm else self.now + delay
            delay += max(0, self.drafter_free_at - self.now)
            self.drafter_warm = True
            self.draft_event = self.schedule(delay, self.rules.draft_rank, "draft", 0)
            self.draft_started = self.now
        else:
            self.draft_event = None

    def restart_drafting(self) -> None:
        if self.draft_event is not None:
            self.live.discard(self.draft_event)
            ends = self.draft_prefill_ends
            if ends is not None and self.draft_started < self.now:  # the prefill runs on
                self.drafter_free_at = ends
        self.drafted = 0
        self.start_draft()

    def on_draft(self) -> None:
        position = self.committed + len(self.drafts)
        on_truth = self.drafts[-1] if self.drafts else True
        self.drafts.append(on_truth and bool(self.coins[position]))
        self.drafted += 1
        last = position == self.tokens - 2 and self.rules.launch_at_last_draft
        if self.drafted % self.k == 0 or last:
            self.launch()  # the grid, or the last draft ever needed (position S - 1, 1-based)
        self.start_draft()

    # jobs

    def launch(self) -> None:
        if not self.rules.grid_from_restart:
            self.drafted = 0
        self.waiting = _Job(self.committed, tuple(self.drafts))
        self.dispatch()

    def dispatch(self) -> None:
        if self.waiting is None:
            return
        free = [s for s in range(len(self.warm)) if s not in self.busy]
        warm = [s for s in free if self.warm[s] and self.free_at.get(s, 0) <= self.now]
        if warm:
            server = warm[0]
        elif len(self.warm) < self.pool:
            self.warm.append(False)
            server = len(self.warm) - 1
        elif free:
            server = free[0]
        else:
            return
        job, self.waiting = self.waiting, None
        job.server, job.dispatched_at, job.was_warm = server, self.now, self.warm[server]
        delay = self.lat.target_tpot if self.warm[server] else self.lat.target_ttft
        delay += max(0, self.free_at.get(server, 0) - self.now)
        self.warm[server] = True
        self.busy[server] = job
        self.job_event[server] = self.schedule(delay, self.rules.job_rank, "job", server)

    def cancel(self, server: int) -> None:
        job = self.busy.pop(server)
        self.live.discard(self.job_event.pop(server))
        if job.dispatched_at == self.now:  # never ran
            self.warm[server] = job.was_warm
        elif not job.was_warm:  # a prefill that began runs to its end
            self.free_at[server] = job.dispatched_at + self.lat.target_ttft

    def on_job(self, server: int) -> bool:
        """Apply a finished job; True when the output is complete."""
        job = self.busy.pop(server)
        del self.job_event[server]
        v = self.committed
        assert job.start <= v <= job.end
        # The target's tokens from v: accepted drafts, then a correction or the bonus token.
        last = v
        while last < job.end and job.drafts[last - job.start]:
            last += 1
        consumed = last - v  # drafts at positions v..last-1 are committed as they are
        assert all(self.drafts[:consumed])
        self.committed = last + 1
        if self.committed == self.tokens:
            return True
        if last - v < len(self.drafts):
            rejected = not self.drafts[last - v]
            del self.drafts[: last - v + 1]
        else:  # no draft at the committed token's position: the one in flight is useless
            rejected = False
            self.drafts.clear()
            self.restart_drafting()
        if rejected:
            self.drafts.clear()
            for other in list(self.busy):
                self.cancel(other)
            self.restart_drafting()
        else:
            for other in [s for s, j in self.busy.items() if j.end < self.committed]:
                self.cancel(other)
        self.launch()
        return False

    def run(self) -> int:
        self.launch()
        self.start_draft()
        while True:
            when, _, seq, kind, payload = heapq.heappop(self.events)
            if seq not in self.live:
                continue
            self.live.discard(seq)
            assert when >= self.now
            self.now = when
            if kind == "draft":
                self.draft_event = None
                self.on_draft()
            elif self.on_job(payload):
                return self.now


def reference_dsi(
    coins: Sequence[bool],
    lat: Latencies,
    k: int,
    servers: int,
    tokens: int,
    rules: Rules = MODEL,
) -> int:
    """DSI's latency in nanoseconds, by discrete events."""
    return _DSI(coins, lat, k, servers, tokens, rules).run()
