"""Fault and fuzz test of the real-model commands: `pair train`, `validate`, `measure`,
`profiles`, `table` and `run --profile/--acceptance-trace`, run as subprocesses
(`python -m dsi_online ...`) on inputs built here, in a temporary folder: the tiny `test`
pair (`dsi_online.pair.train_pair("test", seed=0)`, seconds), a copy of it whose drafter has
another vocabulary, malformed pair folders, profiles with each field corrupted several ways,
acceptance traces with bad versions and fields, and output paths that are symlink loops,
dangling links, links to empty folders, folders, the empty string, or one path given to two
outputs. Each case is one finding family of issue 17 (1: a drafter of another vocabulary and
malformed pairs, 2: bad profile fields and bad user profiles, 3: bad output paths, 4: one
path for two outputs, 5: `pair train --out`, 6: acceptance traces, 7: the assumptions
`table` states, 8: signals, 9: validate's latency interval, 10: terminal width and progress
counters, 11: timings under load), or 0 for other invalid option values.

A case HOLDS when it ends within its timeout; no output holds a traceback, a line that
starts as Python prints an exception (`ValueError: ...`) or a Python warning; it exits as
its expectation says: a bad input with code 2 and one `error:` line, the last on stderr,
that names the offending option or file (and, where stated, before any work); a bad user
profile with code 0 and a `warning: skipped` line naming it; a valid case with code 0 and
the outputs it was asked for; an interrupt with code 130; and no worker process
(`dsi_online.real.serve`) of the case outlives it by more than 5 s. Anything else FAILS.
Every case states its expectation; the failed ones are printed one line each (command,
expectation, what happened, the first relevant output line), then `N cases, H held, F
failed` and the counts by family.

    python scripts/fault_test.py [--only PATTERN] [--json FILE] [--jobs 2] [--keep] [--list]

--only runs the cases whose `family/name` matches the regular expression PATTERN (e.g.
`--only 'F1/|vocab'`; a case another one reads from runs too); --json writes every case's
result; --keep keeps the temporary folder (each case's stdout.txt and stderr.txt are in its
own folder there); --list lists the cases and runs none. Light cases run --jobs at a time,
the real-model ones (validate, measure, pair train, signals, load) one at a time: the whole
run takes about 6 minutes on 2 idle cores. Exit status 1 when a case failed. Needs Linux
(/proc, a pty) and the measure extra (torch, transformers); run it on an otherwise idle
machine, since two cases time forwards and signals.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import pty
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PYTHON = sys.executable
MARKER = "DSI_FAULT_TEST_CASE"
"""Environment variable every case's processes carry (workers inherit it): how the harness
finds the processes a case left behind."""
WORKER = "dsi_online.real.serve"
GONE_WITHIN_S = 5.0
INTERNALS = re.compile(
    r"Traceback \(most recent call last\)|^\s*(?:\w+\.)*[A-Z]\w*(?:Error|Exception):"
    r"|:\d+: [A-Z]\w*Warning: ",
    re.MULTILINE,
)
"""A traceback, a line that starts as Python prints an exception, or a Python warning. A
product error line may quote its cause (`error: ... did not load: SafetensorError: ...`):
that is one line the product wrote, not an exception that escaped it."""
CUT_NUMBER = re.compile(r"[\d.]…|…\d")
NEGATIVE_LOW = re.compile(r"(?<![\w.])-\d+(?:\.\d+)?-\d")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][AB0-2]|\x1b[=>78]")
LIGHT_S = 60.0
HEAVY_S = 240.0

Expect = Literal["ok", "refused", "warn", "either", "interrupted", "killed", "gone"]
FAMILIES = {
    "F0": "other invalid option values",
    "F1": "validate: a drafter of another vocabulary, malformed pairs",
    "F2": "bad profile fields, bad user profiles",
    "F3": "bad output paths: symlink loops, folders, ''",
    "F4": "one path given to two outputs",
    "F5": "pair train --out",
    "F6": "acceptance traces and run --profile",
    "F7": "assumptions table and run state",
    "F8": "signals: Ctrl-C and kill -9",
    "F9": "validate's latency interval",
    "F10": "terminal width, progress counters",
    "F11": "measure latency under load",
}


@dataclass
class Outcome:
    """What one case did."""

    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    elapsed: float = 0.0
    timed_out: bool = False
    leftover: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # found while it ran (signal cases)
    after_signal_s: float | None = None


Check = Callable[["Case", Outcome], str | None]
"""An extra check of a case's outcome: None, or what is wrong."""
Driver = Callable[["Case"], Outcome]


@dataclass
class Case:
    """One command line and what it must do."""

    family: str
    name: str
    argv: list[str]
    expect: Expect
    folder: Path
    names: tuple[str, ...] = ()  # what the error (or warning) line must name, every one
    outputs: tuple[Path, ...] = ()  # files or folders a valid case must write
    absent: tuple[Path, ...] = ()  # paths that must not exist afterwards
    env: dict[str, str] = field(default_factory=dict)
    columns: int = 80
    timeout: float = LIGHT_S
    heavy: bool = False  # runs alone (real models, timing, signals)
    before_work: str | None = None  # stderr must not hold this (the work's announcement)
    checks: list[tuple[str, Check]] = field(default_factory=list)
    driver: Driver | None = None
    needs: Case | None = None  # a case whose outputs this one reads (run before it)
    index: int = 0
    tag: str = ""

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def command(self) -> str:
        env = {"COLUMNS": str(self.columns), **self.env}
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        return f"{prefix} python -m dsi_online {shlex.join(self.argv)}"

    def expectation(self) -> str:
        named = f" naming {', '.join(repr(n) for n in self.names)}" if self.names else ""
        text = {
            "ok": "exit 0" + (f", writes {len(self.outputs)} output(s)" if self.outputs else ""),
            "refused": f"exit 2, one error line{named}"
            + (", before any work" if self.before_work else ""),
            "warn": f"exit 0 with one 'warning: skipped' line{named}",
            "either": f"exit 0, or exit 2 with one error line{named}",
            "interrupted": "exit 130 soon after the signal",
            "killed": "killed by SIGKILL",
            "gone": "ends (any exit code)",
        }[self.expect]
        extra = "".join(f"; {what}" for what, _ in self.checks)
        return f"{text}{extra}; no traceback; no worker left"


# --- running --------------------------------------------------------------------------------


def case_env(case: Case) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LINES", None)
    env.update(SETTINGS.env)
    env["COLUMNS"] = str(case.columns)
    env[MARKER] = case.tag
    env.update(case.env)
    return env


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def marked(tag: str) -> dict[int, str]:
    """Live processes of a case (by MARKER in their environment), with their command lines."""
    needle = f"\0{MARKER}={tag}\0".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = b"\0" + Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ and _state(int(entry)) not in ("Z", "X"):
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def workers_of(tag: str) -> dict[int, str]:
    return {pid: cmd for pid, cmd in marked(tag).items() if WORKER in cmd}


