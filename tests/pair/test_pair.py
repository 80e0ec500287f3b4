"""The byte-level model pair: corpus, recipes, training, cache, loading, prompts, CLI."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from dsi_online.cli import main
from dsi_online.errors import InvalidParameterError
from dsi_online.pair import cache_root, default_pair_dir, heldout_prompts
from dsi_online.pair.corpus import Corpus, is_heldout
from dsi_online.pair.info import INFO_FILE, PairInfo
from dsi_online.pair.recipes import RECIPES, get_recipe
from dsi_online.pair.train import total_units


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _no_training(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("training started")


@pytest.fixture(autouse=True)
def _restore_omp_wait_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pair train` sets OMP_WAIT_POLICY for its process: undo it after each test."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DSI_ONLINE_CACHE", str(folder))
    return folder


# --- corpus, recipes, cache folder (no torch) -----------------------------------------------


def test_corpus_is_sorted_split_by_file_and_hashed() -> None:
    corpus = Corpus.from_stdlib()
    assert corpus == Corpus.from_stdlib()
    assert list(corpus.train_files) == sorted(corpus.train_files)
    assert corpus.heldout_files and not set(corpus.heldout_files) & set(corpus.train_files)
    assert all(is_heldout(name) for name in corpus.heldout_files)
    assert not any(is_heldout(name) for name in corpus.train_files)
    assert len(corpus.read_train()) == corpus.train_bytes > 20 * corpus.heldout_bytes / 2
    assert len(corpus.sha256) == 64 and corpus.sha256 != corpus.heldout_sha256


def test_corpus_hash_changes_with_any_file(tmp_path: Path) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(f"x = {name!r}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not python\n", encoding="utf-8")
    before = Corpus.from_stdlib(tmp_path)
    assert before.train_files + before.heldout_files == tuple(
        sorted(before.train_files + before.heldout_files)
    )
    assert before.train_bytes + before.heldout_bytes == 2 * len("x = 'a.py'\n")
    (tmp_path / "b.py").write_text("x = 'B'\n", encoding="utf-8")
    assert Corpus.from_stdlib(tmp_path).sha256 != before.sha256


@pytest.mark.torch
def test_heldout_prompts_are_deterministic_lines_of_heldout_files(test_pair: Path) -> None:
    corpus = Corpus.from_stdlib()
    prompts = heldout_prompts(test_pair, count=6, prompt_bytes=40, seed=3)
    assert prompts == heldout_prompts(PairInfo.read(test_pair), 6, 40, 3)
    assert prompts != heldout_prompts(test_pair, 6, 40, 4)
    texts = corpus.read_heldout()
    for prompt in prompts:
        assert len(prompt) == 40 and all(0 <= b < 256 for b in prompt)
        assert any(b"\n" + bytes(prompt) in b"\n" + text for text in texts)
    with pytest.raises(InvalidParameterError, match="prompts asked"):
        heldout_prompts(test_pair, count=10**9, prompt_bytes=40)


def test_learning_rate_warms_up_then_decays_to_its_floor() -> None:
    schedule = get_recipe("test").target_schedule
    rates = [schedule.lr(step) for step in range(schedule.steps + 1)]
    peak = schedule.warmup_steps - 1
    assert math.isclose(rates[peak], schedule.peak_lr) and max(rates) <= schedule.peak_lr * 1.001
    assert rates[:peak] == sorted(rates[:peak])
    assert rates[peak + 1 :] == sorted(rates[peak + 1 :], reverse=True)
    assert math.isclose(rates[-1], schedule.final_lr)


def test_cache_folder_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSI_ONLINE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dsi-online"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "dsi-online"
    monkeypatch.setenv("DSI_ONLINE_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    folder = default_pair_dir("test", seed=7)
    assert folder.parent == tmp_path / "mine" / "pairs"
    assert folder.name.startswith("test-seed7-")
    assert default_pair_dir("test", seed=8) != folder


# --- bad input (no torch: refused before training) ------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "huge"], "--size"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "x"], "--seed"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], needle: str, empty_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pair", "train", *args]) == 2
    assert needle in _error_line(capsys)


def test_unwritable_out_fails_before_training(
    tmp_path: Path,
    empty_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("dsi_online.pair.store.train_models", _no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    assert main(["pair", "train", "--size", "test", "--out", str(blocker / "pair")]) == 2
    assert "--out" in _error_line(capsys)
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("", encoding="utf-8")
    assert main(["pair", "train", "--size", "test", "--out", str(full)]) == 2
    assert "--out" in _error_line(capsys) and not empty_cache.exists()


def test_missing_extra_is_one_clear_line(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    assert main(["pair", "train", "--size", "test"]) == 2
    line = _error_line(capsys)
    assert "dsi-online pair" in line and "pip install 'dsi-online[measure]'" in line


# --- training (torch) -----------------------------------------------------------------------


@pytest.mark.torch
def test_test_pair_is_complete_with_provenance(test_pair: Path) -> None:
    info = PairInfo.read(test_pair)
    assert PairInfo.read(test_pair) == info and info.path == test_pair
    assert info.to_toml() == (test_pair / INFO_FILE).read_text(encoding="utf-8")
    assert (info.size, info.seed, info.command) == (
        "test",
        0,
        "dsi-online pair train --size test --seed 0",
    )
    for name in ("target", "drafter"):
        assert (test_pair / name / "config.json").is_file()
        assert (test_pair / name / "model.safetensors").is_file()
    recipe = RECIPES["test"]
    for model, shape, schedule in (
        (info.target, recipe.target, recipe.target_schedule),
        (info.drafter, recipe.drafter, recipe.drafter_schedule),
    ):
        assert (model.layers, model.hidden, model.steps) == (
            shape.layers,
            shape.hidden,
            schedule.steps,
        )
        assert model.parameters > 0 and model.seconds > 0
        assert math.isfinite(model.final_train_loss) and 0 < model.heldout_loss < math.log(256)
    assert info.target.parameters > info.drafter.parameters
    assert "distilled" in info.drafter.objective
    agreement = info.agreement
    assert 0 <= agreement.ci95[0] <= agreement.rate <= agreement.ci95[1] <= 1
    assert agreement.positions == recipe.eval_prompts * recipe.eval_new_tokens
    assert 0 <= agreement.text_ci95[0] <= agreement.text_rate <= agreement.text_ci95[1] <= 1
    assert agreement.text_positions == recipe.eval_sequences * recipe.target_schedule.seq_len
    assert info.latency.target_ms > 0 and info.latency.drafter_ms > 0
    assert math.isclose(info.latency.c, info.latency.drafter_ms / info.latency.target_ms)
    corpus = Corpus.from_stdlib()
    assert info.corpus.sha256 == corpus.sha256
    assert info.corpus.heldout_files == corpus.heldout_files
    assert info.corpus.python_version == corpus.python_version
    env = info.environment
    assert env.torch and env.transformers and env.hardware and env.train_threads == recipe.threads
    assert "token id = byte value" in info.tokenization


@pytest.mark.torch
def test_cached_pair_is_reused_without_training(
    test_pair: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsi_online.pair import train_pair

    monkeypatch.setattr("dsi_online.pair.store.train_models", _no_training)
    result = train_pair("test", seed=0)
    assert not result.trained and result.path == test_pair
    assert main(["pair", "train", "--size", "test"]) == 0
    captured = capsys.readouterr()
    assert "reused" in captured.out and "training" not in captured.err


@pytest.mark.torch
def test_training_is_announced_once_the_checks_pass(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache miss says on stderr that it trains, and where, before the minutes of work."""
    pytest.importorskip("torch")

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("dsi_online.pair.store.train_models", interrupted)
    assert main(["pair", "train", "--size", "test"]) == 130
    err = capsys.readouterr().err
    steps = total_units(get_recipe("test"))
    assert f"training the test pair (seed 0), {steps} steps, into the cache {empty_cache}" in err


