"""Architecture presets: the shapes of the models the DSI paper measured, with random weights.

A forward pass's latency depends on a model's shapes, dtype and hardware, not on its weights,
so a preset built from a model's published config.json (with random weights, nothing
downloaded) measures the latency of that model. Acceptance rates do depend on the weights:
a preset pair gives a valid but meaningless rate, useful only for tests.

Every number below is copied from the config.json whose address follows it. Where the
model's own repository is gated or was not stored, the address is a copy of that file in
another public repository, named as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsi_online.errors import InvalidParameterError


@dataclass(frozen=True)
class Preset:
    """The architecture of one model: enough to build it with random weights."""

    name: str
    model: str  # the model whose architecture this is (a Hugging Face hub name, or "none")
    model_type: str  # transformers' model_type
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    source: str  # where the numbers come from
    extra: tuple[tuple[str, Any], ...] = ()  # further config.json fields, verbatim

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of transformers' AutoConfig.for_model for this architecture."""
        if self.model_type == "gpt_bigcode":
            if self.kv_heads not in (1, self.heads):
                raise InvalidParameterError(
                    f"preset {self.name}: gpt_bigcode needs kv_heads 1 (multi-query) or "
                    f"{self.heads}; got {self.kv_heads}"
                )
            shape: dict[str, Any] = {
                "n_embd": self.hidden_size,
                "n_layer": self.layers,
                "n_head": self.heads,
                "n_inner": self.intermediate_size,
                "n_positions": self.max_positions,
                "multi_query": self.kv_heads == 1,
            }
        else:
            shape = {
                "hidden_size": self.hidden_size,
                "num_hidden_layers": self.layers,
                "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads,
                "intermediate_size": self.intermediate_size,
                "max_position_embeddings": self.max_positions,
            }
        return {"vocab_size": self.vocab_size, **shape, **dict(self.extra)}

    @property
    def parameters(self) -> int:
        """How many parameters the model has (embeddings, attention, MLP; norms and biases
        left out, under 0.1%), from its shapes: what its weights take in memory."""
        head_dim = self.hidden_size // self.heads
        attention = 2 * self.hidden_size**2 + 2 * self.hidden_size * head_dim * self.kv_heads
        gated = self.model_type != "gpt_bigcode"  # llama and phi3: gate, up and down
        mlp = (3 if gated else 2) * self.hidden_size * self.intermediate_size
        tied = dict(self.extra).get("tie_word_embeddings", self.model_type == "gpt_bigcode")
        embeddings = self.vocab_size * self.hidden_size * (1 if tied else 2)
        positions = self.max_positions * self.hidden_size if not gated else 0
        return embeddings + positions + self.layers * (attention + mlp)

    @property
    def label(self) -> str:
        """The name a profile records: the model it stands for, and that it is a preset."""
        if self.model == "none":
            return f"{self.name} (architecture preset, random weights)"
        return f"{self.model} (architecture preset {self.name}, random weights)"


_VICUNA_13B = "https://huggingface.co/lmsys/vicuna-13b-v1.3/blob/6566e9cb1787585d1147dcf4f9bc48f29e1328d2/config.json"
# lmsys/vicuna-7b-v1.3's own config.json was not stored; this copy keeps lmsys' build path
# ("_name_or_path": "/home/ubuntu/model_weights/vicuna-7b-v1.3"), as the 13B one does.
_VICUNA_7B = "https://huggingface.co/TheBloke/vicuna-7B-v1.3-GPTQ/blob/fc041f89b9704d638136349580dd04df99ce570c/config.json"
_VICUNA_68M = "https://huggingface.co/double7/vicuna-68m/blob/main/config.json"
# bigcode/starcoder is gated; this is the config of the bigcode organisation's own derivative,
# whose "_name_or_path" is "bigcode/starcoder" (the same numbers are in
# https://huggingface.co/codeparrot/starcoder-conala/blame/main/config.json).
_STARCODER = "https://huggingface.co/bigcode/starcoder-co-format/blame/main/config.json"
# bigcode/tiny_starcoder_py's current config.json was not stored (its first version is at
# https://huggingface.co/bigcode/tiny_starcoder_py/commit/ade84848388ef8dbd855a2303b96104c6b293a80
# with the same shapes); this copy's "_name_or_path" is "bigcode/tiny_starcoder_py".
_TINY_STARCODER = "https://huggingface.co/Xenova/tiny_starcoder_py/blame/7c833c7944c1f4414f04d8ca69d9f3bc9328dce4/config.json"
_PHI3_MEDIUM = "https://huggingface.co/microsoft/Phi-3-medium-4k-instruct/blame/3da3d15332f10c59cea141411e265df623628a2e/config.json"
# microsoft/Phi-3-mini-4k-instruct's own config.json was not stored; this repository is a
# "Duplicate from microsoft/Phi-3-mini-4k-instruct".
_PHI3_MINI = "https://huggingface.co/Alignment-Lab-AI/idfkphi4kiguess/blob/main/config.json"
_TINY = "chosen for dsi_online's tests: a Llama architecture that runs on a CPU in milliseconds"

