"""Load the model to measure: an architecture preset (random weights), or a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsi_online.errors import InvalidParameterError, require
from dsi_online.measure.presets import PRESETS, Preset
from dsi_online.measure.torch_runtime import check_fits, torch_module, transformers_module


@dataclass(frozen=True)
class LoadedModel:
    """A causal language model ready to run: eval mode, on its device, in its dtype."""

    spec: str  # as the user named it: a preset, a checkpoint directory or a hub name
    label: str  # the name a profile records
    module: Any  # the torch module
    vocab_size: int
    max_positions: int
    eos_token_ids: frozenset[int]
    tokenizer: Any | None  # None for presets: they have no tokenizer
    preset: Preset | None


def _dtype_kwargs(transformers: Any, dtype: Any) -> dict[str, Any]:
    major = int(str(transformers.__version__).split(".")[0])
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}


def _eos(config: Any) -> frozenset[int]:
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return frozenset()
    return frozenset(int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]))


def _max_positions(config: Any) -> int:
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def build_preset(preset: Preset, *, device: str, dtype: str, seed: int) -> LoadedModel:
    """Build a preset's model with random weights drawn from `seed` (nothing downloaded)."""
    torch = torch_module()
    transformers = transformers_module()
    config = transformers.AutoConfig.for_model(preset.model_type, **preset.config_kwargs())
    torch.manual_seed(seed)
    with torch.device(device):
        module = transformers.AutoModelForCausalLM.from_config(
            config, **_dtype_kwargs(transformers, getattr(torch, dtype))
        )
    module.eval()
    return LoadedModel(
        spec=preset.name,
        label=preset.label,
        module=module,
        vocab_size=preset.vocab_size,
        max_positions=preset.max_positions,
        eos_token_ids=frozenset(),  # random weights: an end-of-sequence token means nothing
        tokenizer=None,
        preset=preset,
    )


def looks_like_path(spec: str) -> bool:
    """Whether `spec` names a local path rather than a hub name ('org/name' or 'name'):
    absolute, starting with '.' or '~', or with more than one '/'."""
    return (
        Path(spec).is_absolute()
        or spec.startswith((".", "~"))
        or spec.count("/") > 1
        or "\\" in spec
    )


def check_specs(specs: list[tuple[str, str | None]]) -> None:
    """Refuse an empty model option (option, value): it names no preset, folder or hub model."""
    for option, spec in specs:
        require(
            spec is None or bool(spec.strip()),
            f"{option} must name a preset ({', '.join(PRESETS)}), a checkpoint directory or a "
            f"hub name; got {spec!r}",
        )


def check_memory(specs: list[tuple[str, str]], device: str, dtype: str) -> None:
    """Refuse presets that together cannot fit in `device`'s free memory (estimated from
    their shapes, before anything is built); checkpoints are not estimated."""
    presets = [
        (option, spec, PRESETS[spec].parameters) for option, spec in specs if spec in PRESETS
    ]
    if presets:
        check_fits(presets, device, dtype)


def load_checkpoint(
    spec: str, *, option: str, device: str, dtype: str, allow_download: bool
) -> LoadedModel:
    """Load a checkpoint directory or hub name (the local cache only, unless allowed)."""
    if looks_like_path(spec) and not Path(spec).expanduser().is_dir():
        raise InvalidParameterError(
            f"{option} {spec}: no such directory (a checkpoint is a directory with a "
            f"config.json; or name a preset: {', '.join(PRESETS)})"
        )
    torch = torch_module()
    transformers = transformers_module()
    local_only = not allow_download
    try:
        module = transformers.AutoModelForCausalLM.from_pretrained(
            spec, local_files_only=local_only, **_dtype_kwargs(transformers, getattr(torch, dtype))
        )
    except (OSError, ValueError) as exc:
        where = "" if allow_download else " (pass --allow-download to fetch it from the hub)"
        raise InvalidParameterError(
            f"{option} {spec!r} is not a preset ({', '.join(PRESETS)}), nor a checkpoint that "
            f"loads here{where}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec, local_files_only=local_only)
    except (OSError, ValueError):
        tokenizer = None
    module.to(device)
    module.eval()
    config = module.config
    return LoadedModel(
        spec=spec,
        label=str(Path(spec).name) if Path(spec).exists() else spec,
        module=module,
        vocab_size=int(module.get_output_embeddings().weight.shape[0]),
        max_positions=_max_positions(config),
        eos_token_ids=_eos(config),
        tokenizer=tokenizer,
        preset=None,
    )


def load_model(
    spec: str, *, option: str, device: str, dtype: str, seed: int, allow_download: bool
) -> LoadedModel:
    """A preset by name, else a checkpoint; `option` names the CLI option in errors."""
    if spec in PRESETS:
        return build_preset(PRESETS[spec], device=device, dtype=dtype, seed=seed)
    return load_checkpoint(
        spec, option=option, device=device, dtype=dtype, allow_download=allow_download
    )
