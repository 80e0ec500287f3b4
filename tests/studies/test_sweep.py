"""`dsi-online sweep`: parsing, the server knee, resume, worker independence, the CSV."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import dsi_online.studies.sweep as sweep_module
from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.sim.scenario import Scenario
from dsi_online.studies.sweep import CSV_FILE, run_sweep
from dsi_online.studies.sweep_grid import LatencySettings, SweepConfig, parse_axis

BASE_MS = LatencySettings(target_ms=10, drafter_ms=1)


def base(**changes: float) -> Scenario:
    return Scenario.from_ms(
        target_ms=10,
        drafter_ms=1,
        acceptance=0.8,
        lookahead=5,
        servers=7,
        tokens=60,
        repeats=8,
        seed=3,
        **changes,
    )


def config(*specs: str) -> SweepConfig:
    return SweepConfig(tuple(parse_axis(s) for s in specs), base(), BASE_MS)


def test_parse_forms() -> None:
    assert parse_axis("servers=1:4").values == (1, 2, 3, 4)
    assert parse_axis("acceptance=0.5,0.9").values == (0.5, 0.9)
    assert parse_axis("drafter_ms=1:2:3").values == (1.0, 1.5, 2.0)
    assert parse_axis("latency-cv=0,0.2").name == "latency_cv"


@pytest.mark.parametrize(
    "spec",
    [
        "servers=0:3",
        "servers=3:1",
        "servers=1.5,2",
        "acceptance=0.5,1.5",
        "bogus=1",
        "servers",
        "drafter_ms=1:2",
        "drafter_ms=1:2:1",
        "lookahead=2,2",
        "comm_ms=-1",
        "latency_correlation=0,1.5",
    ],
)
def test_bad_specs_are_one_line_exit_2(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidParameterError, match="--vary"):
        parse_axis(spec)
    assert main(["sweep", "--vary", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--vary" in err and "NAME=VALUES" in err


def test_three_axes_or_repeated_name_rejected() -> None:
    with pytest.raises(InvalidParameterError):
        config("servers=1:2", "lookahead=1:2", "acceptance=0.5")
    with pytest.raises(InvalidParameterError):
        config("servers=1:2", "servers=3:4")


def test_servers_sweep_knee_and_gains(tmp_path: Path) -> None:
    """DSI latency does not grow with servers (paired, 4 standard errors) and the knee is
    the smallest server count within 1% of the best or not significantly slower."""
    run = run_sweep(config("servers=1:6"), tmp_path / "s", workers=1)
    rows = run.result.rows
    means = [row.latency("dsi").mean for row in rows]
    for fewer, more in itertools.pairwise(rows):
        diff = np.subtract(
            more.runs.algorithms["dsi"].latency_s, fewer.runs.algorithms["dsi"].latency_s
        )
        assert diff.mean() <= 4 * diff.std(ddof=1) / np.sqrt(len(diff)) + 1e-12
    (knee,) = run.result.knees
    best = int(np.argmin(means))
    assert knee.best_s == means[best]
    assert knee.servers <= rows[best].values[0]
    near = [i for i, m in enumerate(means) if m <= 1.01 * means[best]]
    assert knee.servers <= rows[near[0]].values[0]
    assert [row.stops_helping for row in rows].count(True) == 1
    assert all(row.runs.lossless for row in rows)


def test_resume_reuses_journaled_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    cfg = config("acceptance=0.5,0.9")
    first = run_sweep(cfg, out, workers=1)
    assert first.computed == 2
    calls: list[int] = []
    real = sweep_module.compute_chunk

    def counting(chunk: sweep_module.CellChunk) -> list[sweep_module.CellRuns]:
        calls.append(1)
        return real(chunk)

    monkeypatch.setattr(sweep_module, "compute_chunk", counting)
    again = run_sweep(cfg, out, resume=True, workers=1)
    assert (again.computed, again.reused, calls) == (0, 2, [])
    with pytest.raises(InvalidParameterError, match="--resume"):
        run_sweep(config("acceptance=0.5"), out, resume=True, workers=1)


@pytest.mark.subprocess
def test_workers_do_not_change_results(tmp_path: Path) -> None:
    cfg = config("servers=1:3", "acceptance=0.6,0.9")
    one = run_sweep(cfg, tmp_path / "one", workers=1)
    two = run_sweep(cfg, tmp_path / "two", workers=2)
    assert (tmp_path / "one" / CSV_FILE).read_text() == (tmp_path / "two" / CSV_FILE).read_text()
    assert len(one.result.rows) == len(two.result.rows) == 6


def test_cli_csv_columns_and_comm_axis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    args = [
        "sweep",
        "--vary",
        "comm_ms=0,2",
        "--target-ms",
        "10",
        "--drafter-ms",
        "1",
        "-S",
        "40",
        "-r",
        "3",
        "--out",
        str(out),
        "--no-png",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    assert "comm_ms" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO((out / CSV_FILE).read_text())))
    assert [float(r["comm_ms"]) for r in rows] == [0.0, 2.0]
    for key in ("nonsi_s", "si_s", "dsi_s", "dsi_over_si", "dsi_gain_s", "lossless"):
        assert key in rows[0], rows[0].keys()
    # messages cost SI and DSI time, never non-SI
    assert rows[0]["nonsi_s"] == rows[1]["nonsi_s"]
    assert float(rows[1]["si_s"]) > float(rows[0]["si_s"])


def test_latency_axis_with_profile_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["sweep", "--vary", "drafter_ms=1,2", "--profile", "tiny-llama-cpu", "-a", "0.8"]) == 2
    )
    assert "--profile" in capsys.readouterr().err


def test_interrupted_journal_resumes_to_the_same_csv(tmp_path: Path) -> None:
    """A journal cut mid-line (as by a kill) loses only that cell; resume computes the rest
    and writes the same sweep.csv as an uninterrupted run."""
    cfg = config("servers=1:4")
    whole = run_sweep(cfg, tmp_path / "whole", workers=1)
    cut = tmp_path / "cut"
    run_sweep(cfg, cut, workers=1)
    journal = cut / sweep_module.JOURNAL_FILE
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    resumed = run_sweep(cfg, cut, resume=True, workers=1)
    assert (resumed.reused, resumed.computed) == (1, 3)
    assert (cut / CSV_FILE).read_text() == whole.csv_path.read_text()


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_ray_backend_gives_identical_csv(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    cfg = config("servers=1:2", "acceptance=0.6,0.9")
    local = run_sweep(cfg, tmp_path / "local", workers=1)
    ray = run_sweep(cfg, tmp_path / "ray", workers=2, backend="ray")
    assert ray.csv_path.read_text() == local.csv_path.read_text()


def test_latency_correlation_is_an_axis_and_survives_latency_axes() -> None:
    varied = config("latency_correlation=0,1", "latency_cv=0.5,1")
    assert [c.scenario.latency_correlation for c in varied.cells()] == [0, 0, 1, 1]
    correlated = SweepConfig(
        (parse_axis("latency_cv=0.5,1"),), base(latency_correlation=1.0), BASE_MS
    )
    assert all(c.scenario.latency_correlation == 1.0 for c in correlated.cells())


@pytest.mark.subprocess
def test_too_few_repeats_never_say_enough_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", "--vary", "servers=1:4", "-S", "30", "-r", "2", "--no-png", "--json", "-"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    captured = capsys.readouterr()
    (knee,) = json.loads(captured.out)["knees"]
    assert knee["conclusive"] is False and "inconclusive" in knee["sentence"]
    assert "are enough" not in captured.err
