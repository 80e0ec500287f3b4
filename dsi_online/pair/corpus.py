"""The training corpus: the Python standard library's own top-level `*.py` source files.

Every machine with Python has it, so a pair can be trained anywhere without a download. Which
files: the regular files matching `*.py` directly in `sysconfig.get_paths()["stdlib"]` (no
subfolders, so no site-packages and no test suites), sorted by name. A file is held out when
the first 8 hex digits of the SHA-256 of its name, as an integer, are divisible by 20 (about
5% of the files; 8 of 168 on CPython 3.11): the split depends only on a file's name, so
held-out text is never trained on. Bytes are used as they are: token id = byte value.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsi_online.errors import require

HELDOUT_MODULUS = 20


def stdlib_dir() -> Path:
    """The folder of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def is_heldout(name: str) -> bool:
    """Whether the file called `name` belongs to the held-out split (module docstring)."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % HELDOUT_MODULUS == 0


def files_sha256(files: list[Path]) -> str:
    """SHA-256 over each file's name, its length and its bytes, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Prompt:
    """A held-out prompt: its token ids and where it starts (file name, byte offset)."""

    file: str
    offset: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Corpus:
    """The corpus files of one Python installation, split into train and held out."""

    root: Path
    train_files: tuple[str, ...]
    heldout_files: tuple[str, ...]
    train_bytes: int
    heldout_bytes: int
    sha256: str  # of every file, train and held out, in sorted order
    heldout_sha256: str
    python_version: str

    @classmethod
    def from_stdlib(cls, root: Path | None = None) -> Corpus:
        """Find and hash the corpus of this Python (or of the folder `root`)."""
        base = stdlib_dir() if root is None else root
        files = sorted((p for p in base.glob("*.py") if p.is_file()), key=lambda p: p.name)
        train = [p for p in files if not is_heldout(p.name)]
        heldout = [p for p in files if is_heldout(p.name)]
        return cls(
            root=base,
            train_files=tuple(p.name for p in train),
            heldout_files=tuple(p.name for p in heldout),
            train_bytes=sum(p.stat().st_size for p in train),
            heldout_bytes=sum(p.stat().st_size for p in heldout),
            sha256=files_sha256(files),
            heldout_sha256=files_sha256(heldout),
            python_version=sys.version.split()[0],
        )

    def read_train(self) -> bytes:
        """The training files' bytes, concatenated in sorted order."""
        return b"".join((self.root / name).read_bytes() for name in self.train_files)

    def read_heldout(self) -> list[bytes]:
        """Each held-out file's bytes, in sorted order."""
        return [(self.root / name).read_bytes() for name in self.heldout_files]

    def prompts(self, count: int, prompt_bytes: int, seed: int) -> list[list[int]]:
        """`count` distinct held-out prompts of `prompt_bytes` bytes (token ids), each starting
        at the beginning of a line of one held-out file, drawn without replacement by `seed`."""
        return [list(p.tokens) for p in self.draw(count, prompt_bytes, seed)]

    def draw(self, count: int, prompt_bytes: int, seed: int) -> list[Prompt]:
        """The prompts of `prompts`, each with where it starts (its file and byte offset)."""
        require(count >= 1, f"prompt count must be >= 1; got {count}")
        require(prompt_bytes >= 1, f"prompt bytes must be >= 1; got {prompt_bytes}")
        starts: list[tuple[int, int]] = []
        texts = self.read_heldout()
        for number, text in enumerate(texts):
            line_starts = [0] + [i + 1 for i, byte in enumerate(text) if byte == 0x0A]
            starts += [(number, s) for s in line_starts if s + prompt_bytes <= len(text)]
        require(
            count <= len(starts),
            f"the held-out text has {len(starts)} line starts with {prompt_bytes} bytes after "
            f"them; {count} prompts asked",
        )
        picks = np.random.default_rng(seed).choice(len(starts), size=count, replace=False)
        return [
            Prompt(
                self.heldout_files[starts[i][0]],
                starts[i][1],
                tuple(texts[starts[i][0]][starts[i][1] : starts[i][1] + prompt_bytes]),
            )
            for i in picks
        ]
