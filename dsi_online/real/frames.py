"""The wire format between the event loop and a worker process: compact binary frames.

A frame is its length (4 bytes) and a fixed header packed with `struct`, then int32 tokens.
A request carries only what changed since the previous one: how much of the previous
request's context it keeps (`keep`) and the tokens after that (`Delta`), so a forward's
message does not grow with the output. Both ends apply the same deltas in the same order.
A reply carries its tokens (a target's k + 1, a drafter's one) and, when it failed, its
error as text. The worker's spec, sent once at start, is the only pickled message.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import get_args

from dsi_online.real.worker import Kind, Reply, Request, common_prefix

LENGTH = struct.Struct("<I")
REQUEST = struct.Struct("<BqiiiiI")  # kind, id, first, count, prompt, keep, new tokens
REPLY = struct.Struct("<Bq?iiiidddII")  # kind, id, cancelled, kept, processed, cached,
# layers, started, ended, cpu_s, tokens, error bytes
KINDS: tuple[Kind, ...] = get_args(Kind)
CODES = {kind: code for code, kind in enumerate(KINDS)}
TOKEN = "i"  # int32


def frame(payload: bytes) -> bytes:
    """`payload` with its length in front."""
    return LENGTH.pack(len(payload)) + payload


def _tokens(tokens: Sequence[int]) -> bytes:
    return array(TOKEN, tokens).tobytes()


@dataclass
class Delta:
    """One end's copy of the last context sent: what lets a request carry only its change."""

    context: tuple[int, ...] = ()

    def encode(self, request: Request) -> bytes:
        """`request` as a frame, keeping what it shares with the previous context."""
        keep = new = 0
        tail: tuple[int, ...] = ()
        if request.kind in ("forward", "greedy"):
            keep = common_prefix(self.context, request.context)
            tail = request.context[keep:]
            new = len(tail)
            self.context = request.context
        header = REQUEST.pack(
            CODES[request.kind], request.id, request.first, request.count, request.prompt, keep, new
        )
        return frame(header + _tokens(tail))

    def decode(self, payload: bytes | memoryview) -> Request:
        """The request a frame's payload holds, its context rebuilt from the last one."""
        code, rid, first, count, prompt, keep, new = REQUEST.unpack_from(payload)
        kind = KINDS[code]
        context: tuple[int, ...] = ()
        if kind in ("forward", "greedy"):
            tail = array(TOKEN)
            tail.frombytes(payload[REQUEST.size : REQUEST.size + 4 * new])
            context = self.context[:keep] + tuple(tail)
            self.context = context
        return Request(kind, rid, context, first, count, prompt)


def encode_reply(reply: Reply) -> bytes:
    """`reply` as a frame."""
    error = b"" if reply.error is None else reply.error.encode(errors="replace")
    header = REPLY.pack(
        CODES[reply.kind],
        reply.id,
        reply.cancelled,
        reply.kept,
        reply.processed,
        reply.cached,
        reply.layers,
        reply.started,
        reply.ended,
        reply.cpu_s,
        len(reply.tokens),
        len(error),
    )
    return frame(header + _tokens(reply.tokens) + error)


def decode_reply(payload: bytes | memoryview) -> Reply:
    """The reply a frame's payload holds."""
    (code, rid, cancelled, kept, processed, cached, layers, started, ended, cpu_s, n, errors) = (
        REPLY.unpack_from(payload)
    )
    end = REPLY.size + 4 * n
    tokens = array(TOKEN)
    tokens.frombytes(payload[REPLY.size : end])
    error = bytes(payload[end : end + errors]).decode(errors="replace") if errors else None
    return Reply(
        kind=KINDS[code],
        id=rid,
        tokens=tuple(tokens),
        kept=kept,
        processed=processed,
        cached=cached,
        cancelled=cancelled,
        layers=layers,
        started=started,
        ended=ended,
        cpu_s=cpu_s,
        error=error,
    )


@dataclass
class Frames:
    """Splits a byte stream into frames' payloads (a read may hold several, or part of one)."""

    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by `data`."""
        buffer = self._buffer
        buffer += data
        out = []
        start = 0
        while len(buffer) - start >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer, start)
            end = start + LENGTH.size + size
            if end > len(buffer):
                break
            out.append(bytes(buffer[start + LENGTH.size : end]))
            start = end
        if start:
            del buffer[:start]
        return out
