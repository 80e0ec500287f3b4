"""The three schedulers on a scripted fake pool: hand-written servers behind the seam's
protocols (dsi_online.schedulers.seam), whose forwards return scripted tokens after scripted
delays on the virtual clock. Every run is checked against a schedule worked out by hand from
docs/model.md's rules: each forward's server, interval, prefix and drafts, the latency, and
every server's account.

The script: S = 4 tokens, the target's output 100..103, lookahead k = 2; a target forward
takes 12 ms when cold (its prefill) and 10 ms after, a drafter forward 3 ms. The drafter
guesses position p right when its context is the target's output and `guesses[p]` says so;
otherwise it returns 900 + p, a token the target never outputs. No drafter forward ends at
the instant a target forward does, so the same-instant rule plays no part."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from dsi_online.schedulers import DSI, SI, Generation, NonSI, RunResult, Scheduler
from dsi_online.schedulers.seam import (
    Account,
    Channel,
    InstantChannel,
    Role,
    Server,
    ServerStats,
)
from dsi_online.schedulers.tokens import digest
from dsi_online.sim import clock

TRUTH = (100, 101, 102, 103)
ALL_RIGHT = (True, True, True, True)
WRONG_AT_1 = (True, False, True, True)
W1, W2 = 901, 902  # the drafter's wrong tokens at positions 1 and 2
DELAYS_MS = {"target": (12, 10), "drafter": (3,)}
"""Per role, the duration of each forward in order; the last repeats."""


@dataclass(frozen=True)
class Forward:
    """One forward as it ran: its server, start and end (ms; the end is the cancel time of
    a cancelled one), the committed prefix's length and the drafts it was given."""

    server: str
    start: float
    end: float
    prefix: int
    drafts: tuple[int, ...]
    cancelled: bool = False


class ScriptedServer(Account):
    """A `Server` whose forwards answer from the script after its next scripted delay."""

    def __init__(self, name: str, role: Role, guesses: Sequence[bool], log: list[Forward]):
        super().__init__(name, role)
        self._guesses = guesses
        self._log = log

    def answer(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        context = [*prefix, *drafts]
        position = len(context)
        if self.role == "drafter":
            on_truth = tuple(context) == TRUTH[:position]
            right = on_truth and self._guesses[position]
            return [TRUTH[position] if right else 900 + position]
        assert tuple(prefix) == TRUTH[: len(prefix)], "a job verifies a committed prefix"
        tokens = []
        for index in range(len(prefix), position + 1):
            tokens.append(TRUTH[index])
            if index == position or context[index] != TRUTH[index]:
                return tokens
        raise AssertionError("unreachable: the loop returns at the last position")

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        loop = asyncio.get_running_loop()
        script = DELAYS_MS[self.role]
        delay_ms = script[min(self.forwards, len(script) - 1)]
        start = loop.time()
        tokens = self.answer(prefix, drafts)
        self.forwards += 1
        self.in_flight = True
        cancelled = False
        try:
            await asyncio.sleep(delay_ms / 1e3)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self.in_flight = False
            self.busy_s += loop.time() - start
            self._log.append(
                Forward(
                    self.name,
                    ms(start),
                    ms(loop.time()),
                    len(prefix),
                    tuple(drafts),
                    cancelled,
                )
            )
        return tokens


class ScriptedPool:
    """A `ServerPool` of scripted servers made on demand, with instant links."""

    def __init__(self, guesses: Sequence[bool]) -> None:
        self.log: list[Forward] = []
        self._guesses = guesses
        self._servers: dict[tuple[Role, int], ScriptedServer] = {}

    def _get(self, role: Role, index: int) -> ScriptedServer:
        if (role, index) not in self._servers:
            name = f"target-{index}" if role == "target" else "drafter"
            self._servers[role, index] = ScriptedServer(name, role, self._guesses, self.log)
        return self._servers[role, index]

    def target(self, index: int = 0) -> Server:
        return self._get("target", index)

    @property
    def drafter(self) -> Server:
        return self._get("drafter", 0)

    def link(self, index: int = 0) -> Channel:
        return InstantChannel()

    def stats(self) -> tuple[ServerStats, ...]:
        return tuple(server.stats() for _, server in sorted(self._servers.items()))


def play(scheduler: Scheduler, guesses: Sequence[bool]) -> tuple[RunResult, list[Forward]]:
    """Run `scheduler` for S = 4 tokens on a fresh scripted pool, on the virtual clock."""
    pool = ScriptedPool(guesses)
    gen = Generation(tokens=len(TRUTH), servers=pool)
    result = clock.run(lambda: scheduler.generate(gen), "virtual")
    assert gen.committed == list(TRUTH)
    assert result.output_sha256 == digest(TRUTH) and result.tokens == len(TRUTH)
    return result, sorted(pool.log, key=lambda f: (f.server, f.start))


def accounts(result: RunResult) -> dict[str, tuple[int, int, int, int]]:
    """Per server: forwards, useful, rejected, cancelled."""
    return {s.name: (s.forwards, s.useful, s.rejected, s.cancelled) for s in result.servers}


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 6)


