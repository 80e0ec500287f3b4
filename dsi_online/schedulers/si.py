"""SI: the drafter makes k drafts, the target verifies them in one forward, and waits."""

from __future__ import annotations

from dsi_online.errors import require
from dsi_online.schedulers.base import Generation, RunResult
from dsi_online.schedulers.seam import Outcome


class SI:
    """Speculative inference with lookahead k (Leviathan et al. 2023, Chen et al. 2023)."""

    name = "si"
    target_servers = 1

    def __init__(self, lookahead: int) -> None:
        require(
            isinstance(lookahead, int) and lookahead >= 1,
            f"lookahead (--lookahead/-k) must be an integer >= 1; got {lookahead}",
        )
        self.lookahead = lookahead

    async def generate(self, gen: Generation) -> RunResult:
        target, drafter, link = gen.servers.target(), gen.servers.drafter, gen.servers.link()
        gen.begin()
        while not gen.done:
            drafts: list[int] = []
            for _ in range(min(self.lookahead, gen.tokens - len(gen.committed) - 1)):
                (token,) = await drafter.forward(gen.committed, drafts)
                drafts.append(token)
            await link.send()
            verified = await target.forward(gen.committed, drafts)
            await link.send()
            for token in verified:
                gen.commit(token)
            accepted = len(verified) - 1
            drafter.tally(Outcome.USEFUL, accepted)
            drafter.tally(Outcome.REJECTED, len(drafts) - accepted)
            target.tally(Outcome.USEFUL)
        return gen.result(self.name)
