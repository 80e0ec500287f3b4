"""dsi_online: how much faster are SI and DSI than autoregressive decoding?

The same asyncio schedulers run on the real clock (true wall time) and on a virtual
clock (instant, exact, reproducible)::

    from dsi_online import Scenario, run_scenario
    result = run_scenario(Scenario.from_ms(target_ms=30, drafter_ms=3, acceptance=0.8,
                                           lookahead=5, servers=7, tokens=500, repeats=10))
    print(result.speedups.dsi_over_si.value)
"""

from dsi_online.errors import DSIOnlineError, InvalidParameterError, ProfileError
from dsi_online.latency import Constant, Empirical, LogNormal, ModelLatency
from dsi_online.oracle import SimulatedOracle, TokenOracle
from dsi_online.profile import Profile, load_profile, resolve_profile
from dsi_online.runner import ScenarioResult, run_many, run_scenario
from dsi_online.scenario import Scenario
from dsi_online.schedulers import DSI, SI, Generation, NonSI, RunResult

__version__ = "0.1.0"

__all__ = [
    "DSI",
    "SI",
    "Constant",
    "DSIOnlineError",
    "Empirical",
    "Generation",
    "InvalidParameterError",
    "LogNormal",
    "ModelLatency",
    "NonSI",
    "Profile",
    "ProfileError",
    "RunResult",
    "Scenario",
    "ScenarioResult",
    "SimulatedOracle",
    "TokenOracle",
    "load_profile",
    "resolve_profile",
    "run_many",
    "run_scenario",
]
