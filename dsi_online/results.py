"""Results folders: files written atomically, the settings file `--resume` checks, and
append-only journals whose last line an interrupt may have cut short."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, require


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and os.replace: never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_out_dir(
    out_dir: Path, settings: dict[str, Any], settings_file: str, what: str, resume: bool
) -> None:
    """Create `out_dir` and record `settings` in it; with `resume`, check that it holds a
    `what` run made with the same settings instead."""
    settings_path = out_dir / settings_file
    wanted = json.loads(json.dumps(settings))
    if resume:
        require(
            settings_path.exists(),
            f"out (--out) {out_dir} holds no {what} to resume (no {settings_file})",
        )
        stored = json.loads(settings_path.read_text(encoding="utf-8"))
        require(
            stored == wanted,
            f"--resume needs the settings of the {what} in {out_dir}; see its {settings_file}",
        )
        return
    require(
        not settings_path.exists(),
        f"out (--out) {out_dir} already holds a {what}; pass --resume to continue it",
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(settings_path, json.dumps(wanted, indent=2) + "\n")
    except OSError as exc:
        raise InvalidParameterError(
            f"out (--out) {out_dir} cannot be written: {exc.strerror or exc}"
        ) from exc


def complete_lines(path: Path) -> str:
    """The journal's text up to its last newline; a line cut short by an interrupt is
    dropped from the file too."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        write_atomic(path, complete)
    return complete
