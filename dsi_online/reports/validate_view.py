"""The report of `dsi-online validate`: predicted against actual, the peer, where time went,
and the JSON document (a contract: its keys are documented in docs/validate.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dsi_online.pair import Prompt
from dsi_online.real.calibrate import Calibration
from dsi_online.real.compare import (
    MODELS,
    SPEEDUPS,
    SignedErrors,
    SpeedupValidation,
    signed_errors,
)
from dsi_online.real.validate import ValidationResult
from dsi_online.reports.run import COMPACT, number_column
from dsi_online.schedulers.registry import ALGORITHMS, LABELS
from dsi_online.sim.stats import mean_ci95


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
    tables = (_accuracy_table, _speedups_table, _models_table, _peer_table, _time_table)
    lines = _closing_lines(result)
    return Group(*(table(result) for table in tables), *(Text(line) for line in lines))


def _accuracy_table(result: ValidationResult) -> Table:
    """Each algorithm's latency: held out with its PI, real with its CI, the errors."""
    request = result.request
    accuracy = Table(
        title=f"latency a generation, predicted and real (k = {request.lookahead}, "
        f"n = {request.servers}; held out: {len(result.protocol.calibration)} calibration, "
        f"{len(result.protocol.evaluation)} evaluation prompts)",
        **COMPACT,
    )
    accuracy.add_column("algo")
    for header in ("predicted s", "95% PI", "actual s", "95% CI", "error", "in PI"):
        number_column(accuracy, header)
    for name in ALGORITHMS:
        a = result.algorithms[name]
        interval = _ci95(result, name)
        accuracy.add_row(
            LABELS[name],
            f"{a.predicted_s:.4f}",
            f"{a.predicted_ci95_s[0]:.4f}-{a.predicted_ci95_s[1]:.4f}",
            f"{a.actual.mean:.4f}",
            "-" if interval is None else f"{interval[0]:.4f}-{interval[1]:.4f}",
            f"{a.error_pct:+.1f}%",
            "yes" if a.inside else "NO",
        )
    return accuracy


def _models_table(result: ValidationResult) -> Table:
    """The error of each model beside the held-out one (in-sample isolates the cost model),
    and whether every real output was lossless; a table of its own, so each fits 80 columns."""
    models = Table(title="error by model", **COMPACT)
    models.add_column("")
    for header in ("in-sample", "paper", "traced"):
        number_column(models, header)
    models.add_column("lossless")
    for name in ALGORITHMS:
        a = result.algorithms[name]
        models.add_row(
            LABELS[name],
            f"{a.in_sample_error_pct:+.1f}%",
            f"{a.error_pct_of('paper'):+.1f}%",
            f"{a.error_pct_of('traced'):+.1f}%",
            "yes" if a.lossless else "NO",
        )
    for baseline, candidate in SPEEDUPS:
        s = result.speedups[f"{candidate}_over_{baseline}"]
        models.add_row(
            f"{LABELS[candidate]}/{LABELS[baseline]}",
            f"{s.in_sample_error_pct:+.1f}%",
            "-",
            "-",
            "-",
        )
    return models


def _speedups_table(result: ValidationResult) -> Table:
    """Each speedup: held out with its PI, real with its paired CI, the errors."""
    speedups = Table(title="speedups, predicted and real (paired CI)", **COMPACT)
    speedups.add_column("speedup")
    for header in ("predicted", "95% PI", "actual", "95% CI", "error", "in PI"):
        number_column(speedups, header)
    for baseline, candidate in SPEEDUPS:
        s = result.speedups[f"{candidate}_over_{baseline}"]
        actual = s.actual
        ci = (
            f"{actual.ci_low:.3f}-{actual.ci_high:.3f}"
            if actual.ci_low is not None and actual.ci_high is not None
            else "-"
        )
        speedups.add_row(
            f"{LABELS[candidate]}/{LABELS[baseline]}",
            f"{s.predicted:.3f}x",
            f"{s.predicted_ci95[0]:.3f}-{s.predicted_ci95[1]:.3f}",
            f"{actual.value:.3f}x",
            ci,
            f"{s.error_pct:+.1f}%",
            "yes" if s.inside else "NO",
        )
    return speedups


