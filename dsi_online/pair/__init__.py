"""A real small model pair, made here: a byte-level Llama target and a distilled drafter.

Trained on the Python standard library's own source (every machine has it), cached in the
user cache folder, loadable as ordinary transformers checkpoints. Byte-level: token id = byte
value (vocabulary 256), no tokenizer, no BOS/EOS (generation runs to the requested length).

    from dsi_online.pair import train_pair, load_pair, heldout_prompts
    result = train_pair("small", seed=0)         # cached after the first call
    pair = load_pair(result.path)                # pair.target, pair.drafter, pair.info
    prompts = heldout_prompts(pair.info, count=20, prompt_bytes=64, seed=0)

Needs the `[measure]` extra (torch, transformers) to train or load; modules: `corpus`,
`recipes` and `info` (no torch), `train` (the training), `store` (cache, load, prompts).
"""

from dsi_online.pair.corpus import Prompt
from dsi_online.pair.info import PairInfo
from dsi_online.pair.recipes import SIZES
from dsi_online.pair.store import (
    Pair,
    TrainResult,
    cache_root,
    default_pair_dir,
    heldout_draw,
    heldout_prompts,
    load_pair,
    train_pair,
)
from dsi_online.pair.train import TrainProgress

__all__ = [
    "SIZES",
    "Pair",
    "PairInfo",
    "Prompt",
    "TrainProgress",
    "TrainResult",
    "cache_root",
    "default_pair_dir",
    "heldout_draw",
    "heldout_prompts",
    "load_pair",
    "train_pair",
]
