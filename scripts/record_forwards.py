"""Record real runs' forwards, with what each was asked (prefix length and drafts), as the
fixture tests/data/real_forwards.json that tests/sim/test_accounting.py replays through
simulated servers.

    python scripts/record_forwards.py --pair DIR --out tests/data/real_forwards.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsi_online.pair import heldout_prompts
from dsi_online.real import RealBackend
from dsi_online.real.server import RealServer
from dsi_online.real.worker import Prefill
from dsi_online.schedulers import DSI, SI, NonSI, Scheduler

MODES: tuple[tuple[Prefill, bool], ...] = (("finish", True), ("stop", True), ("finish", False))
"""The real server's settings recorded: (prefill, interruptible)."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pair", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--prompt-bytes", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args(argv)
    calls: dict[str, list[tuple[int, list[int]]]] = {}
    original = RealServer.forward

    async def forward(self: RealServer, prefix: Sequence[int], drafts: Sequence[int]) -> list[int]:
        calls.setdefault(self.name, []).append((len(prefix), list(drafts)))
        return await original(self, prefix, drafts)

    RealServer.forward = forward  # type: ignore[method-assign]
    prompts = heldout_prompts(args.pair, args.prompts, args.prompt_bytes, seed=0)
    schedulers: list[Scheduler] = [NonSI(), SI(3), DSI(3, 2), DSI(5, 3)]
    runs: list[dict[str, Any]] = []
    for prefill, interruptible in MODES:
        with RealBackend(
            args.pair / "target",
            args.pair / "drafter",
            servers=3,
            prefill=prefill,
            interruptible=interruptible,
        ) as backend:
            runs += record(backend, schedulers, prompts, args.tokens, calls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=None) + "\n", encoding="utf-8")


def record(
    backend: RealBackend,
    schedulers: Sequence[Scheduler],
    prompts: Sequence[Sequence[int]],
    tokens: int,
    calls: dict[str, list[tuple[int, list[int]]]],
) -> list[dict[str, Any]]:
    """Every scheduler on every prompt: each server's forwards, asked and recorded."""
    runs: list[dict[str, Any]] = []
    for scheduler in schedulers:
        for prompt in prompts:
            calls.clear()
            result = backend.play(scheduler, prompt, tokens)
            servers = []
            # a server's records come in submission order (its worker answers in order)
            for server in result.servers:
                name, records, asked = server.name, server.records, calls.get(server.name, [])
                assert len(records) == len(asked), (name, len(records), len(asked))
                servers.append(
                    {
                        "name": name,
                        "role": server.role,
                        "forwards": [
                            {
                                "prefix": prefix,
                                "drafts": drafts,
                                "kept": r.kept,
                                "processed": r.processed,
                                "prompt": r.prompt,
                                "catchup": r.catchup,
                                "layers": r.layers,
                                "stopped": r.stopped,
                                "ended_s": r.ended_s,
                                "cancel_s": r.cancel_s,
                            }
                            for (prefix, drafts), r in zip(asked, records, strict=True)
                        ],
                    }
                )
            runs.append(
                {
                    "scheduler": scheduler.name,
                    "prefill": backend.settings.prefill,
                    "interruptible": backend.settings.interruptible,
                    "prompt_tokens": len(prompt),
                    "output": list(result.output),
                    "layers": {role: backend.layers(role) for role in ("target", "drafter")},
                    "servers": servers,
                }
            )
    return runs


if __name__ == "__main__":
    main()
