"""Issue 17's fault and fuzz findings on the real-model commands (and issue 15 item 6), one
regression test each, at the command line: bad input is one line with exit code 2, refused
before any work; what is printed is true of the run it describes."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from dsi_online.cli import main
from tests.helpers import VIRTUAL, one_error

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


def write_profile(folder: Path, replace: tuple[str, str] = ("", ""), name: str = "p") -> Path:
    """A valid profile file with a token-cost target, one string of it replaced."""
    path = folder / f"{name}.toml"
    old, new = replace
    assert old in PROFILE
    path.write_text(PROFILE.replace(old, new, 1), encoding="utf-8")
    return path


# --- finding 2: every field of a profile is checked on load ---------------------------------

BAD_FIELDS = [
    (("ci95 = [0.7, 0.9]", "ci95 = [0.5]"), "ci95"),
    (("ci95 = [0.7, 0.9]", "ci95 = [0.9, 0.7]"), "ci95"),
    (("ci95 = [0.7, 0.9]", "ci95 = [0.1, 0.2]"), "ci95"),
    (("by_position = [0.9, 0.8]", 'by_position = "high"'), "by_position"),
    (("by_position = [0.9, 0.8]", "by_position = [0.9, nan]"), "by_position"),
    (("samples = 100", 'samples = "many"'), "samples"),
    (("samples = 100", "samples = 0"), "samples"),
    (("reference_context = 64", "reference_context = inf"), "reference_context"),
    (("layers = 2", "layers = nan"), "layers"),
    (("layers = 2", "layers = 1.5"), "layers"),
    (
        ("contended = 1.0", "contended = 1.0, prefill_tokens = 1.5, prefill_ms = 5.0"),
        "prefill_tokens",
    ),
    (("tokens = [1, 2, 4]", "tokens = [1, 2.5, 4]"), "tokens"),
    (('kind = "constant", ms = 30.0', 'kind = "constant", ms = inf'), "ms"),
    (('name = "faulty"', "name = 7"), "name"),
]


@pytest.mark.parametrize(("replace", "field"), BAD_FIELDS)
@pytest.mark.parametrize(
    "command",
    [
        ["profiles", "show"],
        [*VIRTUAL, "-S", "10", "-r", "1", "--profile"],
        ["table", "-S", "10", "-r", "1", "--max-lookahead", "2"],
    ],
)
def test_a_bad_profile_field_is_one_line_naming_file_and_field(
    command: list[str],
    replace: tuple[str, str],
    field: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_profile(tmp_path, replace)
    line = one_error(capsys, [*command, str(path)])
    assert str(path) in line and f"'{field}'" in line


def test_a_bad_user_profile_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSI_ONLINE_PROFILES", str(tmp_path))
    bad = write_profile(tmp_path, ("layers = 2", "layers = nan"), name="bad")
    write_profile(tmp_path, name="good")
    for args in (
        ["profiles", "--json", "-"],
        [*VIRTUAL, "--profile", "tiny-llama-cpu", "-a", "0.8", "-S", "10", "-r", "1"],
        ["table", "faulty", "-S", "10", "-r", "1", "--max-lookahead", "2"],
    ):
        assert main(args) == 0, args
        err = capsys.readouterr().err.splitlines()
        warnings = [line for line in err if line.startswith("warning: skipped")]
        assert len(warnings) == 1 and str(bad) in warnings[0] and "'layers'" in warnings[0]
        assert not any("Traceback" in line for line in err)


# --- finding 3: a symlink loop as an output path --------------------------------------------


def symlink_loop(folder: Path) -> Path:
    """Two links that point to each other: following either never ends."""
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    return folder / "a"


@pytest.mark.parametrize(
    "args",
    [
        ["table", "tiny-llama-cpu", "-a", "0.8", "-S", "10", "-r", "1", "--json"],
        ["table", "tiny-llama-cpu", "-a", "0.8", "-S", "10", "-r", "1", "--csv"],
        [*VIRTUAL, "-a", "0.8", "-S", "10", "-r", "1", "--json"],
        ["validate", "--pair", "/nonexistent", "--trace-out"],
        ["sweep", "--vary", "acceptance=0.5,0.7", "-S", "10", "-r", "1", "--no-png", "--out"],
    ],
)
def test_a_symlink_loop_as_output_is_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = symlink_loop(tmp_path)
    line = one_error(capsys, [*args, str(loop)])
    assert "symlink loop" in line and str(loop) in line


# --- finding 4: one path given to two outputs -----------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--pair", "/nonexistent", "--trace-out", "X", "--profile-out", "X"],
        ["validate", "--pair", "/nonexistent", "--trace-out", "X", "--json", "LINK"],
        ["validate", "--pair", "/nonexistent", "--json", "-", "--trace-out", "-"],
        ["table", "tiny-llama-cpu", "-a", "0.8", "--csv", "X", "--json", "X"],
    ],
)
def test_one_path_for_two_outputs_is_refused_before_work(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "LINK").symlink_to(tmp_path / "X")
    paths = {"X": str(tmp_path / "X"), "LINK": str(tmp_path / "LINK")}
    line = one_error(capsys, [paths.get(arg, arg) for arg in args])
    assert "both name" in line
    assert not (tmp_path / "X").exists()


# --- finding 5: pair train --out follows links and names the user's path ---------------------

TRAIN = ["pair", "train", "--size", "test", "--out"]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("target", ["empty", "missing/pair"])
def test_pair_out_follows_a_link(
    target: str, test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / target)
    assert main([*TRAIN, str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink() and (tmp_path / target / "pair.toml").is_file()
    assert not [p for p in tmp_path.rglob(".tmp-*")]


@pytest.mark.torch
def test_pair_out_errors_name_the_users_path(
    test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "must name a folder" in one_error(capsys, [*TRAIN, ""])
    assert not (Path.cwd() / "pair.toml").exists()
    loop = symlink_loop(tmp_path)
    line = one_error(capsys, [*TRAIN, str(loop)])
    assert "symlink loop" in line and str(loop) in line
    dangling = tmp_path / "dangling"
    dangling.symlink_to("/proc/no-such-folder")
    line = one_error(capsys, [*TRAIN, str(dangling)])
    assert str(dangling) in line and ".tmp-" not in line


MEASURE_ACCEPTANCE = ["measure", "acceptance", "--target", "x", "--drafter", "y"]
EMPTY_PATHS = [
    (["validate", "--pair"], "'--pair'"),
    (["measure", "latency", "--target", "x", "--out"], "'--out'"),
    ([*MEASURE_ACCEPTANCE, "--prompts"], "'--prompts'"),
    ([*MEASURE_ACCEPTANCE, "--prompts", "p", "--profile"], "'--profile'"),
    (["heatmap", "--load"], "'--load'"),
    (["heatmap", "--out"], "'--out'"),
    (["sweep", "--out"], "'--out'"),
    ([*VIRTUAL, "--profile"], "empty; name a profile"),
    (["profiles", "show"], "empty; name a profile"),
    ([*VIRTUAL, "-S", "10", "--acceptance-trace"], "(--acceptance-trace)"),
]


@pytest.mark.parametrize(("command", "names"), EMPTY_PATHS)
@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(
    command: list[str], names: str, empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error(capsys, [*command, empty])
    assert names in line and repr(empty) in line, line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["measure", "latency", "--target", ""], "--target"),
        (["measure", "latency", "--target", "x", "--drafter", " "], "--drafter"),
        ([*MEASURE_ACCEPTANCE[:3], "", *MEASURE_ACCEPTANCE[4:], "--prompts", "p"], "--target"),
    ],
)
def test_an_empty_model_is_refused_before_any_loading(
    args: list[str],
    option: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded")

    for module in ("dsi_online.measure.latency", "dsi_online.measure.acceptance"):
        monkeypatch.setattr(f"{module}.load_model", load)
    line = one_error(capsys, args)
    assert line.startswith(f"error: {option} must name a preset"), line


# --- finding 6: a trace satisfies the profile's acceptance; its version is checked -----------


def write_trace(folder: Path, version: object = 1) -> Path:
    """A trace file of two prompts, 20 positions each, of this version."""
    path = folder / "trace.json"
    document = {"format": "dsi-online acceptance trace", "source": "by hand", "version": version}
    document["traces"] = ["11011101111011111101", "01111011101111101110"]
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_trace_gives_a_profile_its_acceptance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = str(write_trace(tmp_path))
    args = [*VIRTUAL, "--profile", "tiny-llama-cpu", "--acceptance-trace", trace]
    assert main([*args, "-S", "10", "-r", "2", "--json", "-"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["scenario"]["acceptance"] == pytest.approx(0.775)
    assert "--acceptance-trace" in one_error(capsys, [*args, "-a", "0.5"])


@pytest.mark.parametrize("version", [99, None, "1", True])
def test_a_trace_of_another_version_is_refused(
    version: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = str(write_trace(tmp_path, version))
    line = one_error(capsys, [*VIRTUAL, "--acceptance-trace", trace, "-S", "10", "-r", "1"])
    assert "unsupported version" in line and trace in line


# --- finding 7: table states the assumptions that hold for its profiles ----------------------


@pytest.mark.parametrize("with_cost", [[True], [True, False]])
def test_table_states_the_assumptions_of_token_cost_profiles(
    with_cost: list[bool], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for number, cost in enumerate(with_cost):
        replace = ('name = "faulty"', f'name = "p{number}"')
        path = write_profile(tmp_path, replace, name=f"p{number}")
        if not cost:
            path.write_text(path.read_text(encoding="utf-8").replace(COST, ""), encoding="utf-8")
        paths.append(str(path))
    document = tmp_path / "table.json"
    args = ["table", *paths, "-S", "20", "-r", "2", "--max-lookahead", "2"]
    assert main([*args, "--json", str(document)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(json.loads(document.read_text(encoding="utf-8"))["notes"]) in text
    assert "prices each forward by the tokens it processes" in text
    if all(with_cost):
        assert "does not depend on how many tokens it verifies" not in text
    else:
        assert "For p0: Measured here, not assumed" in text
        assert "For the others: Assumed, in DSI's favour" in text


def test_sweep_states_the_assumptions_of_a_token_cost_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_profile(tmp_path))
    args = ["sweep", "--profile", path, "--vary", "servers=1,2", "-S", "10", "-r", "1"]
    assert main([*args, "--no-png", "--workers", "1", "--out", str(tmp_path / "out")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "prices each forward by the tokens it processes" in text
    assert "does not depend on how many tokens it verifies" not in text


# --- finding 1: validate refuses a pair whose vocabularies differ, before any work ------------

TINY_VALIDATE = [
    "--prompts",
    "2",
    "--calibration-prompts",
    "2",
    "--prompt-bytes",
    "16",
    "-S",
    "8",
    "-r",
    "1",
]
TINY_VALIDATE += ["--workers", "thread", "--calibration-samples", "3"]


@pytest.mark.torch
def test_validate_refuses_drafters_of_another_vocabulary(
    test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transformers = pytest.importorskip("transformers")
    pair = tmp_path / "pair"
    shutil.copytree(test_pair, pair)
    config = transformers.AutoConfig.from_pretrained(pair / "drafter")
    config.vocab_size = 300
    shutil.rmtree(pair / "drafter")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(pair / "drafter")
    line = one_error(capsys, ["validate", "--pair", str(pair), *TINY_VALIDATE])
    assert "300" in line and "256" in line and "--pair" in line


# --- finding 9: validate's latency interval cannot go below 0 --------------------------------


def test_latency_interval_is_positive_with_two_spread_runs() -> None:
    from dsi_online.reports.validate_view import _ci95
    from dsi_online.sim.stats import Summary

    runs = [0.0667, 0.0858]  # the two runs behind the reported "-0.0453-0.1977"
    real = [SimpleNamespace(run=SimpleNamespace(latency_s=x)) for x in runs]
    algorithm = SimpleNamespace(actual=Summary.of(runs), runs=real)
    result: Any = SimpleNamespace(algorithms={"nonsi": algorithm})
    interval = _ci95(result, "nonsi")
    assert interval is not None
    low, high = interval
    mean = Summary.of(runs).mean
    assert 0 < low < mean < high
    assert low * high == pytest.approx(mean**2)  # symmetric on the log scale
    algorithm.runs = real[:1]
    assert _ci95(result, "nonsi") is None


# --- issue 15 item 6: validate fails when reality disagrees -----------------------------------


def corrupt(tokens: tuple[int, ...]) -> tuple[int, ...]:
    """The same tokens with the first one changed."""
    return ((tokens[0] + 1) % 256, *tokens[1:])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("where", ["ours", "transformers"])
def test_validate_fails_when_an_output_differs(
    where: str,
    test_pair: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import dataclasses

    from dsi_online.real import validate as real_validate
    from dsi_online.real.backend import RealBackend

    if where == "ours":
        play = RealBackend.play

        def wrong_play(self: RealBackend, scheduler: Any, prompt: Any, tokens: int) -> Any:
            result = play(self, scheduler, prompt, tokens)
            return dataclasses.replace(result, output=corrupt(result.output))

        monkeypatch.setattr(RealBackend, "play", wrong_play)
        needle = "output differs from the target's greedy decoding in 2 of 2 runs"
    else:
        time = real_validate.Peer.time

        def wrong_time(self: Any, method: str, *args: Any) -> Any:
            run = time(self, method, *args)
            wrong = method == "assisted"
            return dataclasses.replace(run, output=corrupt(run.output)) if wrong else run

        monkeypatch.setattr(real_validate.Peer, "time", wrong_time)
        needle = "transformers' assisted generation differs from its greedy one"
    document = tmp_path / "v.json"
    args = ["validate", "--pair", str(test_pair), *TINY_VALIDATE, "--prompts", "2"]
    assert main([*args, "--json", str(document)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("validate failed: ") and needle in err[-1]
    assert not any("Traceback" in line for line in err)
    assert json.loads(document.read_text(encoding="utf-8"))["lossless"] is False


# --- finding 10: numbers are never cut; progress counters show at 80 columns ------------------


def render(renderable: Any, width: int) -> str:
    """What a terminal `width` columns wide shows of `renderable`."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=True, color_system=None).print(renderable)
    return buffer.getvalue()


