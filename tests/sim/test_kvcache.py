"""The KV-cache model: how many tokens a forward processes, and what a cancel leaves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dsi_online.schedulers.tokens import Prefix
from dsi_online.sim.kvcache import ForwardPlan, KVCache


def test_decoding_processes_one_token_a_step() -> None:
    out: list[int] = []
    cache = KVCache()
    assert cache.plan(out, ()) == ForwardPlan(reused=0, processed=0)  # the prompt only
    cache.complete()
    for token in range(5):
        out.append(token)
        assert cache.plan(out, ()) == ForwardPlan(reused=len(out) - 1, processed=1)
        cache.complete()


def test_verification_rejection_crops_and_catch_up_processes_the_gap() -> None:
    out = [1, 2, 3]
    cache = KVCache()
    cache.plan(Prefix(out, 3), (4, 5, 6))
    cache.complete()  # holds 1 2 3 4 5 6
    out += [4, 9]  # draft 5 rejected, 9 committed
    assert cache.plan(out, (7, 8)) == ForwardPlan(reused=4, processed=3)  # 9 7 8
    cache.complete()
    out += [7, 8, 10, 11, 12]  # another server committed these
    assert cache.plan(Prefix(out, len(out)), ()) == ForwardPlan(reused=7, processed=3)


def test_a_stale_job_on_an_up_to_date_server_reuses_its_committed_part() -> None:
    out = [1, 2, 3, 4, 5, 6]
    cache = KVCache()
    cache.plan(out, ())
    cache.complete()  # holds all 6
    assert cache.plan(Prefix(out, 3), (4, 5, 6, 7)) == ForwardPlan(reused=6, processed=1)


def test_a_cancelled_forward_keeps_only_the_common_prefix() -> None:
    out = [1, 2, 3]
    cache = KVCache()
    cache.plan(out, (4, 5))
    cache.complete()  # 1 2 3 4 5
    cache.plan(out, (4, 7))  # cancelled: keeps 1 2 3 4
    assert cache.length == 4
    assert cache.plan(out, (4, 7)) == ForwardPlan(reused=4, processed=1)


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.lists(st.integers(100, 106), max_size=6), st.booleans()),
        max_size=30,
    )
)
def test_matches_a_literal_cache_of_token_lists(steps: list[tuple[int, list[int], bool]]) -> None:
    """Against a literal list of tokens compared in full: the same plans, whatever the order."""
    output = [100 + i % 5 for i in range(40)]
    cache = KVCache()
    held: list[int] = []
    for v, drafts, finish in steps:
        tokens = output[:v] + drafts
        common = 0
        while common < min(len(held), len(tokens) - 1) and held[common] == tokens[common]:
            common += 1
        assert cache.plan(Prefix(output, v), drafts) == ForwardPlan(common, len(tokens) - common)
        held = tokens if finish else tokens[:common]
        if finish:
            cache.complete()
        assert cache.length == len(held)
