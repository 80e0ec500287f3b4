"""How `dsi-online validate`'s predictions compare with its real runs: per algorithm and
speedup (errors, intervals, where time went), and over several prompt seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.special import stdtrit

from dsi_online.real.backend import Breakdown, RealRunResult
from dsi_online.real.heldout import Protocol, Replicates, by_prompt, ci95, predictive_draws
from dsi_online.schedulers.registry import ALGORITHMS
from dsi_online.sim.runner import ScenarioResult
from dsi_online.sim.stats import CONFIDENCE, Speedup, Summary

if TYPE_CHECKING:
    from dsi_online.real.validate import ValidateRequest, ValidationResult

Model = Literal["paper", "traced", "full"]
MODELS: tuple[Model, ...] = ("paper", "traced", "full")
SPEEDUPS = (("si", "dsi"), ("nonsi", "dsi"), ("nonsi", "si"))
"""(baseline, candidate) of every speedup reported, as `candidate_over_baseline`."""


@dataclass(frozen=True)
class AlgorithmValidation:
    """One algorithm: the held-out prediction (with its interval), the in-sample one, and
    the real runs."""

    name: str
    predicted_s: float
    predicted_ci95_s: tuple[float, float]
    in_sample_s: float
    predicted_by_model: dict[str, float]
    actual: Summary
    lossless: bool
    runs: tuple[RealRunResult, ...]

    @property
    def error_pct(self) -> float:
        """100 x (predicted - actual) / actual, held out."""
        return 100 * (self.predicted_s - self.actual.mean) / self.actual.mean

    @property
    def in_sample_error_pct(self) -> float:
        """The in-sample prediction's error."""
        return 100 * (self.in_sample_s - self.actual.mean) / self.actual.mean

    @property
    def inside(self) -> bool:
        """Whether the real mean fell inside the held-out 95% interval."""
        return self.predicted_ci95_s[0] <= self.actual.mean <= self.predicted_ci95_s[1]

    def error_pct_of(self, model: Model) -> float:
        """The error of one model's prediction."""
        return 100 * (self.predicted_by_model[model] - self.actual.mean) / self.actual.mean

    def breakdown(self, role: Literal["target", "drafter"]) -> Breakdown:
        """Where `role`'s time went, summed over the real runs and divided by their count."""
        totals = [run.breakdown(role) for run in self.runs]
        n = len(totals)
        return Breakdown(
            forwards=round(sum(b.forwards for b in totals) / n),
            cancelled=round(sum(b.cancelled for b in totals) / n),
            processed=round(sum(b.processed for b in totals) / n),
            prompt=round(sum(b.prompt for b in totals) / n),
            catchup=round(sum(b.catchup for b in totals) / n),
            compute_s=sum(b.compute_s for b in totals) / n,
            queued_s=sum(b.queued_s for b in totals) / n,
            delivery_s=sum(b.delivery_s for b in totals) / n,
            tail_s=sum(b.tail_s for b in totals) / n,
        )


@dataclass(frozen=True)
class SpeedupValidation:
    """One speedup: held out with its interval, in sample, and real (paired over runs)."""

    predicted: float
    predicted_ci95: tuple[float, float]
    in_sample: float
    actual: Speedup

    @property
    def error_pct(self) -> float:
        return 100 * (self.predicted - self.actual.value) / self.actual.value

    @property
    def in_sample_error_pct(self) -> float:
        return 100 * (self.in_sample - self.actual.value) / self.actual.value

    @property
    def inside(self) -> bool:
        return self.predicted_ci95[0] <= self.actual.value <= self.predicted_ci95[1]


def compare(
    predictions: dict[str, ScenarioResult],
    runs: dict[str, list[RealRunResult]],
    protocol: Protocol,
    request: ValidateRequest,
    host: np.ndarray | None = None,
    calibration: Replicates | None = None,
) -> tuple[dict[str, AlgorithmValidation], dict[str, SpeedupValidation]]:
    """Every algorithm's and every speedup's predictions (held out, with the predictive
    bootstrap's 95% intervals, the host's speed drawn from `host`, the calibration's
    uncertainty from `calibration`; in sample; by model) beside the real runs."""
    draws = predictive_draws(
        {
            name: by_prompt(predictions["full"], name, len(protocol.calibration))
            for name in ALGORITHMS
        },
        len(protocol.evaluation),
        request.repeats,
        request.draw_seed,
        host,
        calibration,
    )
    algorithms = {
        name: AlgorithmValidation(
            name=name,
            predicted_s=predictions["full"].algorithms[name].mean_s,
            predicted_ci95_s=ci95(draws[name]),
            in_sample_s=predictions["in_sample"].algorithms[name].mean_s,
            predicted_by_model={m: predictions[m].algorithms[name].mean_s for m in MODELS},
            actual=Summary.of([r.run.latency_s for r in runs[name]]),
            lossless=all(r.lossless for r in runs[name]),
            runs=tuple(runs[name]),
        )
        for name in ALGORITHMS
    }
    speedups = {
        f"{candidate}_over_{baseline}": SpeedupValidation(
            predicted=algorithms[baseline].predicted_s / algorithms[candidate].predicted_s,
            predicted_ci95=ci95(draws[baseline] / draws[candidate]),
            in_sample=algorithms[baseline].in_sample_s / algorithms[candidate].in_sample_s,
            actual=Speedup.paired(
                [r.run.latency_s for r in runs[baseline]],
                [r.run.latency_s for r in runs[candidate]],
            ),
        )
        for baseline, candidate in SPEEDUPS
    }
    return algorithms, speedups


@dataclass(frozen=True)
class SignedErrors:
    """One quantity's errors over several validations: each run's held-out and in-sample
    error (%), whether the real value fell inside the held-out interval, and the means of
    the signed errors with their 95% intervals (t over runs; None with one run)."""

    held_out: tuple[float, ...]
    in_sample: tuple[float, ...]
    inside: tuple[bool, ...]

    @staticmethod
    def _mean_ci(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
        summary = Summary.of(values)
        if len(values) < 2:
            return summary.mean, None
        half = float(stdtrit(len(values) - 1, (1 + CONFIDENCE) / 2)) * summary.sem
        return summary.mean, (summary.mean - half, summary.mean + half)

    @property
    def held_out_mean(self) -> tuple[float, tuple[float, float] | None]:
        return self._mean_ci(self.held_out)

    @property
    def in_sample_mean(self) -> tuple[float, tuple[float, float] | None]:
        return self._mean_ci(self.in_sample)


def signed_errors(results: Sequence[ValidationResult]) -> dict[str, SignedErrors]:
    """Per algorithm and per speedup (`candidate_over_baseline`), the errors of `results`."""
    table: dict[str, SignedErrors] = {}
    for name in ALGORITHMS:
        runs = [r.algorithms[name] for r in results]
        table[name] = SignedErrors(
            tuple(a.error_pct for a in runs),
            tuple(a.in_sample_error_pct for a in runs),
            tuple(a.inside for a in runs),
        )
    for key in results[0].speedups:
        speedups = [r.speedups[key] for r in results]
        table[key] = SignedErrors(
            tuple(s.error_pct for s in speedups),
            tuple(s.in_sample_error_pct for s in speedups),
            tuple(s.inside for s in speedups),
        )
    return table
