"""--resume of heatmap and sweep: settings come from the folder, a different option is named,
a damaged or read-only folder is one line."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from dsi_online.cli import main
from tests.helpers import SMALL_HEATMAP, one_error


@pytest.mark.subprocess
def test_resume_takes_settings_from_the_folder_and_names_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "h"
    assert main([*SMALL_HEATMAP, "--out", str(out)]) == 0
    (out / "heatmap.csv").unlink()  # as if interrupted after the journal
    capsys.readouterr()
    assert main(["heatmap", "--resume", "--out", str(out), "--no-png", "--workers", "1"]) == 0
    assert "12 (c, a, k) cells" in capsys.readouterr().err
    line = one_error(capsys, ["heatmap", "--resume", "--out", str(out), "-S", "999"])
    assert "--tokens" in line and "999" in line and "20" in line
    sweep = tmp_path / "s"
    args = ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"]
    assert main([*args, "--out", str(sweep)]) == 0
    assert main(["sweep", "--resume", "--out", str(sweep), "--no-png", "-r", "2"]) == 0
    capsys.readouterr()
    line = one_error(capsys, ["sweep", "--resume", "--out", str(sweep), "--vary", "servers=1:3"])
    assert "--vary" in line


@pytest.mark.parametrize("settings", ["run.json", "sweep.json"])
def test_resume_of_a_damaged_folder_is_one_line(
    settings: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / settings).write_text("{not json", encoding="utf-8")
    command = "heatmap" if settings == "run.json" else "sweep"
    assert "damaged" in one_error(capsys, [command, "--resume", "--out", str(folder), "--no-png"])


@pytest.mark.subprocess
def test_resume_of_a_folder_that_cannot_be_written_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As root, permissions bind only a process that dropped its privileges: a forked child
    becomes `nobody` (pytest's folders are private, so this one lives in a public one)."""
    base = Path(tempfile.mkdtemp())
    base.chmod(0o755)
    out = base / "out"
    assert main([*SMALL_HEATMAP, "--out", str(out)]) == 0
    (out / "heatmap.csv").unlink()
    (out / "run.json").chmod(0o644)
    out.chmod(0o555)
    main(["heatmap", "--ndim", "0"])  # import what parsing needs before dropping privileges
    capsys.readouterr()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read)
        sys.stderr = os.fdopen(write, "w")
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        code = main(["heatmap", "--resume", "--out", str(out), "--no-png"])
        sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as child_err:
        err = child_err.read()
    _, status = os.waitpid(pid, 0)
    out.chmod(0o755)
    shutil.rmtree(base)
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert err.startswith("error: ") and "cannot be resumed" in err and err.count("\n") == 1
