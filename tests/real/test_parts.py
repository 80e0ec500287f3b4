"""Parts of the real backend that need no torch: the cache's prefix match, forward records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dsi_online.real.server import ForwardRecord, _verified
from dsi_online.real.worker import common_prefix

tokens = st.lists(st.integers(0, 2), max_size=30)


@given(tokens, tokens, tokens)
def test_common_prefix_is_the_longest_shared_start(
    head: list[int], a: list[int], b: list[int]
) -> None:
    x, y = head + a, head + b
    n = common_prefix(x, tuple(y))
    assert x[:n] == y[:n]
    assert n == min(len(x), len(y)) or x[n] != y[n]


def test_a_target_returns_its_tokens_up_to_the_first_rejected_draft() -> None:
    assert _verified([5, 6, 7, 8], [5, 6, 9]) == [5, 6, 7]
    assert _verified([5, 6, 7, 8], [5, 6, 7]) == [5, 6, 7, 8]  # all accepted: the bonus too
    assert _verified([4], []) == [4]


def test_a_record_reports_its_tail_after_the_cancel() -> None:
    record = ForwardRecord(
        server="target-1",
        role="target",
        context=40,
        kept=0,
        processed=40,
        prompt=32,
        catchup=7,
        layers=1,
        submitted_s=1.0,
        started_s=1.5,
        ended_s=2.0,
        delivered_s=2.25,
        cpu_s=0.5,
        stopped=True,
        cancel_s=1.75,
    )
    assert (record.queued_s, record.compute_s, record.delivery_s) == (0.5, 0.5, 0.25)
    assert record.cancelled and record.tail_s == 0.25
