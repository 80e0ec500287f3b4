"""The report of `dsi-online run`: a rich table, a one-sentence verdict, a JSON document."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dsi_online.runner import ALGORITHMS, ScenarioResult
from dsi_online.scenario import Scenario
from dsi_online.stats import Speedup, Summary
from dsi_online.units import UnitsResult

LABELS = {"nonsi": "non-SI", "si": "SI", "dsi": "DSI"}


def _speedup_json(s: Speedup) -> dict[str, float | None]:
    return {"value": s.value, "ci95_low": s.ci_low, "ci95_high": s.ci_high}


def to_json(result: ScenarioResult) -> dict[str, Any]:
    """The JSON document of a run (a contract other tools read; see the README)."""
    algorithms: dict[str, Any] = {}
    for name, summary in result.algorithms.items():
        algorithms[name] = {
            "latency_s": summary.latency_s,
            "mean_s": summary.mean_s,
            "std_s": summary.std_s,
            "sem_s": summary.sem_s,
            "first_token_s": summary.first_token_s,
            "target_forwards": summary.target_forwards,
            "drafter_forwards": summary.drafter_forwards,
            "wasted_forwards": summary.wasted_forwards,
            "busy_s": summary.busy_s,
            "max_queue_wait_s": summary.max_queue_wait_s,
            "output_sha256": summary.output_sha256,
        }
        overhead = result.overhead(name)
        if overhead is not None and result.ideal is not None:
            algorithms[name] |= {
                "ideal_s": result.ideal.algorithms[name].latency_s,
                "overhead_pct": overhead.overhead_pct,
                "overhead_per_forward_us": overhead.per_forward_us,
                "wake_lag_us": overhead.wake_lag_us,
                "timer_slack_s": [r.timer_slack_s for r in summary.runs],
            }
    sp = result.speedups
    return {
        "scenario": result.scenario.to_dict(),
        "clock": result.clock,
        "algorithms": algorithms,
        "speedups": {
            "dsi_over_si": sp.dsi_over_si.value,
            "dsi_over_nonsi": sp.dsi_over_nonsi.value,
            "si_over_nonsi": sp.si_over_nonsi.value,
        },
        "speedups_ci95": {
            "dsi_over_si": _speedup_json(sp.dsi_over_si),
            "dsi_over_nonsi": _speedup_json(sp.dsi_over_nonsi),
            "si_over_nonsi": _speedup_json(sp.si_over_nonsi),
        },
        "lossless": result.lossless,
    }


def units_to_json(scenario: Scenario, result: UnitsResult) -> dict[str, Any]:
    """The JSON document of `run --engine units`: the core document's latency fields, in
    seconds (time units x the target's latency); forward counts are not modelled."""
    unit_s = scenario.target.tpot.mean
    latencies = {name: (result.latencies(name) * unit_s).tolist() for name in ALGORITHMS}
    algorithms: dict[str, Any] = {}
    for name, values in latencies.items():
        summary = Summary.of(values)
        algorithms[name] = {
            "latency_s": values,
            "mean_s": summary.mean,
            "std_s": summary.std,
            "sem_s": summary.sem,
        }
    speedups = {
        "dsi_over_si": Speedup.paired(latencies["si"], latencies["dsi"]),
        "dsi_over_nonsi": Speedup.paired(latencies["nonsi"], latencies["dsi"]),
        "si_over_nonsi": Speedup.paired(latencies["nonsi"], latencies["si"]),
    }
    return {
        "scenario": scenario.to_dict(),
        "clock": "units",
        "engine": "units",
        "algorithms": algorithms,
        "speedups": {key: s.value for key, s in speedups.items()},
        "speedups_ci95": {key: _speedup_json(s) for key, s in speedups.items()},
    }


def render_units_table(document: dict[str, Any]) -> Table:
    """The table of `run --engine units` (from its JSON document)."""
    scenario = document["scenario"]
    table = Table(
        title=(
            f"time-unit model: {scenario['tokens']} tokens x {scenario['repeats']} repeats, "
            f"c={scenario['c']:.3g} a={scenario['acceptance']:g} k={scenario['lookahead']}, "
            "DSI with enough servers"
        ),
        caption="latency = time units x target latency; speedups: ratio of mean latencies",
    )
    table.add_column("algo")
    for column in ("latency s", "± std", "tok/s", "/non-SI", "/SI"):
        table.add_column(column, justify="right")
    sp = document["speedups"]
    over = {"si": (sp["si_over_nonsi"], None), "dsi": (sp["dsi_over_nonsi"], sp["dsi_over_si"])}
    for name, algo in document["algorithms"].items():
        vs_nonsi, vs_si = over.get(name, (None, None))
        table.add_row(
            LABELS[name],
            f"{algo['mean_s']:.4g}",
            f"{algo['std_s']:.2g}",
            f"{scenario['tokens'] / algo['mean_s']:.1f}",
            "—" if vs_nonsi is None else f"{vs_nonsi:.2f}x",
            "—" if vs_si is None else f"{vs_si:.2f}x",
        )
    return table


def _x(s: Speedup | None) -> str:
    return "—" if s is None else f"{s.value:.2f}x"


def _ci(s: Speedup) -> str:
    if s.ci_low is None or s.ci_high is None:
        return "n/a (one repeat)"
    return f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"


def _mean(values: list[int] | list[float]) -> float:
    return sum(values) / len(values)


def render_table(result: ScenarioResult) -> Table:
    """One row per algorithm: latency, throughput, speedups, forward passes, GPU-seconds."""
    scenario = result.scenario
    sp = result.speedups
    table = Table(
        title=(
            f"{scenario.tokens} tokens x {scenario.repeats} repeats, {result.clock} clock: "
            f"c={scenario.c:.3g} a={scenario.acceptance:g} k={scenario.lookahead}, "
            f"DSI on {scenario.servers} target servers"
        ),
        caption=(
            f"95% CI (paired repeats): DSI/non-SI {_ci(sp.dsi_over_nonsi)}, "
            f"DSI/SI {_ci(sp.dsi_over_si)}, SI/non-SI {_ci(sp.si_over_nonsi)}. "
            "Forwards and GPU-s: mean per run."
        ),
    )
    table.add_column("algo")
    for column in ("latency s", "± std", "tok/s", "/non-SI", "/SI"):
        table.add_column(column, justify="right")
    for column in ("target fwd", "drafter fwd", "wasted fwd", "GPU-s"):
        table.add_column(column, justify="right")

    over_nonsi = {"nonsi": None, "si": sp.si_over_nonsi, "dsi": sp.dsi_over_nonsi}
    over_si = {"nonsi": None, "si": None, "dsi": sp.dsi_over_si}
    for name, summary in result.algorithms.items():
        table.add_row(
            LABELS[name],
            f"{summary.mean_s:.4g}",
            f"{summary.std_s:.2g}",
            f"{scenario.tokens / summary.mean_s:.1f}",
            _x(over_nonsi[name]),
            _x(over_si[name]),
            f"{_mean(summary.target_forwards):.0f}",
            f"{_mean(summary.drafter_forwards):.0f}",
            f"{_mean(summary.wasted_forwards):.0f}",
            f"{_mean(summary.busy_s):.3g}",
        )
    return table


def render_overhead(result: ScenarioResult) -> Table | None:
    """Wall clock only: measured latency against the ideal (the same runs on the virtual
    clock), the overhead per forward pass, and the timer slack taken out of the clock."""
    if result.ideal is None:
        return None
    table = Table(
        title="wall-clock fidelity: measured against the same runs on the virtual clock",
        caption="overhead: scheduler computation, task switches, cancellation, the loop, "
        "concurrent runs; timer slack (kernel oversleep) is removed from the clock, shown apart",
    )
    table.add_column("algo")
    for column in ("wall s", "ideal s", "overhead", "µs/fwd", "wake lag µs", "slack s"):
        table.add_column(column, justify="right")
    for name, summary in result.algorithms.items():
        overhead = result.overhead(name)
        assert overhead is not None
        table.add_row(
            LABELS[name],
            f"{summary.mean_s:.4f}",
            f"{result.ideal.algorithms[name].mean_s:.4f}",
            f"{overhead.overhead_pct:+.2f}%",
            f"{overhead.per_forward_us:.1f}",
            f"{overhead.wake_lag_us:.1f}",
            f"{overhead.timer_slack_s / len(summary.runs):.3f}",
        )
    return table


def _compare(ratio: float, other: str) -> str:
    if abs(ratio - 1) < 0.005:
        return f"as fast as {other}"
    return (
        f"{ratio:.2f}x faster than {other}"
        if ratio > 1
        else f"{1 / ratio:.2f}x slower than {other}"
    )


def verdict(result: ScenarioResult) -> str:
    """One plain sentence: which algorithm wins, by how much, at what compute cost."""
    sp = result.speedups
    dsi = result.algorithms["dsi"]
    nonsi = result.algorithms["nonsi"]
    compute = _mean(dsi.busy_s) / _mean(nonsi.busy_s)
    sentence = (
        f"DSI is {_compare(sp.dsi_over_nonsi.value, 'non-SI')} and "
        f"{_compare(sp.dsi_over_si.value, 'SI')} (SI alone is "
        f"{_compare(sp.si_over_nonsi.value, 'non-SI')}), using "
        f"{compute:.2f}x the GPU-seconds of non-SI on {result.scenario.servers + 1} GPUs."
    )
    if not result.lossless:
        sentence += " WARNING: the algorithms' outputs differ; this is a bug."
    return sentence