def left_behind(tag: str, within: float = GONE_WITHIN_S) -> list[str]:
    """The processes of a case still alive `within` seconds from now (then killed)."""
    deadline = time.monotonic() + within
    while (alive := marked(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid} ({cmd[:80]})" for pid, cmd in alive.items()]


def launch(case: Case, argv: list[str] | None = None, stdout: Any = None) -> subprocess.Popen[Any]:
    """Start the case's command (or `argv`) in its own session; output to files."""
    with contextlib.ExitStack() as files:  # the child keeps its own copies
        if stdout is None:
            stdout = files.enter_context((case.folder / "stdout.txt").open("wb"))
        err = files.enter_context((case.folder / "stderr.txt").open("wb"))
        return subprocess.Popen(
            [PYTHON, "-m", "dsi_online", *(case.argv if argv is None else argv)],
            cwd=case.folder,
            env=case_env(case),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=err,
            start_new_session=True,
        )


def _kill_group(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)


def wait(case: Case, process: subprocess.Popen[Any], started: float, outcome: Outcome) -> None:
    """Wait for the process within the case's timeout (killed past it), then collect."""
    try:
        outcome.code = process.wait(timeout=max(0.1, started + case.timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        outcome.timed_out = True
        _kill_group(process)
        outcome.code = process.wait()
    outcome.elapsed = time.monotonic() - started
    outcome.stdout = _read(case.folder / "stdout.txt") or outcome.stdout
    outcome.stderr = _read(case.folder / "stderr.txt")
    outcome.leftover = left_behind(case.tag)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def plain(case: Case) -> Outcome:
    outcome = Outcome()
    started = time.monotonic()
    wait(case, launch(case), started, outcome)
    return outcome


def on_terminal(stream: Literal["stdout", "stderr"], rows: int = 40) -> Driver:
    """A driver that gives the case a terminal (a pty `case.columns` wide) as `stream`; the
    other goes to its file. What the terminal showed replaces that stream's text."""

    def drive(case: Case) -> Outcome:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, case.columns, 0, 0))
        shown = bytearray()

        def read() -> None:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                shown.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        outcome = Outcome()
        case.env.setdefault("TERM", "xterm")
        started = time.monotonic()
        if stream == "stdout":
            process = launch(case, stdout=slave)
        else:
            process = subprocess.Popen(
                [PYTHON, "-m", "dsi_online", *case.argv],
                cwd=case.folder,
                env=case_env(case),
                stdin=subprocess.DEVNULL,
                stdout=(case.folder / "stdout.txt").open("wb"),
                stderr=slave,
                start_new_session=True,
            )
        os.close(slave)
        wait(case, process, started, outcome)
        reader.join(timeout=5)
        os.close(master)
        text = shown.decode(errors="replace")
        (case.folder / f"{stream}.tty.txt").write_text(text, encoding="utf-8")
        if stream == "stdout":
            outcome.stdout = text
        else:
            outcome.stderr = text
        return outcome

    return drive


def interrupt(
    when: Callable[[Case, float], bool],
    signum: int,
    group: bool,
    deadline_s: float = 60.0,
    then: Callable[[Case, Outcome], None] | None = None,
) -> Driver:
    """A driver that sends `signum` (to the process group, as a terminal's Ctrl-C does, or
    to the command's process alone) once `when(case, seconds since start)` holds."""

    def drive(case: Case) -> Outcome:
        outcome = Outcome()
        started = time.monotonic()
        process = launch(case)
        sent = None
        while process.poll() is None and time.monotonic() - started < deadline_s:
            if when(case, time.monotonic() - started):
                sent = time.monotonic()
                if group:
                    os.killpg(process.pid, signum)
                else:
                    os.kill(process.pid, signum)
                break
            time.sleep(0.02)
        if sent is None:
            outcome.problems.append(
                "the signal was never sent: the command "
                + ("ended first" if process.poll() is not None else "never reached its moment")
            )
        wait(case, process, started, outcome)
        if sent is not None:
            outcome.after_signal_s = outcome.elapsed - (sent - started)
        if then is not None:
            then(case, outcome)
        return outcome

    return drive


def run_case(case: Case) -> tuple[Case, Outcome]:
    case.folder.mkdir(parents=True, exist_ok=True)
    try:
        outcome = (case.driver or plain)(case)
    except Exception as exc:  # a harness failure is a failed case, never a lost run
        outcome = Outcome(problems=[f"harness error: {exc.__class__.__name__}: {exc}"])
    return case, outcome


# --- judging ----------------------------------------------------------------------------------


def judge(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with the outcome (empty: the case held)."""
    problems = list(outcome.problems)
    if outcome.timed_out:
        problems.append(f"no end within {case.timeout:.0f} s (killed)")
    for where, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        found = INTERNALS.search(text)
        if found:
            problems.append(f"{where} holds Python internals ({found.group(0)!r})")
    if outcome.leftover:
        problems.append(f"left {len(outcome.leftover)} process(es): {outcome.leftover[0]}")
    code = outcome.code
    lines = [line for line in ANSI.sub("", outcome.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if code == 2 or case.expect == "refused":
        if code != 2 and not outcome.timed_out:
            problems.append(f"exit {code}, not 2")
        elif len(errors) != 1:
            problems.append(f"{len(errors)} error lines, not 1")
        elif lines[-1] != errors[0]:
            problems.append("the error line is not the last line of stderr")
        elif code == 2:
            missing = [name for name in case.names if name not in errors[0]]
            if missing:
                problems.append(f"the error does not name {', '.join(map(repr, missing))}")
        if code == 2 and case.expect not in ("refused", "either"):
            problems.append("refused a valid case")
        if case.before_work and case.before_work in outcome.stderr:
            problems.append(f"refused only after the work began ({case.before_work!r} shown)")
    elif case.expect in ("ok", "either", "warn") and code != 0 and not outcome.timed_out:
        problems.append(f"exit {code}, not 0")
    if case.expect in ("ok", "warn") and code == 0:
        for path in case.outputs:
            if not path.exists():
                problems.append(f"did not write {path.name}")
            elif path.is_file() and path.stat().st_size == 0 and not path.is_char_device():
                problems.append(f"wrote an empty {path.name}")
    if case.expect == "warn" and code == 0:
        skipped = [line for line in lines if line.startswith("warning: skipped")]
        if len(skipped) != 1:
            problems.append(f"{len(skipped)} 'warning: skipped' lines, not 1")
        else:
            missing = [name for name in case.names if name not in skipped[0]]
            if missing:
                problems.append(f"the warning does not name {', '.join(map(repr, missing))}")
    if case.expect == "interrupted" and code != 130:
        problems.append(f"exit {code}, not 130")
    if case.expect == "killed" and code != -signal.SIGKILL:
        problems.append(f"exit {code}, not killed by SIGKILL")
    for path in case.absent:
        if path.exists() or path.is_symlink():
            problems.append(f"{path.name} exists afterwards")
    for what, check in case.checks:
        try:
            wrong = check(case, outcome)
        except Exception as exc:
            wrong = f"{what}: the check failed ({exc.__class__.__name__}: {exc})"
        if wrong:
            problems.append(wrong)
    return problems


def first_line(outcome: Outcome) -> str:
    """The first relevant line of what the case printed."""
    text = ANSI.sub("", f"{outcome.stderr}\n{outcome.stdout}")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in (INTERNALS, re.compile(r"^error:"), re.compile(r"^warning:")):
        for line in lines:
            if pattern.search(line):
                return line
    err = [line.strip() for line in outcome.stderr.splitlines() if line.strip()]
    return (err[-1] if err else lines[0] if lines else "(no output)")[:300]


# --- inputs -----------------------------------------------------------------------------------


@dataclass
class Settings:
    root: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    pair: Path = Path()  # the test pair, in the harness's cache
    vocab_pair: Path = Path()  # its copy with a drafter of 300 tokens
    no_profiles: Path = Path()  # an empty $DSI_ONLINE_PROFILES


SETTINGS = Settings()

COST = (
    "cost = { tokens = [1, 2, 4], mean_ms = [2.0, 2.5, 3.0], reference_context = 64, "
    "attention_ns = 0.0, layers = 2, contended = 1.0 }"
)
PROFILE = f"""name = "faulty"
[provenance]
source = "written by hand for a test"
hardware = "none"
date = "2026-12-06"
command = "none"
[target]
name = "t"
ttft = {{ kind = "constant", ms = 30.0 }}
tpot = {{ kind = "constant", ms = 30.0 }}
{COST}
[drafter]
name = "d"
ttft = {{ kind = "constant", ms = 3.0 }}
tpot = {{ kind = "constant", ms = 3.0 }}
[acceptance]
rate = 0.8
source = "by hand"
by_position = [0.9, 0.8]
ci95 = [0.7, 0.9]
samples = 100
"""
TRACE: dict[str, Any] = {
    "format": "dsi-online acceptance trace",
    "version": 1,
    "source": "by hand",
    "traces": ["11011101111011111101", "01111011101111101110"],
}
TINY = ["--prompts", "2", "--calibration-prompts", "2", "--prompt-bytes", "16", "-S", "8"]
TINY += ["-r", "1", "--calibration-samples", "3"]
VIRTUAL = ["run", "--clock", "virtual", "-S", "10", "-r", "1"]
TABLE = ["-S", "10", "-r", "1", "--max-lookahead", "2"]
ANNOUNCE_VALIDATE = "validate: "
ANNOUNCE_TRAIN = "pair train: training"


def work_begun(argv: list[str]) -> str | None:
    """What the command prints on stderr once its work begins (a refusal must come before
    it), for the commands that announce their work: validate and pair train."""
    if argv[0] == "validate":
        return ANNOUNCE_VALIDATE
    return ANNOUNCE_TRAIN if argv[:2] == ["pair", "train"] else None


def write_profile(path: Path, old: str = "", new: str = "") -> Path:
    assert old in PROFILE, old
    path.write_text(PROFILE.replace(old, new, 1), encoding="utf-8")
    return path


PROMPTS = "def f(x):\n    return x\n"
"""A prompts file for `measure acceptance --prompts`: one short prompt."""


def write_prompts(folder: Path) -> None:
    """`folder/prompts.txt` with PROMPTS."""
    (folder / "prompts.txt").write_text(PROMPTS)


def write_trace(path: Path, **changes: Any) -> Path:
    document = {**TRACE, **changes}
    for key, value in changes.items():
        if value is DROP:
            del document[key]
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


DROP = object()


def loop_at(folder: Path, name: str = "loop") -> Path:
    """Two links that point to each other; the first."""
    first, second = folder / name, folder / f"{name}-other"
    first.symlink_to(second)
    second.symlink_to(first)
    return first


def copy_pair(folder: Path, name: str = "pair") -> Path:
    target = folder / name
    shutil.copytree(SETTINGS.pair, target)
    return target


def edit_config(config: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    data = json.loads(config.read_text(encoding="utf-8"))
    change(data)
    config.write_text(json.dumps(data), encoding="utf-8")


def prepare(root: Path) -> None:
    """The test pair (trained into the harness's cache) and its copy with a drafter of
    another vocabulary."""
    cache = root / "cache"
    SETTINGS.root = root
    SETTINGS.no_profiles = root / "no-profiles"
    SETTINGS.no_profiles.mkdir()
    SETTINGS.env = {
        "DSI_ONLINE_CACHE": str(cache),
        "DSI_ONLINE_PROFILES": str(SETTINGS.no_profiles),
    }
    os.environ["DSI_ONLINE_CACHE"] = str(cache)
    from dsi_online.measure.torch_runtime import transformers_module
    from dsi_online.pair import train_pair

    SETTINGS.pair = train_pair("test", seed=0).path
    transformers = transformers_module()
    vocab = root / "inputs" / "vocab-pair"
    shutil.copytree(SETTINGS.pair, vocab)
    config = transformers.AutoConfig.from_pretrained(vocab / "drafter")
    config.vocab_size = 300
    shutil.rmtree(vocab / "drafter")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(vocab / "drafter")
    SETTINGS.vocab_pair = vocab


# --- checks -----------------------------------------------------------------------------------


def contains(text: str, where: Literal["stdout", "stderr"] = "stdout") -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        shown = " ".join(getattr(outcome, where).split())
        return None if text in shown else f"{where} lacks {text!r}"

    return f"{where} says {text!r}", check


def lacks(text: str, where: Literal["stdout", "stderr"] = "stdout") -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        shown = " ".join(getattr(outcome, where).split())
        return f"{where} says {text!r}" if text in shown else None

    return f"{where} does not say {text!r}", check


def no_cut_numbers() -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        found = CUT_NUMBER.search(ANSI.sub("", outcome.stdout))
        return f"a number is cut: {found.group(0)!r}" if found else None

    return "no number cut with '…'", check


def no_tmp_folders(*folders: Path) -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        left = [p for folder in folders if folder.exists() for p in folder.rglob(".tmp-*")]
        return f"left {left[0]}" if left else None

    return "no .tmp- folder left", check


def positive_intervals(document: Path) -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        found = NEGATIVE_LOW.search(outcome.stdout)
        if found:
            return f"printed a negative interval {found.group(0)!r}..."
        data = json.loads(document.read_text(encoding="utf-8"))
        for name, algorithm in data["algorithms"].items():
            for key in ("actual_ci95_s", "predicted_ci95_s"):
                interval = algorithm.get(key)
                if interval is not None and not 0 < interval[0] <= interval[1]:
                    return f"{name} {key} = {interval}"
        for name, speedup in data["speedups"].items():
            for key in ("actual_ci95", "predicted_ci95"):
                interval = speedup.get(key)
                if interval is not None and not 0 < interval[0] <= interval[1]:
                    return f"{name} {key} = {interval}"
        return None

    return "every 95% interval positive", check


def json_acceptance(document: Path, rate: float | Path) -> tuple[str, Check]:
    """The run's JSON simulates this acceptance rate (or that of this trace file)."""

    def check(case: Case, outcome: Outcome) -> str | None:
        want = trace_rate(rate) if isinstance(rate, Path) else rate
        got = json.loads(document.read_text(encoding="utf-8"))["scenario"]["acceptance"]
        return None if math.isclose(got, want, abs_tol=1e-9) else f"acceptance {got}, not {want}"

    what = "the trace's rate" if isinstance(rate, Path) else f"{rate}"
    return f"simulates acceptance {what}", check


def table_notes_printed(document: Path) -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        notes = " ".join(json.loads(document.read_text(encoding="utf-8"))["notes"])
        shown = " ".join(outcome.stdout.split())
        return None if " ".join(notes.split()) in shown else "stdout lacks the JSON's notes"

    return "prints the notes its JSON holds", check


def interrupted_within(seconds: float) -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        took = outcome.after_signal_s
        if took is not None and took > seconds:
            return f"exited {took:.1f} s after the signal (more than {seconds} s)"
        return None

    return f"exits within {seconds} s of the signal", check


def counters_shown() -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        frames = re.split(r"[\r\n]", ANSI.sub("", outcome.stderr))
        for frame in frames:
            if "measuring" in frame and re.search(r"\d+/\d+ .*\d:\d\d:\d\d", frame):
                return None
        bars = [f.strip() for f in frames if "measuring" in f]
        return f"no bar frame shows its counters: {bars[-1] if bars else '(no bar)'!r}"

    return "progress bar shows done/total and the time", check


def timings_flagged(document: Path) -> tuple[str, Check]:
    """A forward of n tokens slower than 1.5x n decoding steps, or a drift over 1.5x, is
    warned about (the product's own statistics, recomputed here)."""

    def check(case: Case, outcome: Outcome) -> str | None:
        data = json.loads(document.read_text(encoding="utf-8"))
        warned = "\n".join(data.get("warnings", []))
        for role in ("target", "drafter"):
            model = data.get(role)
            if not model:
                continue
            step = statistics.median(model["tpot_s"])
            for count in model["by_tokens"]:
                n, median = count["tokens"], statistics.median(count["samples_s"])
                if n >= 2 and median / (n * step) > 1.5 and f"forward of {n} tokens" not in warned:
                    return f"{role}: {n} tokens took {median * 1e3:.3g} ms, no warning"
        if warned and "warning:" not in outcome.stderr:
            return "the JSON's warnings were not printed"
        return None

    return "unstable timings are warned about", check


# --- the cases --------------------------------------------------------------------------------


class Suite:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def folder(self) -> Path:
        folder = self.root / "cases" / f"{len(self.cases) + 1:03d}"
        folder.mkdir(parents=True)
        return folder

    def add(self, family: str, name: str, argv: Iterable[str], expect: Expect, **kw: Any) -> Case:
        folder = kw.pop("folder", None) or self.folder()
        case = Case(family, name, list(argv), expect, folder, **kw)
        case.index = len(self.cases) + 1
        case.tag = f"{os.getpid()}-{case.index}"
        self.cases.append(case)
        return case


def f1_pairs(suite: Suite) -> None:
    vocab = str(SETTINGS.vocab_pair)
    up_front = {"before_work": ANNOUNCE_VALIDATE}
    for extra in ([], ["--workers", "thread"], ["--seeds", "1,2"], ["-n", "2"]):
        suite.add(
            "F1", f"vocabulary {' '.join(extra) or 'default'}",
            ["validate", "--pair", vocab, *TINY, *extra], "refused",
            names=("--pair", "300", "256"), **up_front,
        )  # fmt: skip
    damages: list[tuple[str, Callable[[Path], object], tuple[str, ...]]] = [
        ("no pair.toml", lambda p: (p / "pair.toml").unlink(), ("--pair",)),
        ("pair.toml not TOML", lambda p: (p / "pair.toml").write_text("= ["), ("pair.toml",)),
        ("no target folder", lambda p: shutil.rmtree(p / "target"), ("target",)),
        ("no drafter config", lambda p: (p / "drafter/config.json").unlink(), ("drafter",)),
        ("config not JSON", lambda p: (p / "target/config.json").write_text("{"), ("target",)),
        ("config a list", lambda p: (p / "target/config.json").write_text("[]"), ("target",)),
        ("no weights", lambda p: (p / "drafter/model.safetensors").unlink(), ("drafter",)),
    ]
    for key, value in [
        ("num_hidden_layers", DROP), ("num_hidden_layers", "four"), ("num_hidden_layers", 0),
        ("num_hidden_layers", -1), ("num_hidden_layers", 1.5), ("num_hidden_layers", True),
        ("model_type", DROP), ("vocab_size", DROP), ("vocab_size", "256"), ("vocab_size", 512),
    ]:  # fmt: skip

        def change(p: Path, key: str = key, value: object = value) -> None:
            def apply(data: dict[str, Any]) -> None:
                if value is DROP:
                    del data[key]
                else:
                    data[key] = value

            edit_config(p / "drafter" / "config.json", apply)

        shown = "missing" if value is DROP else json.dumps(value)
        damages.append((f"config {key} {shown}", change, ("drafter",)))
    for name, damage, names in damages:
        folder = suite.folder()
        broken = copy_pair(folder)
        damage(broken)
        suite.add(
            "F1", name, ["validate", "--pair", str(broken), *TINY], "refused",
            names=names, folder=folder, **up_front,
        )  # fmt: skip
    for role, data in (("drafter", b"not weights"), ("target", None)):
        folder = suite.folder()
        broken = copy_pair(folder)
        weights = broken / role / "model.safetensors"
        weights.write_bytes(data if data is not None else weights.read_bytes()[:1000])
        suite.add(
            "F1", f"{role} weights that do not load", ["validate", "--pair", str(broken), *TINY],
            "refused", names=(role,), folder=folder, heavy=True, timeout=120,
        )  # fmt: skip
    cases = [("a file", "pair.toml", True), ("missing", "/nonexistent/pair", False)]
    cases += [("''", "", False), ("'' where the folder holds a pair.toml", "", True)]
    for name, value, holds in cases:
        folder = suite.folder()
        if holds:
            (folder / "pair.toml").write_text("x")
        suite.add(
            "F1", f"--pair {name}", ["validate", "--pair", value, *TINY], "refused",
            names=("--pair",), folder=folder, **up_front,
        )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F1", "--pair a symlink loop", ["validate", "--pair", str(loop_at(folder)), *TINY],
        "refused", names=("--pair",), folder=folder, **up_front,
    )  # fmt: skip


PROFILE_FIELDS: list[tuple[str, str, str, Expect, tuple[str, ...]]] = [
    # (what is replaced, by what, a name for the case, expectation, what the error names)
    ("ci95 = [0.7, 0.9]", "ci95 = [0.5]", "ci95 [0.5]", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = []", "ci95 []", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = [0.9, 0.7]", "ci95 descending", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = [0.7, 0.9, 1.0]", "ci95 of 3", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = [nan, 0.9]", "ci95 nan", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", 'ci95 = "0.7-0.9"', "ci95 a string", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = [-0.1, 0.9]", "ci95 negative", "refused", ("'ci95'",)),
    ("ci95 = [0.7, 0.9]", "ci95 = [0.1, 0.2]", "ci95 without the rate", "refused", ("'ci95'",)),
    ("by_position = [0.9, 0.8]", 'by_position = "high"', "by_position a string", "refused",
     ("'by_position'",)),
    ("by_position = [0.9, 0.8]", "by_position = [0.9, nan]", "by_position nan", "refused",
     ("'by_position'",)),
    ("by_position = [0.9, 0.8]", "by_position = [1.2]", "by_position 1.2", "refused",
     ("'by_position'",)),
    ("by_position = [0.9, 0.8]", "by_position = [-0.1]", "by_position negative", "refused",
     ("'by_position'",)),
    ("by_position = [0.9, 0.8]", "by_position = []", "by_position []", "ok", ()),
    ("samples = 100", 'samples = "many"', "samples a string", "refused", ("'samples'",)),
    ("samples = 100", "samples = 0", "samples 0", "refused", ("'samples'",)),
    ("samples = 100", "samples = -5", "samples negative", "refused", ("'samples'",)),
    ("samples = 100", "samples = 1.5", "samples 1.5", "refused", ("'samples'",)),
    ("samples = 100", "samples = inf", "samples inf", "refused", ("'samples'",)),
    ("samples = 100", "", "samples missing", "ok", ()),
    ("rate = 0.8", "rate = 1.5", "rate 1.5", "refused", ("'rate'",)),
    ("rate = 0.8", "rate = nan", "rate nan", "refused", ("'rate'",)),
    ("rate = 0.8", 'rate = "0.8"', "rate a string", "refused", ("'rate'",)),
    ("rate = 0.8", "", "rate missing", "refused", ("'rate'",)),
    ('source = "by hand"', "", "acceptance source missing", "refused", ("'source'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = inf }',
     "ms inf", "refused", ("'ms'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = nan }',
     "ms nan", "refused", ("'ms'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = -30.0 }',
     "ms negative", "refused", ("ttft",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = 0 }',
     "ms 0", "refused", ("ttft",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = "30" }',
     "ms a string", "refused", ("'ms'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant" }',
     "ms missing", "refused", ("'ms'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "gamma", ms = 30.0 }',
     "kind unknown", "refused", ("'kind'",)),
    ('ttft = { kind = "constant", ms = 30.0 }', "ttft = 30.0", "ttft a number", "refused",
     ("ttft",)),
    ('tpot = { kind = "constant", ms = 30.0 }', 'tpot = { kind = "lognormal", mean_ms = 30.0, '
     "cv = -1.0 }", "cv negative", "refused", ("tpot",)),
    ('tpot = { kind = "constant", ms = 30.0 }', 'tpot = { kind = "empirical", samples_ms = [] }',
     "samples_ms []", "refused", ("tpot",)),
    ('tpot = { kind = "constant", ms = 30.0 }',
     'tpot = { kind = "empirical", samples_ms = [30.0, nan] }', "samples_ms nan", "refused",
     ("'samples_ms'",)),
    ('tpot = { kind = "constant", ms = 30.0 }',
     'tpot = { kind = "empirical", samples_ms = [-1.0, 2.0] }', "samples_ms negative",
     "refused", ("tpot",)),
    ('tpot = { kind = "constant", ms = 30.0 }',
     'tpot = { kind = "empirical", samples_ms = "30" }', "samples_ms a string", "refused",
     ("'samples_ms'",)),
    ("reference_context = 64", "reference_context = inf", "reference_context inf", "refused",
     ("'reference_context'",)),
    ("reference_context = 64", "reference_context = -1", "reference_context negative",
     "refused", ("'reference_context'",)),
    ("reference_context = 64", "reference_context = 1.5", "reference_context 1.5", "refused",
     ("'reference_context'",)),
    ("reference_context = 64", 'reference_context = "64"', "reference_context a string",
     "refused", ("'reference_context'",)),
    ("layers = 2", "layers = nan", "layers nan", "refused", ("'layers'",)),
    ("layers = 2", "layers = 0", "layers 0", "refused", ("'layers'",)),
    ("layers = 2", "layers = 1.5", "layers 1.5", "refused", ("'layers'",)),
    ("layers = 2, ", "", "layers missing", "refused", ("'layers'",)),
    ("tokens = [1, 2, 4]", "tokens = [1, 2.5, 4]", "tokens 2.5", "refused", ("'tokens'",)),
    ("tokens = [1, 2, 4]", "tokens = [4, 2, 1]", "tokens descending", "refused", ("cost",)),
    ("tokens = [1, 2, 4]", "tokens = [0, 1, 2]", "tokens from 0", "refused", ("cost",)),
    ("tokens = [1, 2, 4]", "tokens = []", "tokens []", "refused", ("cost",)),
    ("mean_ms = [2.0, 2.5, 3.0]", "mean_ms = [2.0, 2.5]", "mean_ms of 2 for 3 tokens",
     "refused", ("cost",)),
    ("mean_ms = [2.0, 2.5, 3.0]", "mean_ms = [2.0, -2.5, 3.0]", "mean_ms negative", "refused",
     ("cost",)),
    ("mean_ms = [2.0, 2.5, 3.0]", "mean_ms = [2.0, inf, 3.0]", "mean_ms inf", "refused",
     ("'mean_ms'",)),
    ("attention_ns = 0.0", "attention_ns = nan", "attention_ns nan", "refused",
     ("'attention_ns'",)),
    ("contended = 1.0", "contended = 0.0", "contended 0", "refused", ("cost",)),
    ("contended = 1.0", "contended = inf", "contended inf", "refused", ("'contended'",)),
    ("contended = 1.0", "contended = 1.0, transit_ms = [0.1]", "transit_ms of 1", "refused",
     ("'transit_ms'",)),
    ("contended = 1.0", "contended = 1.0, prefill_tokens = 1.5, prefill_ms = 5.0",
     "prefill_tokens 1.5", "refused", ("'prefill_tokens'",)),
    ("contended = 1.0", "contended = 1.0, prefill_tokens = -3, prefill_ms = 5.0",
     "prefill_tokens negative", "refused", ("cost",)),
    ("contended = 1.0", 'contended = 1.0, prefill = "maybe"', "prefill unknown", "refused",
     ("'prefill'",)),
    ("contended = 1.0", 'contended = 1.0, interruptible = "yes"', "interruptible a string",
     "refused", ("'interruptible'",)),
    ("contended = 1.0", "contended = 1.0, idle_ms = [1.0]", "idle_ms without factors",
     "refused", ("cost",)),
    ("contended = 1.0", "contended = 1.0, ratios = [0.0]", "ratios 0", "refused", ("cost",)),
    ("contended = 1.0", "contended = 1.0, crowded = [nan]", "crowded nan", "refused",
     ("'crowded'",)),
    (COST, "cost = 5", "cost a number", "refused", ("cost",)),
    ('name = "faulty"', "name = 7", "name 7", "refused", ("'name'",)),
    ('name = "faulty"', 'name = ""', "name ''", "refused", ("'name'",)),
    ('name = "faulty"', "", "name missing", "ok", ()),
    ('source = "written by hand for a test"', "", "provenance source missing", "refused",
     ("'source'",)),
    ('[target]\nname = "t"', '[targets]\nname = "t"', "no [target]", "refused", ("target",)),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = 1e308 }',
     "ms 1e308", "either", ()),
    ('ttft = { kind = "constant", ms = 30.0 }', 'ttft = { kind = "constant", ms = 1e-300 }',
     "ms 1e-300", "either", ()),
]  # fmt: skip
ORIGINAL = {"ci95 [0.5]", "by_position a string", "samples a string", "reference_context inf"}
ORIGINAL |= {"layers nan"}


def profile_commands(path: Path, folder: Path) -> list[tuple[str, list[str], tuple[Path, ...]]]:
    """The three commands that read a profile, each with an output to write when valid."""
    return [
        ("profiles show", ["profiles", "show", str(path), "--json", str(folder / "s.json")],
         (folder / "s.json",)),
        ("run --profile", [*VIRTUAL, "--profile", str(path), "--json", str(folder / "r.json")],
         (folder / "r.json",)),
        ("table", ["table", str(path), *TABLE, "--csv", str(folder / "t.csv")],
         (folder / "t.csv",)),
    ]  # fmt: skip


def f2_profiles(suite: Suite) -> None:
    for number, (old, new, name, expect, names) in enumerate(PROFILE_FIELDS):
        which = range(3) if name in ORIGINAL else [number % 3]
        for index in which:
            folder = suite.folder()
            path = write_profile(folder / "p.toml", old, new)
            command, argv, outputs = profile_commands(path, folder)[index]
            suite.add(
                "F2", f"{name}: {command}", argv, expect, names=(str(path), *names),
                outputs=outputs, folder=folder,
            )  # fmt: skip
    files: list[tuple[str, Callable[[Path], object], tuple[str, ...]]] = [
        ("not TOML", lambda p: p.write_text("name = \n"), ("TOML",)),
        ("empty", lambda p: p.write_text(""), ("provenance",)),
        ("binary", lambda p: p.write_bytes(b"\xff\xfe\x00bad"), ()),
        ("a folder", lambda p: p.mkdir(), ()),
        ("missing", lambda p: None, ()),
        ("a symlink loop", lambda p: loop_at(p.parent, p.name), ()),
    ]
    for number, (name, make, names) in enumerate(files):
        folder = suite.folder()
        path = folder / "p.toml"
        make(path)
        command, argv, _ = profile_commands(path, folder)[number % 3]
        suite.add("F2", f"file {name}: {command}", argv, "refused", names=(str(path), *names),
                  folder=folder)  # fmt: skip
    f2_user_profiles(suite)


def f2_user_profiles(suite: Suite) -> None:
    """A bad file among the user's profiles is skipped with a warning."""
    shadow = PROFILE.replace('name = "faulty"', 'name = "tiny-llama-cpu"', 1)
    bad_files: list[tuple[str, str, str, int | None]] = [
        # (a name for it, what is replaced in PROFILE, by what, the command (None: all))
        ("layers nan", "layers = 2", "layers = nan", None),
        ("ci95 [0.5]", "ci95 = [0.7, 0.9]", "ci95 = [0.5]", 1),
        ("not TOML", PROFILE, "name = \n", 2),
        ("empty", PROFILE, "", 4),
        ("named like a shipped one", PROFILE, shadow.replace("layers = 2", "layers = nan"), 3),
    ]
    commands: list[tuple[str, list[str], str]] = [
        ("profiles", ["profiles", "--json", "list.json"], "list.json"),
        ("table of all", ["table", "-a", "0.8", *TABLE, "--json", "t.json"], "t.json"),
        ("table by name", ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE], ""),
        ("run --profile", [*VIRTUAL, "--profile", "tiny-llama-cpu", "-a", "0.8"], ""),
        ("profiles show", ["profiles", "show", "good"], ""),
    ]
    for name, old, new, command_index in bad_files:
        which = range(len(commands)) if command_index is None else [command_index]
        for index in which:
            folder = suite.folder()
            profiles = folder / "profiles"
            profiles.mkdir()
            bad = profiles / "bad.toml"
            bad.write_text(PROFILE.replace(old, new, 1), encoding="utf-8")
            write_profile(profiles / "good.toml", 'name = "faulty"', 'name = "good"')
            command, argv, output = commands[index]
            named = (str(bad), "'layers'") if "layers = nan" in new else (str(bad),)
            suite.add(
                "F2", f"user profile {name}: {command}", argv, "warn", names=named,
                folder=folder, env={"DSI_ONLINE_PROFILES": str(profiles)},
                outputs=(folder / output,) if output else (),
            )  # fmt: skip
    folder = suite.folder()
    (folder / "profiles").mkdir()
    write_profile(folder / "profiles" / "bad.toml", "layers = 2", "layers = nan")
    suite.add(
        "F2", "user profile asked for by its broken name", ["profiles", "show", "bad"], "refused",
        names=("bad",), folder=folder, env={"DSI_ONLINE_PROFILES": str(folder / "profiles")},
    )  # fmt: skip
    for name, argv in (
        ("profiles show", ["profiles", "show", "p.toml", "--json", "s.json"]),
        ("run --profile", [*VIRTUAL, "--profile", "p.toml", "--json", "s.json"]),
        ("table", ["table", "p.toml", *TABLE, "--json", "s.json"]),
    ):
        folder = suite.folder()
        write_profile(folder / "p.toml")
        suite.add("F2", f"valid profile: {name}", argv, "ok", folder=folder,
                  outputs=(folder / "s.json",))  # fmt: skip


def f3_outputs(suite: Suite) -> None:
    pair = str(SETTINGS.pair)
    target, drafter = f"{pair}/target", f"{pair}/drafter"
    measure = ["measure", "latency", "--target", target, "--drafter", drafter, "--device", "cpu"]
    measure += ["--prompt-tokens", "4", "--samples", "4", "--warmup", "0"]
    accept = ["measure", "acceptance", "--target", target, "--drafter", drafter, "--device"]
    accept += ["cpu", "--prompts", "prompts.txt", "--max-new-tokens", "4", "--bootstrap", "100"]
    outputs: list[tuple[str, list[str], str]] = [
        ("validate --trace-out", ["validate", "--pair", pair, *TINY], "--trace-out"),
        ("validate --profile-out", ["validate", "--pair", pair, *TINY], "--profile-out"),
        ("validate --json", ["validate", "--pair", pair, *TINY], "--json"),
        ("table --json", ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE], "--json"),
        ("table --csv", ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE], "--csv"),
        ("run --json", [*VIRTUAL, "--profile", "tiny-llama-cpu", "-a", "0.8"], "--json"),
        ("profiles --json", ["profiles"], "--json"),
        ("profiles show --json", ["profiles", "show", "tiny-llama-cpu"], "--json"),
        ("pair train --out", ["pair", "train", "--size", "test"], "--out"),
        ("measure latency --out", measure, "--out"),
        ("measure latency --json", measure, "--json"),
        ("measure acceptance --trace-out", accept, "--trace-out"),
        ("measure acceptance --json", accept, "--json"),
    ]
    for name, argv, option in outputs:
        folder = suite.folder()
        write_prompts(folder)
        loop = loop_at(folder, "out.json" if option != "--out" else "out")
        suite.add(
            "F3", f"symlink loop as {name}", [*argv, option, str(loop)], "refused",
            names=("symlink loop", str(loop)), folder=folder, before_work=work_begun(argv),
        )  # fmt: skip
    bad: list[tuple[str, Callable[[Path], str], tuple[str, ...]]] = [
        ("a folder", lambda f: str(f), ("folder",)),
        ("''", lambda f: "", ("''",)),
        ("in a missing folder", lambda f: str(f / "missing" / "x.json"), ("missing",)),
        ("under /proc", lambda f: "/proc/x.json", ("/proc/x.json",)),
        ("a link into a missing folder", lambda f: _link(f, "link.json", f / "no/x.json"),
         ("link.json",)),
        ("under a file", lambda f: _file_below(f), ("file",)),
    ]  # fmt: skip
    for number, (name, make, names) in enumerate(bad):
        for index in (number % 4, 4 + number % 4):
            label, argv, option = outputs[[0, 1, 2, 3, 4, 5, 10, 12][index]]
            folder = suite.folder()
            write_prompts(folder)
            path = make(folder)
            suite.add(
                "F3", f"{name} as {label}", [*argv, option, path], "refused",
                names=(option, *names), folder=folder, before_work=work_begun(argv),
            )  # fmt: skip
    folder = suite.folder()
    link = _link(folder, "link.json", folder / "real.json")
    suite.add(
        "F3", "dangling link to a new file as table --json",
        ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE, "--json", link], "ok",
        outputs=(folder / "real.json",), folder=folder,
        checks=[("the link stays a link", lambda c, o: None if Path(link).is_symlink()
                 else "the link was replaced")],
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F3", "/dev/null as table --json and --csv",
        ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE, "--json", "/dev/null", "--csv",
         "/dev/null"], "ok", folder=folder,
    )  # fmt: skip


