"""Profiles: the TOML format round-trips, malformed files name their fault, runs use them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError, ProfileError
from dsi_online.sim.latency import Constant, Empirical, LatencyStream, LogNormal, ModelLatency
from dsi_online.sim.profile import (
    SHIPPED_DIR,
    AcceptanceProfile,
    ModelProfile,
    Profile,
    Provenance,
    load_profile,
    profile_to_toml,
)
from tests.helpers import VIRTUAL, one_error

PROFILE = Profile(
    name="test-pair",
    target=ModelProfile("target", ModelLatency(Constant(0.05), LogNormal(0.02, 0.1))),
    drafter=ModelProfile("drafter", ModelLatency(Empirical((0.002, 0.003)), Constant(0.002))),
    provenance=Provenance("unit test", "none", "2026-11-22", "pytest"),
    acceptance=AcceptanceProfile(0.7, "unit test", by_position=(0.8, 0.7), ci95=(0.6, 0.8)),
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_round_trip(tmp_path: Path) -> None:
    loaded = load_profile(write(tmp_path, profile_to_toml(PROFILE)))
    assert loaded == PROFILE
    assert loaded.c == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("not = [toml", "not valid TOML"),
        ("[target]\n", "[provenance]"),
        (profile_to_toml(PROFILE).replace('kind = "constant"', 'kind = "weibull"', 1), "weibull"),
        (profile_to_toml(PROFILE).replace("ms = 50.0", "ms = -1.0"), "within"),
        (profile_to_toml(PROFILE).replace("rate = 0.7", "rate = 1.7"), "[0, 1]"),
        (profile_to_toml(PROFILE).replace('hardware = "none"\n', ""), "hardware"),
    ],
)
def test_malformed_profiles_name_the_fault(tmp_path: Path, text: str, fault: str) -> None:
    with pytest.raises(ProfileError) as raised:
        load_profile(write(tmp_path, text))
    assert fault in str(raised.value)


def test_missing_file() -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile("/nonexistent.toml")


def test_run_with_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, profile_to_toml(PROFILE))
    args = ["run", "--clock", "virtual", "--profile", str(path), "-S", "40", "-r", "2"]
    assert main([*args, "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"]["profile"] == "test-pair"
    assert doc["scenario"]["acceptance"] == 0.7
    assert doc["scenario"]["target_ttft_ms"] == pytest.approx(50)
    assert main([*args, "-a", "0.2", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["scenario"]["acceptance"] == 0.2
    assert main([*args, "--target-ms", "10"]) == 2
    assert "--target-ms" in capsys.readouterr().err


def test_streams_draw_ttft_first_then_tpot() -> None:
    stream = LatencyStream(ModelLatency.constant(0.02, 0.5), np.random.default_rng(0))
    assert [stream.next() for _ in range(3)] == [0.5, 0.02, 0.02]


def test_lognormal_mean_and_cv() -> None:
    draws = LogNormal(0.03, 0.5).sample(np.random.default_rng(1), 200_000)
    se = 0.03 * 0.5 / np.sqrt(len(draws))
    assert abs(draws.mean() - 0.03) < 5 * se
    assert draws.std() / draws.mean() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_latencies_raise(value: float) -> None:
    with pytest.raises(InvalidParameterError):
        Constant(value)
    with pytest.raises(InvalidParameterError):
        LogNormal(value, 0.1)


def test_profiles_resolve_by_the_name_they_are_listed_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSI_ONLINE_PROFILES", str(tmp_path))
    text = (SHIPPED_DIR / "tiny-llama-cpu.toml").read_text(encoding="utf-8")
    (tmp_path / "file-stem.toml").write_text(
        text.replace('name = "tiny-llama-cpu"', 'name = "listed-name"'), encoding="utf-8"
    )
    (tmp_path / "broken.toml").write_text("not toml [", encoding="utf-8")
    assert main(["profiles", "--json", "-"]) == 0
    names = [entry["name"] for entry in json.loads(capsys.readouterr().out)]
    assert "listed-name" in names
    assert main([*VIRTUAL, "--profile", "listed-name", "-a", "0.8", "-S", "10", "-r", "1"]) == 0
    capsys.readouterr()
    line = one_error(capsys, [*VIRTUAL, "--profile", "no-such-profile"])
    assert "listed-name" in line and "broken" not in line
