"""Fuzz every command with random valid and invalid option values (hypothesis, derandomised):
no traceback, no hang, and every failure is exactly one `error:` line with exit code 2.

Valid values are kept small (virtual clock, few tokens and repeats, one worker, no Ray, no
real measurement) so that the whole test runs in about a minute; invalid ones come from a list
of what users and scripts actually pass by mistake."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsi_online.cli import main

HANG_S = 60
"""An example that runs longer than this has hung (a valid one takes well under a second)."""

NASTY = [
    "",
    " ",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "-0",
    "1e300",
    "1e-300",
    "99999999999999999999",
    "abc",
    "1,2",
    "0x10",
    "1:",
    "=",
    "--",
    "-",
]
BAD_PATHS = ["", "/nonexistent/folder/x.json", "/proc/x.json", "/tmp", "/dev/full"]


class Hung(Exception):
    """An example ran past HANG_S."""


@contextmanager
def deadline() -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"no answer within {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def numbers(low: float, high: float) -> st.SearchStrategy[str]:
    return st.floats(low, high).map(lambda x: f"{x:.6g}")


def integers(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


def values(valid: st.SearchStrategy[str], extra: list[str] | None = None) -> st.SearchStrategy[str]:
    """Mostly valid values, often nasty ones."""
    return st.one_of(valid, valid, st.sampled_from(NASTY + (extra or [])))


SCENARIO = {
    "--target-ms": values(numbers(1, 100)),
    "--drafter-ms": values(numbers(0.01, 100)),
    "--target-ttft-ms": values(numbers(1, 100)),
    "--drafter-ttft-ms": values(numbers(0.01, 100)),
    "-a": values(numbers(0, 1), ["1.5"]),
    "-k": values(integers(1, 8)),
    "-n": values(integers(1, 8)),
    "-S": values(integers(1, 40)),
    "--seed": values(integers(0, 2**40), ["99999999999999999999999"]),
    "--latency-cv": values(numbers(0, 2), ["101"]),
    "--comm-ms": values(numbers(0, 5)),
    "--profile": values(st.just("tiny-llama-cpu"), ["no-such-profile", "/nonexistent.toml"]),
}
RESULTS = {
    "--backend": values(st.just("process"), ["mpi"]),
    "--ray-address": st.sampled_from(["nonsense", "127.0.0.1:1", "ray://x", "h:99999"]),
    "--workers": values(st.just("1"), ["0"]),
}

COMMANDS: dict[str, tuple[list[str], dict[str, st.SearchStrategy[str]]]] = {
    "run": (
        ["run", "--clock", "virtual"],
        {
            **SCENARIO,
            "-r": values(integers(1, 3)),
            "--concurrency": values(integers(1, 4)),
            "--engine": values(st.sampled_from(["async", "units"])),
            "--clock": st.sampled_from(["virtual", "sundial", ""]),
            "--json": values(st.just("-"), BAD_PATHS),
        },
    ),
    "sweep": (
        ["sweep", "--no-png", "--workers", "1", "--vary", "servers=1:2"],
        {
            **SCENARIO,
            **RESULTS,
            "-r": values(integers(1, 3)),
            "--vary": values(
                st.sampled_from(
                    [
                        "acceptance=0.5,0.9",
                        "lookahead=1:2",
                        "drafter_ms=1:3:2",
                        "latency_cv=0,0.5",
                        "comm_ms=0,1",
                        "servers=1:100000",
                        "servers=2:1",
                        "bogus=1:2",
                    ]
                )
            ),
            "--clock": st.sampled_from(["virtual", "sundial"]),
            "--resume": st.just(""),
            "--json": values(st.just("-"), BAD_PATHS),
        },
    ),
    "heatmap": (
        ["heatmap", "--no-png", "--workers", "1", "--ndim", "2", "--max-lookahead", "2"],
        {
            **RESULTS,
            "--ndim": values(integers(2, 4), ["100000"]),
            "--max-lookahead": values(integers(1, 3), ["100000"]),
            "--min-lookahead": values(integers(1, 3)),
            "-S": values(integers(1, 30)),
            "-r": values(integers(1, 2)),
            "-n": values(integers(1, 8)),
            "--seed": values(integers(0, 100)),
            "--engine": values(st.sampled_from(["units", "async"])),
            "--clock": st.sampled_from(["virtual", "wall", "sundial"]),
            "--target-ms": values(numbers(1, 50)),
            "--concurrency": values(integers(1, 8)),
            "--k-search": values(st.sampled_from(["all", "units"])),
            "--load": st.sampled_from(["/nonexistent.csv", "/proc/version", "/tmp"]),
            "--resume": st.just(""),
        },
    ),
    "table": (
        ["table", "tiny-llama-cpu", "-a", "0.8", "--max-lookahead", "2", "-S", "20", "-r", "2"],
        {
            "-a": values(numbers(0, 1)),
            "-S": values(integers(1, 30)),
            "-r": values(integers(1, 3)),
            "--seed": values(integers(0, 100)),
            "--max-lookahead": values(integers(1, 3), ["100000"]),
            "--max-servers": values(integers(1, 8)),
            "--csv": values(st.just("-"), BAD_PATHS),
            "--json": values(st.just("-"), BAD_PATHS),
        },
    ),
    "profiles": (["profiles"], {"--json": values(st.just("-"), BAD_PATHS)}),
    "profiles show": (
        ["profiles", "show", "tiny-llama-cpu"],
        {"--json": values(st.just("-"), BAD_PATHS)},
    ),
    "load": (
        [
            "load",
            "--workers",
            "1",
            "--requests",
            "12",
            "--warmup",
            "2",
            "-S",
            "8",
            "--rate",
            "1,4",
            "--gpus",
            "4",
            "--policy",
            "nonsi,si,dsi:2",
        ],
        {
            **SCENARIO,
            **RESULTS,
            "--rate": values(st.sampled_from(["0.5,2", "0.5:3:3", "1e-4"]), ["1e-5", "3:1:2"]),
            "--gpus": values(integers(3, 8)),
            "--policy": values(
                st.sampled_from(["nonsi", "si,adaptive", "dsi:2,adaptive"]), ["dsi:0", "dsi:99"]
            ),
            "--slo": values(st.sampled_from(["p99=2", "p50=0.5"]), ["p100=1", "p0=1", "q9=1"]),
            "--batch": values(integers(1, 3)),
            "--requests": values(integers(4, 16)),
            "--warmup": values(integers(0, 2)),
            "--json": values(st.just("-"), BAD_PATHS),
            "--csv": st.sampled_from(BAD_PATHS),
        },
    ),
}

# Commands whose valid runs are slow (a wall-clock suite, real models): fuzzed with at least
# one invalid value, which must be refused before any work starts.
REFUSED: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "validate": (
        ["validate"],
        {
            "-k": ["0", "abc", "65"],
            "-n": ["0", "-1"],
            "--prompts": ["0", "1", "x"],
            "--calibration-prompts": ["1", "x"],
            "--seeds": ["x", "3-1", "1,1", "-2"],
            "--prompt-bytes": ["0"],
            "-S": ["0", "abc"],
            "-r": ["0"],
            "--seed": ["-1", "x"],
            "--workers": ["fork", ""],
            "--calibration-samples": ["2", "101"],
            "--pair": ["/nonexistent/pair", "/tmp"],
            # not /dev/full: a full device is writable until written, at the end
            "--json": BAD_PATHS[:-1],
            "--trace-out": BAD_PATHS[:-1],
            "--profile-out": BAD_PATHS[:-1],
        },
    ),
    "pair train": (
        ["pair", "train", "--size", "test"],
        {"--size": ["huge", "", "TEST"], "--seed": ["-1", "abc", "1.5", "nan"]},
    ),
    "bench": (
        ["bench", "--quick"],
        {
            "--fail-above-pct": ["abc", "nan", "inf", "-1", "0", ""],
            "--min-forwards-per-s": ["abc", "nan", "-5", "0"],
            "--json": BAD_PATHS,
        },
    ),
    "measure latency": (
        ["measure", "latency", "--target", "tiny-llama", "--device", "cpu"],
        {
            "--samples": ["1", "0", "abc", "-3"],
            "--warmup": ["-1", "abc"],
            "--prompt-tokens": ["0", "x", "8,", ""],
            "--device": ["tpu", ""],
            "--dtype": ["int8", ""],
            "--out": ["/nonexistent/d/x.toml", "/proc/x.toml", "/tmp"],
            "--json": BAD_PATHS,
            "--target": ["/nonexistent/checkpoint", "./missing"],
        },
    ),
    "measure acceptance": (
        ["measure", "acceptance", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"],
        {
            "--prompts": ["/nonexistent.txt", "/tmp", "/proc/self/mem"],
            "-k": ["0", "abc"],
            "--bootstrap": ["5", "abc"],
            "--max-new-tokens": ["0", "-1"],
            "--profile": ["/nonexistent.toml", "/tmp"],
            "--json": ["", "/nonexistent/x.json"],
        },
    ),
}


def check(argv: list[str], capsys: pytest.CaptureFixture[str], refused: bool = False) -> int:
    """Run one command line: exit 0 or 2, no traceback, failures are one `error:` line;
    return the exit code."""
    with deadline():
        code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if refused:
        assert code == 2, (argv, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.splitlines()[-1] == errors[0], (argv, err)
    return code


def _argv(
    draw: st.DrawFn, base: list[str], options: dict[str, st.SearchStrategy[str]]
) -> list[str]:
    argv = list(base)
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        value = draw(options[name])
        argv += [name] if name == "--resume" else [name, value]
    return argv


@st.composite
def command_lines(draw: st.DrawFn, command: str, folder: Path) -> list[str]:
    base, options = COMMANDS[command]
    argv = _argv(draw, base, options)
    if command in ("sweep", "heatmap") and "--load" not in argv:
        argv += ["--out", tempfile.mkdtemp(dir=folder) + "/out"]
    return argv


@st.composite
def refused_lines(draw: st.DrawFn, command: str) -> list[str]:
    base, options = REFUSED[command]
    invalid = {name: st.sampled_from(choices) for name, choices in options.items()}
    argv = list(base)
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True))
    for name in names:
        argv += [name, draw(invalid[name])]
    return argv


FUZZ = settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_random_options_never_trace_back_or_hang(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # a value such as `--json nan` is a file name: write it there
    outcomes: list[int] = []

    @FUZZ
    @given(argv=command_lines(command, tmp_path))
    def fuzz(argv: list[str]) -> None:
        outcomes.append(check(argv, capsys))

    fuzz()
    assert set(outcomes) == {0, 2}, "the fuzzer must reach both working and refused runs"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    # bench with only --json /dev/full runs, and names the machine with `uname -p` (a process)
    [pytest.param(c, marks=pytest.mark.subprocess) if c == "bench" else c for c in sorted(REFUSED)],
)
def test_invalid_options_of_slow_commands_are_refused_at_once(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if command.startswith("measure"):
        pytest.importorskip("torch")

    @FUZZ
    @given(argv=refused_lines(command))
    def fuzz(argv: list[str]) -> None:
        check(argv, capsys, refused=True)

    fuzz()


def test_the_fuzzer_covers_every_command() -> None:
    from dsi_online.cli.commands import command

    root = command()
    names: set[str] = set()
    for name, sub in root.commands.items():  # type: ignore[attr-defined]
        children = getattr(sub, "commands", {})
        names |= {f"{name} {child}" for child in children} if children else {name}
        if name == "profiles":
            names.add("profiles")
    assert names <= set(COMMANDS) | set(REFUSED), names - set(COMMANDS) - set(REFUSED)