def _link(folder: Path, name: str, to: Path) -> str:
    (folder / name).symlink_to(to)
    return str(folder / name)


def _file_below(folder: Path) -> str:
    (folder / "file").write_text("x")
    return str(folder / "file" / "x.json")


def f4_twice(suite: Suite) -> None:
    pair, target = str(SETTINGS.pair), f"{SETTINGS.pair}/target"
    drafter = f"{SETTINGS.pair}/drafter"
    measure = ["measure", "latency", "--target", target, "--drafter", drafter, "--device", "cpu"]
    accept = ["measure", "acceptance", "--target", target, "--drafter", drafter]
    accept += ["--prompts", "prompts.txt", "--device", "cpu"]
    cases: list[tuple[str, list[str]]] = [
        ("validate --trace-out X --profile-out X --json X",
         ["validate", "--pair", pair, *TINY, "--trace-out", "X", "--profile-out", "X", "--json",
          "X"]),
        ("validate --trace-out X --profile-out X",
         ["validate", "--pair", pair, *TINY, "--trace-out", "X", "--profile-out", "X"]),
        ("validate --json X --profile-out LINK",
         ["validate", "--pair", pair, *TINY, "--json", "X", "--profile-out", "LINK"]),
        ("validate --json X --trace-out ./sub/../X",
         ["validate", "--pair", pair, *TINY, "--json", "X", "--trace-out", "./sub/../X"]),
        ("validate --json - --trace-out -",
         ["validate", "--pair", pair, *TINY, "--json", "-", "--trace-out", "-"]),
        ("table --csv X --json X", ["table", "tiny-llama-cpu", "-a", "0.8", "--csv", "X",
                                    "--json", "X"]),
        ("table --csv - --json -", ["table", "tiny-llama-cpu", "-a", "0.8", "--csv", "-",
                                    "--json", "-"]),
        ("table --csv X --json ABS", ["table", "tiny-llama-cpu", "-a", "0.8", "--csv", "X",
                                      "--json", "ABS"]),
        ("measure latency --out X --json X", [*measure, "--out", "X", "--json", "X"]),
        ("measure acceptance --trace-out X --json LINK",
         [*accept, "--trace-out", "X", "--json", "LINK"]),
        ("measure acceptance --profile P --json P",
         [*accept, "--profile", "P", "--json", "P"]),
    ]  # fmt: skip
    for name, argv in cases:
        folder = suite.folder()
        (folder / "sub").mkdir()
        (folder / "LINK").symlink_to(folder / "X")
        write_prompts(folder)
        write_profile(folder / "P")
        paths = {"ABS": str(folder / "X")}
        names = (
            ("--csv", "--json", "stdout") if name == "table --csv - --json -" else ("both name",)
        )
        suite.add(
            "F4", name, [paths.get(a, a) for a in argv], "refused", names=names,
            absent=(folder / "X",), folder=folder, before_work=work_begun(argv),
        )  # fmt: skip


