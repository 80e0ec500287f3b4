"""The time-unit engine: exact agreement with a literal scalar model, closed forms, invariants."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.scenario import Scenario
from dsi_online.units.analytic import si_expected_latency, si_time_per_token
from dsi_online.units.engine import (
    UnitsCell,
    chunk_draws,
    servers_needed,
    simulate_units,
    simulate_units_batch,
)
from dsi_online.units.scenario import leading_runs, simulate_units_on_coins

Z = 4.0  # tolerance in standard errors: a false alarm about once in 16,000 checks


def reference_si(draws: list[int], c: float, k: int, tokens: int) -> float:
    """docs/model.md's SI, one chunk at a time in plain Python."""
    cost, done = 0.0, 0
    for g in draws:
        if done >= tokens:
            break
        size = min(k, tokens - 1 - done)
        cost += size * c + 1.0
        done += min(size, g) + 1
    assert done == tokens
    return cost


def reference_dsi(draws: list[int], c: float, k: int, tokens: int) -> float:
    """docs/model.md's DSI, written literally (including the free first chunk after a rejection)."""
    cost, done, i = 0.0, 0, 0
    after_rejection = False
    while done < tokens:
        new, spec, first = 0, 0.0, True
        while True:
            size = min(k, tokens - 1 - done - new)
            accepted = min(size, draws[i])
            i += 1
            new += accepted
            if not (first and after_rejection and accepted == 0):
                spec += size * c
            first = False
            if size == 0 or accepted < size:
                spec += 1.0
                new += 1
                break
        cost += min(spec, float(new))
        done += new
        after_rejection = True
    assert done == tokens
    return cost


CASES = [
    UnitsCell(0.1, 0.9, 5),
    UnitsCell(0.05, 0.5, 20),
    UnitsCell(0.5, 0.3, 2),
    UnitsCell(1.0, 0.99, 1),
    UnitsCell(0.01, 0.8, 15),
    UnitsCell(0.2, 0.0, 3),
    UnitsCell(0.2, 1.0, 4),
]


@pytest.mark.parametrize("cell", CASES, ids=str)
@pytest.mark.parametrize("tokens", [1, 2, 7, 300])
def test_engine_equals_literal_model_on_the_same_draws(cell: UnitsCell, tokens: int) -> None:
    result = simulate_units(cell.c, cell.a, cell.k, tokens, repeats=4, seed=11)
    draws = chunk_draws(cell, tokens, repeats=4, seed=11)
    for r in range(4):
        row = draws[r].tolist()
        assert result.si[r] == reference_si(row, cell.c, cell.k, tokens)
        assert result.dsi[r] == reference_dsi(row, cell.c, cell.k, tokens)
        assert result.nonsi[r] == tokens


@pytest.mark.parametrize("cell", CASES, ids=str)
def test_dsi_never_slower_than_nonsi(cell: UnitsCell) -> None:
    result = simulate_units(cell.c, cell.a, cell.k, 500, repeats=20, seed=3)
    assert np.all(result.dsi <= result.nonsi)
    assert np.all(result.nonsi == 500.0)


@pytest.mark.parametrize(
    ("c", "a", "k"), [(0.1, 0.9, 5), (0.3, 0.6, 3), (0.05, 0.95, 10), (0.5, 0.2, 1)]
)
def test_si_mean_matches_exact_expectation(c: float, a: float, k: int) -> None:
    tokens, repeats = 1000, 200
    result = simulate_units(c, a, k, tokens, repeats, seed=5)
    exact = si_expected_latency(c, a, k, tokens)
    assert abs(result.mean("si") - exact) <= Z * result.sem("si")


@pytest.mark.parametrize(("c", "a", "k"), [(0.1, 0.9, 5), (0.2, 0.7, 4)])
def test_si_per_token_matches_closed_form_for_long_outputs(c: float, a: float, k: int) -> None:
    tokens, repeats = 20_000, 40
    result = simulate_units(c, a, k, tokens, repeats, seed=8)
    closed = si_time_per_token(c, a, k)
    # The closed form is for an endless output; the last chunks of a finite one differ by at
    # most a bounded amount, which the exact expectation measures.
    end_effect = abs(si_expected_latency(c, a, k, tokens) / tokens - closed)
    assert end_effect < 1e-3 * closed
    tolerance = Z * result.sem("si") / tokens + end_effect
    assert abs(result.mean("si") / tokens - closed) <= tolerance


