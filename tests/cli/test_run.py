"""`dsi-online run`: the JSON contract, a reference scenario's figures, bad input, the speedups'
intervals, busy and reserved GPU-seconds, and the assumptions the verdict states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsi_online.cli import main
from dsi_online.units.analytic import si_time_per_token
from tests.helpers import VIRTUAL, one_error

DONE_MEANS = [
    "run",
    "--clock",
    "virtual",
    "--target-ms",
    "30",
    "--drafter-ms",
    "3",
    "-a",
    "0.8",
    "-k",
    "5",
    "-n",
    "7",
    "-S",
    "500",
    "-r",
    "30",
    "--seed",
    "1",
]


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    assert main([*args, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_reference_scenario_figures(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(DONE_MEANS, capsys)
    algos = doc["algorithms"]
    assert doc["clock"] == "virtual"
    assert algos["nonsi"]["latency_s"] == [15.0] * 30
    closed = si_time_per_token(0.1, 0.8, 5) * 500 * 0.030
    assert abs(algos["si"]["mean_s"] / closed - 1) < 0.02
    assert algos["dsi"]["mean_s"] < algos["si"]["mean_s"]
    for repeat in range(30):
        digests = {algos[name]["output_sha256"][repeat] for name in ("nonsi", "si", "dsi")}
        assert len(digests) == 1
    assert doc["speedups"]["dsi_over_si"] == pytest.approx(
        algos["si"]["mean_s"] / algos["dsi"]["mean_s"]
    )


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["run", "--clock", "virtual", "-S", "20", "-r", "3"], capsys)
    assert set(doc) >= {"scenario", "clock", "algorithms", "speedups"}
    scenario = doc["scenario"]
    for key in (
        "target_ms",
        "target_ttft_ms",
        "drafter_ms",
        "drafter_ttft_ms",
        "acceptance",
        "lookahead",
        "servers",
        "tokens",
        "repeats",
        "seed",
        "latency_cv",
        "profile",
    ):
        assert key in scenario
    assert scenario["target_ttft_ms"] == scenario["target_ms"] == 30
    for name in ("nonsi", "si", "dsi"):
        algo = doc["algorithms"][name]
        for key in (
            "latency_s",
            "target_forwards",
            "drafter_forwards",
            "wasted_forwards",
            "busy_s",
            "output_sha256",
        ):
            assert len(algo[key]) == 3, key
        for key in ("mean_s", "std_s", "sem_s"):
            assert isinstance(algo[key], float)
    assert set(doc["speedups"]) == {"dsi_over_si", "dsi_over_nonsi", "si_over_nonsi"}


def test_table_and_json_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.json"
    assert main(["run", "--clock", "virtual", "-S", "30", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DSI" in printed and "faster" in printed
    assert json.loads(out.read_text())["scenario"]["tokens"] == 30


@pytest.mark.wall
def test_wall_clock_agrees_with_virtual(capsys: pytest.CaptureFixture[str]) -> None:
    """The real clock reproduces the virtual clock's latencies within a generous bound
    (shared CI machines add noise; this checks the scheduler, not the machine)."""
    args = [
        "run",
        "--target-ms",
        "20",
        "--drafter-ms",
        "2",
        "-a",
        "0.8",
        "-k",
        "5",
        "-n",
        "7",
        "-S",
        "40",
        "-r",
        "2",
        "--seed",
        "3",
    ]
    wall = run_json([*args, "--clock", "wall"], capsys)
    virtual = run_json([*args, "--clock", "virtual"], capsys)
    for name in ("nonsi", "si", "dsi"):
        w, v = wall["algorithms"][name], virtual["algorithms"][name]
        assert w["output_sha256"] == v["output_sha256"]
        assert w["ideal_s"] == v["latency_s"]  # the ideal is the same runs, virtual clock
        assert w["overhead_pct"] == pytest.approx(100 * (w["mean_s"] / v["mean_s"] - 1))
        assert "ideal_s" not in v
        assert v["mean_s"] <= w["mean_s"] < v["mean_s"] * 1.25 + 0.005, name


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-a", "1.5"], "--acceptance"),
        (["-a", "-0.1"], "--acceptance"),
        (["-a", "nan"], "--acceptance"),
        (["--target-ms", "0"], "--target-ms"),
        (["--target-ms", "-3"], "--target-ms"),
        (["--target-ms", "inf"], "--target-ms"),
        (["--drafter-ms", "nan"], "--drafter-ms"),
        (["--target-ttft-ms", "0"], "--target-ttft-ms"),
        (["--drafter-ttft-ms", "-1"], "--drafter-ttft-ms"),
        (["-k", "0"], "--lookahead"),
        (["-n", "0"], "--servers"),
        (["-S", "0"], "--tokens"),
        (["-r", "0"], "--repeats"),
        (["--seed", "-1"], "--seed"),
        (["--clock", "sundial"], "--clock"),
        (["--latency-cv", "-0.5"], "--latency-cv"),
        (["--comm-ms", "-1"], "--comm-ms"),
        (["--latency-correlation", "1.5"], "--latency-correlation"),
        (["--latency-correlation", "nan"], "--latency-correlation"),
        (
            ["--profile", "tiny-llama-cpu", "-a", "0.5", "--latency-correlation", "0.5"],
            "--latency-cv",
        ),
        (["--concurrency", "0"], "--concurrency"),
        (["--tokens", "many"], "--tokens"),
        (["--profile", "/nonexistent/profile.toml"], "profile"),
        (["--profile", "no-such-profile"], "profile"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--clock", "virtual", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert option in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_malformed_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nname = 'x'\n")
    assert main(["run", "--clock", "virtual", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "provenance" in err


def test_slow_drafter_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(
        ["run", "--clock", "virtual", "--drafter-ms", "45", "-S", "50", "-r", "2"], capsys
    )
    algos = doc["algorithms"]
    for dsi, nonsi in zip(algos["dsi"]["latency_s"], algos["nonsi"]["latency_s"], strict=True):
        assert dsi <= nonsi
    assert algos["si"]["mean_s"] > algos["nonsi"]["mean_s"]


@pytest.mark.subprocess
def test_python_module_entry_point() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "dsi_online", "run", "--clock", "virtual", "-S", "5", "-r", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DSI" in done.stdout


def test_units_engine_document(capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in DONE_MEANS if a not in ("--clock", "virtual")]
    doc = run_json([*args, "--engine", "units"], capsys)
    algos = doc["algorithms"]
    assert doc["clock"] == "units"
    assert algos["nonsi"]["latency_s"] == [pytest.approx(15.0)] * 30
    closed = si_time_per_token(0.1, 0.8, 5) * 500 * 0.030
    assert abs(algos["si"]["mean_s"] / closed - 1) < 0.02
    assert doc["speedups"]["dsi_over_si"] == pytest.approx(
        algos["si"]["mean_s"] / algos["dsi"]["mean_s"]
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--latency-cv", "0.2"], "--latency-cv"),
        (["--target-ttft-ms", "90"], "--target-ttft-ms"),
        (["--comm-ms", "1"], "--comm-ms"),
        (["-n", "1"], "--servers"),
        (["--drafter-ms", "60"], "--drafter-ms"),
        (["--engine", "quantum"], "--engine"),
    ],
)
def test_units_engine_refuses_what_it_does_not_model(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = [] if "--engine" in args else ["--engine", "units"]
    assert main(["run", *engine, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and option in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target-ms", "1e-7"], "--target-ms"),  # rounded to 0 ns: ZeroDivisionError
        (["--drafter-ms", "1e-9"], "--drafter-ms"),
        (["--target-ms", "1e300"], "--target-ms"),
        (["--latency-cv", "1e300"], "--latency-cv"),  # OverflowError
        (["-S", "99999999999999999999"], "--tokens"),
        (["-r", "99999999999999999999"], "--repeats"),  # MemoryError after GBs
        (["-n", "99999999999999999999"], "--servers"),
        (["-k", "99999999999999999999"], "--lookahead"),
        (["--comm-ms", "1e-9"], "--comm-ms"),
        (["--json", ""], "--json"),
        (["--clock", "sundial"], "--clock"),
        (["--engine", "warp"], "--engine"),
    ],
)
def test_run_bad_input_is_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in one_error(capsys, [*VIRTUAL, *args])


def test_speedup_intervals_are_positive_for_skewed_latencies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*VIRTUAL, "--latency-cv", "100", "-r", "3", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    for interval in document["speedups_ci95"].values():
        assert 0 < interval["ci95_low"] < interval["value"] < interval["ci95_high"]
    assert "inconclusive" in document["verdict"] or all(
        i["ci95_low"] > 1 or i["ci95_high"] < 1 for i in document["speedups_ci95"].values()
    )


def test_busy_and_reserved_gpu_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*VIRTUAL, "-S", "50", "-r", "2", "-n", "4", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    for name, gpus in (("nonsi", 1), ("si", 2), ("dsi", 5)):
        algo = document["algorithms"][name]
        assert algo["gpus"] == gpus
        assert algo["reserved_s"] == pytest.approx([lat * gpus for lat in algo["latency_s"]])
        assert all(b <= r + 1e-9 for b, r in zip(algo["busy_s"], algo["reserved_s"], strict=True))
    assert "reserved GPU-seconds" in document["verdict"] and "busy" in document["verdict"]


@pytest.mark.parametrize(
    ("args", "present", "absent"),
    [
        ([], "cancelled forward frees its server at once", "racing"),
        (["--latency-cv", "0.5"], "racing on independent draws", "slower than non-SI"),
        (["--comm-ms", "1"], "DSI can be slower than non-SI", "racing"),
    ],
)
def test_the_verdict_states_the_assumptions_that_flatter_dsi(
    args: list[str], present: str, absent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*VIRTUAL, "-S", "30", "-r", "2", *args, "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert present in document["verdict"] and absent not in document["verdict"]
    assert len(document["assumptions"]) == 4