def f5_pair_out(suite: Suite) -> None:
    train = ["pair", "train", "--size", "test", "--out"]
    pairs = SETTINGS.pair.parent
    heavy = {"heavy": True, "timeout": 120.0}
    folder = suite.folder()
    (folder / "empty").mkdir()
    (folder / "link").symlink_to(folder / "empty")
    suite.add(
        "F5", "--out a link to an empty folder", [*train, "link"], "ok",
        outputs=(folder / "empty" / "pair.toml",), folder=folder,
        checks=[no_tmp_folders(folder, pairs),
                ("the link stays a link", lambda c, o: None if (c.folder / "link").is_symlink()
                 else "the link was replaced")], **heavy,
    )  # fmt: skip
    folder = suite.folder()
    (folder / "link").symlink_to(folder / "missing" / "pair")
    suite.add(
        "F5", "--out a dangling link into a new folder", [*train, "link"], "ok",
        outputs=(folder / "missing" / "pair" / "pair.toml",), folder=folder,
        checks=[no_tmp_folders(folder, pairs)], **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add("F5", "--out a new folder", [*train, "new/pair"], "ok", folder=folder,
              outputs=(folder / "new" / "pair" / "pair.toml",),
              checks=[no_tmp_folders(folder, pairs)], **heavy)  # fmt: skip
    folder = suite.folder()
    (folder / "empty").mkdir()
    suite.add("F5", "--out an empty folder", [*train, "empty"], "ok", folder=folder,
              outputs=(folder / "empty" / "pair.toml",), **heavy)  # fmt: skip
    folder = suite.folder()
    copy_pair(folder, "held")
    suite.add("F5", "--out a folder holding the same pair", [*train, "held"], "ok",
              folder=folder, outputs=(folder / "held" / "pair.toml",), **heavy)  # fmt: skip
    folder = suite.folder()
    other = copy_pair(folder, "other")
    info = other / "pair.toml"
    info.write_text(re.sub(r'key = "\w+"', 'key = "' + "0" * 64 + '"', info.read_text()))
    suite.add(
        "F5", "--out a folder holding another pair", [*train, str(other)], "refused",
        names=("--out", str(other), "another pair"), folder=folder, before_work=ANNOUNCE_TRAIN,
    )  # fmt: skip
    makers: list[tuple[str, Callable[[Path], str], tuple[str, ...]]] = [
        ("a dangling link to /proc", lambda f: _link(f, "dangling", Path("/proc/no-such")), ()),
        ("a symlink loop", lambda f: str(loop_at(f)), ("symlink loop",)),
        ("a non-empty folder", _nonempty, ("not empty",)),
        ("a file", _file, ("not a folder",)),
        ("under a file", _file_below, ()),
        ("under /proc", lambda f: "/proc/pair", ()),
        ("''", lambda f: "", ("must name a folder",)),
        ("' '", lambda f: " ", ("must name a folder",)),
    ]
    for name, make, names in makers:
        folder = suite.folder()
        out = make(folder)
        suite.add(
            "F5", f"--out {name}", [*train, out], "refused",
            names=("--out", *([out] if out.strip() else []), *names), folder=folder,
            before_work=ANNOUNCE_TRAIN, absent=(folder / "pair.toml",),
            checks=[no_tmp_folders(folder, pairs), names_no_tmp()],
        )  # fmt: skip


def names_no_tmp() -> tuple[str, Check]:
    def check(case: Case, outcome: Outcome) -> str | None:
        return "the error names a .tmp- folder" if ".tmp-" in outcome.stderr else None

    return "names no internal .tmp- folder", check


def _nonempty(folder: Path) -> str:
    (folder / "full").mkdir()
    (folder / "full" / "x").write_text("x")
    return str(folder / "full")


def _file(folder: Path) -> str:
    (folder / "afile").write_text("x")
    return str(folder / "afile")


def f6_traces(suite: Suite) -> None:
    folder = suite.folder()
    trace = str(write_trace(folder / "tr.json"))
    suite.add(
        "F6", "a trace gives tiny-llama-cpu its acceptance",
        [*VIRTUAL, "-r", "2", "--profile", "tiny-llama-cpu", "--acceptance-trace", trace,
         "--json", "r.json"], "ok",
        outputs=(folder / "r.json",), folder=folder,
        checks=[json_acceptance(folder / "r.json", 0.775)],
    )  # fmt: skip
    folder = suite.folder()
    trace = str(write_trace(folder / "tr.json"))
    suite.add("F6", "a trace without a profile", [*VIRTUAL, "--acceptance-trace", trace], "ok",
              folder=folder)  # fmt: skip
    folder = suite.folder()
    trace = str(write_trace(folder / "tr.json"))
    path = folder / "p.toml"
    path.write_text(PROFILE.split("[acceptance]")[0], encoding="utf-8")
    suite.add(
        "F6", "a trace for a profile without acceptance",
        [*VIRTUAL, "--profile", str(path), "--acceptance-trace", trace], "ok", folder=folder,
    )  # fmt: skip
    folder = suite.folder()
    trace = str(write_trace(folder / "tr.json"))
    suite.add(
        "F6", "a trace and -a",
        [*VIRTUAL, "--profile", "tiny-llama-cpu", "--acceptance-trace", trace, "-a", "0.5"],
        "refused", names=("--acceptance-trace",), folder=folder,
    )  # fmt: skip
    folder = suite.folder()
    trace = str(write_trace(folder / "tr.json"))
    suite.add(
        "F6", "-S longer than the trace",
        ["run", "--clock", "virtual", "-r", "1", "-S", "30", "--acceptance-trace", trace],
        "refused", names=("--tokens",), folder=folder,
    )  # fmt: skip
    changes: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        (f"version {json.dumps(v) if v is not DROP else 'missing'}", {"version": v},
         ("unsupported version",))
        for v in (99, None, "1", True, 0, 2, -1, 1.5, DROP)
    ]  # fmt: skip
    changes += [
        ("format other", {"format": "a trace"}, ("not a dsi-online acceptance trace",)),
        ("format missing", {"format": DROP}, ("not a dsi-online acceptance trace",)),
        ("traces missing", {"traces": DROP}, ("'traces'",)),
        ("traces []", {"traces": []}, ()),
        ("traces ['']", {"traces": [""]}, ()),
        ("traces ['1102']", {"traces": ["1102"]}, ()),
        ("traces [1, 0]", {"traces": [1, 0]}, ("'traces'",)),
        ("traces a string", {"traces": "1101"}, ("'traces'",)),
        ("source missing", {"source": DROP}, ("'source'",)),
        ("source ''", {"source": ""}, ("'source'",)),
        ("source 5", {"source": 5}, ("'source'",)),
    ]
    for number, (name, change, names) in enumerate(changes):
        folder = suite.folder()
        trace = str(write_trace(folder / "tr.json", **change))
        profile = ["--profile", "tiny-llama-cpu"] if number % 2 == 0 else []
        suite.add(
            "F6", f"trace {name}", [*VIRTUAL, *profile, "--acceptance-trace", trace], "refused",
            names=("--acceptance-trace", trace, *names), folder=folder,
        )  # fmt: skip
    documents: list[tuple[str, Callable[[Path], object]]] = [
        ("a list", lambda p: p.write_text("[]")),
        ("null", lambda p: p.write_text("null")),
        ("not JSON", lambda p: p.write_text("{")),
        ("empty", lambda p: p.write_text("")),
        ("binary", lambda p: p.write_bytes(b"\xff\xfe\x00")),
        ("a folder", lambda p: p.mkdir()),
        ("missing", lambda p: None),
        ("a symlink loop", lambda p: loop_at(p.parent, p.name)),
    ]
    for number, (name, make) in enumerate(documents):
        folder = suite.folder()
        make(folder / "tr.json")
        profile = ["--profile", "tiny-llama-cpu"] if number % 2 == 0 else []
        trace = str(folder / "tr.json")
        suite.add(
            "F6", f"trace file {name}", [*VIRTUAL, *profile, "--acceptance-trace", trace],
            "refused", names=("--acceptance-trace", trace), folder=folder,
        )  # fmt: skip
    suite.add(
        "F6", "trace file ''", [*VIRTUAL, "--acceptance-trace", ""], "refused",
        names=("--acceptance-trace", "''"),
    )  # fmt: skip
    suite.add("F6", "profile ''", [*VIRTUAL, "--profile", ""], "refused", names=("''",))


