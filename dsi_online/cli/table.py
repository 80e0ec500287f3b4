"""`dsi-online table`: per profile, SI and DSI at their best lookahead against non-SI."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dsi_online.assumptions import notes
from dsi_online.cli.app import app
from dsi_online.cli.common import (
    EXECUTION,
    OUTPUT,
    SCENARIO,
    advance,
    check_outputs,
    keeping,
    output_console,
    progress_bar,
    write_json,
    write_text,
)
from dsi_online.cli.profiles import find_profile, warn_skipped
from dsi_online.errors import InvalidParameterError, ProfileError
from dsi_online.reports.run import COMPACT, number_column
from dsi_online.sim.profile import Profile, readable_profiles, user_profiles_dir
from dsi_online.sim.stats import Speedup
from dsi_online.studies.table import (
    TableConfig,
    TableRow,
    build_table,
    to_csv,
    to_json,
    total_repeats,
)


def load_profiles(names: list[str]) -> list[Profile]:
    """The named profiles, or every readable one (yours, then the shipped ones) when none is."""
    if names:
        return [find_profile(name) for name in names]
    profiles = [profile for _, profile in readable_profiles(warn_skipped)]
    if not profiles:
        raise ProfileError(
            f"no profiles found, neither shipped nor in {user_profiles_dir()}: make one with "
            "dsi-online measure latency, or name a profile file"
        )
    return profiles


def _speedup(s: Speedup) -> str:
    if s.ci_low is None or s.ci_high is None:
        return f"{s.value:.2f}x"
    mark = "" if s.conclusive else "?"
    return f"{s.value:.2f}x{mark}\n{s.ci_low:.2g}-{s.ci_high:.2g}"


def _servers(row: TableRow) -> str:
    if row.servers_capped:
        return f"{row.dsi_servers} of {row.dsi_servers_needed}"
    return str(row.dsi_servers)


def _title(config: TableConfig) -> str:
    return (
        f"SI and DSI at their best lookahead k in 1..{config.max_lookahead}; DSI on "
        f"ceil(1/(k c)) target servers, at most {config.max_servers}; virtual clock, "
        f"{config.tokens} tokens x {config.repeats} repeats, seed {config.seed}"
    )


def render_table(rows: list[TableRow], config: TableConfig) -> Group:
    """Two tables, one under the other, each within 80 columns: each profile's inputs
    (latencies, c, a), then its results (best k, servers, speedups with their 95% CI, GPU
    cost busy and reserved). Long profile names wrap; numbers are never cut."""
    inputs = Table(
        title=_title(config),
        caption="a: acceptance rate, (p) from the profile, (u) from --acceptance",
        **COMPACT,
    )
    inputs.add_column("profile", overflow="fold")
    for header in (
        "target\nTTFT ms",
        "target\nTPOT ms",
        "drafter\nTTFT ms",
        "drafter\nTPOT ms",
        "c",
        "a",
    ):
        number_column(inputs, header)
    results = Table(
        caption=(
            "SI/non-SI at SI's best k; DSI/non-SI at DSI's best k; DSI/SI: DSI at its best k "
            "over SI at its best k; under each speedup its 95% CI (paired repeats), '?' where "
            "it spans 1 (inconclusive). 'N of M' servers: the cap binds, DSI needs M. GPU-s "
            "busy: DSI's compute GPU-seconds over non-SI's; held: its reserved GPU-seconds "
            "(latency x GPUs held) over non-SI's."
        ),
        **COMPACT,
    )
    results.add_column("profile", overflow="fold")
    for header in (
        "k\nSI",
        "k\nDSI",
        "DSI\nservers",
        "SI/\nnon-SI",
        "DSI/\nnon-SI",
        "DSI/\nSI",
        "GPU-s\nbusy",
        "GPU-s\nheld",
    ):
        number_column(results, header)
    for row in rows:
        inputs.add_row(
            Text(row.profile),
            f"{row.target_ttft_ms:.3g}",
            f"{row.target_tpot_ms:.3g}",
            f"{row.drafter_ttft_ms:.3g}",
            f"{row.drafter_tpot_ms:.3g}",
            f"{row.c:.3g}",
            f"{row.acceptance:.3g} ({row.acceptance_source[0]})",
        )
        results.add_row(
            Text(row.profile),
            str(row.best_k_si),
            str(row.best_k_dsi),
            _servers(row),
            _speedup(row.si_over_nonsi),
            _speedup(row.dsi_over_nonsi),
            _speedup(row.dsi_over_si),
            f"{row.gpu_seconds_dsi_over_nonsi:.2f}x",
            f"{row.reserved_gpu_seconds_dsi_over_nonsi:.2f}x",
        )
    return Group(inputs, results)


def render_pairs(rows: list[TableRow]) -> Table:
    """Which target and drafter each profile pairs (names are too long for the main table)."""
    table = Table(**COMPACT)
    for header in ("profile", "target", "drafter"):
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(Text(row.profile), Text(row.target), Text(row.drafter))
    return table


@app.command()
def table(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Profiles (names or TOML paths); none: every profile, yours and shipped.",
            show_default=False,
        ),
    ] = None,
    acceptance: Annotated[
        float | None,
        typer.Option(
            "--acceptance",
            "-a",
            help="Acceptance rate in [0, 1] for every profile \\[default: each profile's own].",
            show_default=False,
            rich_help_panel=SCENARIO,
        ),
    ] = None,
    tokens: Annotated[
        int, typer.Option("--tokens", "-S", help="Tokens to generate.", rich_help_panel=SCENARIO)
    ] = 200,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="Repeats (seeds).", rich_help_panel=EXECUTION)
    ] = 10,
    seed: Annotated[
        int, typer.Option(help="Base seed of coins and latency draws.", rich_help_panel=SCENARIO)
    ] = 0,
    max_lookahead: Annotated[
        int,
        typer.Option(help="Search lookaheads k = 1..this; at most 100.", rich_help_panel=SCENARIO),
    ] = 10,
    max_servers: Annotated[
        int, typer.Option(help="Cap on DSI's target servers.", rich_help_panel=SCENARIO)
    ] = 8,
    csv_path: Annotated[
        str | None,
        typer.Option(
            "--csv",
            help="Write the CSV here ('-' = stdout) \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write the JSON document here ('-' = stdout) \\[default: none].",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
) -> None:
    """For each profile: SI's and DSI's best lookahead, DSI's servers, speedups and GPU cost."""
    config = TableConfig(
        acceptance=acceptance,
        tokens=tokens,
        repeats=repeats,
        seed=seed,
        max_lookahead=max_lookahead,
        max_servers=max_servers,
    )
    if csv_path == "-" and json_path == "-":
        raise InvalidParameterError("--csv and --json cannot both write to stdout ('-')")
    check_outputs({"--csv": csv_path, "--json": json_path})
    profiles = load_profiles(names or [])
    total = total_repeats(profiles, config)
    with (
        keeping("nothing is kept (table writes at the end)"),
        progress_bar("virtual clock: repeats", total) as bar,
    ):
        rows = build_table(profiles, config, progress=lambda n: advance(bar, n))
    console = output_console("-" if "-" in (csv_path, json_path) else None)
    console.print(render_table(rows, config))
    console.print(render_pairs(rows))
    variable = any(
        not (p.target.latency.is_constant and p.drafter.latency.is_constant) for p in profiles
    )
    priced = [p.name for p in profiles if p.target.latency.cost is not None]
    sentences = notes(
        variable_latency=variable,
        comm_delay=False,
        token_cost=bool(priced),
        only=priced if len(priced) < len(profiles) else (),
    )
    console.print(Text(" ".join(sentences)))
    if csv_path is not None:
        write_text(to_csv(rows), csv_path, "--csv")
    if json_path is not None:
        write_json({**to_json(rows), "notes": sentences}, json_path)
