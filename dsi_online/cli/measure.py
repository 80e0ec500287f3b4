"""`dsi-online measure latency|acceptance`: measured inputs from real transformer models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    OUTPUT,
    SCENARIO,
    JsonPath,
    advance,
    check_outputs,
    given_path,
    keeping,
    output_console,
    progress_bar,
    stderr,
    write_json,
    write_text,
)
from dsi_online.errors import InvalidParameterError
from dsi_online.measure.acceptance import (
    AcceptanceRequest,
    measure_acceptance,
    read_prompts,
    write_acceptance,
)
from dsi_online.measure.latency import (
    LatencyRequest,
    measure_latency,
    parse_counts,
    parse_prompt_tokens,
)
from dsi_online.measure.torch_runtime import passive_openmp
from dsi_online.reports.run import number_column
from dsi_online.sim.profile import load_profile, profile_to_toml

measure_app = typer.Typer(
    help=(
        "Measure a target/drafter pair: its latencies into a profile, then its acceptance "
        "rate. Needs pip install 'dsi-online\\[measure]'."
    ),
    no_args_is_help=True,
)
app.add_typer(measure_app, name="measure")

Target = Annotated[
    str,
    typer.Option(
        help="Target: a preset (e.g. vicuna-13b), a checkpoint directory or hub name.",
        rich_help_panel=SCENARIO,
    ),
]
Device = Annotated[
    str,
    typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.", rich_help_panel=EXECUTION),
]
Dtype = Annotated[
    Literal["float16", "bfloat16", "float32"] | None,
    typer.Option(
        help="\\[default: float16 on CUDA, else float32].",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        help="Seed of presets' random weights and random prompts.", rich_help_panel=SCENARIO
    ),
]
AllowDownload = Annotated[
    bool,
    typer.Option(
        "--allow-download",
        help="Let hub names download (else local cache only).",
        rich_help_panel=EXECUTION,
    ),
]
_DRAFTER_HELP = "Drafter: a preset (e.g. vicuna-68m), a checkpoint directory or hub name."


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


@measure_app.command("latency")
def latency(
    target: Target,
    drafter: Annotated[
        str | None,
        typer.Option(
            help=f"{_DRAFTER_HELP} \\[default: none].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            parser=given_path,
            metavar="<path>",
            help="Write the pair's profile (TOML) here \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="The profile's name \\[default: the stem of --out].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    prompt_tokens: Annotated[
        list[str] | None,
        typer.Option(
            metavar="N[,N...]",
            help="Prompt lengths for TTFT; the first is the profile's TTFT and the context "
            "decoding starts from \\[default: 128].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    by_tokens: Annotated[
        str | None,
        typer.Option(
            metavar="N,N[,N...]",
            help="Also time forwards over N new tokens (k + 1 for a verification, more for a "
            "cache catch-up; include your prompt length to price prefills), at the context "
            "decoding reached: the profile then prices each forward by its tokens "
            "\\[default: none].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(help="Timed forwards per phase.", rich_help_panel=SCENARIO)
    ] = 100,
    warmup: Annotated[
        int, typer.Option(help="Untimed forwards before them.", rich_help_panel=SCENARIO)
    ] = 10,
    device: Device = "auto",
    dtype: Dtype = None,
    seed: Seed = 0,
    allow_download: AllowDownload = False,
    json_path: JsonPath = None,
) -> None:
    """Time TTFT and TPOT of a target (and a drafter); --out writes the pair's profile."""
    passive_openmp()
    request = LatencyRequest(
        target=target,
        drafter=drafter,
        prompt_tokens=parse_prompt_tokens(prompt_tokens or ["128"]),
        samples=samples,
        warmup=warmup,
        device=device,
        dtype=dtype,
        seed=seed,
        allow_download=allow_download,
        by_tokens=(
            ()
            if by_tokens is None
            else parse_counts([by_tokens], "token counts (--by-tokens)", "1,2,4,6,8,16")
        ),
    )
    if out is not None and drafter is None:
        raise InvalidParameterError(
            "a profile holds a target/drafter pair: give --drafter with --out"
        )
    check_outputs({"--out": None if out is None else str(out), "--json": json_path})
    models = 1 if drafter is None else 2
    with (
        keeping("nothing is kept (the profile is written at the end)"),
        progress_bar("loading", models * request.forwards_per_model()) as bar,
    ):
        result = measure_latency(
            request,
            advance=lambda n: advance(bar, n),
            loading=lambda spec: bar.update(
                bar.task_ids[0], description=f"measuring {Path(spec).name or spec}"
            ),
        )
    console = output_console(json_path)
    table = Table(
        title=Text(f"Latency on {result.environment.hardware}, {result.environment.dtype}")
    )
    for column in ("model", "TTFT mean ms (prompt tokens)", "TPOT mean ms", "TPOT cv"):
        table.add_column(column, overflow="fold")
    if request.by_tokens:
        table.add_column(
            f"forward mean ms (tokens) at context {request.by_tokens_context}", overflow="fold"
        )
    for measured in (result.target, result.drafter):
        if measured is not None:
            ttft = ", ".join(f"{_ms(t.mean_s)} ({t.prompt_tokens})" for t in measured.ttft)
            cells = [ttft, _ms(measured.tpot_mean_s), f"{measured.tpot_cv:.3g}"]
            if request.by_tokens:
                cells.append(", ".join(f"{_ms(c.mean_s)} ({c.tokens})" for c in measured.by_tokens))
            table.add_row(Text(measured.label), *cells)
    console.print(table)
    for warning in result.warnings:
        stderr.print(Text(f"warning: {warning}"))
    if result.c is not None:
        console.print(Text(f"c = drafter TPOT / target TPOT = {result.c:.4g}"))
    if out is not None:
        profile = result.to_profile(name or out.stem)
        write_text(profile_to_toml(profile), str(out), "--out")
        console.print(Text(f"wrote profile {profile.name!r} to {out}"))
    if json_path is not None:
        write_json(result.to_json(), json_path)


