"""Real execution: the unchanged schedulers on real models, and a real peer to compare with.

Real models enter as a second kind of server behind the `Server` seam: a `RealServer`'s
forward is a real model forward on a worker (a process, a thread, or the loop's own thread)
that keeps its own KV cache; `RealBackend` starts and stops the workers; `play_real` runs a
scheduler on them and checks its output against the target's greedy decoding. `peer` times
Hugging Face transformers' own greedy and assisted generation on the same pair. Needs the
`[measure]` extra (torch, transformers); nothing here imports them until a model loads.

The names below are imported on first use (PEP 562), so that a worker process, which runs a
submodule, starts without importing the schedulers and the simulator first: it arms its
parent-death signal at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsi_online.real.backend import (
        BackendSettings,
        Breakdown,
        RealBackend,
        RealRunResult,
        ServerRecords,
        play_real,
    )
    from dsi_online.real.handles import RealBackendError
    from dsi_online.real.server import ForwardRecord, RealPool, RealServer

_HOMES = {
    "BackendSettings": "backend",
    "Breakdown": "backend",
    "RealBackend": "backend",
    "RealRunResult": "backend",
    "ServerRecords": "backend",
    "play_real": "backend",
    "RealBackendError": "handles",
    "ForwardRecord": "server",
    "RealPool": "server",
    "RealServer": "server",
}

__all__ = [
    "BackendSettings",
    "Breakdown",
    "ForwardRecord",
    "RealBackend",
    "RealBackendError",
    "RealPool",
    "RealRunResult",
    "RealServer",
    "ServerRecords",
    "play_real",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dsi_online.real' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dsi_online.real.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
