"""The pair cache, training on demand, loading a pair, and held-out prompts.

Cache: `$DSI_ONLINE_CACHE` if set, else `$XDG_CACHE_HOME/dsi-online`, else
`~/.cache/dsi-online`; a pair lives in `pairs/SIZE-seedSEED-KEY/`, where KEY digests the
recipe, the seed, the corpus's SHA-256 and the torch and transformers versions: anything
that changes the weights changes the folder. A pair is trained into a temporary folder next
to it and renamed into place when complete (pair.toml written last), so an interrupted
training never leaves a folder a later call would take for a cached pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, MissingExtraError, require
from dsi_online.measure.torch_runtime import Environment, torch_module, transformers_module
from dsi_online.pair.corpus import HELDOUT_MODULUS, Corpus, Prompt
from dsi_online.pair.info import (
    FORMAT,
    INFO_FILE,
    TOKENIZATION,
    CorpusInfo,
    EnvironmentInfo,
    PairInfo,
)
from dsi_online.pair.recipes import Recipe, get_recipe
from dsi_online.pair.train import ProgressCallback, train_models
from dsi_online.studies.results import resolve_path


def cache_root() -> Path:
    """The user cache folder of dsi-online (module docstring)."""
    if os.environ.get("DSI_ONLINE_CACHE"):
        return Path(os.environ["DSI_ONLINE_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "dsi-online"
    return Path.home() / ".cache" / "dsi-online"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def pair_key(recipe: Recipe, seed: int, corpus: Corpus) -> str:
    """The digest of everything the weights depend on (module docstring)."""
    parts = [recipe.key(), str(seed), corpus.sha256, _version("torch"), _version("transformers")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _check_seed(seed: int) -> None:
    require(seed >= 0, f"seed (--seed) must be >= 0; got {seed}")


def _pair_folder(recipe: Recipe, seed: int, corpus: Corpus) -> tuple[Path, str]:
    """The cache folder of a pair, and its key."""
    key = pair_key(recipe, seed, corpus)
    return cache_root() / "pairs" / f"{recipe.name}-seed{seed}-{key[:16]}", key


def default_pair_dir(size: str = "small", seed: int = 0) -> Path:
    """Where the cache keeps the pair of this size and seed for this Python and torch."""
    recipe = get_recipe(size)
    _check_seed(seed)
    return _pair_folder(recipe, seed, Corpus.from_stdlib())[0]


def _require_extra() -> None:
    """MissingExtraError naming this command unless torch and transformers import."""
    try:
        torch_module()
        transformers_module()
    except MissingExtraError:
        raise MissingExtraError(
            "dsi-online pair needs torch and transformers: pip install 'dsi-online[measure]'"
        ) from None


def train_command(size: str, seed: int) -> str:
    """The command that trains (or finds) this pair."""
    return shlex.join(["dsi-online", "pair", "train", "--size", size, "--seed", str(seed)])


_TEMPORARY = re.compile(r"^\.tmp-.+-pid(\d+)-[A-Za-z0-9_]+$")
"""A temporary folder's name: `.tmp-NAME-pidPID-RANDOM`, PID the process writing it."""