@pytest.mark.torch
def test_pair_train_cuts_no_number(
    test_pair: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsi_online.cli.pair import _summary
    from dsi_online.pair import PairInfo

    monkeypatch.setenv("COLUMNS", "60")
    assert main(["pair", "train", "--size", "test"]) == 0
    assert "…" not in capsys.readouterr().out  # redirected: no width limit
    info = PairInfo.read(test_pair)
    table = render(_summary(info), 60)  # a terminal 60 wide
    assert "…" not in table
    assert f"{info.target.heldout_loss:.3f}" in table and f"{info.drafter.seconds:.1f}" in table


def test_progress_counters_show_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsi_online.cli import common

    monkeypatch.setattr(common, "stderr", Console(file=io.StringIO(), force_terminal=True))
    long = "measuring /home/someone/models/checkpoints/vicuna-13b-v1.3-distilled/target"
    with common.progress_bar(long, 48_000) as bar:
        common.set_progress(bar, 12_300)
        shown = render(bar.make_tasks_table(bar.tasks), 80)
    assert "12300/48000" in shown and "0:00:00" in shown


# --- finding 11: measure sleeps idle threads and warns of unstable timings -------------------


def latency_result(tpot: list[float], by_tokens: dict[int, list[float]]) -> Any:
    """A model's measurement made of these timing series (seconds)."""
    from dsi_online.measure.latency import ModelLatencyResult, PromptTTFT, TokenCountLatency

    counts = tuple(TokenCountLatency(n, tuple(s)) for n, s in by_tokens.items())
    return ModelLatencyResult(
        spec="m", label="m", ttft=(PromptTTFT(8, (0.01,) * 8),), tpot_s=tuple(tpot),
        decode_context=8, random_weights=True, by_tokens=counts, by_tokens_context=16,
    )  # fmt: skip


def test_timings_a_loaded_machine_gives_are_flagged() -> None:
    quiet = [0.0014, 0.0015, 0.0013, 0.0014] * 4
    assert latency_result(quiet, {1: quiet, 2: [0.0019] * 16, 64: [0.02] * 16}).warnings == ()
    # the series: every forward of 2 or more tokens took 248 ms
    loaded = latency_result(quiet, {1: quiet, 2: [0.248] * 16, 64: [0.25] * 16}).warnings
    assert len(loaded) == 2 and "forward of 2 tokens took 248 ms, 88.6x as long" in loaded[0]
    assert "forward of 64 tokens took 250 ms" in loaded[1]
    drifting = latency_result(quiet[:8] + [0.0035] * 8, {}).warnings  # another job started
    assert len(drifting) == 1 and "TPOT drifted" in drifting[0] and "2.5" in drifting[0]


@pytest.mark.torch
def test_measure_sets_a_passive_wait_policy_and_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from dsi_online.measure import latency

    def loaded(device: str, step: Any, argument: object = None) -> float:
        step(argument)
        tokens = 1 if argument is None else int(argument.shape[-1])  # type: ignore[attr-defined]
        return 0.0014 if tokens == 1 else 0.248

    monkeypatch.setattr(latency, "_timed", loaded)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    args = ["measure", "latency", "--target", "tiny-llama-drafter", "--prompt-tokens", "4"]
    args += ["--by-tokens", "1,2,4", "--samples", "8", "--warmup", "0", "--device", "cpu"]
    assert main([*args, "--json", "-"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "forward of 2 tokens" in warnings[0]
    assert "forward of 4 tokens" in warnings[1]
    assert json.loads(captured.out)["warnings"] == [w.removeprefix("warning: ") for w in warnings]


def test_calibration_rounds_that_drift_are_flagged() -> None:
    from dsi_online.real.calibrate import Calibration

    def round_(one: float, two: float) -> Calibration:
        """One round's calibration: three samples a count at both contexts."""
        rows = ((one,) * 3, (two,) * 3)
        return Calibration(
            role="target", counts=(1, 2), contexts=(10, 20), samples=(rows, rows),
            prefill_s=(0.01,), layers=2, idle_ratios=((1.0,),) * 6, contended_ratios=(1.0,),
        )  # fmt: skip

    steady = Calibration.merge([round_(0.0014, 0.0019), round_(0.0015, 0.0019)])
    assert steady.rounds == 2 and steady.warnings == ()
    drifted = Calibration.merge([round_(0.0014, 0.0019), round_(0.0014, 0.248)])
    assert drifted.warnings == (
        "target: forwards of 2 tokens drifted during the measurement: the medians of 2 "
        "consecutive blocks of samples differ 130.53x (more than 1.5x); is another job running?",
        "target: a forward of 2 tokens took 125 ms, 44.6x as long as 2 decoding steps (1.4 ms "
        "each): threads contend for the cores; is another job running?",
    )