TOKEN_COST_NOTE = "prices each forward by the tokens it processes"
FALSE_NOTE = "does not depend on how many tokens it verifies"


def f7_assumptions(suite: Suite) -> None:
    folder = suite.folder()
    write_profile(folder / "p0.toml", 'name = "faulty"', 'name = "p0"')
    suite.add(
        "F7", "table of a token-cost profile",
        ["table", "p0.toml", "-S", "20", "-r", "2", "--max-lookahead", "2", "--json", "t.json"],
        "ok", folder=folder, outputs=(folder / "t.json",),
        checks=[contains(TOKEN_COST_NOTE), lacks(FALSE_NOTE),
                table_notes_printed(folder / "t.json")],
    )  # fmt: skip
    folder = suite.folder()
    write_profile(folder / "p0.toml", 'name = "faulty"', 'name = "p0"')
    write_profile(folder / "p1.toml", 'name = "faulty"', 'name = "p1"')
    (folder / "p1.toml").write_text(
        (folder / "p1.toml").read_text(encoding="utf-8").replace(COST, ""), encoding="utf-8"
    )
    suite.add(
        "F7", "table of a token-cost profile and another",
        ["table", "p0.toml", "p1.toml", "-S", "20", "-r", "2", "--max-lookahead", "2", "--json",
         "t.json"], "ok", folder=folder, outputs=(folder / "t.json",),
        checks=[contains("For p0: Measured here, not assumed"),
                contains("For the others: Assumed, in DSI's favour"),
                table_notes_printed(folder / "t.json")],
    )  # fmt: skip
    folder = suite.folder()
    write_profile(folder / "p0.toml")
    suite.add(
        "F7", "run of a token-cost profile", [*VIRTUAL, "--profile", "p0.toml"], "ok",
        folder=folder, checks=[contains(TOKEN_COST_NOTE), lacks(FALSE_NOTE)],
    )  # fmt: skip
    suite.add(
        "F7", "table of a profile without a token cost",
        ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE], "ok", checks=[lacks(TOKEN_COST_NOTE)],
    )  # fmt: skip


