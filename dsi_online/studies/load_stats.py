"""The figures of one policy at one rate (docs/model.md, "Many requests under load"): latency
percentiles with confidence intervals, waits, TTFT, throughput, utilisation, and whether
the rate is stable at all.

Confidence intervals. Under load successive requests' latencies are correlated (a long
wait makes the next one long too), so the mean's interval comes from batch means: the
measured requests, in arrival order, are cut into BATCHES consecutive batches, and the
interval is a Student t interval over the batch means (BATCHES - 1 degrees of freedom). A
percentile's interval is the distribution-free order-statistic interval (binomial ranks),
which assumes independent requests: under heavy load it is too narrow, and the docs say so.

Stability. A rate is unstable when (a) its estimated offered load is 1 or more: rho = rate
x mean service time / concurrent slots, where a static policy has floor(G / g) x B slots
(B the batch size) and `adaptive` is charged its mean reserved GPU-seconds over G x B; or
(b) the wait still grows: the mean wait rises from each quarter of the measured requests
(in arrival order) to the next, by more than one mean service time from the first to the
last. (A test of the last quarter against the second by batch-means standard errors flagged
a stable queue at rho = 0.8, whose waits make long excursions: the standard errors of short
batches are far too small there.) An unstable rate reports no latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.special import stdtrit
from scipy.stats import binom

from dsi_online.sim.load import PolicyRun, RequestRecord

CONFIDENCE = 0.95
BATCHES = 20
"""Batches of the batch-means interval of a mean."""


@dataclass(frozen=True)
class Estimate:
    """A statistic and its 95% confidence interval."""

    value: float
    low: float
    high: float


def _batch_se(values: Sequence[float]) -> tuple[float, float, int]:
    """The mean, its batch-means standard error and the degrees of freedom (batches - 1;
    one batch per value below 2 x BATCHES values)."""
    x = np.asarray(values, dtype=float)
    batches = BATCHES if len(x) >= 2 * BATCHES else len(x)
    means = np.array([part.mean() for part in np.array_split(x, batches)])
    se = float(means.std(ddof=1) / math.sqrt(batches)) if batches > 1 else 0.0
    return float(x.mean()), se, batches - 1


def batch_mean(values: Sequence[float]) -> Estimate:
    """The mean with a batch-means t interval."""
    mean, se, df = _batch_se(values)
    if df < 1:
        return Estimate(mean, mean, mean)
    half = float(stdtrit(df, (1 + CONFIDENCE) / 2)) * se
    return Estimate(mean, mean - half, mean + half)


def percentile(values: Sequence[float], q: float) -> Estimate:
    """The q-th percentile (0 < q < 100) with its order-statistic interval."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    p = q / 100
    value = float(np.percentile(x, q))
    tail = (1 - CONFIDENCE) / 2
    low_rank = int(binom.ppf(tail, n, p))  # 0-based ranks of the bounds
    high_rank = int(binom.ppf(1 - tail, n, p))
    return Estimate(value, float(x[max(0, low_rank - 1)]), float(x[min(n - 1, high_rank)]))


@dataclass(frozen=True)
class Latencies:
    """Mean and the 50th, 90th and 99th percentiles of one latency, with intervals."""

    mean: Estimate
    p50: Estimate
    p90: Estimate
    p99: Estimate

    @classmethod
    def of(cls, values: Sequence[float]) -> Latencies:
        mean = batch_mean(values)
        return cls(mean, percentile(values, 50), percentile(values, 90), percentile(values, 99))


@dataclass(frozen=True)
class PolicyRate:
    """One policy at one rate: the measured requests' figures (warm-up excluded), or, when
    the rate is unstable, none (latency, wait and TTFT are None)."""

    policy: str
    label: str
    rate: float
    stable: bool
    rho: float
    completed: int
    warmup: int
    latency: Latencies | None
    wait_mean_s: float | None
    wait_p99_s: float | None
    ttft_mean_s: float | None
    ttft_p99_s: float | None
    tokens_per_s: float
    utilisation: float
    wasted_forwards: float
    lossless: bool
    allotments: dict[str, int]
    samples: tuple[float, ...]
    ideal_mean_s: float | None = None

    def latency_at(self, q: float) -> float | None:
        """The q-th latency percentile of the measured requests (None when unstable)."""
        return float(np.percentile(self.samples, q)) if self.stable else None

    @property
    def overhead_pct(self) -> float | None:
        """Wall clock only: mean latency above the same requests on the virtual clock."""
        if self.ideal_mean_s is None or self.latency is None:
            return None
        return 100 * (self.latency.mean.value / self.ideal_mean_s - 1)


def offered_load(run: PolicyRun) -> float:
    """rho: the rate times the mean service time over the concurrent slots (static), or the
    rate times the mean reserved GPU-seconds over the fleet (adaptive)."""
    if run.policy.adaptive:
        reserved = float(np.mean([r.reserved_s for r in run.records]))
        return run.rate * reserved / (run.gpus * run.batch)
    slots = run.gpus // run.policy.choices[0].allotment.gpus * run.batch
    return run.rate * float(np.mean([r.service_s for r in run.records])) / slots


def still_growing(measured: Sequence[RequestRecord]) -> bool:
    """Whether the wait grows at the end of the run (rule (b) of the module docstring)."""
    quarter = len(measured) // 4
    if quarter < 2:
        return False
    means = [
        float(np.mean([r.wait_s for r in measured[i * quarter : (i + 1) * quarter]]))
        for i in range(4)
    ]
    service = float(np.mean([r.service_s for r in measured]))
    rising = all(a < b for a, b in pairwise(means))
    return rising and means[-1] - means[0] > service


def summarize(run: PolicyRun, warmup: int, ideal: PolicyRun | None = None) -> PolicyRate:
    """The figures of `run`, the first `warmup` requests (by arrival) reported apart."""
    records = run.records
    measured = records[warmup:]
    rho = offered_load(run)
    stable = rho < 1 and not still_growing(measured)
    start = min(r.arrival_s for r in measured)
    span = max(r.finish_s for r in measured) - start
    busy = sum(r.busy_s for r in records)
    latencies = [r.latency_s for r in measured]
    allotments: dict[str, int] = {}
    for r in measured:
        allotments[r.allotment.label] = allotments.get(r.allotment.label, 0) + 1
    ttft = [r.ttft_s for r in measured]
    wait = [r.wait_s for r in measured]
    return PolicyRate(
        policy=run.policy.name,
        label=run.policy.label,
        rate=run.rate,
        stable=stable,
        rho=rho,
        completed=len(measured),
        warmup=warmup,
        latency=Latencies.of(latencies) if stable else None,
        wait_mean_s=float(np.mean(wait)) if stable else None,
        wait_p99_s=float(np.percentile(wait, 99)) if stable else None,
        ttft_mean_s=float(np.mean(ttft)) if stable else None,
        ttft_p99_s=float(np.percentile(ttft, 99)) if stable else None,
        tokens_per_s=sum(r.tokens for r in measured) / span,
        utilisation=busy / (run.gpus * run.horizon_s),
        wasted_forwards=float(np.mean([r.wasted_forwards for r in measured])),
        lossless=all(r.lossless for r in records),
        allotments=allotments,
        samples=tuple(latencies),
        ideal_mean_s=None
        if ideal is None
        else float(np.mean([r.latency_s for r in ideal.records[warmup:]])),
    )