def _temporary_folder(beside: Path) -> Path:
    """A new hidden folder next to `beside`, named after this process (so that a later
    trainer can tell it from a live one's), readable like a folder made by mkdir (mkdtemp's
    own mode, 0700, would stay on the renamed pair)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{beside.name}-pid{os.getpid()}-", dir=beside.parent))
    tmp.chmod(0o755)
    return tmp


OUT = "out (--out)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary folders in `folder` whose writer has died (a trainer killed with
    `kill -9` leaves its folder behind); the folders removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = _TEMPORARY.match(entry.name)
            if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _writable_folder(folder: Path, what: str) -> None:
    """InvalidParameterError unless a folder can be created inside `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=".probe-", dir=folder)).rmdir()
    except OSError as exc:
        raise InvalidParameterError(
            f"{what} {folder} cannot be written ({exc.strerror or exc})"
        ) from None


def check_out(out: Path, key: str) -> bool:
    """Before any training: whether `out` (its symlinks followed) already holds this pair;
    InvalidParameterError when `out` holds something else or its folder cannot be written."""
    target = resolve_path(out, OUT)
    if target.exists():
        if (target / INFO_FILE).is_file():
            held = PairInfo.read(target)
            require(held.key == key, f"{OUT} {out} holds another pair (key {held.key[:16]})")
            return True
        require(target.is_dir(), f"{OUT} {out} exists and is not a folder")
        require(not any(target.iterdir()), f"{OUT} {out} exists and is not empty")
    _writable_folder(target.parent, f"{OUT} {out}: the folder")
    return False


def _corpus_info(corpus: Corpus) -> CorpusInfo:
    return CorpusInfo(
        source=(
            "the regular *.py files directly in the Python standard library's folder "
            "(sysconfig.get_paths()['stdlib'], no subfolders), sorted by name, bytes as they are"
        ),
        python_version=corpus.python_version,
        split=(
            f"a file is held out when the first 8 hex digits of the SHA-256 of its name, as an "
            f"integer, are divisible by {HELDOUT_MODULUS}; training windows come only from the "
            f"other files"
        ),
        train_files=len(corpus.train_files),
        heldout_files=corpus.heldout_files,
        train_bytes=corpus.train_bytes,
        heldout_bytes=corpus.heldout_bytes,
        sha256=corpus.sha256,
        heldout_sha256=corpus.heldout_sha256,
    )


def _environment(recipe: Recipe) -> EnvironmentInfo:
    detected = Environment.detect("cpu", "float32")
    return EnvironmentInfo(
        hardware=detected.hardware,
        python=sys.version.split()[0],
        torch=detected.torch_version,
        transformers=detected.transformers_version,
        train_threads=recipe.threads,
        determinism=(
            f"the weights depend only on (size, seed, corpus) given the same torch build, the "
            f"same CPU instruction set and {recipe.threads} torch thread(s), which training "
            f"pins whatever the machine's core count"
        ),
    )


def _train_into(
    folder: Path,
    recipe: Recipe,
    seed: int,
    corpus: Corpus,
    key: str,
    progress: ProgressCallback | None,
) -> PairInfo:
    """Train the pair into a temporary folder beside `folder`, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_folder(folder)
    try:
        trained = train_models(recipe, seed, corpus, progress)
        trained.target.save_pretrained(tmp / "target")
        trained.drafter.save_pretrained(tmp / "drafter")
        info = PairInfo(
            format=FORMAT,
            size=recipe.name,
            seed=seed,
            key=key,
            date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            command=train_command(recipe.name, seed),
            tokenization=TOKENIZATION,
            corpus=_corpus_info(corpus),
            target=trained.target_info,
            drafter=trained.drafter_info,
            agreement=trained.agreement,
            latency=trained.latency,
            environment=_environment(recipe),
        )
        (tmp / INFO_FILE).write_text(info.to_toml(), encoding="utf-8")
        if folder.exists():  # another process finished the same pair first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PairInfo.read(folder)


def _copy_into(source: Path, out: Path) -> None:
    """Copy a pair folder to `out` (its symlinks followed: the pair goes where they point)
    through a temporary folder and a rename; InvalidParameterError naming `out` when the
    copy fails."""
    target = resolve_path(out, OUT)
    tmp = _temporary_folder(target)
    try:
        for name in ("target", "drafter"):
            shutil.copytree(source / name, tmp / name)
        shutil.copy2(source / INFO_FILE, tmp / INFO_FILE)
        if target.exists():
            target.rmdir()  # check_out made sure it is empty
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidParameterError(
            f"{OUT} {out}: cannot copy the pair there ({exc.strerror or exc})"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True)
class TrainResult:
    """What `train_pair` did: the pair's description, where it is, and whether it trained."""

    info: PairInfo
    path: Path  # `out` when given, else the cache folder
    cache_path: Path
    trained: bool  # False when the cache already held the pair


def train_pair(
    size: str = "small",
    seed: int = 0,
    out: Path | str | None = None,
    progress: ProgressCallback | None = None,
    starting: Callable[[Path], None] | None = None,
) -> TrainResult:
    """The pair of this size and seed: from the cache when there, else trained into it
    (a few minutes for `small`; `starting` gets the cache folder once every check passed and
    training begins); copied to `out` when given. `out` is checked before any training.
    InvalidParameterError for a bad size, seed or `out`."""
    recipe = get_recipe(size)
    _check_seed(seed)
    corpus = Corpus.from_stdlib()
    folder, key = _pair_folder(recipe, seed, corpus)
    if isinstance(out, str):
        require(bool(out.strip()), f"{OUT} must name a folder (new or empty); got ''")
    out_path = None if out is None else Path(out)
    out_holds_it = out_path is not None and check_out(out_path, key)
    trained = not (folder / INFO_FILE).is_file()
    remove_stale_temporaries(folder.parent)
    if trained:
        _require_extra()
        _writable_folder(folder.parent, "the pair cache (set DSI_ONLINE_CACHE to move it):")
        if starting is not None:
            starting(folder)
        info = _train_into(folder, recipe, seed, corpus, key, progress)
    else:
        info = PairInfo.read(folder)
    if out_path is not None and not out_holds_it:
        _copy_into(folder, out_path)
    path = folder if out_path is None else out_path
    return TrainResult(
        info=dataclasses.replace(info, path=path), path=path, cache_path=folder, trained=trained
    )


@dataclass(frozen=True)
class Pair:
    """A loaded pair: both models (transformers `LlamaForCausalLM`, eval mode) and pair.toml."""

    target: Any
    drafter: Any
    info: PairInfo


def load_pair(folder: Path | str, device: str = "cpu") -> Pair:
    """Load the pair in `folder` (as `train_pair` writes it), float32, on `device`."""
    path = Path(folder)
    info = PairInfo.read(path)
    torch = torch_module()
    transformers = transformers_module()
    models = []
    for name in ("target", "drafter"):
        model = transformers.LlamaForCausalLM.from_pretrained(path / name, dtype=torch.float32)
        models.append(model.to(device).eval())
    return Pair(target=models[0], drafter=models[1], info=info)


def heldout_prompts(
    pair: PairInfo | Path | str, count: int, prompt_bytes: int, seed: int = 0
) -> list[list[int]]:
    """`count` prompts of `prompt_bytes` bytes from the pair's held-out files, as token ids
    (= byte values), each starting at a line start; the same for the same arguments.
    InvalidParameterError when this Python's held-out files differ from the pair's."""
    return [list(p.tokens) for p in heldout_draw(pair, count, prompt_bytes, seed)]


def heldout_draw(
    pair: PairInfo | Path | str, count: int, prompt_bytes: int, seed: int = 0
) -> list[Prompt]:
    """The prompts of `heldout_prompts`, each with its file and offset."""
    info = pair if isinstance(pair, PairInfo) else PairInfo.read(Path(pair))
    corpus = Corpus.from_stdlib()
    if corpus.heldout_sha256 != info.corpus.heldout_sha256:
        raise InvalidParameterError(
            f"this Python's ({corpus.python_version}) held-out files differ from the ones the "
            f"pair was trained beside (Python {info.corpus.python_version}): train the pair here"
        )
    return corpus.draw(count, prompt_bytes, seed)
