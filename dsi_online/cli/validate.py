"""`dsi-online validate`: predict non-SI, SI and DSI from a real pair's measurements, run them
for real, and report how far the prediction was (see dsi_online.real.validate)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    OUTPUT,
    SCENARIO,
    JsonPath,
    announce,
    check_outputs,
    given_path,
    keeping,
    output_console,
    progress_bar,
    write_json,
    write_text,
)
from dsi_online.cli.pair import train_with_progress
from dsi_online.errors import require
from dsi_online.real.validate import (
    Phase,
    ValidateRequest,
    ValidationResult,
    validate,
    validate_seeds,
)
from dsi_online.reports.validate_view import (
    disagreements,
    render_seeds,
    render_validation,
    seeds_to_json,
    to_json,
)
from dsi_online.sim.profile import profile_to_toml

PHASES: dict[Phase, str] = {
    "pair": "the pair",
    "start": "starting the model workers",
    "acceptance": "greedy decoding and drafter traces",
    "measure": "calibration and real runs",
    "predict": "simulating",
    "replicate": "simulating resampled calibrations",
    "transformers": "transformers' greedy and assisted generation",
}


@app.command("validate")
def validate_command(
    pair: Annotated[
        Path | None,
        typer.Option(
            parser=given_path,
            metavar="<path>",
            help="A folder with target/ and drafter/ checkpoints \\[default: the trained "
            "small pair of --seed, trained first if not cached].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    lookahead: Annotated[
        int, typer.Option("--lookahead", "-k", help="Drafts per chunk.", rich_help_panel=SCENARIO)
    ] = 5,
    servers: Annotated[
        int,
        typer.Option("--servers", "-n", help="DSI's target servers.", rich_help_panel=SCENARIO),
    ] = 1,
    prompts: Annotated[
        int,
        typer.Option(
            help="Evaluation prompts: run for real, never seen by the prediction.",
            rich_help_panel=SCENARIO,
        ),
    ] = 40,
    calibration_prompts: Annotated[
        int,
        typer.Option(
            help="Calibration prompts, disjoint from the evaluation ones: the acceptance "
            "traces the prediction replays, and the latency calibration.",
            rich_help_panel=SCENARIO,
        ),
    ] = 120,
    prompt_bytes: Annotated[
        int, typer.Option(help="Bytes (tokens) per prompt.", rich_help_panel=SCENARIO)
    ] = 64,
    tokens: Annotated[
        int,
        typer.Option("--tokens", "-S", help="Tokens to generate.", rich_help_panel=SCENARIO),
    ] = 128,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            "-r",
            help="Rounds: each a slice of the calibration, then every algorithm on every "
            "evaluation prompt once.",
            rich_help_panel=EXECUTION,
        ),
    ] = 2,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the pair, the prompts and the simulation.", rich_help_panel=SCENARIO
        ),
    ] = 0,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Validate once per prompt seed (e.g. 1-6 or 1,3,5) on the pair of --seed, "
            "and report every run's errors and their means \\[default: one run, prompts of "
            "--seed].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    workers: Annotated[
        Literal["auto", "process", "thread", "inline"],
        typer.Option(
            help="Where the models run: auto (DSI on processes, one per server; non-SI and "
            "SI inline, in the loop's thread, as transformers runs them), or every algorithm on "
            "one kind (process, thread, or inline: no transit, nothing runs concurrently).",
            rich_help_panel=EXECUTION,
        ),
    ] = "auto",
    calibration_samples: Annotated[
        int,
        typer.Option(
            help="Calibration samples per point and round, each a slice of its own, spread "
            "between the round's runs.",
            rich_help_panel=EXECUTION,
        ),
    ] = 8,
    device: Annotated[
        str,
        typer.Option(
            help="cpu, cuda, cuda:N, or a list: one device per target server, then the "
            "drafter's (cuda:0,cuda:1,cuda:2 for -n 2).",
            rich_help_panel=EXECUTION,
        ),
    ] = "cpu",
    dtype: Annotated[
        str,
        typer.Option(
            help="float32, bfloat16 or float16 (float64 too): the models' and the reference's.",
            rich_help_panel=EXECUTION,
        ),
    ] = "float32",
    trace_out: Annotated[
        str | None,
        typer.Option(
            help="Write the acceptance traces here (for run --acceptance-trace) \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    profile_out: Annotated[
        str | None,
        typer.Option(
            help="Write the measured latencies and acceptance here as a profile (for run "
            "--profile, with --acceptance-trace and --prompt-tokens) \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    json_path: JsonPath = None,
) -> None:
    """Predict non-SI, SI and DSI from a real pair's measured latencies and acceptance, run
    them for real on the same prompts, and report the prediction's error; exit code 1 when
    an output differs from the target's greedy decoding or transformers' from ours."""
    check_outputs({"--json": json_path, "--trace-out": trace_out, "--profile-out": profile_out})
    prompt_seeds = None if seeds is None else parse_seeds(seeds)
    require(
        prompt_seeds is None or (trace_out is None and profile_out is None),
        "--trace-out and --profile-out write one run's measurements: not with --seeds",
    )
    request = ValidateRequest(
        pair=pair,
        lookahead=lookahead,
        servers=servers,
        prompts=prompts,
        calibration_prompts=calibration_prompts,
        prompt_bytes=prompt_bytes,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        workers=workers,
        calibration_samples=calibration_samples,
        device=device,
        dtype=dtype,
    )
    if pair is None:
        with keeping("nothing is kept (a pair is cached only once trained)"):
            request = replace(request, pair=train_with_progress("small", seed).path)
    with keeping("nothing is kept (validate reports at the end)"):
        announce(
            f"validate: {request.calibration_prompts} calibration prompts; "
            f"{request.prompts} evaluation prompts x {request.repeats} rounds x non-SI, SI and "
            f"DSI, {request.tokens} tokens each, k = {request.lookahead}, "
            f"{request.servers} target server(s)"
        )
        with progress_bar("validate", 1) as bar:
            task = bar.task_ids[0]

            def report(phase: Phase, done: int, total: int) -> None:
                bar.update(task, description=PHASES[phase], completed=done, total=total)
                bar.refresh()

            if prompt_seeds is not None:
                results = validate_seeds(request, prompt_seeds, report)
            else:
                result = validate(request, report)
    console = output_console(json_path)
    if prompt_seeds is not None:
        console.print(render_seeds(results))
        if json_path is not None:
            write_json(seeds_to_json(results), json_path)
        _fail_on_disagreement(results)
        return
    console.print(render_validation(result))
    for calibration in result.calibrations.values():
        for warning in calibration.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if trace_out is not None:
        write_text(result.trace.to_json() + "\n", trace_out, "--trace-out")
        console.print(Text(f"wrote {trace_out}"))
    if profile_out is not None:
        command = shlex.join(["dsi-online", *sys.argv[1:]])
        write_text(profile_to_toml(result.profile(command)), profile_out, "--profile-out")
        console.print(Text(f"wrote {profile_out}"))
    if json_path is not None:
        write_json(to_json(result), json_path)
    _fail_on_disagreement([result])


def _fail_on_disagreement(results: list[ValidationResult]) -> None:
    """Exit code 1, one line, when a real output or transformers' disagrees (after the
    report and the files are written)."""
    failed = [line for result in results for line in disagreements(result)]
    if failed:
        typer.echo(f"validate failed: {'; '.join(failed)}", err=True)
        raise typer.Exit(1)


def parse_seeds(text: str) -> list[int]:
    """Prompt seeds from `1-6`, `1,3,5` or `4` (each >= 0, at most 100 of them, distinct)."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        ok = low.isdigit() and (not dash or high.isdigit())
        require(ok, f"seeds (--seeds) must look like 1-6 or 1,3,5; got {text!r}")
        first, last = int(low), int(high) if dash else int(low)
        require(first <= last, f"seeds (--seeds): a range must not descend; got {part!r}")
        seeds += range(first, min(last, first + 100) + 1)
    require(
        len(seeds) <= 100 and len(set(seeds)) == len(seeds),
        f"seeds (--seeds) must be at most 100 distinct seeds; got {text!r}",
    )
    return seeds
