"""What tests of several commands share: small command lines, the one-line error check, and
rendering a rich object at a given terminal width."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from dsi_online.cli import main

VIRTUAL = ["run", "--clock", "virtual"]
SMALL_HEATMAP = ["heatmap", "--ndim", "2", "--max-lookahead", "2", "-S", "20", "-r", "1"]
SMALL_HEATMAP += ["--workers", "1", "--no-png"]


def one_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, which must fail with exit code 2 and one `error:` line, the last on
    stderr (the size of the work may come before it); that line."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert "Traceback" not in captured.err and "('" not in errors[0]  # no Python tuples
    return errors[0]


def render(renderable: Any, width: int) -> str:
    """The text of `renderable` on a terminal `width` columns wide, without colour."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=True, color_system=None).print(renderable)
    return buffer.getvalue()
