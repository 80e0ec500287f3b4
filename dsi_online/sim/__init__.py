"""The simulation model: clocks, simulated servers, latency and cost models, the oracle,
traces, scenarios, profiles, the runner and its statistics."""
