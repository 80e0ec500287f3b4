"""The typer application every command module registers itself on, and its root options."""

from __future__ import annotations

from typing import Annotated

import typer

HELP_OPTIONS = ("-h", "--help")

app = typer.Typer(
    name="dsi-online",
    help=(
        "How much faster are speculative inference (SI) and Distributed Speculative "
        "Inference (DSI) than autoregressive decoding, for this target, drafter, "
        "hardware and GPU budget?"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": list(HELP_OPTIONS)},
)


def _version(value: bool) -> None:
    if value:
        from dsi_online import __version__

        typer.echo(f"dsi-online {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Simulate non-SI, SI and DSI on an asyncio event loop, on the real or a virtual clock."""