def times(result: RunResult) -> tuple[float, float, float]:
    """Latency, first token and longest queue wait, in ms."""
    return ms(result.latency_s), ms(result.first_token_s), ms(result.max_queue_wait_s)


def test_scripted_answers_follow_the_script() -> None:
    """The fake's own tokens, checked before any scheduler relies on them."""
    drafter = ScriptedServer("drafter", "drafter", WRONG_AT_1, [])
    target = ScriptedServer("target-0", "target", WRONG_AT_1, [])
    assert drafter.answer([], []) == [100]
    assert drafter.answer([100], []) == [W1]  # guessed wrong
    assert drafter.answer([100], [W1]) == [W2]  # off the output: wrong whatever the guess
    assert drafter.answer([100, 101], []) == [102]
    assert target.answer([], []) == [100]
    assert target.answer([], [100, W1]) == [100, 101]
    assert target.answer([100], [101, 102]) == [101, 102, 103]


def test_nonsi_is_one_target_forward_per_token() -> None:
    result, log = play(NonSI(), ALL_RIGHT)
    assert log == [
        Forward("target-0", 0, 12, 0, ()),
        Forward("target-0", 12, 22, 1, ()),
        Forward("target-0", 22, 32, 2, ()),
        Forward("target-0", 32, 42, 3, ()),
    ]
    assert times(result) == (42, 12, 0)
    assert accounts(result) == {"target-0": (4, 4, 0, 0)}


def test_si_all_drafts_accepted() -> None:
    """Two drafts (6 ms), a verification that accepts both and adds a bonus token (12 ms),
    then the last token, which needs no draft (10 ms)."""
    result, log = play(SI(2), ALL_RIGHT)
    assert log == [
        Forward("drafter", 0, 3, 0, ()),
        Forward("drafter", 3, 6, 0, (100,)),
        Forward("target-0", 6, 18, 0, (100, 101)),
        Forward("target-0", 18, 28, 3, ()),
    ]
    assert times(result) == (28, 18, 0)
    assert accounts(result) == {"target-0": (2, 2, 0, 0), "drafter": (2, 2, 0, 0)}


def test_si_rejected_draft() -> None:
    """The second draft is wrong: the verification commits the first and the correction;
    one more draft (the last needed, position 2) and its verification finish the run."""
    result, log = play(SI(2), WRONG_AT_1)
    assert log == [
        Forward("drafter", 0, 3, 0, ()),
        Forward("drafter", 3, 6, 0, (100,)),
        Forward("drafter", 18, 21, 2, ()),
        Forward("target-0", 6, 18, 0, (100, W1)),
        Forward("target-0", 21, 31, 2, (102,)),
    ]
    assert times(result) == (31, 18, 0)
    assert accounts(result) == {"target-0": (2, 2, 0, 0), "drafter": (3, 2, 1, 0)}


def test_dsi_all_drafts_accepted_on_two_servers() -> None:
    """A job at the start (target-0) and at the 2nd draft (target-1, cold); the job made at
    the last draft (9 ms) waits for a server until 12 ms, when the first job's commit
    replaces it with one from the new prefix; that job commits the last token at 22 ms, and
    the job the second launched (at 18 ms) is cancelled."""
    result, log = play(DSI(2, 2), ALL_RIGHT)
    assert log == [
        Forward("drafter", 0, 3, 0, ()),
        Forward("drafter", 3, 6, 0, (100,)),
        Forward("drafter", 6, 9, 0, (100, 101)),
        Forward("target-0", 0, 12, 0, ()),
        Forward("target-0", 12, 22, 1, (101, 102)),
        Forward("target-1", 6, 18, 0, (100, 101)),
        Forward("target-1", 18, 22, 3, (), cancelled=True),
    ]
    assert times(result) == (22, 12, 3)
    assert accounts(result) == {
        "target-0": (2, 2, 0, 0),
        "target-1": (2, 1, 0, 1),
        "drafter": (3, 3, 0, 0),
    }