def f_validate(suite: Suite) -> None:
    """Valid validate runs, and the commands that read what they wrote (F7, F9, F10)."""
    pair = str(SETTINGS.pair)
    heavy = {"heavy": True, "timeout": HEAVY_S}
    folder = suite.folder()
    link = _link(folder, "trace-link.json", folder / "tr.json")
    written = (folder / "v.json", folder / "tr.json", folder / "prof.toml")
    source = suite.add(
        "F9", "validate writes its three outputs (trace through a dangling link)",
        ["validate", "--pair", pair, *TINY, "--json", "v.json", "--trace-out", link,
         "--profile-out", "prof.toml"], "ok", folder=folder, outputs=written,
        checks=[positive_intervals(folder / "v.json")], **heavy,
    )  # fmt: skip
    made = folder
    folder = suite.folder()
    suite.add(
        "F7", "table of validate's profile",
        ["table", str(made / "prof.toml"), *TABLE, "--json", "t.json"], "ok", folder=folder,
        outputs=(folder / "t.json",), checks=[contains(TOKEN_COST_NOTE), lacks(FALSE_NOTE)],
        needs=source, **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F6", "run of validate's profile with its trace",
        [*VIRTUAL[:3], "-S", "8", "-r", "2", "--profile", str(made / "prof.toml"),
         "--acceptance-trace", str(made / "tr.json"), "--prompt-tokens", "16", "--json",
         "r.json"], "ok", folder=folder, outputs=(folder / "r.json",),
        checks=[json_acceptance(folder / "r.json", made / "tr.json"),
                contains(TOKEN_COST_NOTE)], needs=source, **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F9", "validate -n 3 -S 32: the latency interval stays positive",
        ["validate", "--pair", pair, *TINY, "-S", "32", "-n", "3", "--json", "v.json"], "ok",
        folder=folder, outputs=(folder / "v.json",),
        checks=[positive_intervals(folder / "v.json")], **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F4", "validate --json - with two outputs to /dev/null",
        ["validate", "--pair", pair, *TINY, "--workers", "thread", "--json", "-", "--trace-out",
         os.devnull, "--profile-out", os.devnull], "ok", folder=folder,
        checks=[("stdout is the JSON document", _stdout_json)], **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F10", "validate on a terminal 60 wide", ["validate", "--pair", pair, *TINY], "ok",
        folder=folder, columns=60, driver=on_terminal("stdout"), checks=[no_cut_numbers()],
        **heavy,
    )  # fmt: skip


