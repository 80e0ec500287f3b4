"""Output files and streams of every command: paths checked before any work, writes through
links, devices and FIFOs, a full stdout, and redirected output without a width limit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dsi_online.cli import main
from tests.helpers import VIRTUAL, one_error


@pytest.mark.subprocess
def test_json_to_a_full_stdout_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "dsi_online", *VIRTUAL, "-S", "20", "--json", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: cannot write to stdout: No space left on device"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        [*VIRTUAL, "-S", "20"],
        ["bench", "--quick"],
        ["profiles"],
        ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"],
        ["table", "tiny-llama-cpu", "-a", "0.8"],
        ["measure", "latency", "--target", "tiny-llama", "--device", "cpu"],
    ],
)
@pytest.mark.parametrize("where", ["/nonexistent/d/x.json", "/proc/x.json", "FOLDER"])
def test_json_path_is_checked_before_the_work(
    args: list[str], where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path) if where == "FOLDER" else where
    out = ["--out", str(tmp_path / "out")] if args[0] == "sweep" else []
    start = time.monotonic()
    line = one_error(capsys, [*args, *out, "--json", target])
    assert "--json" in line
    assert time.monotonic() - start < 5  # nothing ran (bench alone takes about 10 s)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*tmp"))  # no stray temporary file


@pytest.mark.parametrize("where", ["/nonexistent/d/x.toml", "/proc/x.toml"])
def test_measure_out_is_checked_before_measuring(
    where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["measure", "latency", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"]
    assert "--out" in one_error(capsys, [*args, "--out", where, "--device", "cpu"])


def test_json_writes_through_symlinks_and_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["lossless"] is True
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(received[0])["lossless"]
    assert not list(tmp_path.glob(".*tmp"))
    capsys.readouterr()


def test_redirected_output_has_no_width_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", "tiny-llama-cpu", "-a", "0.8", "-S", "20", "-r", "2"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "tiny-llama (architecture preset, random weights)" in out
    assert main([*VIRTUAL, "-S", "20"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "latency s" in out and "reserved GPU-s" in out
    assert main(["profiles"]) == 0
    assert "…" not in capsys.readouterr().out
