"""Acceptance traces: the real accept/reject pattern of a drafter, replayed as the oracle's coins.

For greedy decoding a trace is exact, not a model: at position p of a prompt's output the
drafter's greedy token, given the target's own prefix, either equals the target's token
(`1`) or not (`0`). That is precisely what the simulated oracle's coin for p decides (a draft
made on a correct prefix is right or wrong; drafts after a wrong one are never looked at). So
replaying a prompt's trace as the coins of a repeat reproduces the real run's acceptances,
including their bursts, where an i.i.d. coin of the same mean would not.

A trace file is JSON::

    {"format": "dsi-online acceptance trace", "version": 1,
     "source": "dsi-online measure acceptance ... (2026-11-24)",
     "traces": ["1101110...", "0111..."]}         # one string per prompt, one char per position

Repeat r replays trace r mod (number of traces); an output longer than a trace is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsi_online.errors import InvalidParameterError, require

FORMAT = "dsi-online acceptance trace"
VERSION = 1


@dataclass(frozen=True)
class AcceptanceTrace:
    """Per-prompt greedy matches of a drafter against its target, and where they came from."""

    traces: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        require(len(self.traces) > 0, "an acceptance trace needs at least one prompt's trace")
        for number, trace in enumerate(self.traces, start=1):
            require(
                len(trace) > 0 and set(trace) <= {"0", "1"},
                f"acceptance trace {number} must be a non-empty string of 0 and 1",
            )

    @classmethod
    def from_matches(cls, matches: Sequence[Sequence[bool]], source: str) -> AcceptanceTrace:
        """A trace from each prompt's per-position matches."""
        return cls(tuple("".join("1" if m else "0" for m in row) for row in matches), source)

    @property
    def rate(self) -> float:
        """The pooled acceptance rate over every position of every prompt."""
        return sum(t.count("1") for t in self.traces) / sum(len(t) for t in self.traces)

    @property
    def shortest(self) -> int:
        """Positions in the shortest trace: the longest output every repeat can replay."""
        return min(len(t) for t in self.traces)

    def coins(self, repeat: int, tokens: int) -> list[bool]:
        """The coins of repeat `repeat` for an output of `tokens` tokens."""
        trace = self.traces[repeat % len(self.traces)]
        require(
            tokens <= len(trace),
            f"tokens (--tokens/-S) must be <= {len(trace)}, the length of acceptance trace "
            f"{repeat % len(self.traces) + 1}; got {tokens}",
        )
        return [c == "1" for c in trace[:tokens]]

    def to_json(self) -> str:
        return json.dumps(
            {"format": FORMAT, "version": VERSION, "source": self.source, "traces": self.traces},
            indent=1,
        )


def load_trace(path: str | Path, option: str = "--acceptance-trace") -> AcceptanceTrace:
    """Read a trace file; InvalidParameterError naming `option` when it is not one."""
    if not str(path).strip():
        raise InvalidParameterError(f"acceptance trace ({option}) must name a file; got {path!r}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidParameterError(f"acceptance trace ({option}) not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(
            f"acceptance trace ({option}) {path} is not a readable JSON file "
            f"({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidParameterError(f"acceptance trace ({option}) {path}: not a {FORMAT} file")
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise InvalidParameterError(
            f"acceptance trace ({option}) {path}: unsupported version {version!r} (this "
            f"dsi-online reads version {VERSION})"
        )
    traces, source = data.get("traces"), data.get("source")
    if not isinstance(traces, list) or not all(isinstance(t, str) for t in traces):
        raise InvalidParameterError(
            f"acceptance trace ({option}) {path}: 'traces' must be a list of strings"
        )
    if not isinstance(source, str) or not source:
        raise InvalidParameterError(f"acceptance trace ({option}) {path}: 'source' is required")
    try:
        return AcceptanceTrace(tuple(traces), source)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"acceptance trace ({option}) {path}: {exc.cli_message}"
        ) from None
