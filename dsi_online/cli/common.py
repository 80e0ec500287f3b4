"""Helpers and conventions every command shares; new commands (`pair train`, `validate`)
should use them too:

- Options are declared once here and grouped in `--help` by panel: SCENARIO (what is
  simulated), EXECUTION (how: clock, workers, backend) and OUTPUT (where results go). Choices
  are `Literal` types, so help shows them (`wall|virtual`) and click refuses others.
- Every output path is checked before any work starts (`check_output`, `check_out_dir`), and
  written atomically, through symlinks, or straight into devices and FIFOs (`write_text`).
- Tables go to `output_console`: on a terminal at its width (tables are laid out to fit 80
  columns and fold rather than cut numbers), redirected with no width limit.
- Long work shows its size at once (`announce`) and a progress bar (`progress_bar`), and says
  what an interrupt keeps (`keeping`, from dsi_online.interrupts).
- Failures raise DSIOnlineError subclasses with one-line messages naming the option and its
  allowed range; `dsi_online.cli.main` prints them as `error: ...` and exits with code 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from dsi_online.errors import InvalidParameterError
from dsi_online.interrupts import keeping
from dsi_online.studies.results import (
    check_output_file,
    check_output_folder,
    resolve_path,
    write_output,
)

__all__ = ["keeping"]

SCENARIO = "Scenario"
EXECUTION = "Execution"
OUTPUT = "Output"

UNLIMITED_WIDTH = 10_000
"""Console width when output is redirected: lines are as long as their content."""


def make_console(*, stderr: bool = False) -> Console:
    """A console at the terminal's width, or with no width limit when redirected (a file or
    a pipe), so that no number is ever cut."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNLIMITED_WIDTH)


stderr = make_console(stderr=True)

ClockChoice = Literal["wall", "virtual"]
BackendChoice = Literal["process", "ray"]

# The options that define a scenario, shared by every command that builds one.
TargetMs = Annotated[
    float | None,
    typer.Option(
        help="Target TPOT, ms \\[default: 30].", show_default=False, rich_help_panel=SCENARIO
    ),
]
TargetTtftMs = Annotated[
    float | None,
    typer.Option(
        help="Target TTFT, ms \\[default: --target-ms].",
        show_default=False,
        rich_help_panel=SCENARIO,
    ),
]
DrafterMs = Annotated[
    float | None,
    typer.Option(
        help="Drafter TPOT, ms \\[default: 3].", show_default=False, rich_help_panel=SCENARIO
    ),
]
DrafterTtftMs = Annotated[
    float | None,
    typer.Option(
        help="Drafter TTFT, ms \\[default: --drafter-ms].",
        show_default=False,
        rich_help_panel=SCENARIO,
    ),
]
Acceptance = Annotated[
    float | None,
    typer.Option(
        "--acceptance",
        "-a",
        help="Acceptance rate in [0, 1] \\[default: 0.8, or the profile's].",
        show_default=False,
        rich_help_panel=SCENARIO,
    ),
]
Lookahead = Annotated[
    int, typer.Option("--lookahead", "-k", help="Drafts per chunk.", rich_help_panel=SCENARIO)
]
Servers = Annotated[
    int, typer.Option("--servers", "-n", help="DSI's target servers.", rich_help_panel=SCENARIO)
]
Tokens = Annotated[
    int, typer.Option("--tokens", "-S", help="Tokens to generate.", rich_help_panel=SCENARIO)
]
Seed = Annotated[
    int, typer.Option(help="Base seed of coins and latency draws.", rich_help_panel=SCENARIO)
]
LatencyCv = Annotated[
    float | None,
    typer.Option(
        help="Coefficient of variation of lognormal latencies; 0 = constant \\[default: 0].",
        show_default=False,
        rich_help_panel=SCENARIO,
    ),
]
ProfileName = Annotated[
    str | None,
    typer.Option(
        help="A profile: its name or a TOML path \\[default: none].",
        show_default=False,
        rich_help_panel=SCENARIO,
    ),
]
LatencyCorrelation = Annotated[
    float,
    typer.Option(
        help="Correlation in [0, 1] of the target servers' draws by decoding step "
        "(0 = independent).",
        rich_help_panel=SCENARIO,
    ),
]
CommMs = Annotated[
    float,
    typer.Option(
        help="Delay of each drafter<->target message, ms (0 = none).", rich_help_panel=SCENARIO
    ),
]
Concurrency = Annotated[
    int, typer.Option(help="Repeats played at once in one event loop.", rich_help_panel=EXECUTION)
]
# The options of commands that compute many cells into a results folder.
Workers = Annotated[
    int | None,
    typer.Option(
        help="Worker processes \\[default: all cores].",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]
BackendOption = Annotated[
    BackendChoice,
    typer.Option(help="process (local pool) or ray.", rich_help_panel=EXECUTION),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="Address of an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
        "(needs ray\\[client]) \\[default: a local Ray].",
        show_default=False,
        rich_help_panel=EXECUTION,
    ),
]


def given_path(text: str) -> Path:
    """A path option's value (the `parser` of every `Path` option): refused when empty, which
    pathlib would read as the current folder."""
    if not text.strip():
        raise ValueError(f"must name a file or folder; got {text!r}")
    return Path(text)


