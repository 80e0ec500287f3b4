"""Measured inputs: presets, latency and acceptance measurement, profiles listing."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsi_online.cli import main
from dsi_online.measure.acceptance import estimate_acceptance
from dsi_online.measure.presets import PAIRS, PRESETS
from dsi_online.sim.latency import Empirical
from dsi_online.sim.profile import SHIPPED_DIR, load_profile, resolve_profile, shipped_profiles
from dsi_online.sim.trace import load_trace
from tests.helpers import one_error

SHIPPED = "tiny-llama-cpu"
PROMPTS = ["def fibonacci(n):", "The capital of France is", "Once upon a time", "USER: hi"]


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    monkeypatch.setenv("DSI_ONLINE_PROFILES", str(directory))
    return directory


def _shipped_path() -> Path:
    return SHIPPED_DIR / f"{SHIPPED}.toml"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --- presets ------------------------------------------------------------------------------


def test_pairs_share_a_vocabulary() -> None:
    for target, drafter in PAIRS.values():
        assert PRESETS[target].vocab_size == PRESETS[drafter].vocab_size


def test_every_preset_cites_its_source() -> None:
    for preset in PRESETS.values():
        if preset.model != "none":
            assert preset.source.startswith("https://huggingface.co/")


@pytest.mark.torch
def test_presets_build_transformers_configs() -> None:
    transformers = pytest.importorskip("transformers")
    for preset in PRESETS.values():
        config = transformers.AutoConfig.for_model(preset.model_type, **preset.config_kwargs())
        assert config.model_type == preset.model_type
        assert config.vocab_size == preset.vocab_size
        assert config.hidden_size == preset.hidden_size
        assert config.num_hidden_layers == preset.layers
        assert config.num_attention_heads == preset.heads


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize(
    ("preset", "size"), [("vicuna-13b", 13e9), ("vicuna-7b", 7e9), ("vicuna-68m", 68e6)]
)
def test_preset_parameter_counts_match_the_model_names(preset: str, size: float) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    p = PRESETS[preset]
    config = transformers.AutoConfig.for_model(p.model_type, **p.config_kwargs())
    with torch.device("meta"):  # shapes only, no memory
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(x.numel() for x in model.parameters()) == pytest.approx(size, rel=0.05)


# --- the shipped profile -------------------------------------------------------------------


def test_shipped_measured_profile_loads_with_provenance() -> None:
    profile = resolve_profile(SHIPPED)
    assert profile.path in shipped_profiles()
    prov = profile.provenance
    assert prov.command.startswith("dsi-online measure latency --target tiny-llama ")
    assert prov.date == "2026-11-22"
    assert "CPU" in prov.hardware
    assert "torch" in prov.notes and "transformers" in prov.notes
    for model in (profile.target, profile.drafter):
        assert isinstance(model.latency.ttft, Empirical)
        assert isinstance(model.latency.tpot, Empirical)
        assert len(model.latency.tpot.samples) >= 100
    assert 0 < profile.c < 1


def test_shipped_profile_drives_a_simulation() -> None:
    """non-SI's mean latency is E[TTFT] + (S - 1) E[TPOT], within 5 standard errors."""
    from dsi_online.sim.runner import run_scenario
    from dsi_online.sim.scenario import Scenario

    profile = resolve_profile(SHIPPED)
    tokens, repeats = 50, 8
    scenario = Scenario(
        target=profile.target.latency,
        drafter=profile.drafter.latency,
        acceptance=0.7,
        lookahead=4,
        servers=3,
        tokens=tokens,
        repeats=repeats,
        seed=1,
    )
    result = run_scenario(scenario, clock="virtual")
    assert result.lossless
    ttft = np.asarray(profile.target.latency.ttft.samples)
    tpot = np.asarray(profile.target.latency.tpot.samples)
    expected = ttft.mean() + (tokens - 1) * tpot.mean()
    se = math.sqrt((ttft.var() + (tokens - 1) * tpot.var()) / repeats)
    assert abs(result.algorithms["nonsi"].mean_s - expected) <= 5 * se
    for name in ("si", "dsi"):
        assert all(latency > 0 for latency in result.algorithms[name].latency_s)


# --- the acceptance estimator (no torch) ----------------------------------------------------


def _by_position_by_definition(matches: list[list[bool]], lookahead: int) -> list[float]:
    rates = []
    for i in range(1, lookahead + 1):
        given = accepted = 0
        for m in matches:
            for s in range(len(m) - i + 1):
                if all(m[s : s + i - 1]):
                    given += 1
                    accepted += m[s + i - 1]
        if given == 0:
            break
        rates.append(accepted / given)
    return rates


