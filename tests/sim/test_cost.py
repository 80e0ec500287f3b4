"""The token-cost latency model: interpolation, context, spread, and where a cancel stops."""

from __future__ import annotations

import numpy as np
import pytest

from dsi_online.errors import InvalidParameterError
from dsi_online.sim.cost import CostStream, TokenCost

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
    assert stream.stop_time(10.0, 1.0, 10.3) == pytest.approx(10.5)
    assert stream.stop_time(10.0, 1.0, 10.5) == pytest.approx(10.5)
    assert stream.stop_time(10.0, 1.0, 10.9) == pytest.approx(11.0)


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