def _peer_table(result: ValidationResult) -> Table:
    """Our real latencies beside transformers' greedy and assisted generation."""
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
    return peer


def _time_table(result: ValidationResult) -> Table:
    """Where a real run's time went, per algorithm and model (beside the simulated
    forwards of the in-sample prediction)."""
    time = Table(title="where the real time went (a run)", **COMPACT)
    time.add_column("algo")
    time.add_column("model")
    for header in ("fwd", "sim fwd", "tokens", "catch-up", "compute s", "transit s", "tails s"):
        number_column(time, header)
    full = result.predictions["in_sample"]
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
    return time


def _closing_lines(result: ValidationResult) -> list[str]:
    """The pair, the acceptance and the measurements, what the columns mean, and the
    checks of reality against itself."""
    request = result.request
    acceptance = result.acceptance
    acceptance_ci = (
        f", 95% CI [{acceptance.ci95[0]:.3f}, {acceptance.ci95[1]:.3f}]"
        if acceptance.ci95 is not None
        else ""
    )
    target, drafter = (result.calibrations[r].cost() for r in ("target", "drafter"))
    return [
        f"pair: {result.pair_path} ({result.pair.size}, seed {result.pair.seed}); acceptance "
        f"(greedy matches) on the calibration prompts {acceptance.rate:.3f}{acceptance_ci}, "
        f"on the evaluation prompts {result.evaluation_trace.rate:.3f}",
        f"measured{' (DSI on processes)' if result.inline_calibrations else ''}: one-token "
        f"forward target {1e3 * target.mean_s[0]:.3f} ms, drafter "
        f"{1e3 * drafter.mean_s[0]:.3f} ms (c = {drafter.mean_s[0] / target.mean_s[0]:.3f}); "
        f"{request.lookahead + 1} tokens {1e3 * target.mean(request.lookahead + 1, 0):.3f} ms; "
        f"after 32 ms idle x{target.idle_factor[-1]:.2f} / x{drafter.idle_factor[-1]:.2f}; "
        f"beside the other model x{target.contended:.3f} / x{drafter.contended:.3f}; "
        f"host between the runs x{result.calibrations['target'].host_speed:.3f} / "
        f"x{result.calibrations['drafter'].host_speed:.3f} (not applied)",
        *_inline_line(result),
        "error = 100 x (predicted - actual) / actual. predicted: the full model (traces, "
        "cost by tokens, KV cache, host effects) on the calibration prompts' traces, with "
        "its 95% prediction interval (PI) for the evaluation set's mean; in-sample: the same "
        "model on the evaluation prompts' own traces; paper: TTFT/TPOT and an i.i.d. coin; "
        "traced: paper latencies with the calibration traces.",
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


def _inline_line(result: ValidationResult) -> list[str]:
    """How the inline backend that ran non-SI and SI measured (`--workers auto`)."""
    if not result.inline_calibrations:
        return []
    target, drafter = (result.inline_calibrations[r].cost() for r in ("target", "drafter"))
    return [
        f"non-SI and SI ran inline (in the loop's thread), DSI on processes; inline (calibrated "
        f"beside DSI's backend, slice by slice): one-token forward target "
        f"{1e3 * target.mean_s[0]:.3f} ms, drafter {1e3 * drafter.mean_s[0]:.3f} ms; after "
        f"32 ms computing the other model x{target.idle_factor[-1]:.2f} / "
        f"x{drafter.idle_factor[-1]:.2f}; transit {1e3 * sum(target.transit_s):.3f} / "
        f"{1e3 * sum(drafter.transit_s):.3f} ms (processes: "
        f"{1e3 * sum(result.calibrations['target'].cost().transit_s):.3f} / "
        f"{1e3 * sum(result.calibrations['drafter'].cost().transit_s):.3f} ms)"
    ]


def to_json(result: ValidationResult) -> dict[str, Any]:
    """The JSON document of a validation."""
    return {
        "lossless": not disagreements(result),
        "pair": {"path": str(result.pair_path), **_plain(dataclasses.asdict(result.pair))},
        "protocol": {
            "held_out": True,
            "calibration_prompts": [_prompt(p) for p in result.protocol.calibration],
            "evaluation_prompts": [_prompt(p) for p in result.protocol.evaluation],
        },
        "scenario": _scenario_json(result),
        "acceptance": _acceptance_json(result),
        "algorithms": {name: _algorithm_json(result, name) for name in ALGORITHMS},
        "speedups": {key: _speedup_json(sv) for key, sv in result.speedups.items()},
        "transformers": {
            "greedy_s": result.peer.greedy_s,
            "assisted_s": result.peer.assisted_s,
            "tokens_match": result.peer.tokens_match and result.peer_matches_ours,
        },
        "calibration": {
            role: _calibration_json(measured) for role, measured in result.calibrations.items()
        },
        "calibration_inline": {
            role: _inline_json(measured) for role, measured in result.inline_calibrations.items()
        },
    }


def _scenario_json(result: ValidationResult) -> dict[str, Any]:
    """What was asked for, and where the reference decoding ran."""
    request = result.request
    return {
        "lookahead": request.lookahead,
        "servers": request.servers,
        "prompts": request.prompts,
        "calibration_prompts": request.calibration_prompts,
        "prompt_bytes": request.prompt_bytes,
        "tokens": request.tokens,
        "repeats": request.repeats,
        "seed": request.seed,
        "prompt_seed": request.draw_seed,
        "workers": request.workers,
        "device": request.device,
        "dtype": request.dtype,
        "reference_device": result.reference_device,
        "calibration_samples": request.calibration_samples,
    }


def _acceptance_json(result: ValidationResult) -> dict[str, Any]:
    """The acceptance estimate of the calibration traces, and both sets' traces."""
    acceptance = result.acceptance
    low, high = acceptance.ci95 if acceptance.ci95 is not None else (None, None)
    return {
        "rate": acceptance.rate,
        "ci95_low": low,
        "ci95_high": high,
        "by_position": list(acceptance.by_position),
        "traces": list(result.trace.traces),
        "evaluation_rate": result.evaluation_trace.rate,
        "evaluation_traces": list(result.evaluation_trace.traces),
    }


def _algorithm_json(result: ValidationResult, name: str) -> dict[str, Any]:
    """One algorithm's predictions, real runs, errors and where its time went."""
    a = result.algorithms[name]
    interval = _ci95(result, name)
    return {
        "predicted_s": a.predicted_s,
        "predicted_ci95_s": list(a.predicted_ci95_s),
        "inside_ci95": a.inside,
        "in_sample": {"predicted_s": a.in_sample_s, "error_pct": a.in_sample_error_pct},
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
        "workers": result.request.workers_of(name),
    }


def _speedup_json(sv: SpeedupValidation) -> dict[str, Any]:
    """One speedup: held out with its PI, in sample, and real with its paired CI."""
    return {
        "predicted": sv.predicted,
        "predicted_ci95": list(sv.predicted_ci95),
        "error_pct": sv.error_pct,
        "inside_ci95": sv.inside,
        "in_sample": {"predicted": sv.in_sample, "error_pct": sv.in_sample_error_pct},
        "actual": sv.actual.value,
        "actual_ci95": [sv.actual.ci_low, sv.actual.ci_high],
    }


def _calibration_json(measured: Calibration) -> dict[str, Any]:
    """One model's calibration: the fitted token-cost model and its warnings."""
    cost = measured.cost()
    return {
        "tokens": list(cost.tokens),
        "mean_ms": [1e3 * m for m in cost.mean_s],
        "reference_context": cost.reference_context,
        "attention_ns": 1e9 * cost.attention_s,
        "prefill_ms": [1e3 * s for s in measured.prefill_s],
        "prefill_tokens": cost.prefill_tokens,
        "transit_ms": [1e3 * t for t in cost.transit_s],
        "dispatch_ms": 1e3 * cost.dispatch_s,
        "host_speed": measured.host_speed,
        "idle_ms": [1e3 * s for s in cost.idle_s],
        "idle_factor": list(cost.idle_factor),
        "contended": cost.contended,
        "crowded": list(cost.crowded),
        "run_forwards": len(measured.run_forwards),
        "layers": cost.layers,
        "warnings": list(measured.warnings),
    }


def _inline_json(measured: Calibration) -> dict[str, Any]:
    """The inline backend's calibration (`--workers auto`), taken beside DSI's; the host's
    speed is probed on DSI's backend only (`calibration`) and not repeated."""
    document = _calibration_json(measured)
    del document["host_speed"]
    return document


def _plain(value: Any) -> Any:
    """Paths and tuples as JSON values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "path"}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _prompt(prompt: Prompt) -> dict[str, Any]:
    """A prompt's identity: its held-out file and byte offset."""
    return {"file": prompt.file, "offset": prompt.offset}


def _quantities() -> list[tuple[str, str]]:
    """(key, label) of every algorithm and speedup, in report order."""
    return [(name, LABELS[name]) for name in ALGORITHMS] + [
        (f"{c}_over_{b}", f"{LABELS[c]}/{LABELS[b]}") for b, c in SPEEDUPS
    ]


def _mean(value: tuple[float, tuple[float, float] | None]) -> str:
    mean, interval = value
    if interval is None:
        return f"{mean:+.1f}%"
    return f"{mean:+.1f}% [{interval[0]:+.1f}, {interval[1]:+.1f}]"


def render_seeds(results: list[ValidationResult]) -> Group:
    """Validations over several prompt seeds: every run's errors, and their means."""
    request = results[0].request
    errors = signed_errors(results)
    runs = Table(
        title=f"error by prompt seed, held out (in-sample) (k = {request.lookahead}, "
        f"n = {request.servers}); * = the real value outside the held-out 95% interval",
        **COMPACT,
    )
    runs.add_column("seed")
    for _, label in _quantities():
        number_column(runs, label)
    for i, result in enumerate(results):
        runs.add_row(
            str(result.request.draw_seed),
            *(
                f"{errors[key].held_out[i]:+.1f}%{'' if errors[key].inside[i] else '*'} "
                f"({errors[key].in_sample[i]:+.1f}%)"
                for key, _ in _quantities()
            ),
        )
    summary = Table(title="mean signed error over the seeds [95% CI]", **COMPACT)
    summary.add_column("")
    for header in ("held out", "in-sample", "inside PI", "max |in-sample|"):
        number_column(summary, header)
    for key, label in _quantities():
        e = errors[key]
        summary.add_row(
            label,
            _mean(e.held_out_mean),
            _mean(e.in_sample_mean),
            f"{sum(e.inside)} of {len(e.inside)}",
            f"{max(abs(x) for x in e.in_sample):.1f}%",
        )
    lossless = all(r.lossless for r in results)
    line = (
        "every real output equals the target's greedy decoding"
        if lossless
        else "SOME REAL OUTPUTS DIFFER FROM THE TARGET'S GREEDY DECODING"
    )
    return Group(runs, summary, Text(line))


def _errors_json(e: SignedErrors) -> dict[str, Any]:
    held_mean, held_ci = e.held_out_mean
    in_mean, in_ci = e.in_sample_mean
    return {
        "error_pct": list(e.held_out),
        "in_sample_error_pct": list(e.in_sample),
        "inside_ci95": list(e.inside),
        "mean_error_pct": held_mean,
        "mean_error_ci95": None if held_ci is None else list(held_ci),
        "in_sample_mean_error_pct": in_mean,
        "in_sample_mean_error_ci95": None if in_ci is None else list(in_ci),
    }


def seeds_to_json(results: list[ValidationResult]) -> dict[str, Any]:
    """The JSON document of validations over several prompt seeds: each run's document,
    and per algorithm and speedup the errors over the runs."""
    errors = signed_errors(results)
    return {
        "seeds": [r.request.draw_seed for r in results],
        "summary": {key: _errors_json(errors[key]) for key, _ in _quantities()},
        "runs": [to_json(r) for r in results],
    }
