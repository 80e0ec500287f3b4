"""`pair.toml`: what a trained pair is, how it was made, and how well it agrees (provenance).

A pair folder holds `target/` and `drafter/` (transformers `save_pretrained` folders,
safetensors) and `pair.toml`, written last: a folder with a readable `pair.toml` is complete.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError

FORMAT = 2
INFO_FILE = "pair.toml"
TOKENIZATION = (
    "bytes: token id = byte value, vocabulary 256, no tokenizer and no special tokens "
    "(no BOS, no EOS): generation always runs to the requested length"
)


@dataclass(frozen=True)
class CorpusInfo:
    """Which text the pair was trained and evaluated on."""

    source: str
    python_version: str
    split: str
    train_files: int
    heldout_files: tuple[str, ...]
    train_bytes: int
    heldout_bytes: int
    sha256: str
    heldout_sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """One model: its shape, its training, and its losses (nats per byte)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    parameters: int
    objective: str
    steps: int
    batch: int
    seq_len: int
    schedule: str
    seconds: float
    final_train_loss: float  # mean of the last steps' training objective
    heldout_loss: float  # next-byte cross-entropy on held-out windows


@dataclass(frozen=True)
class AgreementInfo:
    """Greedy agreement (the acceptance rate) of the drafter with the target, held out."""

    rate: float
    ci95: tuple[float, float]
    positions: int
    prompts: int
    prompt_bytes: int
    new_tokens: int
    by_position: tuple[float, ...]
    method: str
    text_rate: float  # on the held-out text itself (teacher forcing), not on generations
    text_ci95: tuple[float, float]
    text_positions: int


@dataclass(frozen=True)
class LatencyInfo:
    """Decode latency per forward measured right after training, on this machine."""

    target_ms: float
    drafter_ms: float
    c: float
    threads: int
    context: int
    samples: int
    method: str


@dataclass(frozen=True)
class EnvironmentInfo:
    """The software and hardware that trained the pair."""

    hardware: str
    python: str
    torch: str
    transformers: str
    train_threads: int
    determinism: str


@dataclass(frozen=True)
class PairInfo:
    """Everything `pair.toml` records; `path` is the pair's folder (not stored)."""

    format: int
    size: str
    seed: int
    key: str
    date: str
    command: str
    tokenization: str
    corpus: CorpusInfo
    target: ModelInfo
    drafter: ModelInfo
    agreement: AgreementInfo
    latency: LatencyInfo
    environment: EnvironmentInfo
    path: Path | None = None

    def to_toml(self) -> str:
        """The `pair.toml` text."""
        scalars: list[str] = []
        tables: list[str] = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "path":
                continue
            if is_dataclass(value):
                tables += ["", f"[{field.name}]"]
                tables += [f"{f.name} = {_value(getattr(value, f.name))}" for f in fields(value)]
            else:
                scalars.append(f"{field.name} = {_value(value)}")
        return "\n".join(scalars + tables) + "\n"

    @classmethod
    def read(cls, folder: Path) -> PairInfo:
        """Read `folder/pair.toml`; InvalidParameterError when missing or malformed."""
        path = folder / INFO_FILE
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise InvalidParameterError(
                    f"{path} has format {data.get('format')}; this version reads {FORMAT}: "
                    f"train the pair again"
                )
            info: PairInfo = _build(cls, data)
        except FileNotFoundError:
            raise InvalidParameterError(
                f"{folder} holds no trained pair (no {INFO_FILE})"
            ) from None
        except (OSError, KeyError, TypeError, ValueError) as exc:  # ValueError: bad TOML too
            raise InvalidParameterError(
                f"{path} is not a readable pair description ({exc.__class__.__name__}: {exc})"
            ) from None
        return dataclasses.replace(info, path=folder)


def _value(value: Any) -> str:
    """A TOML value: strings, booleans, numbers and lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """An instance of dataclass `cls` from its TOML table (nested tables, tuples from lists)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in fields(cls):
        if field.name == "path":
            continue
        hint = hints[field.name]
        raw = data[field.name]
        if isinstance(hint, type) and is_dataclass(hint):
            values[field.name] = _build(hint, raw)
        elif typing.get_origin(hint) is tuple:
            values[field.name] = tuple(raw)
        elif hint is float:
            values[field.name] = float(raw)
        else:
            values[field.name] = raw
    return cls(**values)
