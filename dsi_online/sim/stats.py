"""Summary statistics over repeats, and paired speedups with confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and standard error of the mean."""

    mean: float
    std: float
    sem: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        x = np.asarray(values, dtype=float)
        std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
        return cls(float(x.mean()), std, std / math.sqrt(len(x)))


def mean_ci95(values: Sequence[float]) -> tuple[float, float] | None:
    """A 95% interval of the mean of positive values (latencies), None with fewer than two.

    Built on the log scale like Speedup's: log(mean) has the delta-method standard error
    sem / mean, with a t quantile of n - 1 degrees of freedom, and the bounds are
    exponentiated, so the interval is positive by construction (a linear t interval went
    below 0 with few, spread samples) and as wide as few samples make it."""
    summary = Summary.of(values)
    n = len(values)
    if n < 2:
        return None
    half = float(stdtrit(n - 1, (1 + CONFIDENCE) / 2)) * summary.sem / summary.mean
    return summary.mean * math.exp(-half), summary.mean * math.exp(half)


@dataclass(frozen=True)
class Speedup:
    """mean(baseline) / mean(candidate) with a 95% confidence interval from paired repeats
    (None with a single repeat).

    The interval is built on the log scale: log(ratio) has the delta-method standard error
    sd(x_i / mean(x) - y_i / mean(y)) / sqrt(n), with a t quantile of n - 1 degrees of
    freedom, and the bounds are exponentiated. A ratio's interval is then always positive
    and asymmetric the way skewed latencies (lognormal with a large cv) make it, where the
    linear delta method gave negative lower bounds.
    """

    value: float
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def paired(cls, baseline: Sequence[float], candidate: Sequence[float]) -> Speedup:
        x = np.asarray(baseline, dtype=float)
        y = np.asarray(candidate, dtype=float)
        ratio = float(x.mean() / y.mean())
        n = len(x)
        if n < 2:
            return cls(ratio, None, None)
        se = float((x / x.mean() - y / y.mean()).std(ddof=1) / math.sqrt(n))
        half = float(stdtrit(n - 1, (1 + CONFIDENCE) / 2)) * se
        return cls(ratio, ratio * math.exp(-half), ratio * math.exp(half))

    @property
    def conclusive(self) -> bool:
        """Whether the interval excludes 1: the candidate is faster, or slower, at 95%.
        False with a single repeat (no interval)."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 1 or self.ci_high < 1
