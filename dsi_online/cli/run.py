"""`dsi-online run`: non-SI, SI and DSI side by side on one scenario."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

import typer

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    SCENARIO,
    Acceptance,
    ClockChoice,
    CommMs,
    Concurrency,
    DrafterMs,
    DrafterTtftMs,
    JsonPath,
    LatencyCorrelation,
    LatencyCv,
    Lookahead,
    ProfileName,
    Seed,
    Servers,
    TargetMs,
    TargetTtftMs,
    Tokens,
    advance,
    announce,
    check_output,
    keeping,
    output_console,
    progress_bar,
    write_json,
)
from dsi_online.cli.profiles import find_profile
from dsi_online.errors import InvalidParameterError, require
from dsi_online.reports.run import (
    render_overhead,
    render_table,
    render_units_table,
    to_json,
    units_to_json,
    verdict,
)
from dsi_online.sim.clock import check_clock
from dsi_online.sim.latency import Constant
from dsi_online.sim.runner import check_concurrency, run_scenario
from dsi_online.sim.scenario import Scenario, check_acceptance, check_comm_ms, check_cv, check_ms
from dsi_online.sim.trace import load_trace
from dsi_online.units.scenario import simulate_scenario

DEFAULT_TARGET_MS = 30.0
DEFAULT_DRAFTER_MS = 3.0
DEFAULT_ACCEPTANCE = 0.8
EngineChoice = Literal["async", "units"]


def _conflicts(profile: str, options: dict[str, float | None]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise InvalidParameterError(
            f"{given[0]} cannot be combined with --profile {profile}: the profile gives "
            "the latency distributions (drop one of the two)"
        )


def build_scenario(
    *,
    target_ms: float | None,
    target_ttft_ms: float | None,
    drafter_ms: float | None,
    drafter_ttft_ms: float | None,
    acceptance: float | None,
    lookahead: int,
    servers: int,
    tokens: int,
    repeats: int,
    seed: int,
    latency_cv: float | None,
    profile: str | None,
    comm_ms: float = 0.0,
    latency_correlation: float = 0.0,
) -> Scenario:
    """Resolve the run options (and a profile) into a validated Scenario."""
    if profile is None:
        return Scenario.from_ms(
            target_ms=DEFAULT_TARGET_MS if target_ms is None else target_ms,
            target_ttft_ms=target_ttft_ms,
            drafter_ms=DEFAULT_DRAFTER_MS if drafter_ms is None else drafter_ms,
            drafter_ttft_ms=drafter_ttft_ms,
            acceptance=DEFAULT_ACCEPTANCE if acceptance is None else acceptance,
            lookahead=lookahead,
            servers=servers,
            tokens=tokens,
            repeats=repeats,
            seed=seed,
            latency_cv=0.0 if latency_cv is None else latency_cv,
            comm_ms=comm_ms,
            latency_correlation=latency_correlation,
        )
    _conflicts(
        profile,
        {
            "--target-ms": target_ms,
            "--target-ttft-ms": target_ttft_ms,
            "--drafter-ms": drafter_ms,
            "--drafter-ttft-ms": drafter_ttft_ms,
            "--latency-cv": latency_cv,
        },
    )
    loaded = find_profile(profile)
    if acceptance is None:
        if loaded.acceptance is None:
            raise InvalidParameterError(
                f"profile {loaded.name} has no acceptance rate: give --acceptance/-a within [0, 1]"
            )
        acceptance = loaded.acceptance.rate
    return Scenario(
        target=loaded.target.latency,
        drafter=loaded.drafter.latency,
        acceptance=acceptance,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        profile=loaded.name,
        link=None if comm_ms == 0 else Constant(comm_ms / 1e3),
        latency_correlation=latency_correlation,
    )


def _validate_floats(
    target_ms: float | None,
    target_ttft_ms: float | None,
    drafter_ms: float | None,
    drafter_ttft_ms: float | None,
    acceptance: float | None,
    latency_cv: float | None,
    comm_ms: float,
) -> None:
    checks = (
        (target_ms, "target latency", "--target-ms"),
        (target_ttft_ms, "target TTFT", "--target-ttft-ms"),
        (drafter_ms, "drafter latency", "--drafter-ms"),
        (drafter_ttft_ms, "drafter TTFT", "--drafter-ttft-ms"),
    )
    for value, name, option in checks:
        if value is not None:
            check_ms(value, name, option)
    if acceptance is not None:
        check_acceptance(acceptance)
    if latency_cv is not None:
        check_cv(latency_cv)
    check_comm_ms(comm_ms)


@app.command()
def run(
    target_ms: TargetMs = None,
    target_ttft_ms: TargetTtftMs = None,
    drafter_ms: DrafterMs = None,
    drafter_ttft_ms: DrafterTtftMs = None,
    acceptance: Acceptance = None,
    lookahead: Lookahead = 5,
    servers: Servers = 7,
    tokens: Tokens = 100,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="Repeats (seeds).", rich_help_panel=EXECUTION)
    ] = 3,
    seed: Seed = 0,
    latency_cv: LatencyCv = None,
    profile: ProfileName = None,
    comm_ms: CommMs = 0.0,
    latency_correlation: LatencyCorrelation = 0.0,
    acceptance_trace: Annotated[
        str | None,
        typer.Option(
            help="Replay real accept/reject traces as the coins (a JSON file, as written by "
            "validate --trace-out) instead of drawing them; not with -a \\[default: none].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    prompt_tokens: Annotated[
        int,
        typer.Option(
            help="Prompt length a server's first forward processes (matters only with a "
            "profile that prices forwards by their tokens).",
            rich_help_panel=SCENARIO,
        ),
    ] = 0,
    clock: Annotated[
        ClockChoice,
        typer.Option(help="wall (real time) or virtual (instant).", rich_help_panel=EXECUTION),
    ] = "wall",
    concurrency: Concurrency = 1,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            help="async (the schedulers on an event loop) or units (the paper's time-unit "
            "model: constant latencies, TTFT = TPOT, enough servers; --clock is ignored).",
            rich_help_panel=EXECUTION,
        ),
    ] = "async",
    json_path: JsonPath = None,
) -> None:
    """Play non-SI, SI and DSI on one scenario and report their wall-time speedups."""
    checked_clock = check_clock(clock)
    check_concurrency(concurrency)
    check_output(json_path, "--json")
    _validate_floats(
        target_ms, target_ttft_ms, drafter_ms, drafter_ttft_ms, acceptance, latency_cv, comm_ms
    )
    trace = None
    if acceptance_trace is not None:
        require(
            acceptance is None,
            "--acceptance/-a cannot be combined with --acceptance-trace: the traces give the "
            "acceptance (drop one of the two)",
        )
        trace = load_trace(acceptance_trace)
    scenario = build_scenario(
        target_ms=target_ms,
        target_ttft_ms=target_ttft_ms,
        drafter_ms=drafter_ms,
        drafter_ttft_ms=drafter_ttft_ms,
        acceptance=acceptance if trace is None else trace.rate,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        latency_cv=latency_cv,
        profile=profile,
        comm_ms=comm_ms,
        latency_correlation=latency_correlation,
    )
    scenario = replace(scenario, trace=trace, prompt_tokens=prompt_tokens)
    if engine == "units":
        document = units_to_json(scenario, simulate_scenario(scenario))
        output_console(json_path).print(render_units_table(document))
        if json_path is not None:
            write_json(document, json_path)
        return
    with keeping("nothing is kept (run writes its results at the end)"):
        announce(
            f"run: {scenario.repeats} repeat(s) of non-SI, SI and DSI, {scenario.tokens} tokens "
            f"each, on the {checked_clock} clock"
        )
        with progress_bar(f"{checked_clock} clock: repeats", scenario.repeats) as bar:
            result = run_scenario(
                scenario, checked_clock, concurrency, progress=lambda n: advance(bar, n)
            )
    console = output_console(json_path)
    console.print(render_table(result))
    fidelity = render_overhead(result)
    if fidelity is not None:
        console.print(fidelity)
    console.print(verdict(result))
    if json_path is not None:
        write_json(to_json(result), json_path)