OutDir = Annotated[
    Path | None,
    typer.Option(
        parser=given_path,
        metavar="<path>",
        help="Output folder \\[default: results/COMMAND-<timestamp>].",
        show_default=False,
        rich_help_panel=OUTPUT,
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the interrupted run in --out, with the settings saved there.",
        rich_help_panel=OUTPUT,
    ),
]
Png = Annotated[
    bool | None,
    typer.Option(
        "--png/--no-png",
        help="Draw PNGs with matplotlib \\[default: when it is installed].",
        show_default=False,
        rich_help_panel=OUTPUT,
    ),
]
JsonPath = Annotated[
    str | None,
    typer.Option(
        "--json",
        help="Write the JSON document here ('-' = stdout) \\[default: none].",
        show_default=False,
        rich_help_panel=OUTPUT,
    ),
]


def output_console(json_path: str | None) -> Console:
    """Where tables go: stderr when the JSON document takes stdout."""
    return stderr if json_path == "-" else make_console()


def check_output(path: str | None, option: str) -> None:
    """Fail now, before any work, unless `path` ('-' = stdout) can be written."""
    if path is not None and path != "-":
        require_text(path, option)
        check_output_file(Path(path), option)


def check_outputs(paths: dict[str, str | None]) -> None:
    """check_output for each option's path, and no file (nor stdout) named by two options:
    the last write would replace the other's output. os.devnull may repeat."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        check_output(path, option)
        if path is None:
            continue
        key = path if path == "-" else str(resolve_path(Path(path), option))
        if key == os.devnull:
            continue
        if key in seen:
            what = "stdout, '-'," if key == "-" else path
            raise InvalidParameterError(
                f"{seen[key]} and {option} both name {what}; give each output its own file"
            )
        seen[key] = option


def require_text(path: str, option: str) -> None:
    """An empty path names nothing: refuse it in one line."""
    if not path.strip():
        raise InvalidParameterError(f"{option} must name a file or '-' (stdout); got ''")


def check_out_dir(path: Path, option: str = "out (--out)") -> None:
    """Fail now unless `path` is, or can be made, a writable folder."""
    check_output_folder(path, option)


def write_json(document: Any, path: str, option: str = "--json") -> None:
    """Write `document` to `path` ('-' = stdout), see write_text."""
    write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", path, option)


def write_text(text: str, path: str, option: str) -> None:
    """Write `text` to `path`: '-' is stdout (a failure there reaches main as an OSError);
    a file is replaced atomically, through a symlink to its target; a device or FIFO is
    written straight into."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_output(Path(path), text)
    except OSError as exc:
        raise InvalidParameterError(
            f"{option} must name a writable file; cannot write {path} ({exc.strerror or exc})"
        ) from None


def _plain(value: Any) -> Any:
    """A value as JSON stores it (tuples become lists, paths strings), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def _option_name(ctx: typer.Context, name: str) -> str:
    for param in ctx.command.params:
        if param.name == name and param.opts:
            return max(param.opts, key=len)
    return name


def resumed_options(ctx: typer.Context, saved: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`--resume` takes its settings from the folder: the saved value of every option in
    `saved` (keyed by parameter name). An option given on this command line must agree with
    the saved one; InvalidParameterError naming it otherwise."""
    values: dict[str, Any] = {}
    for name, stored in saved.items():
        given = ctx.params.get(name)
        source = ctx.get_parameter_source(name)
        explicit = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        if explicit and _plain(given) != _plain(stored):
            option = _option_name(ctx, name)
            raise InvalidParameterError(
                f"--resume takes the settings saved in {folder}, and {option} differs: given "
                f"{_plain(given)}, saved {_plain(stored)}; drop {option} or start a new --out"
            )
        values[name] = stored
    return values


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
        stderr.print(f"no PNG: matplotlib is not installed ({INSTALL_HINT})", markup=False)
        return False
    return True


def announce(text: str) -> None:
    """Say on stderr, before long work starts, how much work it is."""
    stderr.print(text, markup=False, highlight=False)


DESCRIPTION_WIDTH = 30
BAR_WIDTH = 20
"""Widths of a progress bar's description (cut with '…' beyond) and bar: its counters (done
of total, elapsed, remaining, 7 characters each when under 10 hours) show whole at 80."""


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    """A rich progress bar on a terminal's stderr, shown at once, that vanishes when done
    (its counters whole at 80 columns, see DESCRIPTION_WIDTH);
    nothing at all when stderr is redirected. It redraws on each update, from this thread:
    no refresh thread, so that process pools can still fork (see dsi_online.studies.parallel)."""
    counter = Column(no_wrap=True)
    progress = Progress(
        TextColumn(
            "[bold]{task.description}",
            table_column=Column(max_width=DESCRIPTION_WIDTH, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(table_column=counter),
        TimeElapsedColumn(table_column=counter),
        TimeRemainingColumn(table_column=counter),
        console=stderr,
        transient=True,
        auto_refresh=False,
        disable=not stderr.is_terminal,
    )
    with progress:
        progress.add_task(escape(description), total=total)
        progress.refresh()
        yield progress


def advance(progress: Progress, steps: int = 1) -> None:
    """Advance the only task of a bar made by `progress_bar`."""
    progress.advance(progress.task_ids[0], steps)
    progress.refresh()


def set_progress(progress: Progress, completed: int) -> None:
    """Set how much of the only task of a bar made by `progress_bar` is done."""
    progress.update(progress.task_ids[0], completed=completed)
    progress.refresh()
