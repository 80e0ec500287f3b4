"""Real execution: the unchanged schedulers on real models, and a real peer to compare with.

Real models enter as a second kind of server behind the `Server` seam: a `RealServer`'s
forward is a real model forward on a worker (a process, or a thread) that keeps its own KV
cache; `RealBackend` starts and stops the workers; `play_real` runs a scheduler on them and
checks its output against the target's greedy decoding. `peer` times Hugging Face
transformers' own greedy and assisted generation on the same pair. Needs the `[measure]`
extra (torch, transformers); nothing here imports them until a model loads.
"""

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
