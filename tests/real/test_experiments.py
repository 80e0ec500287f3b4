"""The developer experiments behind docs/real.md (scripts/real_experiments.py): each runs on
the `test` pair and prints one JSON document."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.subprocess]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "real_experiments.py"
TINY = ["--seconds", "1", "--prompts", "2", "-S", "8", "--prompt", "16", "-k", "2", "-n", "2"]


def _experiments() -> Any:
    spec = importlib.util.spec_from_file_location("real_experiments", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


@pytest.mark.parametrize(
    "experiment", ["concurrency", "cancel", "costs", "numerics", "peer", "prefill"]
)
def test_each_experiment_prints_one_json_document(
    experiment: str, test_pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _experiments().main([experiment, "--pair", str(test_pair), *TINY, "--repeats", "1"])
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict) and document