def trace_rate(path: Path) -> float:
    """The pooled acceptance rate of a trace file."""
    traces = json.loads(path.read_text(encoding="utf-8"))["traces"]
    return float(sum(t.count("1") for t in traces) / sum(len(t) for t in traces))


def _stdout_json(case: Case, outcome: Outcome) -> str | None:
    try:
        json.loads(outcome.stdout)
    except ValueError:
        return "stdout is not one JSON document"
    return None


class WhenWorkers:
    """A moment: `delay` seconds after `count` workers of the case run; keeps what their
    environments said of OMP_WAIT_POLICY."""

    def __init__(self, count: int, delay: float) -> None:
        self.count, self.delay = count, delay
        self.seen: float | None = None
        self.policies: list[str] = []

    def __call__(self, case: Case, elapsed: float) -> bool:
        if self.seen is None:
            workers = workers_of(case.tag)
            if len(workers) < self.count:
                return False
            self.seen = elapsed
            for pid in workers:
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                policy = [v for v in environ if v.startswith(b"OMP_WAIT_POLICY=")]
                self.policies.append(policy[0].decode() if policy else "unset")
        return elapsed >= self.seen + self.delay

    def passive(self) -> tuple[str, Check]:
        def check(case: Case, outcome: Outcome) -> str | None:
            if not self.policies:
                return "no worker was seen"
            wrong = [p for p in self.policies if p != "OMP_WAIT_POLICY=PASSIVE"]
            return f"a worker runs with {wrong[0]}" if wrong else None

        return "workers run with OMP_WAIT_POLICY=PASSIVE", check


def after(seconds: float) -> Callable[[Case, float], bool]:
    return lambda case, elapsed: elapsed >= seconds


def when_tmp(cache: Path, delay: float) -> Callable[[Case, float], bool]:
    """`delay` seconds after a trainer's .tmp- folder appears in `cache`."""
    seen: list[float] = []

    def moment(case: Case, elapsed: float) -> bool:
        if not seen and any((cache / "pairs").glob(".tmp-*")):
            seen.append(elapsed)
        return bool(seen) and elapsed >= seen[0] + delay

    return moment


def f8_signals(suite: Suite) -> None:
    pair = str(SETTINGS.pair)
    heavy = {"heavy": True, "timeout": HEAVY_S}
    validate = ["validate", "--pair", pair, *TINY, "-n", "2"]
    started = WhenWorkers(3, 0.5)
    suite.add(
        "F8", "Ctrl-C while validate's workers start", validate, "interrupted",
        driver=interrupt(started, signal.SIGINT, group=True),
        checks=[interrupted_within(2.5)], **heavy,
    )  # fmt: skip
    suite.add(
        "F8", "Ctrl-C 1.5 s into validate", validate, "interrupted",
        driver=interrupt(after(1.5), signal.SIGINT, group=True),
        checks=[interrupted_within(2.5)], **heavy,
    )  # fmt: skip
    started = WhenWorkers(3, 0.2)
    suite.add(
        "F8", "kill -9 of validate while its workers start", validate, "killed",
        driver=interrupt(started, signal.SIGKILL, group=False),
        checks=[started.passive()], **heavy,
    )  # fmt: skip
    suite.add(
        "F8", "kill -9 of validate 3 s after its workers started", validate, "killed",
        driver=interrupt(WhenWorkers(3, 3.0), signal.SIGKILL, group=False), **heavy,
    )  # fmt: skip
    suite.add(
        "F8", "SIGTERM to validate once its workers run", validate, "gone",
        driver=interrupt(WhenWorkers(3, 1.0), signal.SIGTERM, group=False), **heavy,
    )  # fmt: skip
    cache = SETTINGS.root / "cache-killed"
    env = {"DSI_ONLINE_CACHE": str(cache)}
    train = ["pair", "train", "--size", "test"]
    suite.add(
        "F8", "kill -9 of pair train, then pair train again", train, "ok", env=env,
        driver=killed_then_again(cache), checks=[no_tmp_folders(cache)], **heavy,
    )  # fmt: skip
    cache = SETTINGS.root / "cache-interrupted"
    suite.add(
        "F8", "Ctrl-C of pair train while it trains", train, "interrupted",
        env={"DSI_ONLINE_CACHE": str(cache)},
        driver=interrupt(when_tmp(cache, 1.0), signal.SIGINT, group=True),
        checks=[interrupted_within(3.0), no_tmp_folders(cache)], **heavy,
    )  # fmt: skip
    target = f"{pair}/target"
    suite.add(
        "F8", "Ctrl-C of measure latency while it measures",
        ["measure", "latency", "--target", target, "--device", "cpu", "--samples", "400",
         "--prompt-tokens", "4", "--warmup", "0"], "interrupted",
        driver=interrupt(after(4.0), signal.SIGINT, group=True),
        checks=[interrupted_within(3.0)], **heavy,
    )  # fmt: skip


def killed_then_again(cache: Path) -> Driver:
    """kill -9 of the case's command once its .tmp- folder exists, then the command again:
    the second run's outcome, with a problem when the first left nothing to clean."""

    def drive(case: Case) -> Outcome:
        first = interrupt(when_tmp(cache, 1.0), signal.SIGKILL, group=False)(case)
        problems = [f"first run: {p}" for p in first.problems]
        if first.code != -signal.SIGKILL:
            problems.append(f"first run: exit {first.code}, not killed")
        if not any((cache / "pairs").glob(".tmp-*")):
            problems.append("the killed trainer left no .tmp- folder to clean up")
        problems += [f"first run left {p}" for p in first.leftover]
        second = plain(case)
        second.problems = problems + second.problems
        return second

    return drive


def f10_width(suite: Suite) -> None:
    heavy = {"heavy": True, "timeout": 120.0}
    train = ["pair", "train", "--size", "test"]
    suite.add("F10", "COLUMNS=60 pair train > file", train, "ok", columns=60,
              checks=[no_cut_numbers()], **heavy)  # fmt: skip
    suite.add("F10", "pair train on a terminal 60 wide", train, "ok", columns=60,
              driver=on_terminal("stdout"), checks=[no_cut_numbers()], **heavy)  # fmt: skip
    for name, argv in (
        ("table", ["table", "tiny-llama-cpu", "-a", "0.8", *TABLE]),
        ("run --profile", [*VIRTUAL, "--profile", "tiny-llama-cpu", "-a", "0.8"]),
        ("profiles", ["profiles"]),
        ("profiles show", ["profiles", "show", "tiny-llama-cpu"]),
    ):
        suite.add("F10", f"{name} on a terminal 60 wide", argv, "ok", columns=60,
                  driver=on_terminal("stdout"), checks=[no_cut_numbers()])  # fmt: skip
        suite.add("F10", f"COLUMNS=60 {name} > file", argv, "ok", columns=60,
                  checks=[no_cut_numbers()])  # fmt: skip
    folder = suite.folder()
    long = folder / "models" / "checkpoints" / "vicuna-13b-v1.3-distilled-final-checkpoint-target"
    shutil.copytree(SETTINGS.pair / "target", long)
    suite.add(
        "F10", "measure latency's progress counters at 80 columns, long checkpoint name",
        ["measure", "latency", "--target", str(long), "--device", "cpu", "--prompt-tokens", "4",
         "--samples", "200", "--warmup", "0"], "ok", folder=folder,
        driver=on_terminal("stderr"), checks=[counters_shown()], **heavy,
    )  # fmt: skip


def f11_measure(suite: Suite) -> None:
    heavy = {"heavy": True, "timeout": HEAVY_S}
    target, drafter = f"{SETTINGS.pair}/target", f"{SETTINGS.pair}/drafter"
    measure = ["measure", "latency", "--target", target, "--drafter", drafter, "--device", "cpu"]
    measure += ["--prompt-tokens", "4", "--by-tokens", "1,2,4,64", "--samples", "16"]
    folder = suite.folder()
    suite.add(
        "F11", "measure latency --by-tokens 1,2,4,64 writes a profile that loads",
        [*measure, "--out", "m.toml", "--json", "m.json"], "ok", folder=folder,
        outputs=(folder / "m.toml", folder / "m.json"),
        checks=[timings_flagged(folder / "m.json"), ("the profile loads", _profile_loads)],
        **heavy,
    )  # fmt: skip
    folder = suite.folder()
    suite.add(
        "F11", "measure latency --by-tokens 1,2,4,64 beside 2 busy processes",
        [*measure, "--json", "m.json"], "ok", folder=folder, outputs=(folder / "m.json",),
        driver=under_load(2), checks=[timings_flagged(folder / "m.json")], **heavy,
    )  # fmt: skip