def test_the_models_sanity_figures() -> None:
    """docs/model.md: 1000 tokens, c = 0.1, a = 0.9, k = 5: non-SI 1000, SI about 320,
    DSI about 218."""
    result = simulate_units(0.1, 0.9, 5, 1000, repeats=200, seed=0)
    assert result.mean("nonsi") == 1000
    rounding = 0.5  # docs/model.md gives whole numbers
    assert abs(result.mean("si") - 320) <= Z * result.sem("si") + rounding
    assert abs(result.mean("dsi") - 218) <= Z * result.sem("dsi") + rounding


def test_acceptance_zero_and_one_are_deterministic() -> None:
    c, k, tokens = 0.2, 3, 50
    zero = simulate_units(c, 0.0, k, tokens, repeats=3, seed=1)
    # a = 0: every chunk yields one token; DSI iterations are single rejected chunks costing 1.
    expected_si = sum(min(k, tokens - 1 - t) * c + 1 for t in range(tokens))
    assert zero.si.tolist() == pytest.approx([expected_si] * 3, rel=1e-12)
    assert zero.dsi.tolist() == [float(tokens)] * 3
    one = simulate_units(c, 1.0, k, tokens, repeats=3, seed=1)
    # a = 1: SI chunks yield k + 1 tokens; DSI drafts all S - 1 tokens, then one target forward.
    chunks, left, cost = 0, tokens, 0.0
    while left > 0:
        size = min(k, left - 1)
        cost += size * c + 1
        left -= size + 1
        chunks += 1
    assert one.si.tolist() == pytest.approx([cost] * 3, rel=1e-12)
    assert one.dsi.tolist() == pytest.approx([(tokens - 1) * c + 1] * 3, rel=1e-12)
    assert np.all(one.si == one.si[0]) and np.all(one.dsi == one.dsi[0])


def test_same_seed_same_result_other_seed_other_result() -> None:
    first = simulate_units(0.2, 0.7, 4, 200, repeats=5, seed=42)
    again = simulate_units(0.2, 0.7, 4, 200, repeats=5, seed=42)
    other = simulate_units(0.2, 0.7, 4, 200, repeats=5, seed=43)
    assert np.array_equal(first.si, again.si) and np.array_equal(first.dsi, again.dsi)
    assert not np.array_equal(first.si, other.si)


def test_a_cell_does_not_depend_on_its_batch() -> None:
    cells = [UnitsCell(c, a, k) for c in (0.05, 0.4) for a in (0.3, 0.9) for k in (1, 6, 20)]
    batch = simulate_units_batch(cells, 300, 4, seed=9)
    reversed_batch = simulate_units_batch(cells[::-1], 300, 4, seed=9)
    for i, cell in enumerate(cells):
        alone = simulate_units(cell.c, cell.a, cell.k, 300, 4, seed=9)
        mirrored = reversed_batch.result(len(cells) - 1 - i)
        for name in ("si", "dsi"):
            assert np.array_equal(batch.result(i).latencies(name), alone.latencies(name))
            assert np.array_equal(mirrored.latencies(name), alone.latencies(name))
            assert batch.mean(name)[i] == alone.mean(name)
            assert batch.sem(name)[i] == alone.sem(name)


def test_batches_split_by_memory_bound_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = [UnitsCell(0.1, a, 5) for a in (0.2, 0.5, 0.8, 0.95)]
    whole = simulate_units_batch(cells, 100, 3, seed=2)
    monkeypatch.setattr("dsi_online.units.engine._MAX_BATCH_DRAWS", 1)  # one cell per batch
    split = simulate_units_batch(cells, 100, 3, seed=2)
    assert np.array_equal(whole.si, split.si) and np.array_equal(whole.dsi, split.dsi)