def test_estimator_on_a_hand_worked_case() -> None:
    est = estimate_acceptance([[True, True, False, True], [True, False]], lookahead=3)
    assert est.rate == pytest.approx(4 / 6)
    assert est.by_position == pytest.approx((4 / 6, 1 / 3, 0.0))
    assert est.by_position_windows == (6, 3, 1)
    assert est.positions == 6 and est.prompts == 2


def test_estimator_by_position_matches_its_definition() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        matches = [
            [bool(x) for x in rng.random(rng.integers(1, 12)) < rng.uniform(0.2, 0.95)]
            for _ in range(rng.integers(1, 5))
        ]
        est = estimate_acceptance(matches, lookahead=6, bootstrap=200)
        assert est.by_position == pytest.approx(tuple(_by_position_by_definition(matches, 6)))
        assert est.by_position[0] == pytest.approx(est.rate)


def test_estimator_interval() -> None:
    one = estimate_acceptance([[True, False, True]], lookahead=2)
    assert one.ci95 is None
    same = estimate_acceptance([[True, False]] * 5, lookahead=2)
    assert same.ci95 == (0.5, 0.5)
    mixed = estimate_acceptance([[True] * 9 + [False], [False] * 4 + [True]], lookahead=2)
    assert mixed.ci95 is not None
    low, high = mixed.ci95
    assert 0.2 <= low < mixed.rate < high <= 0.9


# --- measuring with torch (tiny random models) ----------------------------------------------


