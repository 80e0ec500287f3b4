"""Helpers every command shares: consoles, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dsi_online.errors import InvalidParameterError
from dsi_online.results import write_atomic

stderr = Console(stderr=True)

# The options that define a scenario, shared by every command that builds one.
TargetMs = Annotated[
    float | None, typer.Option(help="Target TPOT, ms \\[default: 30].", show_default=False)
]
TargetTtftMs = Annotated[
    float | None, typer.Option(help="Target TTFT, ms \\[default: --target-ms].")
]
DrafterMs = Annotated[
    float | None, typer.Option(help="Drafter TPOT, ms \\[default: 3].", show_default=False)
]
DrafterTtftMs = Annotated[
    float | None, typer.Option(help="Drafter TTFT, ms \\[default: --drafter-ms].")
]
Acceptance = Annotated[
    float | None,
    typer.Option("--acceptance", "-a", help="Acceptance rate in [0, 1] \\[default: 0.8]."),
]
Lookahead = Annotated[int, typer.Option("--lookahead", "-k", help="Drafts per chunk.")]
Servers = Annotated[int, typer.Option("--servers", "-n", help="DSI's target servers.")]
Tokens = Annotated[int, typer.Option("--tokens", "-S", help="Tokens to generate.")]
LatencyCv = Annotated[
    float | None,
    typer.Option(help="Coefficient of variation of lognormal latencies; 0 = constant."),
]
LatencyCorrelation = Annotated[
    float,
    typer.Option(
        help="Correlation in [0, 1] of the target servers' draws by decoding step "
        "(0 = independent).",
    ),
]
ProfileName = Annotated[str | None, typer.Option(help="A profile: shipped name or TOML path.")]
CommMs = Annotated[
    float, typer.Option(help="Delay of each drafter<->target message, ms (0 = none).")
]
# The options of commands that compute many cells into a results folder.
BackendOption = Annotated[str, typer.Option(help="process (local pool) or ray.")]
RayAddress = Annotated[
    str | None, typer.Option(help="Address of an existing Ray cluster (--backend ray).")
]
OutDir = Annotated[
    Path | None,
    typer.Option(help="Output folder (default: results/COMMAND-<timestamp>).", show_default=False),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")]
Png = Annotated[
    bool | None,
    typer.Option(
        "--png/--no-png",
        help="Draw PNGs with matplotlib (default: when it is installed).",
        show_default=False,
    ),
]
JsonPath = Annotated[
    str | None, typer.Option("--json", help="Write the JSON document here ('-' = stdout).")
]


def output_console(json_path: str | None) -> Console:
    """Where tables go: stderr when the JSON document takes stdout."""
    return stderr if json_path == "-" else Console()


def write_json(document: Any, path: str, option: str = "--json") -> None:
    """Write `document` to `path` ('-' = stdout), atomically for files."""
    write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", path, option)


def write_text(text: str, path: str, option: str) -> None:
    """Write `text` to `path` ('-' = stdout) through a temporary file: never half-written."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_atomic(Path(path), text)
    except OSError as exc:
        raise InvalidParameterError(
            f"{option} must name a writable file; cannot write {path} ({exc.strerror})"
        ) from None


def check_output(path: str | None, option: str) -> None:
    """Fail before any simulation runs when `path` lies in a folder that does not exist."""
    if path is not None and path != "-" and not Path(path).parent.is_dir():
        raise InvalidParameterError(
            f"{option} must name a file in an existing folder; {Path(path).parent} is not one"
        )


def default_out(command: str) -> Path:
    """A new timestamped results folder for `command`."""
    return Path("results") / time.strftime(f"{command}-%Y%m%d-%H%M%S")


def want_png(png: bool | None, command: str) -> bool:
    """--png needs matplotlib (MissingExtraError if absent); by default draw when it is there."""
    from dsi_online.reports.plots import INSTALL_HINT, matplotlib_available, pyplot

    if png is False:
        return False
    if png is True:
        pyplot(command)
        return True
    if not matplotlib_available():
        stderr.print(f"no PNG: matplotlib is not installed ({INSTALL_HINT})")
        return False
    return True


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    """A rich progress bar on stderr that vanishes when done; yields the Progress."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )
    with progress:
        progress.add_task(description, total=total)
        yield progress


def advance(progress: Progress, steps: int = 1) -> None:
    """Advance the only task of a bar made by `progress_bar`."""
    progress.advance(progress.task_ids[0], steps)
