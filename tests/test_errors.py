"""Library errors name parameters; the command line names its options for the same fault."""

from __future__ import annotations

import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.sim.scenario import Scenario


def test_a_python_caller_reads_the_parameter_the_command_line_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        Scenario.from_ms(
            target_ms=30, drafter_ms=3, acceptance=0.8, lookahead=0, servers=2, tokens=10
        )
    assert str(raised.value).startswith("lookahead must be an integer")
    assert "--" not in str(raised.value)
    assert raised.value.cli_message.startswith("lookahead (--lookahead/-k) must be an integer")
    assert main(["run", "--clock", "virtual", "-k", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value.cli_message}"


def test_only_option_annotations_are_dropped() -> None:
    error = InvalidParameterError("workers (--workers) must be >= 1; pass --resume (a flag)")
    assert str(error) == "workers must be >= 1; pass --resume (a flag)"
    assert error.cli_message == "workers (--workers) must be >= 1; pass --resume (a flag)"
