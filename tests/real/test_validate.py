"""`dsi-online validate` on the test pair: the whole pipeline, small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.real.calibrate import Calibration
from dsi_online.real.validate import ValidateRequest
from dsi_online.sim.cost import monotone
from dsi_online.sim.profile import load_profile
from dsi_online.sim.trace import load_trace


def test_monotone_pools_adjacent_violators() -> None:
    assert monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert monotone([3.0, 2.0, 1.0]) == [2.0, 2.0, 2.0]
    assert monotone([1.0, 1.0, 2.0]) == [1.0, 1.0, 2.0]


def test_calibrations_merge_their_samples() -> None:
    def part(scale: float) -> Calibration:
        row = (scale, 2 * scale)
        return Calibration(
            role="target",
            counts=(1, 2),
            contexts=(10, 20),
            samples=((row, row), (row, row)),
            prefill_s=(scale,),
            layers=2,
            idle_ratios=((1.0,),) * 6,
            contended_ratios=(scale,),
        )

    merged = Calibration.merge([part(1.0), part(3.0)])
    assert merged.samples[0][0] == (1.0, 2.0, 3.0, 6.0)
    assert merged.prefill_s == (1.0, 3.0)
    assert merged.contended == 2.0
    cost = merged.cost()
    assert cost.mean_s == pytest.approx((3.0, 3.0))  # mean of 1, 2, 3, 6 at both counts
    assert cost.attention_s == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"lookahead": 0}, "--lookahead/-k"),
        ({"servers": 65}, "--servers/-n"),
        ({"repeats": 0}, "--repeats/-r"),
        ({"workers": "fork"}, "--workers"),
        ({"calibration_samples": 2}, "--calibration-samples"),
    ],
)
def test_bad_requests_name_the_option(changes: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidParameterError, match=option):
        ValidateRequest(**changes)  # type: ignore[arg-type]


@pytest.mark.torch
@pytest.mark.slow
def test_validate_end_to_end_on_the_test_pair(
    test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lossless real runs, the peer token for token, a prediction for each model, and the
    JSON contract; the traces and profile it writes drive `run` again."""
    document, trace, profile = tmp_path / "v.json", tmp_path / "t.json", tmp_path / "p.toml"
    args = ["validate", "--pair", str(test_pair), "-k", "3", "-n", "2", "--prompts", "2"]
    args += ["--prompt-bytes", "16", "-S", "12", "-r", "1", "--calibration-samples", "3"]
    args += ["--workers", "thread", "--json", str(document), "--trace-out", str(trace)]
    assert main([*args, "--profile-out", str(profile)]) == 0
    data = json.loads(document.read_text())
    assert set(data) >= {"pair", "scenario", "acceptance", "algorithms", "speedups"}
    assert set(data["transformers"]) == {"greedy_s", "assisted_s", "tokens_match"}
    assert data["transformers"]["tokens_match"] is True
    for name in ("nonsi", "si", "dsi"):
        entry = data["algorithms"][name]
        assert entry["lossless"] is True
        assert entry["predicted_s"] > 0 and entry["actual_s"] > 0
        expected = 100 * (entry["predicted_s"] - entry["actual_s"]) / entry["actual_s"]
        assert entry["error_pct"] == pytest.approx(expected)
        assert set(entry["error_pct_by_model"]) == {"paper", "traced", "full"}
    for key in ("dsi_over_si", "dsi_over_nonsi", "si_over_nonsi"):
        assert set(data["speedups"][key]) >= {"predicted", "actual"}
    assert 0 <= data["acceptance"]["rate"] <= 1
    assert load_trace(trace).traces == tuple(data["acceptance"]["traces"])
    assert load_profile(profile).target.latency.cost is not None
    capsys.readouterr()
    rerun = ["run", "--clock", "virtual", "--profile", str(profile), "--acceptance-trace"]
    rerun += [str(trace), "--prompt-tokens", "16", "-S", "12", "-k", "3", "-n", "2"]
    assert main(rerun) == 0
    assert "DSI" in capsys.readouterr().out
