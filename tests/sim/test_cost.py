"""The token-cost latency model: interpolation, context, spread, and where a cancel stops."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.cost import CostStream, Stop, TokenCost

COST = TokenCost(tokens=(1, 2, 4, 8), mean_s=(1.0, 1.2, 1.6, 2.0), reference_context=100)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(1, 1.0), (2, 1.2), (3, 1.4), (4, 1.6), (6, 1.8), (8, 2.0), (12, 2.4), (0, 1.0)],
)
def test_mean_interpolates_and_extrapolates_from_the_last_two(tokens: int, expected: float) -> None:
    assert COST.mean(tokens, 100) == pytest.approx(expected)


def test_context_adds_attention_per_token_processed() -> None:
    cost = TokenCost((1, 2), (1.0, 2.0), reference_context=100, attention_s=0.001)
    assert cost.mean(1, 300) == pytest.approx(1.2)
    assert cost.mean(2, 300) == pytest.approx(2.4)
    with pytest.raises(ValueError, match="token cost model gives"):
        TokenCost((1, 2), (1.0, 2.0), 100, attention_s=0.1).mean(1, 0)


def test_draws_resample_the_ratios_from_the_servers_stream() -> None:
    cost = TokenCost((1, 2), (1.0, 2.0), 0, ratios=(0.5, 1.5))
    stream = CostStream(cost, np.random.default_rng(3))
    many = np.array([stream.next(2, 0) for _ in range(4000)])
    assert set(np.round(many, 9)) == {1.0, 3.0}
    assert abs(many.mean() - 2.0) < 4 * many.std() / np.sqrt(len(many))
    again = CostStream(cost, np.random.default_rng(3))
    assert [again.next(2, 0) for _ in range(10)] == many[:10].tolist()
    assert CostStream(COST, np.random.default_rng(0)).next(4, 100) == 1.6


def test_a_cancelled_forward_stops_at_the_next_layer_boundary() -> None:
    stream = CostStream(TokenCost((1, 2), (1.0, 2.0), 0, layers=4), np.random.default_rng(0))
    assert stream.stop(10.0, 1.0, 10.3, False) == Stop(pytest.approx(10.5), 2, False)
    assert stream.stop(10.0, 1.0, 10.5, False) == Stop(pytest.approx(10.5), 2, False)
    # a cancel during the last layer: the forward completes (issue 15 a)
    assert stream.stop(10.0, 1.0, 10.9, False) == Stop(pytest.approx(11.0), 4, True)


def test_transit_and_the_server_settings_decide_where_a_cancel_stops() -> None:
    """1 s round trip: 0.1 s out, 0.8 s of 4 layers, 0.1 s back (issue 15 g, h)."""
    cost = TokenCost((1, 2), (1.0, 2.0), 0, layers=4, transit_s=(0.1, 0.1))
    stream = CostStream(cost, np.random.default_rng(0))
    assert stream.stop(10.0, 1.0, 10.05, False) == Stop(10.05, 0, False)  # never runs
    assert stream.stop(10.0, 1.0, 10.05, True) == Stop(10.05, 0, False)  # a prefill too
    assert stream.stop(10.0, 1.0, 10.35, False) == Stop(pytest.approx(10.5), 2, False)
    assert stream.stop(10.0, 1.0, 10.3, True) == Stop(pytest.approx(10.9), 4, True)
    assert stream.stop(10.0, 1.0, 10.95, False) == Stop(pytest.approx(10.9), 4, True)
    stubborn = CostStream(replace(cost, interruptible=False), np.random.default_rng(0))
    assert stubborn.stop(10.0, 1.0, 10.3, False) == Stop(pytest.approx(10.9), 4, True)
    assert stubborn.stop(10.0, 1.0, 10.05, False) == Stop(10.05, 0, False)


def test_a_prefill_is_priced_from_the_measured_cold_prefill() -> None:
    """(issue 15 c) the measured prefill at its count, scaled by the warm curve elsewhere."""
    cost = TokenCost((1, 2, 4), (1.0, 2.0, 4.0), 0, prefill_tokens=2, prefill_s=3.0)
    assert cost.prefill_mean(2) == 3.0
    assert cost.prefill_mean(4) == pytest.approx(6.0)
    stream = CostStream(cost, np.random.default_rng(0))
    assert stream.next(2, 0, prefill=True) == 3.0
    assert stream.next(2, 0) == 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tokens": (1,), "mean_s": (1.0,)}, "two or more"),
        ({"tokens": (2, 1), "mean_s": (1.0, 1.0)}, "increasing"),
        ({"tokens": (0, 1), "mean_s": (1.0, 1.0)}, "increasing"),
        ({"tokens": (1, 2), "mean_s": (1.0, 0.0)}, "finite and > 0"),
        ({"tokens": (1, 2), "mean_s": (1.0, 2.0), "ratios": (0.0,)}, "ratios"),
        ({"tokens": (1, 2), "mean_s": (1.0, 2.0), "layers": 0}, "layers"),
    ],
)
def test_bad_models_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        TokenCost(reference_context=0, **kwargs)  # type: ignore[arg-type]


def test_dispatch_is_added_unscaled_and_counts_as_before_the_layers() -> None:
    """The loop's own time a forward: added to every draw, not scaled by the spread, and a
    cancel during it finds a forward that never ran."""
    cost = TokenCost((1, 2), (1.0, 2.0), 0, ratios=(2.0,), layers=4, dispatch_s=0.5)
    stream = CostStream(cost, np.random.default_rng(0))
    assert stream.next(1, 0) == 2.5
    assert stream.stop(10.0, 2.5, 10.4, False) == Stop(10.4, 0, False)
    assert stream.stop(10.0, 2.5, 10.6, False) == Stop(pytest.approx(11.0), 1, False)


def test_contention_grows_with_the_busy_servers_measured() -> None:
    """Beside one busy server the `contended` factor, beside two the first `crowded` one,
    beyond the last measured the last."""
    cost = TokenCost((1, 2), (1.0, 2.0), 0, contended=1.2, crowded=(1.5,))
    assert [cost.host_factor(0.0, busy) for busy in range(4)] == [1.0, 1.2, 1.5, 1.5]
    assert replace(cost, crowded=()).host_factor(0.0, 3) == 1.2
