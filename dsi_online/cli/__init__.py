"""The `dsi-online` command line: every command module registers on one typer app."""

from __future__ import annotations

import sys

import typer

from dsi_online.cli import bench as _bench  # noqa: F401  (registers the command)
from dsi_online.cli import heatmap as _heatmap  # noqa: F401  (registers the command)
from dsi_online.cli import measure as _measure  # noqa: F401  (registers the command)
from dsi_online.cli import pair as _pair  # noqa: F401  (registers the command)
from dsi_online.cli import profiles as _profiles  # noqa: F401  (registers the command)
from dsi_online.cli import run as _run  # noqa: F401  (registers the command)
from dsi_online.cli import sweep as _sweep  # noqa: F401  (registers the command)
from dsi_online.cli import table as _table  # noqa: F401  (registers the command)
from dsi_online.cli.app import app
from dsi_online.errors import DSIOnlineError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input exits with code 2 and one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="dsi-online", standalone_mode=False)
    except DSIOnlineError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.TyperException as exc:
        message = exc.format_message()
        if exc.exit_code == 2 and "\n" in message:  # no arguments: the message is the help
            typer.echo(message, err=True)
        else:
            typer.echo(f"error: {message}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
