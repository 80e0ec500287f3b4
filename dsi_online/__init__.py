"""dsi_online: how much faster are SI and DSI than autoregressive decoding?

The same asyncio schedulers run on the real clock (true wall time) and on a virtual
clock (instant, exact, reproducible)::

    from dsi_online import Scenario, run_scenario
    result = run_scenario(Scenario.from_ms(target_ms=30, drafter_ms=3, acceptance=0.8,
                                           lookahead=5, servers=7, tokens=500, repeats=10))
    print(result.speedups.dsi_over_si.value)

The names below are imported on first use (PEP 562), so that importing a submodule, as the
`dsi-online` command does first thing, costs nothing: the command installs its Ctrl-C
handler before numpy and scipy load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsi_online.errors import DSIOnlineError, InvalidParameterError, ProfileError
    from dsi_online.schedulers import DSI, SI, Generation, NonSI, RunResult
    from dsi_online.sim.latency import Constant, Empirical, LogNormal, ModelLatency
    from dsi_online.sim.load import LoadResult, LoadScenario, RequestRecord, run_load
    from dsi_online.sim.oracle import SimulatedOracle, TokenOracle
    from dsi_online.sim.policy import Policy, parse_policies
    from dsi_online.sim.profile import Profile, load_profile, resolve_profile
    from dsi_online.sim.runner import ScenarioResult, run_many, run_scenario
    from dsi_online.sim.scenario import Scenario
    from dsi_online.sim.workload import load_trace_csv, poisson

__version__ = "0.1.0"

_HOMES = {
    "DSIOnlineError": "errors",
    "InvalidParameterError": "errors",
    "ProfileError": "errors",
    "Constant": "sim.latency",
    "Empirical": "sim.latency",
    "LogNormal": "sim.latency",
    "ModelLatency": "sim.latency",
    "LoadResult": "sim.load",
    "LoadScenario": "sim.load",
    "RequestRecord": "sim.load",
    "run_load": "sim.load",
    "Policy": "sim.policy",
    "parse_policies": "sim.policy",
    "load_trace_csv": "sim.workload",
    "poisson": "sim.workload",
    "SimulatedOracle": "sim.oracle",
    "TokenOracle": "sim.oracle",
    "Profile": "sim.profile",
    "load_profile": "sim.profile",
    "resolve_profile": "sim.profile",
    "ScenarioResult": "sim.runner",
    "run_many": "sim.runner",
    "run_scenario": "sim.runner",
    "Scenario": "sim.scenario",
    "DSI": "schedulers",
    "SI": "schedulers",
    "Generation": "schedulers",
    "NonSI": "schedulers",
    "RunResult": "schedulers",
}

__all__ = [
    "DSI",
    "SI",
    "Constant",
    "DSIOnlineError",
    "Empirical",
    "Generation",
    "InvalidParameterError",
    "LoadResult",
    "LoadScenario",
    "LogNormal",
    "ModelLatency",
    "NonSI",
    "Policy",
    "Profile",
    "ProfileError",
    "RequestRecord",
    "RunResult",
    "Scenario",
    "ScenarioResult",
    "SimulatedOracle",
    "TokenOracle",
    "load_profile",
    "load_trace_csv",
    "parse_policies",
    "poisson",
    "resolve_profile",
    "run_load",
    "run_many",
    "run_scenario",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dsi_online' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dsi_online.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