_LLAMA_1 = (("rms_norm_eps", 1e-06), ("tie_word_embeddings", False))
_BIGCODE = (
    ("activation_function", "gelu"),
    ("layer_norm_epsilon", 1e-05),
    ("bos_token_id", 0),
    ("eos_token_id", 0),
)
_PHI3 = (
    ("rms_norm_eps", 1e-05),
    ("sliding_window", 2047),
    ("tie_word_embeddings", False),
    ("bos_token_id", 1),
    ("eos_token_id", 32000),
    ("pad_token_id", 32000),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "vicuna-13b", "lmsys/vicuna-13b-v1.3", "llama",
            hidden_size=5120, layers=40, heads=40, kv_heads=40, intermediate_size=13824,
            vocab_size=32000, max_positions=2048, source=_VICUNA_13B, extra=_LLAMA_1,
        ),
        Preset(
            "vicuna-7b", "lmsys/vicuna-7b-v1.3", "llama",
            hidden_size=4096, layers=32, heads=32, kv_heads=32, intermediate_size=11008,
            vocab_size=32000, max_positions=2048, source=_VICUNA_7B, extra=_LLAMA_1,
        ),
        Preset(
            "vicuna-68m", "double7/vicuna-68m", "llama",
            hidden_size=768, layers=2, heads=12, kv_heads=12, intermediate_size=3072,
            vocab_size=32000, max_positions=2048, source=_VICUNA_68M,
            extra=(*_LLAMA_1, ("bos_token_id", 0), ("eos_token_id", 2), ("pad_token_id", 1)),
        ),
        Preset(
            "starcoder-15b", "bigcode/starcoder", "gpt_bigcode",
            hidden_size=6144, layers=40, heads=48, kv_heads=1, intermediate_size=24576,
            vocab_size=49152, max_positions=8192, source=_STARCODER, extra=_BIGCODE,
        ),
        Preset(
            "tiny-starcoder-py", "bigcode/tiny_starcoder_py", "gpt_bigcode",
            hidden_size=768, layers=20, heads=12, kv_heads=1, intermediate_size=3072,
            vocab_size=49152, max_positions=8192, source=_TINY_STARCODER,
            extra=(("activation_function", "gelu_pytorch_tanh"), *_BIGCODE[1:]),
        ),
        Preset(
            "phi3-medium-4k", "microsoft/Phi-3-medium-4k-instruct", "phi3",
            hidden_size=5120, layers=40, heads=40, kv_heads=10, intermediate_size=17920,
            vocab_size=32064, max_positions=4096, source=_PHI3_MEDIUM, extra=_PHI3,
        ),
        Preset(
            "phi3-mini-4k", "microsoft/Phi-3-mini-4k-instruct", "phi3",
            hidden_size=3072, layers=32, heads=32, kv_heads=32, intermediate_size=8192,
            vocab_size=32064, max_positions=4096, source=_PHI3_MINI, extra=_PHI3,
        ),
        Preset(
            "tiny-llama", "none", "llama",
            hidden_size=256, layers=4, heads=4, kv_heads=2, intermediate_size=688,
            vocab_size=2048, max_positions=2048, source=_TINY, extra=_LLAMA_1,
        ),
        Preset(
            "tiny-llama-drafter", "none", "llama",
            hidden_size=64, layers=1, heads=2, kv_heads=1, intermediate_size=172,
            vocab_size=2048, max_positions=2048, source=_TINY, extra=_LLAMA_1,
        ),
    )
}  # fmt: skip

PAIRS: dict[str, tuple[str, str]] = {
    "vicuna-13b": ("vicuna-13b", "vicuna-68m"),
    "vicuna-7b": ("vicuna-7b", "vicuna-68m"),
    "starcoder-15b": ("starcoder-15b", "tiny-starcoder-py"),
    "phi3-medium-4k": ("phi3-medium-4k", "phi3-mini-4k"),
    "tiny-llama": ("tiny-llama", "tiny-llama-drafter"),
}
"""Target/drafter pairs: the pairs the DSI paper's code measured, and the tiny test pair."""


def get_preset(name: str) -> Preset:
    """The preset called `name`; InvalidParameterError listing the presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidParameterError(
            f"no architecture preset named {name!r} (presets: {', '.join(PRESETS)})"
        ) from None