@pytest.mark.torch
def test_out_copies_the_pair_and_loads(
    test_pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    from dsi_online.pair import load_pair

    out = tmp_path / "nested" / "my-pair"
    assert main(["pair", "train", "--size", "test", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out.replace("\n", "")
    assert not list(out.parent.glob(".tmp-*"))
    copied, cached = load_pair(out), load_pair(test_pair)
    assert copied.info.key == cached.info.key and copied.info.path == out
    ids = torch.tensor([heldout_prompts(test_pair, 1, 24)[0]])
    for a, b in ((copied.target, cached.target), (copied.drafter, cached.drafter)):
        assert torch.equal(a(ids).logits, b(ids).logits)
    assert main(["pair", "train", "--size", "test", "--out", str(out)]) == 0  # already there


@pytest.mark.slow
@pytest.mark.torch
def test_loaded_pair_generates_to_the_requested_length(test_pair: Path) -> None:
    """No EOS: generation, assisted or not, always yields the tokens asked for."""
    torch = pytest.importorskip("torch")
    from dsi_online.pair import load_pair

    pair = load_pair(test_pair)
    ids = torch.tensor([heldout_prompts(test_pair, 1, 16)[0]])
    plain = pair.target.generate(ids, max_new_tokens=12, do_sample=False)
    assisted = pair.target.generate(
        ids, max_new_tokens=12, do_sample=False, assistant_model=pair.drafter
    )
    assert plain.shape == (1, 16 + 12)
    assert torch.equal(plain, assisted)


@pytest.mark.torch
@pytest.mark.slow
def test_same_seed_gives_identical_weights() -> None:
    torch = pytest.importorskip("torch")
    from dsi_online.pair.train import train_models

    recipe = RECIPES["test"]
    tiny = dataclasses.replace(
        recipe,
        target_schedule=dataclasses.replace(recipe.target_schedule, steps=4, warmup_steps=2),
        drafter_schedule=dataclasses.replace(recipe.drafter_schedule, steps=3, warmup_steps=1),
        eval_prompts=2,
    )
    corpus = Corpus.from_stdlib()
    first, again, other = (train_models(tiny, seed, corpus) for seed in (5, 5, 6))
    for name in ("target", "drafter"):
        a, b, c = (getattr(p, name).state_dict() for p in (first, again, other))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.torch
def test_interrupted_training_leaves_no_pair(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from dsi_online.pair import train_pair

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("dsi_online.pair.store.train_models", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_pair("test", seed=0)
    assert list((empty_cache / "pairs").iterdir()) == []
    assert not (default_pair_dir("test", 0) / INFO_FILE).exists()
