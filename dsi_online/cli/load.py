"""`dsi-online load`: many requests on a fixed GPU budget; latency against the arrival rate
per policy, each policy's capacity at an SLO, and which policy is best where."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    OUTPUT,
    SCENARIO,
    Acceptance,
    BackendOption,
    ClockChoice,
    CommMs,
    DrafterMs,
    DrafterTtftMs,
    JsonPath,
    LatencyCorrelation,
    LatencyCv,
    Lookahead,
    ProfileName,
    RayAddress,
    Seed,
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
    write_text,
)
from dsi_online.cli.run import build_scenario
from dsi_online.errors import InvalidParameterError
from dsi_online.reports.load_view import (
    assumptions,
    capacity_lines,
    render_chart,
    render_overhead,
    render_tables,
    to_csv,
    to_json,
)
from dsi_online.sim.clock import check_clock
from dsi_online.sim.load import LoadScenario
from dsi_online.sim.policy import POLICY_HELP, parse_policies
from dsi_online.sim.workload import Workload, check_requests, load_trace_csv, poisson
from dsi_online.studies.grid import Execution
from dsi_online.studies.load import (
    LoadConfig,
    LoadStudy,
    parse_rates,
    parse_slo,
    run_study,
    verdict,
)
from dsi_online.studies.parallel import check_ray_address

DEFAULT_RATES = "0.5:4:8"
DEFAULT_POLICIES = "nonsi,si,dsi:3,adaptive"


def _workload_config(
    rate: str | None,
    trace: str | None,
    requests: int | None,
    warmup: int,
    tokens: int,
    prompt_tokens: int,
    seed: int,
) -> tuple[tuple[float, ...], Workload]:
    """Rates and the requests (Poisson, or a trace rescaled to each rate)."""
    if trace is None:
        count = 400 if requests is None else requests
        check_requests(count, warmup)
        return parse_rates(rate or DEFAULT_RATES), poisson(count, tokens, prompt_tokens, seed)
    workload = load_trace_csv(trace, requests)
    check_requests(len(workload.requests), warmup)
    assert workload.trace_rate is not None
    rates = parse_rates(rate) if rate is not None else (workload.trace_rate,)
    return rates, workload


def _report(study: LoadStudy, console: Console) -> None:
    console.print(render_tables(study))
    overhead = render_overhead(study)
    if overhead is not None:
        console.print(overhead)
    console.print(render_chart(study))
    console.print(capacity_lines(study))
    console.print(Text(verdict(study)))
    if not all(c.lossless for c in study.cells.values()):
        console.print(Text("WARNING: a request's output differed from the target's: a bug."))
    console.print(Text("Assumed: " + "; ".join(assumptions(study.config.load.batch)) + "."))


def _write(study: LoadStudy, json_path: str | None, csv_path: str | None, png: str | None) -> None:
    console = output_console(json_path)
    if csv_path is not None:
        write_text(to_csv(study), csv_path, "--csv")
        console.print(Text(f"wrote {csv_path}"))
    if png is not None:
        from dsi_online.reports.load_plots import plot_load

        try:
            plot_load(study, Path(png))
        except OSError as exc:
            raise InvalidParameterError(
                f"--png must name a writable file; cannot write {png} ({exc.strerror or exc})"
            ) from None
        console.print(Text(f"wrote {png}"))
    if json_path is not None:
        write_json(to_json(study), json_path)


@app.command()
def load(
    rate: Annotated[
        str | None,
        typer.Option(
            help="Arrival rates, requests per second: 0.5,1,2 or start:stop:count "
            f"\\[default: {DEFAULT_RATES}; with --trace, the trace's own rate].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    gpus: Annotated[
        int, typer.Option(help="GPUs of the fleet (one server each).", rich_help_panel=SCENARIO)
    ] = 8,
    policy: Annotated[
        str,
        typer.Option(help=f"Policies, comma-separated: {POLICY_HELP}.", rich_help_panel=SCENARIO),
    ] = DEFAULT_POLICIES,
    requests: Annotated[
        int | None,
        typer.Option(
            help="Requests per rate and policy \\[default: 400; with --trace, all its rows].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(help="First requests reported apart (warm-up).", rich_help_panel=SCENARIO),
    ] = 40,
    slo: Annotated[
        str,
        typer.Option(
            help="Latency objective pQ=SECONDS (0 < Q < 100): capacity is the highest rate "
            "that meets it.",
            rich_help_panel=SCENARIO,
        ),
    ] = "p99=4",
    trace: Annotated[
        str | None,
        typer.Option(
            help="A CSV of requests (arrival_s, output_tokens, prompt_tokens) instead of "
            "Poisson arrivals; --rate rescales its times \\[default: none].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(
            help="Requests a GPU serves at once (1 = no batching); a batch's forward costs "
            "one forward, or its total tokens with a token-cost profile.",
            rich_help_panel=SCENARIO,
        ),
    ] = 1,
    target_ms: TargetMs = None,
    target_ttft_ms: TargetTtftMs = None,
    drafter_ms: DrafterMs = None,
    drafter_ttft_ms: DrafterTtftMs = None,
    acceptance: Acceptance = None,
    lookahead: Lookahead = 5,
    servers: Annotated[
        int,
        typer.Option(
            "--servers",
            "-n",
            help="Target servers of policy 'dsi', and most that adaptive gives DSI.",
            rich_help_panel=SCENARIO,
        ),
    ] = 7,
    tokens: Tokens = 100,
    prompt_tokens: Annotated[
        int,
        typer.Option(
            help="Prompt length (matters only with a profile that prices forwards by tokens).",
            rich_help_panel=SCENARIO,
        ),
    ] = 0,
    seed: Seed = 0,
    latency_cv: LatencyCv = None,
    profile: ProfileName = None,
    comm_ms: CommMs = 0.0,
    latency_correlation: LatencyCorrelation = 0.0,
    clock: Annotated[
        ClockChoice,
        typer.Option(help="virtual (instant) or wall (real time).", rich_help_panel=EXECUTION),
    ] = "virtual",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes \\[default: all cores; 1 on --clock wall].",
            show_default=False,
            rich_help_panel=EXECUTION,
        ),
    ] = None,
    backend: BackendOption = "process",
    ray_address: RayAddress = None,
    json_path: JsonPath = None,
    csv_path: Annotated[
        str | None,
        typer.Option(
            "--csv",
            help="Write one row per policy and rate here \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    png: Annotated[
        str | None,
        typer.Option(
            help="Draw latency against the rate into this PNG (needs matplotlib) "
            "\\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
) -> None:
    """Many requests on a fixed GPU budget: latency against the arrival rate per policy."""
    checked_clock = check_clock(clock)
    rates, workload = _workload_config(rate, trace, requests, warmup, tokens, prompt_tokens, seed)
    objective = parse_slo(slo)
    scenario = build_scenario(
        target_ms=target_ms,
        target_ttft_ms=target_ttft_ms,
        drafter_ms=drafter_ms,
        drafter_ttft_ms=drafter_ttft_ms,
        acceptance=acceptance,
        lookahead=lookahead,
        servers=servers,
        tokens=tokens,
        repeats=1,
        seed=seed,
        latency_cv=latency_cv,
        profile=profile,
        comm_ms=comm_ms,
        latency_correlation=latency_correlation,
    )
    workers = (
        workers if workers is not None else (1 if checked_clock == "wall" else os.cpu_count() or 1)
    )
    execution = Execution(workers, backend, ray_address)
    for path, option in ((json_path, "--json"), (csv_path, "--csv"), (png, "--png")):
        check_output(path, option)
    if png is not None:
        from dsi_online.reports.plots import pyplot

        pyplot("load")
    if ray_address is not None and backend == "ray":
        check_ray_address(ray_address)
    load_scenario = LoadScenario(scenario, workload, gpus, warmup, batch)
    policies = tuple(parse_policies(policy.split(","), scenario, gpus))
    config = LoadConfig(load_scenario, rates, policies, checked_clock, objective)
    cells = config.cells()
    announce(
        f"load: {len(rates)} rate(s) x {len(policies)} policies x "
        f"{len(load_scenario.workload.requests)} requests ({warmup} warm-up) of "
        f"{'the trace ' + trace if trace else str(tokens) + ' tokens'}, {gpus} GPUs, "
        f"batch {batch}, {checked_clock} clock, backend {backend}, {workers} worker(s)"
    )
    study = LoadStudy(config, {})
    start = time.monotonic()
    interrupted = False
    with keeping("finished rates are reported (and written to --json/--csv/--png)"):
        try:
            with progress_bar(f"load ({checked_clock} clock): cells", len(cells)) as bar:
                run_study(
                    config,
                    execution,
                    progress=lambda n: advance(bar, n),
                    study=study,
                )
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.monotonic() - start
    console = output_console(json_path)
    if study.rates_done():
        _report(study, console)
        _write(study, json_path, csv_path, png)
    console.print(
        Text(
            f"played {len(study.cells)} of {len(cells)} cells ({len(study.rates_done())} complete "
            f"rates) in {elapsed:.1f} s, {checked_clock} clock, backend {backend}, "
            f"{workers} worker(s)"
        )
    )
    if interrupted:
        raise KeyboardInterrupt
