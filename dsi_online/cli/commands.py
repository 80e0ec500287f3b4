"""Every command module, imported so that it registers on the app; the click command."""

from __future__ import annotations

import functools

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from dsi_online.cli import bench as _bench  # noqa: F401  (registers the command)
from dsi_online.cli import heatmap as _heatmap  # noqa: F401  (registers the command)
from dsi_online.cli import load as _load  # noqa: F401  (registers the command)
from dsi_online.cli import measure as _measure  # noqa: F401  (registers the command)
from dsi_online.cli import pair as _pair  # noqa: F401  (registers the command)
from dsi_online.cli import profiles as _profiles  # noqa: F401  (registers the command)
from dsi_online.cli import run as _run  # noqa: F401  (registers the command)
from dsi_online.cli import sweep as _sweep  # noqa: F401  (registers the command)
from dsi_online.cli import table as _table  # noqa: F401  (registers the command)
from dsi_online.cli import validate as _validate  # noqa: F401  (registers the command)
from dsi_online.cli.app import HELP_OPTIONS, app

__all__ = ["app", "command"]


@functools.cache
def command() -> TyperGroup:
    """The click command of the app, its help tidied (see `tidy_help`)."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)  # the app has several commands
    tidy_help(root)
    return root


def tidy_help(cmd: TyperCommand | TyperGroup) -> None:
    """Flags take no value, so their help shows no `<bool>` type: an empty metavar (which
    typer shows instead of the type) on every flag, the help options included."""
    context = typer.Context(cmd, help_option_names=list(HELP_OPTIONS))
    help_option = cmd.get_help_option(context)
    for param in [*cmd.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    if isinstance(cmd, TyperGroup):
        for sub in cmd.commands.values():
            assert isinstance(sub, TyperCommand | TyperGroup)  # typer builds only these
            tidy_help(sub)
