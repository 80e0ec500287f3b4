"""`dsi-online table`: best lookaheads and speedups agree with direct runs; CSV/JSON; bad input."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dsi_online.sim.profile
from dsi_online.cli import main
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.profile import (
    AcceptanceProfile,
    ModelProfile,
    Profile,
    Provenance,
    load_profile,
    profile_to_toml,
)
from dsi_online.sim.runner import run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.studies.table import COLUMNS, TableConfig, build_table, total_repeats

TARGET_MS = 30.0
DRAFTER_MS = 3.0  # c = 0.1: k = 1..4 need 10, 5, 4, 3 target servers
TOKENS = 40
REPEATS = 4
MAX_K = 4
SMALL = ["-S", str(TOKENS), "-r", str(REPEATS), "--max-lookahead", str(MAX_K)]


def write_profile(folder: Path, name: str, acceptance: float | None = 0.8) -> Path:
    """A profile file with constant latencies (TTFT = TPOT), so non-SI's latency is known."""
    profile = Profile(
        name=name,
        target=ModelProfile(f"{name}-target", ModelLatency.constant(TARGET_MS / 1e3)),
        drafter=ModelProfile(f"{name}-drafter", ModelLatency.constant(DRAFTER_MS / 1e3)),
        provenance=Provenance("unit test: illustrative constants", "none", "2026-11-22", "pytest"),
        acceptance=None if acceptance is None else AcceptanceProfile(acceptance, "unit test"),
    )
    path = folder / f"{name}.toml"
    path.write_text(profile_to_toml(profile))
    return path


def table_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["table", *args, "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["assumptions"]  # the assumptions that flatter DSI travel with the rows
    rows: list[dict[str, Any]] = document["rows"]
    return rows


def one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["table", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.fixture
def no_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Neither shipped nor user profiles: the user's folder (returned) starts empty."""
    shipped = tmp_path / "shipped"
    mine = tmp_path / "mine"
    shipped.mkdir()
    mine.mkdir()
    monkeypatch.setattr(dsi_online.sim.profile, "SHIPPED_DIR", shipped)
    monkeypatch.setenv(dsi_online.sim.profile.USER_DIR_ENV, str(mine))
    return mine


@pytest.mark.parametrize("max_servers", [8, 4])
def test_row_agrees_with_direct_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], max_servers: int
) -> None:
    path = write_profile(tmp_path, "pair")
    (row,) = table_json([str(path), *SMALL, "--max-servers", str(max_servers)], capsys)
    profile = load_profile(path)
    direct = {}
    for k in range(1, MAX_K + 1):
        needed = math.ceil(1 / (k * DRAFTER_MS / TARGET_MS) - 1e-9)
        scenario = Scenario(
            target=profile.target.latency,
            drafter=profile.drafter.latency,
            acceptance=0.8,
            lookahead=k,
            servers=min(needed, max_servers),
            tokens=TOKENS,
            repeats=REPEATS,
        )
        direct[k] = (needed, run_scenario(scenario).algorithms)
    best_si = min(direct, key=lambda k: (direct[k][1]["si"].mean_s, k))
    best_dsi = min(direct, key=lambda k: (direct[k][1]["dsi"].mean_s, k))
    needed, dsi_algos = direct[best_dsi]
    nonsi = dsi_algos["nonsi"]
    si = direct[best_si][1]["si"]
    dsi = dsi_algos["dsi"]

    assert row["best_k_si"] == best_si and row["best_k_dsi"] == best_dsi
    assert row["dsi_servers"] == min(needed, max_servers)
    assert row["dsi_servers_needed"] == needed
    assert row["servers_capped"] == (needed > max_servers)
    # Constant latencies, TTFT = TPOT: non-SI takes exactly TOKENS target forwards.
    assert row["nonsi_mean_ms"] == pytest.approx(TOKENS * TARGET_MS)
    assert row["si_mean_ms"] == pytest.approx(si.mean_s * 1e3)
    assert row["dsi_mean_ms"] == pytest.approx(dsi.mean_s * 1e3)
    assert row["si_over_nonsi"] == pytest.approx(nonsi.mean_s / si.mean_s)
    assert row["dsi_over_nonsi"] == pytest.approx(nonsi.mean_s / dsi.mean_s)
    assert row["dsi_over_si"] == pytest.approx(si.mean_s / dsi.mean_s)
    assert row["gpu_seconds_dsi_over_nonsi"] == pytest.approx(
        np.mean(dsi.busy_s) / np.mean(nonsi.busy_s)
    )
    for name in ("si_over_nonsi", "dsi_over_nonsi", "dsi_over_si"):
        low, value, high = (row[f"{name}_ci95_low"], row[name], row[f"{name}_ci95_high"])
        assert low <= value <= high
    assert row["c"] == pytest.approx(DRAFTER_MS / TARGET_MS)
    assert row["target_tpot_ms"] == pytest.approx(TARGET_MS)
    assert row["drafter_ttft_ms"] == pytest.approx(DRAFTER_MS)
    assert row["target"] == "pair-target" and row["drafter"] == "pair-drafter"
    assert row["lossless"] is True
    assert row["acceptance"] == 0.8 and row["acceptance_source"] == "profile"


