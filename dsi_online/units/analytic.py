"""Closed forms the simulations are checked against (constant latencies, TTFT = TPOT)."""

from __future__ import annotations

from dsi_online.sim.scenario import check_acceptance, check_int


def si_time_per_token(c: float, a: float, k: int) -> float:
    """SI's expected time per token in target forwards, for an endless output
    (Leviathan et al. 2023): (k c + 1) (1 - a) / (1 - a^(k+1))."""
    check_acceptance(a)
    check_int(k, "lookahead", "--lookahead/-k")
    if a == 1:
        return (k * c + 1) / (k + 1)
    return (k * c + 1) * (1 - a) / (1 - a ** (k + 1))


def si_expected_latency(c: float, a: float, k: int, tokens: int) -> float:
    """SI's exact expected latency for `tokens` tokens, in target forwards.

    Unlike the closed form it counts the shorter chunks near the end (a chunk drafts
    min(k, tokens left - 1)). Dynamic programme over the tokens still to generate: a
    chunk of m drafts costs m c + 1 and yields X + 1 tokens, X = min(m, Geometric(1 - a) - 1).
    """
    check_acceptance(a)
    check_int(k, "lookahead", "--lookahead/-k")
    check_int(tokens, "tokens", "--tokens/-S")
    expected = [0.0] * (tokens + 1)
    for left in range(1, tokens + 1):
        m = min(k, left - 1)
        total = m * c + 1
        for x in range(m + 1):
            p = a**x * (1 - a) if x < m else a**m
            total += p * expected[left - x - 1]
        expected[left] = total
    return expected[tokens]