def _profile_loads(case: Case, outcome: Outcome) -> str | None:
    shown = subprocess.run(
        [PYTHON, "-m", "dsi_online", "profiles", "show", str(case.folder / "m.toml")],
        capture_output=True, text=True, timeout=LIGHT_S, env=case_env(case),
    )  # fmt: skip
    return None if shown.returncode == 0 else f"profiles show m.toml: {shown.stderr.strip()}"


def under_load(spinners: int) -> Driver:
    """Run the case beside `spinners` processes that spin on the cores."""

    def drive(case: Case) -> Outcome:
        env = {k: v for k, v in os.environ.items() if k != MARKER}
        load = [
            subprocess.Popen([PYTHON, "-c", "while True: pass"], env=env) for _ in range(spinners)
        ]
        try:
            return plain(case)
        finally:
            for process in load:
                process.kill()
                process.wait()

    return drive


def f0_options(suite: Suite) -> None:
    pair = str(SETTINGS.pair)
    validate = ["validate", "--pair", pair, *TINY]
    options: list[tuple[list[str], str]] = [
        (["-k", "0"], "--lookahead"), (["-k", "65"], "--lookahead"), (["-k", "abc"], "-k"),
        (["-n", "0"], "--servers"), (["--prompts", "1"], "--prompts"),
        (["--calibration-prompts", "1"], "--calibration-prompts"),
        (["--prompt-bytes", "0"], "--prompt-bytes"), (["-S", "0"], "--tokens"),
        (["-r", "0"], "--repeats"), (["--seed", "-1"], "--seed"), (["--workers", "fork"],
        "--workers"), (["--calibration-samples", "2"], "--calibration-samples"),
        (["--device", "tpu"], "--device"), (["--dtype", "int8"], "--dtype"),
        (["--seeds", "3-1"], "--seeds"), (["--seeds", "x"], "--seeds"),
        (["--seeds", "1,2", "--trace-out", "t.json"], "--trace-out"),
        (["--device", "cpu,cpu,cpu,cpu"], "--device"),
    ]  # fmt: skip
    for extra, option in options:
        suite.add("F0", f"validate {' '.join(extra)}", [*validate, *extra], "refused",
                  names=(option,), before_work=ANNOUNCE_VALIDATE)  # fmt: skip
    target, drafter = f"{pair}/target", f"{pair}/drafter"
    measure = ["measure", "latency", "--target", target, "--device", "cpu"]
    for extra, option in [
        (["--samples", "1"], "--samples"), (["--warmup", "-1"], "--warmup"),
        (["--prompt-tokens", "0"], "--prompt-tokens"), (["--by-tokens", "0,1"], "--by-tokens"),
        (["--by-tokens", "2,1"], "--by-tokens"), (["--by-tokens", "1"], "--by-tokens"),
        (["--device", "tpu"], "--device"), (["--out", "x.toml"], "--drafter"),
    ]:  # fmt: skip
        suite.add("F0", f"measure latency {' '.join(extra)}", [*measure, *extra], "refused",
                  names=(option,))  # fmt: skip
    for value in ("/nonexistent/checkpoint", ""):
        suite.add("F0", f"measure latency --target {value!r}",
                  ["measure", "latency", "--target", value, "--device", "cpu"], "refused",
                  names=("--target",))  # fmt: skip
    accept = ["measure", "acceptance", "--target", target, "--drafter", drafter, "--device"]
    accept += ["cpu", "--max-new-tokens", "4", "--bootstrap", "100"]
    for name, extra, option, make in [
        ("--prompts missing", ["--prompts", "missing.txt"], "--prompts", None),
        ("--prompts empty", ["--prompts", "empty.txt"], "--prompts", "empty.txt"),
        ("-k 0", ["--prompts", "p.txt", "-k", "0"], "--lookahead", "p.txt"),
        ("--bootstrap 5", ["--prompts", "p.txt", "--bootstrap", "5"], "--bootstrap", "p.txt"),
        ("--max-new-tokens 0", ["--prompts", "p.txt", "--max-new-tokens", "0"],
         "--max-new-tokens", "p.txt"),
        ("--profile missing", ["--prompts", "p.txt", "--profile", "m.toml"], "m.toml", "p.txt"),
        ("--profile bad", ["--prompts", "p.txt", "--profile", "bad.toml"], "'layers'", "p.txt"),
    ]:  # fmt: skip
        folder = suite.folder()
        if make is not None:
            (folder / make).write_text("" if make == "empty.txt" else PROMPTS)
        write_profile(folder / "bad.toml", "layers = 2", "layers = nan")
        suite.add("F0", f"measure acceptance {name}", [*accept, *extra], "refused",
                  names=(option,), folder=folder)  # fmt: skip
    for extra, option in [
        (["--size", "huge"], "--size"), (["--size", ""], "--size"),
        (["--seed", "-1"], "--seed"), (["--seed", "abc"], "--seed"),
    ]:  # fmt: skip
        suite.add("F0", f"pair train {' '.join(extra)}", ["pair", "train", *extra], "refused",
                  names=(option,), before_work=ANNOUNCE_TRAIN)  # fmt: skip


# --- main -------------------------------------------------------------------------------------


def build(root: Path) -> list[Case]:
    suite = Suite(root)
    builders = [f1_pairs, f2_profiles, f3_outputs, f4_twice, f5_pair_out, f6_traces]
    builders += [f7_assumptions, f_validate, f8_signals, f10_width, f11_measure, f0_options]
    for builder in builders:
        builder(suite)
    return suite.cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/fault_test.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--only", metavar="PATTERN", help="run the cases whose family/name "
                        "matches this regular expression")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="write every case's result here")
    parser.add_argument("--jobs", type=int, default=2, help="light cases at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--list", action="store_true", help="list the cases, run none")
    args = parser.parse_args(argv)
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="dsi-fault-test-")).resolve()
    try:
        print(f"building the inputs in {root} (the test pair: seconds)", flush=True)
        prepare(root)
        cases = build(root)
        if args.only:
            pattern = re.compile(args.only)
            chosen = {case.index for case in cases if pattern.search(case.key)}
            chosen |= {case.needs.index for case in cases if case.index in chosen and case.needs}
            cases = [case for case in cases if case.index in chosen]
        if args.list:
            for case in cases:
                print(f"{case.index:3d} {case.key} | {case.expectation()}")
            print(f"{len(cases)} cases")
            return 0
        results = execute(cases, max(1, args.jobs))
        failed = report(cases, results)
        print(f"{time.monotonic() - began:.0f} s in all", flush=True)
        if args.json:
            document = [_result(case, *results[case.index]) for case in cases]
            Path(args.json).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def execute(cases: list[Case], jobs: int) -> dict[int, tuple[Outcome, list[str]]]:
    """Run the light cases `jobs` at a time, then the heavy ones one at a time, in order."""
    light = [case for case in cases if not case.heavy]
    heavy = [case for case in cases if case.heavy]
    print(f"{len(cases)} cases: {len(light)} light ({jobs} at a time), {len(heavy)} one at a "
          "time", flush=True)  # fmt: skip
    results: dict[int, tuple[Outcome, list[str]]] = {}
    lock = threading.Lock()

    def record(case: Case, outcome: Outcome) -> None:
        with lock:
            results[case.index] = (outcome, judge(case, outcome))
            if len(results) % 25 == 0 or len(results) == len(cases):
                print(f"  {len(results)}/{len(cases)} done", file=sys.stderr, flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        for case, outcome in pool.map(run_case, light):
            record(case, outcome)
    for case in heavy:
        record(*run_case(case))
    return results


def report(cases: list[Case], results: dict[int, tuple[Outcome, list[str]]]) -> int:
    """Print each failed case on one line, then the summary; the number failed."""
    by_family: dict[str, Counter[str]] = {}
    for case in cases:
        outcome, problems = results[case.index]
        counts = by_family.setdefault(case.family, Counter())
        counts["cases"] += 1
        counts["failed" if problems else "held"] += 1
        if problems:
            print(
                f"FAIL {case.family} #{case.index} {case.name} | {case.command()} | expected: "
                f"{case.expectation()} | got: exit {outcome.code} in {outcome.elapsed:.1f} s; "
                f"{'; '.join(problems)} | {first_line(outcome)}"
            )
    held = sum(c["held"] for c in by_family.values())
    failed = sum(c["failed"] for c in by_family.values())
    print(f"{len(cases)} cases, {held} held, {failed} failed")
    for family in sorted(by_family, key=lambda f: int(f[1:])):
        counts = by_family[family]
        print(
            f"  {family:>3} {FAMILIES[family]}: {counts['cases']} cases, {counts['held']} held, "
            f"{counts['failed']} failed"
        )
    return failed


def _result(case: Case, outcome: Outcome, problems: list[str]) -> dict[str, Any]:
    return {
        "index": case.index,
        "family": case.family,
        "name": case.name,
        "command": case.command(),
        "expectation": case.expectation(),
        "held": not problems,
        "problems": problems,
        "exit_code": outcome.code,
        "elapsed_s": round(outcome.elapsed, 3),
        "after_signal_s": outcome.after_signal_s,
        "timed_out": outcome.timed_out,
        "first_line": first_line(outcome),
        "stderr_tail": outcome.stderr.splitlines()[-5:],
    }


if __name__ == "__main__":
    sys.exit(main())
