"""A simulated server accounts for a forward as the real one does (issue 15 a, d, g, h).

tests/data/real_forwards.json holds real runs of non-SI, SI and DSI on the `test` pair
(`python scripts/record_forwards.py`), under the real server's three settings: every
forward a server was asked for (committed prefix and drafts), in order, with its record
(tokens kept and processed, prompt and catch-up tokens, layers run, whether it was stopped,
and when it was cancelled). Each server's forwards are replayed through a simulated server
whose cost model takes the real server's settings, each cancelled one cancelled in the
phase the real one was (in transit, within a layer, during its last layer or its reply),
and the simulated account must equal the real record exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsi_online.sim.clock import run as run_on_clock
from dsi_online.sim.cost import CostStream, TokenCost
from dsi_online.sim.servers import SimForward, SimulatedServer

FIXTURE = Path(__file__).parent.parent / "data" / "real_forwards.json"
OUT, COMPUTE, BACK = 0.001, 0.008, 0.001
"""The simulated round trip: transit out, the layers, transit back (seconds)."""


class Oracle:
    """Tokens do not matter here: only what the cache holds does."""

    def verify(self, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        return [0]

    def draft(self, prefix: Sequence[int], drafts: Sequence[int]) -> int:
        return 0


def _runs() -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["runs"]
    return runs


def _cancel_after(forward: dict[str, Any], layers: int, protected: bool) -> float | None:
    """When, after its call, to cancel the simulated forward so that it meets the real
    one's fate: None if never cancelled."""
    if forward["cancel_s"] is None:
        return None
    step = COMPUTE / layers
    if forward["stopped"]:  # in transit (never ran), or within the layer after those it ran
        return OUT / 2 if forward["layers"] == 0 else OUT + (forward["layers"] - 0.5) * step
    if forward["cancel_s"] >= forward["ended_s"]:  # during its reply
        return OUT + COMPUTE + BACK / 2
    if protected and forward["prompt"] > 0:  # a prefill protected from its first layer on
        return OUT + step / 2
    return OUT + (layers - 0.5) * step  # during its last layer


def replay(run: dict[str, Any], server: dict[str, Any]) -> list[SimForward]:
    """One real server's forwards through a simulated server (module docstring)."""
    layers = run["layers"][server["role"]]
    cost = TokenCost(
        tokens=(1, 2),
        mean_s=(OUT + COMPUTE + BACK,) * 2,
        reference_context=0,
        layers=layers,
        transit_s=(OUT, BACK),
        interruptible=run["interruptible"],
        prefill=run["prefill"],
    )
    output = run["output"]

    async def play() -> list[SimForward]:
        sim = SimulatedServer(
            server["name"],
            server["role"],
            CostStream(cost, np.random.default_rng(0)),
            Oracle(),
            run["prompt_tokens"],
        )
        for forward in server["forwards"]:
            task = asyncio.ensure_future(
                sim.forward(output[: forward["prefix"]], forward["drafts"])
            )
            after = _cancel_after(forward, layers, run["prefill"] == "finish")
            if after is None:
                await task
                continue
            await asyncio.sleep(after)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.sleep(2 * cost.mean_s[0])  # until a stopping forward has stopped
        return sim.records

    return run_on_clock(play, "virtual")


def _account(record: dict[str, Any] | SimForward) -> tuple[int, ...]:
    fields = ("kept", "processed", "prompt", "catchup", "layers", "stopped")
    if isinstance(record, SimForward):
        return tuple(int(getattr(record, f)) for f in fields)
    return tuple(int(record[f]) for f in fields)


RUNS = _runs()


@pytest.mark.parametrize(
    "index",
    range(len(RUNS)),
    ids=[
        f"{r['scheduler']}-{r['prefill']}-{'i' if r['interruptible'] else 'ni'}-{i}"
        for i, r in enumerate(RUNS)
    ],
)
def test_a_simulated_server_accounts_as_the_real_one(index: int) -> None:
    run = RUNS[index]
    for server in run["servers"]:
        simulated = [_account(r) for r in replay(run, server)]
        real = [_account(f) for f in server["forwards"]]
        assert simulated == real, server["name"]


def test_the_fixture_covers_every_fate_of_a_forward() -> None:
    """The recorded runs hold forwards cancelled in transit, stopped within a layer, and
    completed despite a cancel; prefills that are not a server's first forward (issue 15 d);
    catch-ups; and every setting of the real server (issue 15 g)."""
    forwards = [(r, f) for r in RUNS for s in r["servers"] for f in s["forwards"]]
    cancelled = [f for _, f in forwards if f["cancel_s"] is not None]
    assert any(f["stopped"] and f["layers"] == 0 for f in cancelled)
    assert any(f["stopped"] and f["layers"] > 0 for f in cancelled)
    assert any(not f["stopped"] for f in cancelled)
    assert any(f["catchup"] > 0 for _, f in forwards)
    later = [f for s in (s for r in RUNS for s in r["servers"]) for f in s["forwards"][1:]]
    assert any(f["prompt"] > 0 for f in later)
    assert {(r["prefill"], r["interruptible"]) for r in RUNS} == {
        ("finish", True),
        ("stop", True),
        ("finish", False),
    }