def test_build_table_one_loop_and_progress(tmp_path: Path) -> None:
    profiles = [load_profile(write_profile(tmp_path, n)) for n in ("one", "two")]
    config = TableConfig(tokens=20, repeats=2, max_lookahead=3)
    ticks: list[int] = []
    rows = build_table(profiles, config, progress=ticks.append)
    assert [r.profile for r in rows] == ["one", "two"]
    assert sum(ticks) == total_repeats(profiles, config) == 2 * 3 * 2
    # Same latencies, acceptance and seed: both profiles give the same runs (busy GPU-seconds
    # differ by rounding: they are differences of the shared loop's absolute times).
    first, second = (
        {k: v for k, v in r.record().items() if k not in ("profile", "path", "target", "drafter")}
        for r in rows
    )
    assert first.pop("gpu_seconds_dsi_over_nonsi") == pytest.approx(
        second.pop("gpu_seconds_dsi_over_nonsi")
    )
    assert first == second


def test_missing_acceptance_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_profile(tmp_path, "no-rate", acceptance=None)
    line = one_line_error([str(path), *SMALL], capsys)
    assert "no-rate" in line and "--acceptance" in line


def test_acceptance_option_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_rate = write_profile(tmp_path, "with-rate", acceptance=0.8)
    without = write_profile(tmp_path, "no-rate", acceptance=None)
    rows = table_json([str(with_rate), str(without), *SMALL, "-a", "0.3"], capsys)
    assert [(r["acceptance"], r["acceptance_source"]) for r in rows] == [(0.3, "user")] * 2
    own = table_json([str(with_rate), *SMALL], capsys)
    assert own[0]["acceptance"] == 0.8
    # A lower acceptance rate leaves fewer accepted drafts: SI's best latency grows.
    assert rows[0]["si_mean_ms"] > own[0]["si_mean_ms"]


def test_csv_and_json_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_profile(tmp_path, "pair")
    out_csv = tmp_path / "table.csv"
    out_json = tmp_path / "table.json"
    args = [str(path), "-S", "20", "-r", "1", "--max-lookahead", "2"]
    assert main(["table", *args, "--csv", str(out_csv), "--json", str(out_json)]) == 0
    assert "pair" in capsys.readouterr().out
    records = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    (doc,) = json.loads(out_json.read_text())["rows"]
    assert tuple(records[0]) == COLUMNS == tuple(doc)
    assert len(records) == 1
    # One repeat: no confidence interval (empty in the CSV, null in the JSON).
    assert records[0]["dsi_over_si_ci95_low"] == "" and doc["dsi_over_si_ci95_low"] is None
    assert int(records[0]["best_k_dsi"]) == doc["best_k_dsi"]
    assert float(records[0]["dsi_over_nonsi"]) == pytest.approx(doc["dsi_over_nonsi"])
    assert records[0]["servers_capped"] == str(doc["servers_capped"]).lower()
    assert not list(tmp_path.glob(".*.tmp"))


def test_every_profile_by_default(no_profiles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_profile(no_profiles, "alpha")
    write_profile(no_profiles, "beta")
    rows = table_json(SMALL, capsys)
    assert sorted(str(r["profile"]) for r in rows) == ["alpha", "beta"]


def test_no_profiles_is_one_line(no_profiles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(SMALL, capsys)
    assert "dsi-online measure latency" in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--max-lookahead", "0"], "--max-lookahead"),
        (["--max-servers", "0"], "--max-servers"),
        (["-S", "0"], "--tokens"),
        (["-r", "0"], "--repeats"),
        (["--seed", "-1"], "--seed"),
        (["-a", "1.5"], "--acceptance"),
        (["-a", "nan"], "--acceptance"),
        (["--csv", "/nonexistent-folder/t.csv"], "--csv"),
        (["--json", "/nonexistent-folder/t.json"], "--json"),
        (["--csv", "-", "--json", "-"], "--csv"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    path = write_profile(tmp_path, "pair")
    assert option in one_line_error([str(path), *args], capsys)


def test_unknown_profile_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no-such-profile" in one_line_error(["no-such-profile"], capsys)