@measure_app.command("acceptance")
def acceptance(
    target: Target,
    drafter: Annotated[str, typer.Option(help=_DRAFTER_HELP, rich_help_panel=SCENARIO)],
    prompts: Annotated[
        Path,
        typer.Option(
            parser=given_path,
            metavar="<path>",
            help="A text file: one prompt per line.",
            rich_help_panel=SCENARIO,
        ),
    ],
    max_new_tokens: Annotated[
        int,
        typer.Option(help="Tokens the target generates per prompt.", rich_help_panel=SCENARIO),
    ] = 128,
    lookahead: Annotated[
        int,
        typer.Option(
            "--lookahead",
            "-k",
            help="Window of the acceptance by draft position.",
            rich_help_panel=SCENARIO,
        ),
    ] = 5,
    profile: Annotated[
        Path | None,
        typer.Option(
            parser=given_path,
            metavar="<path>",
            help="Write \\[acceptance] into this profile, keeping the rest of it "
            "\\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    trace_out: Annotated[
        str | None,
        typer.Option(
            help="Write each prompt's accept/reject trace here (JSON), for run "
            "--acceptance-trace \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(help="Cluster-bootstrap resamples of the 95% CI.", rich_help_panel=EXECUTION),
    ] = 2000,
    device: Device = "auto",
    dtype: Dtype = None,
    seed: Seed = 0,
    allow_download: AllowDownload = False,
    json_path: JsonPath = None,
) -> None:
    """Measure how often the drafter's greedy token is the target's, with a 95% CI."""
    passive_openmp()
    request = AcceptanceRequest(
        target=target,
        drafter=drafter,
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        lookahead=lookahead,
        bootstrap=bootstrap,
        device=device,
        dtype=dtype,
        seed=seed,
        allow_download=allow_download,
    )
    if profile is not None:
        load_profile(profile)  # a bad profile fails now, not after the measurement
    check_outputs(
        {
            "--profile": None if profile is None else str(profile),
            "--json": json_path,
            "--trace-out": trace_out,
        }
    )
    with (
        keeping("nothing is kept (the rate is written at the end)"),
        progress_bar("prompts", len(read_prompts(prompts))) as bar,
    ):
        result = measure_acceptance(request, advance=lambda n: advance(bar, n))
    if result.random_weights:
        stderr.print(
            "warning: a random-weight architecture preset took part, so this acceptance rate "
            "says nothing about real models (presets are for latency); measure real "
            "checkpoints, or give -a yourself",
            markup=False,
        )
    measured = result.acceptance_profile()
    est = result.estimate
    console = output_console(json_path)
    ci = "n/a (one prompt)" if est.ci95 is None else f"[{est.ci95[0]:.4f}, {est.ci95[1]:.4f}]"
    console.print(
        Text(
            f"acceptance rate {est.rate:.4f}, 95% CI {ci}: {est.positions} positions of "
            f"{est.prompts} prompts ({result.target} / {result.drafter})"
        )
    )
    table = Table(title=f"Acceptance of draft i given drafts 1..i-1 (lookahead {lookahead})")
    for column in ("i", "acceptance", "windows"):
        number_column(table, column)
    for i, (rate, windows) in enumerate(
        zip(est.by_position, est.by_position_windows, strict=True), start=1
    ):
        table.add_row(str(i), f"{rate:.4f}", str(windows))
    console.print(table)
    if profile is not None:
        write_acceptance(profile, measured)
        console.print(Text(f"wrote [acceptance] to {profile}"))
    if trace_out is not None:
        write_text(result.trace().to_json() + "\n", trace_out, "--trace-out")
        console.print(Text(f"wrote the acceptance trace to {trace_out}"))
    if json_path is not None:
        write_json(result.to_json(), json_path)
