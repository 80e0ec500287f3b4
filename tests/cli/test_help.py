"""Help and conventions of the command line: help without arguments, --version, -h, and
help panels that show choices, flags and defaults in one style."""

from __future__ import annotations

import re

import pytest

from dsi_online.cli import main


def test_no_arguments_prints_help_without_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    captured = capsys.readouterr()
    assert "Usage" in captured.out and "error" not in captured.err


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"dsi-online \d+\.\d+\.\d+\n", capsys.readouterr().out)
    assert main(["run", "-h"]) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["sweep"],
        ["heatmap"],
        ["table"],
        ["bench"],
        ["profiles"],
        ["measure", "latency"],
        ["measure", "acceptance"],
        ["validate"],
    ],
)
def test_help_panels_choices_flags_and_defaults(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from typer.core import TyperOption

    from dsi_online.cli.commands import command as root

    monkeypatch.setenv("COLUMNS", "200")
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text
    if command[0] != "profiles":
        assert "Output" in text and ("Scenario" in text or "Execution" in text)
    cmd = root()
    for name in command:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    for param in cmd.params:
        if not isinstance(param, TyperOption) or param.required or param.is_flag:
            continue
        shown = param.default is not None and param.show_default is not False
        assert shown or re.search("default:|Required", param.help or ""), param.name
    if command == ["run"]:
        assert "wall|virtual" in text and "async|units" in text
