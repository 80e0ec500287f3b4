"""Results on disk: output paths checked before any work starts, files written atomically
(or through, to devices and FIFOs), the settings file `--resume` checks, and append-only
journals whose last line an interrupt may have cut short."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, require


def resolve_path(path: Path, option: str) -> Path:
    """`path` with every symlink followed (a dangling link gives its target);
    InvalidParameterError naming the option for a symlink loop or an unreadable link."""
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13 reports a symlink loop so
        raise InvalidParameterError(f"{option} {path} is a symlink loop; name a file") from None
    except OSError as exc:
        raise InvalidParameterError(
            f"{option} {path} cannot be followed ({exc.strerror or exc})"
        ) from None


def _is_special(path: Path) -> bool:
    """A device, FIFO or socket: written through, never replaced by a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _probe_folder(folder: Path) -> str | None:
    """Why a new file cannot be created in `folder` (None: it can). Tries for real, which
    also tells the truth for root and on read-only file systems."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dsi-online-probe-"):
            pass
    except OSError as exc:
        return f"{folder} cannot be written ({exc.strerror or exc})"
    return None


def check_output_file(path: Path, option: str) -> None:
    """Raise InvalidParameterError now, before any work, unless `path` can be written: a file
    (through a symlink too) in a folder that exists and is writable, or a device or FIFO
    that can be opened for writing; never a folder."""
    target = resolve_path(path, option)
    if target.is_dir():
        raise InvalidParameterError(f"{option} {path} is a folder; name a file in it")
    if _is_special(target):
        require(
            os.access(target, os.W_OK), f"{option} {path} cannot be written (permission denied)"
        )
        return
    why = _probe_folder(target.parent)
    if why is not None:
        raise InvalidParameterError(f"{option} {path} cannot be written: {why}")


def check_output_folder(folder: Path, option: str) -> None:
    """Raise InvalidParameterError now unless `folder` is a writable folder or can be made
    one (its nearest existing ancestor is a writable folder)."""
    existing = resolve_path(folder, option)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InvalidParameterError(f"{option} {folder} cannot be made: {existing} is a file")
    why = _probe_folder(existing)
    if why is not None:
        raise InvalidParameterError(f"{option} {folder} cannot be written: {why}")


def write_output(path: Path, text: str) -> None:
    """Write `text` to `path`: through a symlink to its target, straight into a device or
    FIFO, else atomically (see write_atomic)."""
    target = path.resolve()
    if _is_special(target):
        with target.open("w", encoding="utf-8") as f:
            f.write(text)
        return
    write_atomic(target, text)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and os.replace: never half-written,
    and no temporary file is left behind when writing fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepare_out_dir(
    out_dir: Path, settings: dict[str, Any], settings_file: str, what: str, resume: bool
) -> None:
    """Create `out_dir` and record `settings` in it; with `resume`, check that it holds a
    `what` run made with the same settings instead. An OPTIONS key of `settings` (the
    command line's options, which `--resume` reuses) is stored but not compared."""
    settings_path = out_dir / settings_file
    wanted = json.loads(json.dumps(settings))
    if resume:
        stored = read_settings(out_dir, settings_file, what)
        require(
            _without_options(stored) == _without_options(wanted),
            f"--resume needs the settings of the {what} in {out_dir}; see its {settings_file}",
        )
        why = _probe_folder(out_dir)
        if why is not None:
            raise InvalidParameterError(f"out (--out) cannot be resumed: {why}")
        return
    check_output_folder(out_dir, "out (--out)")
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


OPTIONS = "options"


def _without_options(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key != OPTIONS}


def read_settings(out_dir: Path, settings_file: str, what: str) -> dict[str, Any]:
    """The settings stored in a results folder; InvalidParameterError (one line) when the
    folder holds none or the file is damaged."""
    settings_path = out_dir / settings_file
    require(
        out_dir.is_dir(), f"out (--out) {out_dir} is not a folder: there is no {what} to resume"
    )
    require(
        settings_path.is_file(),
        f"out (--out) {out_dir} holds no {what} to resume (no {settings_file})",
    )
    try:
        stored = json.loads(settings_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidParameterError(
            f"out (--out) {settings_path} cannot be read ({exc.strerror or exc})"
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidParameterError(
            f"out (--out) {settings_path} is damaged ({exc.__class__.__name__}): the {what} "
            "cannot be resumed; start a new --out"
        ) from None
    if not isinstance(stored, dict):
        raise InvalidParameterError(
            f"out (--out) {settings_path} is damaged (not a JSON object): the {what} cannot "
            "be resumed; start a new --out"
        )
    return stored


def complete_lines(path: Path) -> str:
    """The journal's text up to its last newline; a line cut short by an interrupt is
    dropped from the file too."""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except ValueError as exc:  # UnicodeDecodeError
        raise InvalidParameterError(
            f"{path} is damaged ({exc.__class__.__name__}); start a new --out"
        ) from None
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        write_atomic(path, complete)
    return complete
