"""How many target GPUs does DSI need? Sweep the servers with the Python API.

Run:  python examples/api_quickstart.py
"""

from __future__ import annotations

from dataclasses import replace

from dsi_online import Scenario, run_scenario


def main() -> None:
    base = Scenario.from_ms(
        target_ms=30,  # target forward (TPOT), e.g. a 13B model on one GPU
        drafter_ms=6,  # drafter forward: c = 0.2
        acceptance=0.7,
        lookahead=4,
        servers=1,
        tokens=300,
        repeats=10,
        seed=0,
    )
    print(f"DSI needs ceil(1/(k c)) = {base.servers_needed} target servers never to wait")
    for servers in range(1, 8):
        result = run_scenario(replace(base, servers=servers), clock="virtual")
        speedups = result.speedups
        dsi = result.algorithms["dsi"]
        print(
            f"{servers} target servers: DSI {dsi.mean_s:.3f} s, "
            f"{speedups.dsi_over_nonsi.value:.2f}x non-SI, {speedups.dsi_over_si.value:.2f}x SI, "
            f"{sum(dsi.busy_s) / len(dsi.busy_s):.2f} GPU-s"
        )


if __name__ == "__main__":
    main()
