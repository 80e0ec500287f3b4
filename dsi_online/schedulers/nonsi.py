"""non-SI: plain autoregressive decoding, one target forward per token."""

from __future__ import annotations

from dsi_online.schedulers.base import Generation, RunResult
from dsi_online.schedulers.seam import Outcome


class NonSI:
    """One target server; every forward yields the next token."""

    name = "nonsi"
    target_servers = 1

    async def generate(self, gen: Generation) -> RunResult:
        target = gen.servers.target()
        gen.begin()
        while not gen.done:
            (token,) = await target.forward(gen.committed, ())
            gen.commit(token)
            target.tally(Outcome.USEFUL)
        return gen.result(self.name)
