"""The package's shape (scripts/check_layout.py): imports point down the layers, no import
cycle, no module over 500 lines, no function over 80; the code cites the specification that
ships with it and no machine's absolute path."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _check_layout() -> object:
    spec = importlib.util.spec_from_file_location("check_layout", ROOT / "scripts/check_layout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_cycles_and_sizes() -> None:
    assert _check_layout().offences() == []  # type: ignore[attr-defined]


def test_a_higher_import_is_caught() -> None:
    layout = _check_layout()
    assert layout.layer("schedulers.dsi") < layout.layer("sim.clock")  # type: ignore[attr-defined]
    assert layout.cycles({"a": ["b"], "b": ["a"]}) == [["a", "b", "a"]]  # type: ignore[attr-defined]


def test_the_code_cites_docs_model_md_and_no_machine_path() -> None:
    assert (ROOT / "docs/model.md").is_file()
    offending = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("dsi_online", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "test_layout.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "MODEL" + ".md" in line or re.search(r"(?<![\w.])/(root|work)/\w", line)
    ]
    assert offending == []
