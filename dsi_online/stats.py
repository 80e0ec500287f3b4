"""Summary statistics over repeats, and paired speedups with confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit


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


@dataclass(frozen=True)
class Speedup:
    """mean(baseline) / mean(candidate) with a 95% confidence interval from paired repeats
    (delta method; None with a single repeat)."""

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
        se = float((x - ratio * y).std(ddof=1) / math.sqrt(n) / y.mean())
        half = float(stdtrit(n - 1, 0.975)) * se
        return cls(ratio, ratio - half, ratio + half)
