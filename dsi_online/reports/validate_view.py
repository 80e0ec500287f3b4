"""The report of `dsi-online validate`: predicted against actual, the peer, where time went,
and the JSON document (a contract: its keys are documented in docs/validate.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dsi_online.real.validate import MODELS, ValidationResult
from dsi_online.reports.run import COMPACT, number_column
from dsi_online.schedulers.registry import ALGORITHMS, LABELS
from dsi_online.sim.stats import mean_ci95

SPEEDUPS = (("si", "dsi"), ("nonsi", "dsi"), ("nonsi", "si"))
"""(baseline, candidate) of every speedup reported, as `candidate_over_baseline`."""


def _ci95(result: ValidationResult, name: str) -> tuple[float, float] | None:
    """The 95% interval of an algorithm's actual mean latency over its real runs, on the log
    scale (sim.stats.mean_ci95: positive by construction); None with a single run."""
    return mean_ci95([r.run.latency_s for r in result.algorithms[name].runs])


def disagreements(result: ValidationResult) -> list[str]:
    """How reality disagrees with itself, one phrase each (none: every real output equals
    the target's greedy decoding, and transformers' greedy and assisted generations equal
    each other and ours). Any of them makes validate fail (exit code 1)."""
    found = []
    for name in ALGORITHMS:
        runs = result.algorithms[name].runs
        wrong = sum(not r.lossless for r in runs)
        if wrong:
            found.append(
                f"{LABELS[name]}'s output differs from the target's greedy decoding in {wrong} "
                f"of {len(runs)} runs"
            )
    if not result.peer.tokens_match:
        found.append("transformers' assisted generation differs from its greedy one")
    if not result.peer_matches_ours:
        found.append("transformers' tokens differ from ours")
    return found


def render_validation(result: ValidationResult) -> Group:
    """The tables and the closing lines."""
    request = result.request
    accuracy = Table(
        title=f"latency a generation, predicted and real (k = {request.lookahead}, "
        f"n = {request.servers})",
        **COMPACT,
    )
    accuracy.add_column("algo")
    for header in ("predicted s", "actual s", "95% CI", "error", "paper", "traced"):
        number_column(accuracy, header)
    accuracy.add_column("lossless")
    for name in ALGORITHMS:
        a = result.algorithms[name]
        interval = _ci95(result, name)
        accuracy.add_row(
            LABELS[name],
            f"{a.predicted_s:.4f}",
            f"{a.actual.mean:.4f}",
            "-" if interval is None else f"{interval[0]:.4f}-{interval[1]:.4f}",
            f"{a.error_pct:+.1f}%",
            f"{a.error_pct_of('paper'):+.1f}%",
            f"{a.error_pct_of('traced'):+.1f}%",
            "yes" if a.lossless else "NO",
        )
    speedups = Table(title="speedups, predicted and real (paired CI)", **COMPACT)
    speedups.add_column("speedup")
    for header in ("predicted", "actual", "95% CI", "error"):
        number_column(speedups, header)
    for baseline, candidate in SPEEDUPS:
        predicted, actual = result.speedup(baseline, candidate)
        ci = (
            f"{actual.ci_low:.3f}-{actual.ci_high:.3f}"
            if actual.ci_low is not None and actual.ci_high is not None
            else "-"
        )
        speedups.add_row(
            f"{LABELS[candidate]}/{LABELS[baseline]}",
            f"{predicted:.3f}x",
            f"{actual.value:.3f}x",
            ci,
            f"{100 * (predicted - actual.value) / actual.value:+.1f}%",
        )
    peer = Table(title="beside transformers (s a generation)", **COMPACT)
    peer.add_column("")
    for header in ("greedy", "SI", "DSI"):
        number_column(peer, header)
    peer.add_row(
        "ours",
        f"{result.algorithms['nonsi'].actual.mean:.4f}",
        f"{result.algorithms['si'].actual.mean:.4f}",
        f"{result.algorithms['dsi'].actual.mean:.4f}",
    )
    peer.add_row(
        "transformers", f"{result.peer.greedy_s:.4f}", f"{result.peer.assisted_s:.4f}", "-"
    )
    time = Table(title="where the real time went (a run)", **COMPACT)
    time.add_column("algo")
    time.add_column("model")
    for header in ("fwd", "sim fwd", "tokens", "catch-up", "compute s", "transit s", "tails s"):
        number_column(time, header)
    full = result.predictions["full"]
    for name in ALGORITHMS:
        simulated = full.algorithms[name]
        for role in ("target", "drafter"):
            b = result.algorithms[name].breakdown(role)
            if b.forwards == 0:
                continue
            counts = simulated.target_forwards if role == "target" else simulated.drafter_forwards
            time.add_row(
                LABELS[name],
                role,
                str(b.forwards),
                f"{sum(counts) / len(counts):.0f}",
                str(b.processed),
                str(b.catchup),
                f"{b.compute_s:.4f}",
                f"{b.queued_s + b.delivery_s:.4f}",
                f"{b.tail_s:.4f}",
            )
    acceptance = result.acceptance
    acceptance_ci = (
        f", 95% CI [{acceptance.ci95[0]:.3f}, {acceptance.ci95[1]:.3f}]"
        if acceptance.ci95 is not None
        else ""
    )
    target, drafter = (result.calibrations[r].cost() for r in ("target", "drafter"))
    lines = [
        f"pair: {result.pair_path} ({result.pair.size}, seed {result.pair.seed}); acceptance "
        f"(greedy matches on the prompts) {acceptance.rate:.3f}{acceptance_ci}",
        f"measured: one-token forward target {1e3 * target.mean_s[0]:.3f} ms, drafter "
        f"{1e3 * drafter.mean_s[0]:.3f} ms (c = {drafter.mean_s[0] / target.mean_s[0]:.3f}); "
        f"{request.lookahead + 1} tokens {1e3 * target.mean(request.lookahead + 1, 0):.3f} ms; "
        f"after 32 ms idle x{target.idle_factor[-1]:.2f} / x{drafter.idle_factor[-1]:.2f}; "
        f"beside the other model x{target.contended:.3f} / x{drafter.contended:.3f}",
        "error = 100 x (predicted - actual) / actual. predicted: the full model (traces, "
        "cost by tokens, KV cache, host effects); paper: TTFT/TPOT and an i.i.d. coin; "
        "traced: paper latencies with the traces.",
        "95% CI of the actual mean: a t interval on the log scale over the real runs (prompts "
        "x rounds; standard error of log(mean) = sem / mean), positive by construction and "
        "wide with few runs; '-' with one run.",
        (
            "every real output equals the target's greedy decoding"
            if result.lossless
            else "SOME REAL OUTPUTS DIFFER FROM THE TARGET'S GREEDY DECODING"
        )
        + f" (the reference: decoded on {result.reference_device} in {request.dtype})",
        f"transformers' assisted generation {'agrees' if result.peer.tokens_match else 'DISAGREES'}"
        f" with its greedy decoding, and both "
        f"{'equal' if result.peer_matches_ours else 'DIFFER FROM'} ours, token for token",
    ]
    return Group(accuracy, speedups, peer, time, *(Text(line) for line in lines))


def to_json(result: ValidationResult) -> dict[str, Any]:
    """The JSON document of a validation."""
    request = result.request
    acceptance = result.acceptance
    low, high = acceptance.ci95 if acceptance.ci95 is not None else (None, None)
    algorithms: dict[str, Any] = {}
    for name in ALGORITHMS:
        a = result.algorithms[name]
        interval = _ci95(result, name)
        algorithms[name] = {
            "predicted_s": a.predicted_s,
            "actual_s": a.actual.mean,
            "actual_sem_s": a.actual.sem,
            "actual_ci95_s": None if interval is None else list(interval),
            "error_pct": a.error_pct,
            "lossless": a.lossless,
            "predicted_by_model_s": a.predicted_by_model,
            "error_pct_by_model": {m: a.error_pct_of(m) for m in MODELS},
            "latencies_s": [r.run.latency_s for r in a.runs],
            "where_time_went": {
                role: dataclasses.asdict(a.breakdown(role)) for role in ("target", "drafter")
            },
        }
    speedups: dict[str, Any] = {}
    for baseline, candidate in SPEEDUPS:
        predicted, actual = result.speedup(baseline, candidate)
        speedups[f"{candidate}_over_{baseline}"] = {
            "predicted": predicted,
            "actual": actual.value,
            "actual_ci95": [actual.ci_low, actual.ci_high],
        }
    calibration = {}
    for role, measured in result.calibrations.items():
        cost = measured.cost()
        calibration[role] = {
            "tokens": list(cost.tokens),
            "mean_ms": [1e3 * m for m in cost.mean_s],
            "reference_context": cost.reference_context,
            "attention_ns": 1e9 * cost.attention_s,
            "prefill_ms": [1e3 * s for s in measured.prefill_s],
            "idle_ms": [1e3 * s for s in cost.idle_s],
            "idle_factor": list(cost.idle_factor),
            "contended": cost.contended,
            "layers": cost.layers,
            "warnings": list(measured.warnings),
        }
    return {
        "lossless": not disagreements(result),
        "pair": {"path": str(result.pair_path), **_plain(dataclasses.asdict(result.pair))},
        "scenario": {
            "lookahead": request.lookahead,
            "servers": request.servers,
            "prompts": request.prompts,
            "prompt_bytes": request.prompt_bytes,
            "tokens": request.tokens,
            "repeats": request.repeats,
            "seed": request.seed,
            "workers": request.workers,
            "device": request.device,
            "dtype": request.dtype,
            "reference_device": result.reference_device,
            "calibration_samples": request.calibration_samples,
        },
        "acceptance": {
            "rate": acceptance.rate,
            "ci95_low": low,
            "ci95_high": high,
            "by_position": list(acceptance.by_position),
            "traces": list(result.trace.traces),
        },
        "algorithms": algorithms,
        "speedups": speedups,
        "transformers": {
            "greedy_s": result.peer.greedy_s,
            "assisted_s": result.peer.assisted_s,
            "tokens_match": result.peer.tokens_match and result.peer_matches_ours,
        },
        "calibration": calibration,
    }


def _plain(value: Any) -> Any:
    """Paths and tuples as JSON values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "path"}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
