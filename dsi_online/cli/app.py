"""The typer application every command module registers itself on."""

import typer

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
)


@app.callback()
def _root() -> None:
    """Simulate non-SI, SI and DSI on an asyncio event loop, on the real or a virtual clock."""