def test_dsi_on_one_server_queues_its_jobs() -> None:
    """One server: the jobs made at 6 and 9 ms wait for it; the one dispatched at 12 ms has
    waited since 6 ms and verifies the rest."""
    result, log = play(DSI(2, 1), ALL_RIGHT)
    assert log == [
        Forward("drafter", 0, 3, 0, ()),
        Forward("drafter", 3, 6, 0, (100,)),
        Forward("drafter", 6, 9, 0, (100, 101)),
        Forward("target-0", 0, 12, 0, ()),
        Forward("target-0", 12, 22, 1, (101, 102)),
    ]
    assert times(result) == (22, 12, 6)
    assert accounts(result) == {"target-0": (2, 2, 0, 0), "drafter": (3, 3, 0, 0)}


def test_dsi_rejected_draft_cancels_what_depends_on_it() -> None:
    """The job over (100, 901) finds the wrong draft at 18 ms: the job running over it on
    target-0 is cancelled, so is the draft after it; drafting restarts from the corrected
    prefix, a job over no drafts goes to target-1 (warm, first free) and one at the last
    draft to target-0; the latter commits the last token at 31 ms."""
    result, log = play(DSI(2, 2), WRONG_AT_1)
    assert log == [
        Forward("drafter", 0, 3, 0, ()),
        Forward("drafter", 3, 6, 0, (100,)),
        Forward("drafter", 6, 9, 0, (100, W1)),
        Forward("drafter", 18, 21, 2, ()),
        Forward("target-0", 0, 12, 0, ()),
        Forward("target-0", 12, 18, 1, (W1, W2), cancelled=True),
        Forward("target-0", 21, 31, 2, (102,)),
        Forward("target-1", 6, 18, 0, (100, W1)),
        Forward("target-1", 18, 28, 2, ()),
        Forward("target-1", 28, 31, 3, (), cancelled=True),
    ]
    assert times(result) == (31, 12, 3)
    assert accounts(result) == {
        "target-0": (3, 2, 0, 1),
        "target-1": (3, 2, 0, 1),
        "drafter": (4, 2, 1, 1),
    }


class InstantServer(Account):
    """A `Server` whose forward returns without ever suspending (a cached answer, or a model
    run in the caller's thread): the schedulers must not rely on a forward yielding."""

    def __init__(self, name: str, role: Role, truth: Sequence[int], wrong: set[int]) -> None:
        super().__init__(name, role)
        self._truth = truth
        self._wrong = wrong

    async def forward(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        self.forwards += 1
        start = len(prefix)
        if self.role == "drafter":
            position = start + len(drafts)
            return [self._truth[position] + (1000 if position in self._wrong else 0)]
        verified = []
        for position, draft in enumerate(drafts, start):
            verified.append(self._truth[position])
            if draft != self._truth[position]:
                return verified
        return [*verified, self._truth[start + len(drafts)]]


class InstantPool:
    def __init__(self, truth: Sequence[int], wrong: set[int]) -> None:
        self._targets: dict[int, InstantServer] = {}
        self._drafter = InstantServer("drafter", "drafter", truth, wrong)
        self._truth = truth

    def target(self, index: int = 0) -> Server:
        if index not in self._targets:
            self._targets[index] = InstantServer(f"target-{index}", "target", self._truth, set())
        return self._targets[index]

    @property
    def drafter(self) -> Server:
        return self._drafter

    def link(self, index: int = 0) -> Channel:
        return InstantChannel()

    def stats(self) -> tuple[ServerStats, ...]:
        return tuple(s.stats() for s in [*self._targets.values(), self._drafter])


def test_forwards_that_never_suspend() -> None:
    """Every scheduler is lossless and accounts every forward when no forward suspends."""
    truth = [(7 * i) % 11 for i in range(40)]
    patterns = [set(), {3}, {1, 5, 9, 10}, set(range(0, 40, 2)), set(range(40))]
    schedulers: list[Scheduler] = [NonSI(), SI(3), DSI(3, 1), DSI(3, 2), DSI(1, 3), DSI(5, 4)]

    async def main() -> None:
        for wrong in patterns:
            for scheduler in schedulers:
                gen = Generation(tokens=len(truth), servers=InstantPool(truth, wrong))
                result = await asyncio.wait_for(scheduler.generate(gen), 10)
                assert gen.committed == truth, (scheduler.name, wrong)
                assert result.output_sha256 == digest(truth)
                for server in result.servers:
                    assert server.useful + server.rejected + server.cancelled == server.forwards

    asyncio.run(main())