class _BanTopToken:
    """The target with its greedy token forbidden: a drafter that always differs from it."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, ids: Any, **kwargs: Any) -> Any:
        out = self.model(ids, **kwargs)
        top = out.logits.argmax(-1, keepdim=True)
        out.logits.scatter_(-1, top, float("-inf"))
        return out


@pytest.mark.torch
@pytest.mark.slow
def test_identical_drafter_gives_acceptance_one(prompts_file: Path) -> None:
    pytest.importorskip("torch")
    from dsi_online.measure.acceptance import AcceptanceRequest, measure_acceptance

    request = AcceptanceRequest(
        target="tiny-llama",
        drafter="tiny-llama",
        prompts=prompts_file,
        max_new_tokens=12,
        lookahead=4,
        bootstrap=200,
        device="cpu",
    )
    est = measure_acceptance(request).estimate
    assert est.rate == 1.0
    assert est.ci95 == (1.0, 1.0)
    assert est.by_position == (1.0, 1.0, 1.0, 1.0)
    assert est.positions == 12 * len(PROMPTS)


@pytest.mark.torch
@pytest.mark.slow
def test_always_different_drafter_gives_acceptance_zero() -> None:
    pytest.importorskip("torch")
    from dsi_online.measure.acceptance import greedy_matches
    from dsi_online.measure.models import build_preset
    from dsi_online.measure.presets import get_preset

    target = build_preset(get_preset("tiny-llama"), device="cpu", dtype="float32", seed=0)
    drafter = _BanTopToken(target.module)
    matches = [greedy_matches(target.module, drafter, list(p.encode()), 10) for p in PROMPTS]
    assert [len(m) for m in matches] == [10] * len(PROMPTS)
    est = estimate_acceptance(matches, lookahead=3, bootstrap=200)
    assert est.rate == 0.0
    assert est.ci95 == (0.0, 0.0)
    assert est.by_position == (0.0,)


@pytest.mark.torch
@pytest.mark.slow
def test_measure_latency_then_acceptance_into_one_profile(
    tmp_path: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "pair.toml"
    common = ["--device", "cpu", "--seed", "3"]
    latency = ["measure", "latency", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"]
    latency += ["--prompt-tokens", "8,16", "--samples", "3", "--warmup", "1", "--out", str(out)]
    assert main([*latency, *common]) == 0
    measured = load_profile(out)
    assert measured.name == "pair"
    assert measured.acceptance is None
    assert len(measured.target.latency.tpot.samples) == 3
    assert measured.provenance.command.startswith("dsi-online measure latency --target tiny-llama")
    assert "--prompt-tokens 8,16" in measured.provenance.command
    capsys.readouterr()

    acceptance = ["measure", "acceptance", "--target", "tiny-llama", "--drafter", "tiny-llama"]
    acceptance += ["--prompts", str(prompts_file), "--max-new-tokens", "6", "--lookahead", "3"]
    trace = tmp_path / "trace.json"
    acceptance += ["--profile", str(out), "--trace-out", str(trace), "--json", "-"]
    assert main([*acceptance, *common]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["estimate"]["rate"] == 1.0
    assert load_trace(trace).traces == ("111111",) * len(PROMPTS) == tuple(document["matches"])
    replay = ["run", "--profile", str(out), "--acceptance-trace", str(trace), "-S", "6"]
    assert main([*replay, "--clock", "virtual", "-r", "2", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["lossless"] is True
    updated = load_profile(out)
    assert updated.acceptance is not None
    assert updated.acceptance.rate == 1.0
    assert updated.acceptance.samples == 6 * len(PROMPTS)
    assert updated.acceptance.source.startswith("dsi-online measure acceptance --target tiny-llama")
    assert updated.target == measured.target and updated.drafter == measured.drafter
    assert updated.provenance == measured.provenance


@pytest.mark.torch
@pytest.mark.slow
def test_measure_latency_by_tokens_prices_forwards_in_the_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--by-tokens: forwards over 1, 2 and 6 new tokens at the context decoding reached become
    the profile's token cost, which `run` then draws every forward from."""
    pytest.importorskip("torch")
    out = tmp_path / "priced.toml"
    args = ["measure", "latency", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"]
    args += ["--prompt-tokens", "8", "--by-tokens", "1,2,6", "--samples", "3", "--warmup", "1"]
    assert main([*args, "--device", "cpu", "--out", str(out)]) == 0
    profile = load_profile(out)
    for model in (profile.target, profile.drafter):
        cost = model.latency.cost
        assert cost is not None
        assert cost.tokens == (1, 2, 6)
        assert cost.reference_context == 8 + 1 + 3  # prompt, warm-up and timed decodes
        assert list(cost.mean_s) == sorted(cost.mean_s)  # made non-decreasing
        assert len(cost.ratios) == 3 * 3
    assert "--by-tokens 1,2,6" in profile.provenance.command
    capsys.readouterr()
    run = ["run", "--profile", str(out), "-a", "0.8", "--clock", "virtual", "-S", "20", "-r", "2"]
    assert main([*run, "--prompt-tokens", "8", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"]["token_cost"] is True
    assert document["lossless"] is True


@pytest.mark.torch
def test_measure_latency_of_one_model_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    args = ["measure", "latency", "--target", "tiny-llama-drafter", "--prompt-tokens", "4"]
    assert main([*args, "--samples", "2", "--warmup", "0", "--device", "cpu", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["drafter"] is None and document["c"] is None
    assert len(document["target"]["tpot_s"]) == 2
    assert document["environment"]["device"] == "cpu"
    assert document["environment"]["dtype"] == "float32"


@pytest.mark.torch
@pytest.mark.slow
def test_checkpoint_directory_measures_like_its_preset(tmp_path: Path, prompts_file: Path) -> None:
    """A saved preset loads back as a checkpoint: same weights, so acceptance 1 against it."""
    pytest.importorskip("torch")
    from dsi_online.measure.acceptance import AcceptanceRequest, measure_acceptance
    from dsi_online.measure.models import build_preset
    from dsi_online.measure.presets import get_preset

    checkpoint = tmp_path / "tiny-checkpoint"
    preset = build_preset(get_preset("tiny-llama"), device="cpu", dtype="float32", seed=5)
    preset.module.save_pretrained(checkpoint)
    request = AcceptanceRequest(
        target=str(checkpoint),
        drafter="tiny-llama",
        prompts=prompts_file,
        max_new_tokens=8,
        bootstrap=200,
        device="cpu",
        seed=5,
    )
    result = measure_acceptance(request)
    assert result.target == "tiny-checkpoint"
    assert result.estimate.rate == 1.0


@pytest.mark.torch
def test_unknown_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    args = ["measure", "latency", "--target", str(Path("no") / "such-model"), "--device", "cpu"]
    assert main(args) == 2
    line = _error_line(capsys)
    assert "--target" in line and "tiny-llama" in line and "--allow-download" in line


# --- the optional extra is missing ----------------------------------------------------------


@pytest.mark.parametrize("module", ["torch", "transformers"])
def test_missing_extra_is_one_clear_line(
    module: str,
    prompts_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    prompts = ["--prompts", str(prompts_file)]
    commands = [
        ["measure", "latency", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"],
        ["measure", "acceptance", "--target", "tiny-llama", "--drafter", "tiny-llama", *prompts],
    ]
    for args in commands:
        assert main([*args, "--device", "cpu"]) == 2
        line = _error_line(capsys)
        assert "pip install 'dsi-online[measure]'" in line


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["latency", "--target", "tiny-llama", "--samples", "1"], "--samples"),
        (["latency", "--target", "tiny-llama", "--warmup", "-1"], "--warmup"),
        (["latency", "--target", "tiny-llama", "--prompt-tokens", "8,x"], "--prompt-tokens"),
        (["latency", "--target", "tiny-llama", "--prompt-tokens", "0"], "--prompt-tokens"),
        (["latency", "--target", "tiny-llama", "--by-tokens", "4,2"], "--by-tokens"),
        (["latency", "--target", "tiny-llama", "--by-tokens", "1"], "--by-tokens"),
        (["latency", "--target", "tiny-llama", "--by-tokens", "0,1"], "--by-tokens"),
        (["latency", "--target", "tiny-llama", "--by-tokens", "1,x"], "--by-tokens"),
        (["latency", "--target", "tiny-llama", "--out", "p.toml"], "--drafter"),
        (["latency", "--target", "tiny-llama", "--device", "tpu"], "--device"),
        (["latency", "--target", "tiny-llama", "--dtype", "int8"], "--dtype"),
        (["acceptance", "--target", "a", "--drafter", "b", "--prompts", "nope.txt"], "--prompts"),
        (["acceptance", "--target", "a", "--drafter", "b", "--prompts", "x", "-k", "0"], "--look"),
        (["acceptance", "--target", "a", "--drafter", "b", "--prompts", "x", "--bootstrap", "5"],
         "--bootstrap"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", *args]) == 2
    assert needle in _error_line(capsys)


def test_bad_profile_is_refused_before_measuring(
    tmp_path: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = 'x'\n", encoding="utf-8")
    args = ["measure", "acceptance", "--target", "a", "--drafter", "b"]
    assert main([*args, "--prompts", str(prompts_file), "--profile", str(broken)]) == 2
    assert "provenance" in _error_line(capsys)


# --- dsi-online profiles --------------------------------------------------------------------


def test_profiles_json_lists_shipped_and_user_profiles(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(_shipped_path(), user_dir / "my-pair.toml")
    (user_dir / "broken.toml").write_text("not toml [", encoding="utf-8")
    assert main(["profiles", "--json", "-"]) == 0
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert "broken.toml" in captured.err
    stems = [Path(e["path"]).stem for e in entries]
    assert stems.count("my-pair") == 1 and SHIPPED in stems and "broken" not in stems
    keys = {"name", "source", "hardware", "date", "path", "target", "drafter", "c", "acceptance"}
    for entry in entries:
        assert keys <= set(entry)
        profile = load_profile(entry["path"])
        assert entry["hardware"] == profile.provenance.hardware
        assert entry["c"] == pytest.approx(profile.c)
    origins = {Path(e["path"]).stem: e["origin"] for e in entries}
    assert origins["my-pair"] == "user" and origins[SHIPPED] == "shipped"


def test_profiles_without_subcommand_prints_a_table(
    user_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per profile
    assert main(["profiles"]) == 0
    assert SHIPPED in capsys.readouterr().out


def test_profiles_show(
    user_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["profiles", "show", SHIPPED, "--json", "-"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["name"] == resolve_profile(SHIPPED).name
    assert entry["origin"] == "shipped"
    assert main(["profiles", "show", SHIPPED]) == 0
    assert "dsi-online measure latency" in capsys.readouterr().out
    assert main(["profiles", "show", "no-such-profile"]) == 2
    assert "no-such-profile" in _error_line(capsys)


def test_user_profiles_resolve_by_name_first(user_dir: Path) -> None:
    text = _shipped_path().read_text(encoding="utf-8")
    (user_dir / f"{SHIPPED}.toml").write_text(
        text.replace(f'name = "{SHIPPED}"', 'name = "mine"'), encoding="utf-8"
    )
    assert resolve_profile(SHIPPED).name == "mine"
    assert resolve_profile(str(_shipped_path())).name == SHIPPED


@pytest.mark.torch
def test_missing_checkpoint_directory_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    args = ["measure", "latency", "--target", "/nonexistent/checkpoint", "--device", "cpu"]
    assert "no such directory" in one_error(capsys, args)


@pytest.mark.torch
def test_presets_that_cannot_fit_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr(
        "dsi_online.measure.torch_runtime.available_memory", lambda device: 16 * 10**9
    )
    args = ["measure", "latency", "--target", "vicuna-13b", "--device", "cpu"]
    line = one_error(capsys, args)
    assert "vicuna-13b" in line and "float32" in line and "--dtype" in line and "GPU" in line


@pytest.mark.torch
@pytest.mark.slow
def test_acceptance_refuses_different_vocabularies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from dsi_online.measure.presets import PRESETS

    preset = PRESETS["tiny-llama-drafter"]
    config = transformers.AutoConfig.for_model(
        preset.model_type, **(preset.config_kwargs() | {"vocab_size": 1000})
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "small")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n", encoding="utf-8")
    args = ["measure", "acceptance", "--target", "tiny-llama", "--drafter", str(tmp_path / "small")]
    line = one_error(capsys, [*args, "--prompts", str(prompts), "--device", "cpu"])
    assert "1000" in line and "2048" in line and "tokenizer" in line
