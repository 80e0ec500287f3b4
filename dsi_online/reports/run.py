"""The report of `dsi-online run`: a rich table, a one-sentence verdict, a JSON document."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

from dsi_online.assumptions import ASSUMPTIONS, notes
from dsi_online.schedulers.registry import ALGORITHMS, LABELS
from dsi_online.sim.runner import ScenarioResult
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.stats import Speedup, Summary
from dsi_online.units.engine import UnitsResult

COMPACT: dict[str, Any] = {"box": box.SIMPLE_HEAD, "padding": (0, 1, 0, 0), "pad_edge": False}
"""Table settings of every report: a rule under the header, columns two spaces apart, so
that the tables fit 80 columns."""


def number_column(table: Table, header: str) -> None:
    """A right-aligned column of numbers that are never cut: squeezed below their width
    (a very narrow terminal), they fold onto a second line instead of ending in '…'."""
    table.add_column(header, justify="right", overflow="fold")


def tokens_per_s(tokens: int, seconds: float) -> str:
    """Throughput, or 'inf' when every forward rounded to no time at all."""
    return f"{tokens / seconds:.1f}" if seconds > 0 else "inf"


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
            "gpus": result.gpus(name),
            "reserved_s": result.reserved_s(name),
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
        "verdict": verdict(result),
        "assumptions": list(ASSUMPTIONS),
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
        "assumptions": list(ASSUMPTIONS),
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
        number_column(table, column)
    sp = document["speedups"]
    over = {"si": (sp["si_over_nonsi"], None), "dsi": (sp["dsi_over_nonsi"], sp["dsi_over_si"])}
    for name, algo in document["algorithms"].items():
        vs_nonsi, vs_si = over.get(name, (None, None))
        table.add_row(
            LABELS[name],
            f"{algo['mean_s']:.4g}",
            f"{algo['std_s']:.2g}",
            tokens_per_s(scenario["tokens"], algo["mean_s"]),
            "—" if vs_nonsi is None else f"{vs_nonsi:.2f}x",
            "—" if vs_si is None else f"{vs_si:.2f}x",
        )
    return table


def _x(s: Speedup | None) -> str:
    return "—" if s is None else f"{s.value:.2f}x"


def _ci(s: Speedup) -> str:
    if s.ci_low is None or s.ci_high is None:
        return "n/a (one repeat)"
    return f"[{s.ci_low:#.3g}, {s.ci_high:#.3g}]"


def _mean(values: list[int] | list[float]) -> float:
    return sum(values) / len(values)


def render_table(result: ScenarioResult) -> Group:
    """Two tables, one under the other so that both fit 80 columns: latency and speedups
    per algorithm, then its forward passes and GPU-seconds (busy and reserved)."""
    scenario = result.scenario
    sp = result.speedups
    latency = Table(
        title=(
            f"{scenario.tokens} tokens x {scenario.repeats} repeats, {result.clock} clock: "
            f"c={scenario.c:.3g} a={scenario.acceptance:g} k={scenario.lookahead}, "
            f"DSI on {scenario.servers} target servers"
        ),
        caption=(
            f"95% CI (paired repeats, log scale): DSI/non-SI {_ci(sp.dsi_over_nonsi)}, "
            f"DSI/SI {_ci(sp.dsi_over_si)}, SI/non-SI {_ci(sp.si_over_nonsi)}"
        ),
        **COMPACT,
    )
    latency.add_column("algo", no_wrap=True)
    for column in ("latency s", "± std", "tok/s", "/non-SI", "/SI"):
        number_column(latency, column)
    work = Table(
        caption=(
            "mean per run. busy GPU-s: time the servers computed; reserved GPU-s: latency x "
            "GPUs held (DSI holds its target servers and the drafter for its whole latency)"
        ),
        **COMPACT,
    )
    work.add_column("algo", no_wrap=True)
    for column in (
        "target fwd",
        "drafter fwd",
        "wasted fwd",
        "GPUs",
        "busy GPU-s",
        "reserved GPU-s",
    ):
        number_column(work, column)

    over_nonsi = {"nonsi": None, "si": sp.si_over_nonsi, "dsi": sp.dsi_over_nonsi}
    over_si = {"nonsi": None, "si": None, "dsi": sp.dsi_over_si}
    for name, summary in result.algorithms.items():
        latency.add_row(
            LABELS[name],
            f"{summary.mean_s:.4g}",
            f"{summary.std_s:.2g}",
            tokens_per_s(scenario.tokens, summary.mean_s),
            _x(over_nonsi[name]),
            _x(over_si[name]),
        )
        work.add_row(
            LABELS[name],
            f"{_mean(summary.target_forwards):.0f}",
            f"{_mean(summary.drafter_forwards):.0f}",
            f"{_mean(summary.wasted_forwards):.0f}",
            str(result.gpus(name)),
            f"{_mean(summary.busy_s):.4g}",
            f"{_mean(result.reserved_s(name)):.4g}",
        )
    return Group(latency, work)


def render_overhead(result: ScenarioResult) -> Table | None:
    """Wall clock only: measured latency against the ideal (the same runs on the virtual
    clock), the overhead per forward pass, and the timer slack taken out of the clock."""
    if result.ideal is None:
        return None
    table = Table(
        title="wall-clock fidelity: measured against the same runs on the virtual clock",
        caption="overhead: scheduler computation, task switches, cancellation, the loop, "
        "concurrent runs; timer slack (kernel oversleep) is removed from the clock, shown apart",
        **COMPACT,
    )
    table.add_column("algo", no_wrap=True)
    for column in ("wall s", "ideal s", "overhead", "µs/fwd", "wake lag µs", "slack s"):
        number_column(table, column)
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


def compare(s: Speedup, other: str) -> str:
    """'2.43x faster than SI (95% CI 2.3-2.6x)', or 'inconclusive against SI' when the
    interval spans 1 (or there is one repeat) and the ratio is not an exact tie."""
    ratio = s.value
    if s.ci_low is None or s.ci_high is None:
        interval = "one repeat, no confidence interval"
    else:
        interval = f"95% CI {s.ci_low:#.3g}-{s.ci_high:#.3g}x"
    if ratio == 1 and s.ci_low == s.ci_high == 1:
        return f"exactly as fast as {other}"
    if not s.conclusive:
        return f"inconclusive against {other} ({ratio:.3g}x, {interval})"
    if ratio > 1:
        return f"{ratio:.3g}x faster than {other} ({interval})"
    return f"{1 / ratio:.3g}x slower than {other} ({interval})"


def verdict(result: ScenarioResult) -> str:
    """Plain sentences: how DSI and SI compare (inconclusive where the 95% interval spans
    1), at what cost in busy and reserved GPU-seconds, and the assumptions that flatter DSI
    here (assumptions.notes)."""
    sp = result.speedups
    scenario = result.scenario
    busy = {name: _mean(summary.busy_s) for name, summary in result.algorithms.items()}
    reserved = {name: _mean(result.reserved_s(name)) for name in result.algorithms}
    sentences = [
        f"DSI is {compare(sp.dsi_over_nonsi, 'non-SI')} and {compare(sp.dsi_over_si, 'SI')}; "
        f"SI alone is {compare(sp.si_over_nonsi, 'non-SI')}.",
        f"DSI holds {result.gpus('dsi')} GPUs ({scenario.servers} target servers and a drafter) "
        f"for its whole latency: {reserved['dsi'] / reserved['nonsi']:.3g}x the reserved "
        f"GPU-seconds of non-SI (1 GPU) and {reserved['dsi'] / reserved['si']:.3g}x those of "
        f"SI (2 GPUs), while its GPUs compute {busy['dsi'] / busy['nonsi']:.3g}x the busy "
        "GPU-seconds of non-SI.",
        *notes(
            variable_latency=not (scenario.target.is_constant and scenario.drafter.is_constant),
            comm_delay=scenario.link is not None,
            token_cost=scenario.target.cost is not None,
        ),
    ]
    if not result.lossless:
        sentences.append("WARNING: the algorithms' outputs differ; this is a bug.")
    return " ".join(sentences)