def test_sem_is_the_standard_error() -> None:
    result = simulate_units(0.3, 0.6, 3, 100, repeats=6, seed=4)
    expected = float(np.std(result.si, ddof=1) / math.sqrt(6))
    assert result.sem("si") == pytest.approx(expected, rel=1e-12)
    assert simulate_units(0.3, 0.6, 3, 100, repeats=1, seed=4).sem("si") == 0.0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"c": 0.0}, "c (drafter latency"),
        ({"c": 1.5}, "c (drafter latency"),
        ({"c": math.nan}, "c (drafter latency"),
        ({"a": -0.1}, "a (acceptance rate)"),
        ({"a": 1.1}, "a (acceptance rate)"),
        ({"k": 0}, "k (lookahead)"),
        ({"tokens": 0}, "tokens (--tokens)"),
        ({"repeats": 0}, "repeats (--repeats)"),
        ({"seed": -1}, "seed (--seed)"),
    ],
)
def test_bad_parameters_name_the_option(kwargs: dict[str, float], needle: str) -> None:
    args: dict[str, float] = {"c": 0.1, "a": 0.5, "k": 3, "tokens": 10, "repeats": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(InvalidParameterError) as raised:
        simulate_units(**args)  # type: ignore[arg-type]
    assert re.search(re.escape(needle), raised.value.cli_message)


def test_servers_needed_is_the_papers_ceiling() -> None:
    assert servers_needed(0.1, 5) == 2
    assert servers_needed(0.01, 15) == 7
    assert servers_needed(0.01, 14) == 8
    assert servers_needed(1.0, 1) == 1


def test_servers_needed_has_one_exact_definition() -> None:
    """100 ms and 10 ms at k = 5: a target forward lasts exactly two chunks, so 2 servers.
    The float 1 / (k * (0.01 / 0.1)) is 2.0000000000000004, whose ceiling said 3."""
    scenario = Scenario.from_ms(
        target_ms=100, drafter_ms=10, acceptance=0.5, lookahead=5, servers=1, tokens=10
    )
    assert scenario.servers_needed == servers_needed(scenario.c, 5) == 2
    assert math.ceil(1 / (5 * scenario.c)) == 3  # the float formula this replaces
    # Grid values whose floats sit just off the ratio they stand for: 7/35 and 1/49.
    assert servers_needed(float(np.linspace(0, 1, 36)[7]), 5) == 1
    assert servers_needed(float(np.linspace(0, 1, 50)[1]), 1) == 49
    assert servers_needed(1 / 3, 1) == 3
    assert servers_needed(0.2558, 5) == 1


def test_leading_runs_counts_true_coins_up_to_the_first_false() -> None:
    assert leading_runs([True, True, False, True]) == [2, 1, 0, 1]
    assert leading_runs([]) == []


@pytest.mark.parametrize("a", [0.0, 1.0])
def test_coins_path_equals_the_draws_path_when_nothing_is_random(a: float) -> None:
    c, k, tokens = 0.2, 3, 50
    coins = [[bool(a)] * tokens] * 3
    on_coins = simulate_units_on_coins(c, a, k, coins)
    drawn = simulate_units(c, a, k, tokens, repeats=3, seed=1)
    for name in ("nonsi", "si", "dsi"):
        assert on_coins.latencies(name).tolist() == drawn.latencies(name).tolist()


@pytest.mark.parametrize(("c", "a", "k"), [(0.1, 0.9, 5), (0.3, 0.6, 3)])
def test_coins_path_has_the_models_distribution(c: float, a: float, k: int) -> None:
    """Chunks read disjoint coins, so `min(size, run of true coins)` has the law of the
    model's fresh draws: SI's mean matches its exact expectation, DSI's the draws path."""
    tokens, repeats = 300, 200
    rng = np.random.default_rng(6)
    coins = (rng.random((repeats, tokens)) < a).tolist()
    on_coins = simulate_units_on_coins(c, a, k, coins)
    exact = si_expected_latency(c, a, k, tokens)
    assert abs(on_coins.mean("si") - exact) <= Z * on_coins.sem("si")
    drawn = simulate_units(c, a, k, tokens, repeats, seed=6)
    gap = on_coins.mean("dsi") - drawn.mean("dsi")
    assert abs(gap) <= Z * math.hypot(on_coins.sem("dsi"), drawn.sem("dsi"))
