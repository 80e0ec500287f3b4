"""dsi_online.reports.validate_view, rendered from a hand-made validation (no model runs): the
tables' columns and figures at 80 columns, the closing lines, and the JSON document.

The validation: k = 3, 2 target servers, 3 calibration and 2 evaluation prompts, two real
runs an algorithm. Predicted latencies (held out) 0.5 (non-SI), 0.4 (SI) and 0.25 s (DSI),
95% PIs 0.45-0.55, 0.36-0.44 and 0.2-0.3 s; in sample 0.55, 0.44 and 0.2 s; real runs
0.50/0.52, 0.38/0.42 and 0.24/0.26 s."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from dsi_online.measure.acceptance import AcceptanceEstimate
from dsi_online.measure.torch_runtime import Environment
from dsi_online.pair.corpus import Prompt
from dsi_online.pair.info import PairInfo
from dsi_online.real.backend import RealRunResult, ServerRecords
from dsi_online.real.calibrate import Calibration
from dsi_online.real.compare import SPEEDUPS, AlgorithmValidation, SpeedupValidation
from dsi_online.real.heldout import Protocol
from dsi_online.real.peer import PeerResult, PeerRun
from dsi_online.real.server import ForwardRecord
from dsi_online.real.validate import ValidateRequest, ValidationResult
from dsi_online.reports.validate_view import render_validation, to_json
from dsi_online.schedulers import RunResult
from dsi_online.sim.runner import run_scenario
from dsi_online.sim.scenario import Scenario
from dsi_online.sim.stats import Speedup, Summary
from dsi_online.sim.trace import AcceptanceTrace
from tests.helpers import render

PREDICTED = {"nonsi": 0.5, "si": 0.4, "dsi": 0.25}
PI = {"nonsi": (0.45, 0.55), "si": (0.36, 0.44), "dsi": (0.2, 0.3)}
IN_SAMPLE = {"nonsi": 0.55, "si": 0.44, "dsi": 0.2}
ACTUAL = {"nonsi": (0.50, 0.52), "si": (0.38, 0.42), "dsi": (0.24, 0.26)}
OUTPUT = (1, 2, 3)


def placeholder(cls: type[Any]) -> Any:
    """An instance of a dataclass of plain fields, every field a placeholder of its type."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            values[field.name] = placeholder(kind)  # type: ignore[arg-type]
        else:
            origin = typing.get_origin(kind) or kind
            values[field.name] = {int: 1, float: 1.0, str: "x", tuple: ()}.get(origin)
    return cls(**values)


def record(role: str, processed: int, catchup: int, cancel: bool = False) -> ForwardRecord:
    """A forward submitted at 0, run from 1 to 11 ms, delivered at 12 ms."""
    return ForwardRecord(
        server=f"{role}-0",
        role=role,  # type: ignore[arg-type]
        context=20,
        kept=20 - processed,
        processed=processed,
        prompt=0,
        catchup=catchup,
        layers=2,
        submitted_s=0.0,
        started_s=0.001,
        ended_s=0.011,
        delivered_s=0.012,
        cpu_s=0.01,
        stopped=cancel,
        cancel_s=0.005 if cancel else None,
    )


def real_run(name: str, latency_s: float, lossless: bool) -> RealRunResult:
    targets = (record("target", 4, 1), record("target", 1, 0, cancel=True))
    drafts = (record("drafter", 1, 0),) * (0 if name == "nonsi" else 3)
    return RealRunResult(
        run=RunResult(name, latency_s, 0.1, len(OUTPUT), "sha", ()),
        prompt=(0,),
        output=OUTPUT if lossless else (9, 9, 9),
        reference=OUTPUT,
        servers=(
            ServerRecords("target-0", "target", targets),
            ServerRecords("drafter-0", "drafter", drafts),
        ),
    )


def calibration(role: str, one: float, four: float) -> Calibration:
    row = ((one,) * 3, (four,) * 3)
    return Calibration(
        role=role,  # type: ignore[arg-type]
        counts=(1, 4),
        contexts=(10, 20),
        samples=(row, row),
        prefill_s=(one,),
        layers=2,
        idle_ratios=((1.25,),) * 6,
        contended_ratios=(1.1,),
    )


def validation(
    runs: int = 2,
    lossless: bool = True,
    peer_agrees: bool = True,
    actual: dict[str, tuple[float, float]] = ACTUAL,
) -> ValidationResult:
    request = ValidateRequest(
        lookahead=3, servers=2, prompts=2, calibration_prompts=3, tokens=3, repeats=1
    )
    scenario = Scenario.from_ms(
        target_ms=10, drafter_ms=2, acceptance=0.7, lookahead=3, servers=2, tokens=3, repeats=2
    )
    algorithms = {
        name: AlgorithmValidation(
            name=name,
            predicted_s=PREDICTED[name],
            predicted_ci95_s=PI[name],
            in_sample_s=IN_SAMPLE[name],
            predicted_by_model={"paper": 0.55, "traced": 0.45, "full": PREDICTED[name]},
            actual=Summary.of(actual[name][:runs]),
            lossless=lossless or name != "dsi",
            runs=tuple(real_run(name, s, lossless or name != "dsi") for s in actual[name][:runs]),
        )
        for name in ("nonsi", "si", "dsi")
    }
    speedups = {
        f"{candidate}_over_{baseline}": SpeedupValidation(
            predicted=PREDICTED[baseline] / PREDICTED[candidate],
            predicted_ci95=(PI[baseline][0] / PI[candidate][1], PI[baseline][1] / PI[candidate][0]),
            in_sample=IN_SAMPLE[baseline] / IN_SAMPLE[candidate],
            actual=Speedup.paired(actual[baseline][:runs], actual[candidate][:runs]),
        )
        for baseline, candidate in SPEEDUPS
    }
    greedy = tuple(PeerRun("greedy", p, OUTPUT, 0.6) for p in range(2))
    assisted = tuple(PeerRun("assisted", p, OUTPUT if peer_agrees else (7,), 0.3) for p in range(2))
    prompts = tuple(Prompt("heldout.py", 64 * i, (i,)) for i in range(5))
    return ValidationResult(
        request=request,
        pair=dataclasses.replace(placeholder(PairInfo), size="test", seed=0),
        pair_path=Path("/pairs/test-0"),
        protocol=Protocol(calibration=prompts[2:], evaluation=prompts[:2]),
        acceptance=AcceptanceEstimate(0.7, (0.6, 0.8), 40, 2, 100, (0.7, 0.6, 0.5), (40, 30, 20)),
        trace=AcceptanceTrace(("1101", "0111", "1111"), "measured"),
        evaluation_trace=AcceptanceTrace(("1100", "0111"), "measured"),
        calibrations={
            "target": calibration("target", 0.010, 0.012),
            "drafter": calibration("drafter", 0.002, 0.003),
        },
        predictions={"full": run_scenario(scenario), "in_sample": run_scenario(scenario)},
        algorithms=algorithms,
        speedups=speedups,
        peer=PeerResult(3, 3, 1, greedy, assisted, placeholder(Environment)),
        peer_matches_ours=peer_agrees,
    )


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_tables_show_every_figure_whole_at_80_columns() -> None:
    text = render(render_validation(validation()), 80)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    words = " ".join(text.split())
    assert (
        "latency a generation, predicted and real (k = 3, n = 2; held out: 3 calibration, "
        "2 evaluation prompts)"
    ) in words
    header = ["algo", "predicted", "s", "95%", "PI", "actual", "s", "95%", "CI", "error"]
    assert [*header, "in", "PI"] in rows(text)
    # error = 100 (predicted - actual) / actual, held out;
    # the CI is exp(+-t(1) x sem / mean) around the mean (the log scale)
    assert [
        "non-SI", "0.5000", "0.4500-0.5500", "0.5100", "0.3975-0.6543", "-2.0%", "yes"
    ] in rows(text)  # fmt: skip
    assert [
        "SI", "0.4000", "0.3600-0.4400", "0.4000", "0.2119-0.7550", "+0.0%", "yes"
    ] in rows(text)  # fmt: skip
    assert [
        "DSI", "0.2500", "0.2000-0.3000", "0.2500", "0.1504-0.4156", "+0.0%", "yes"
    ] in rows(text)  # fmt: skip
    # the other models' errors (in sample, paper, traced) and losslessness, a table apart
    assert ["in-sample", "paper", "traced", "lossless"] in rows(text)
    assert ["non-SI", "+7.8%", "+7.8%", "-11.8%", "yes"] in rows(text)
    assert ["SI", "+10.0%", "+37.5%", "+12.5%", "yes"] in rows(text)
    assert ["DSI", "-20.0%", "+120.0%", "+80.0%", "yes"] in rows(text)
    # speedups: predicted ratios (with their PIs) against the paired actual ones
    speedup_header = ["speedup", "predicted", "95%", "PI", "actual", "95%", "CI", "error"]
    assert [*speedup_header, "in", "PI"] in rows(text)
    assert [
        "DSI/SI", "1.600x", "1.200-2.200", "1.600x", "1.409-1.817", "+0.0%", "yes"
    ] in rows(text)  # fmt: skip
    assert [
        "DSI/non-SI", "2.000x", "1.500-2.750", "2.040x", "1.574-2.643", "-2.0%", "yes"
    ] in rows(text)  # fmt: skip
    assert [
        "SI/non-SI", "1.250x", "1.023-1.528", "1.275x", "0.867-1.876", "-2.0%", "yes"
    ] in rows(text)  # fmt: skip
    assert ["DSI/SI", "+37.5%", "-", "-", "-"] in rows(text)  # in sample
    assert ["DSI/non-SI", "+34.8%", "-", "-", "-"] in rows(text)
    assert ["SI/non-SI", "-2.0%", "-", "-", "-"] in rows(text)
    # transformers beside ours, then where the time went, per algorithm and model
    assert ["ours", "0.5100", "0.4000", "0.2500"] in rows(text)
    assert ["transformers", "0.6000", "0.3000", "-"] in rows(text)
    time_header = ["algo", "model", "fwd", "sim", "fwd", "tokens", "catch-up", "compute", "s"]
    assert [*time_header, "transit", "s", "tails", "s"] in rows(text)
    # two target forwards of 5 tokens and 1 catch-up, 10 ms compute, 1 + 1 ms in transit
    # (the cancelled one busy 6 ms after its cancel)
    assert any(
        r[:3] == ["non-SI", "target", "2"] and r[4:] == ["5", "1", "0.0200", "0.0040", "0.0060"]
        for r in rows(text)
    )
    assert not any(r[:2] == ["non-SI", "drafter"] for r in rows(text))  # no forwards: no row
    assert any(r[:2] == ["DSI", "drafter"] and r[2] == "3" for r in rows(text))


def test_closing_lines_state_the_measurements_and_the_checks() -> None:
    words = " ".join(render(render_validation(validation()), 80).split())
    assert "pair: /pairs/test-0 (test, seed 0); acceptance" in words
    assert (
        "(greedy matches) on the calibration prompts 0.700, 95% CI [0.600, 0.800], "
        "on the evaluation prompts 0.625"  # 5 of the evaluation traces' 8 positions
    ) in words
    assert "one-token forward target 10.000 ms, drafter 2.000 ms (c = 0.200)" in words
    assert "4 tokens 12.000 ms" in words and "x1.25 / x1.25" in words and "x1.100" in words
    assert "its 95% prediction interval (PI) for the evaluation set's mean" in words
    assert "95% CI of the actual mean: a t interval on the log scale" in words
    assert (
        "every real output equals the target's greedy decoding (the reference: decoded on "
        "cpu in float32)"
    ) in words
    assert "transformers' assisted generation agrees with its greedy decoding" in words
    assert "both equal ours, token for token" in words


def test_an_inline_backend_is_named_with_its_calibration_and_transit() -> None:
    """`--workers auto`: the report says where each ran and what inline forwards cost; the
    JSON says it per algorithm."""
    inline = {
        "target": dataclasses.replace(
            calibration("target", 0.009, 0.011),
            idle_ratios=((1.0,),) * 5 + ((1.05,),),
            contended_ratios=(),
            transit_s=((0.0001, 0.0002),),
        ),
        "drafter": dataclasses.replace(
            calibration("drafter", 0.0015, 0.0025),
            idle_ratios=((1.0,),) * 5 + ((1.1,),),
            contended_ratios=(),
            transit_s=((0.0001, 0.0001),),
        ),
    }
    plain = validation()
    result = dataclasses.replace(
        plain,
        request=dataclasses.replace(plain.request, workers="auto"),
        inline_calibrations=inline,
    )
    words = " ".join(render(render_validation(result), 80).split())
    assert "non-SI and SI ran inline (in the loop's thread), DSI on processes" in words
    assert (
        "one-token forward target 9.000 ms, drafter 1.500 ms; after 32 ms computing the other "
        "model x1.05 / x1.10; transit 0.300 / 0.200 ms"
    ) in words
    process = dataclasses.replace(
        plain, request=dataclasses.replace(plain.request, workers="process")
    )
    assert "ran inline" not in " ".join(render(render_validation(process), 80).split())
    assert {e["workers"] for e in to_json(process)["algorithms"].values()} == {"process"}
    document = to_json(result)
    assert {name: e["workers"] for name, e in document["algorithms"].items()} == {
        "nonsi": "inline",
        "si": "inline",
        "dsi": "process",
    }
    assert document["calibration_inline"]["target"]["contended"] == 1.0
    assert document["calibration_inline"]["drafter"]["idle_factor"][-1] == pytest.approx(1.1)
    assert "host_speed" not in document["calibration_inline"]["target"]  # probed on DSI's


def test_failures_are_spelt_out() -> None:
    text = render(render_validation(validation(lossless=False, peer_agrees=False)), 80)
    words = " ".join(text.split())
    assert any(r[0] == "DSI" and r[-1] == "NO" for r in rows(text) if r)
    assert "SOME REAL OUTPUTS DIFFER FROM THE TARGET'S GREEDY DECODING" in words
    assert "assisted generation DISAGREES" in words and "DIFFER FROM ours" in words


def test_a_wide_interval_is_positive_and_whole_at_80_columns() -> None:
    # a spread that gave a linear t interval below 0 (-0.1082-0.9082): on the log scale the
    # interval is exp(+-t(1) x sem / mean) = exp(+-1.2706) around 0.4 s, wide but positive
    wide = validation(actual={**ACTUAL, "si": (0.36, 0.44)})
    text = render(render_validation(wide), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert [
        "SI", "0.4000", "0.3600-0.4400", "0.4000", "0.1123-1.4252", "+0.0%", "yes"
    ] in rows(text)  # fmt: skip


def test_one_run_has_no_interval() -> None:
    text = render(render_validation(validation(runs=1)), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert ["non-SI", "0.5000", "0.4500-0.5500", "0.5000", "-", "+0.0%", "yes"] in rows(text)
    assert ["non-SI", "+10.0%", "+10.0%", "-10.0%", "yes"] in rows(text)
    # 0.38 / 0.24, with no paired interval
    assert ["DSI/SI", "1.600x", "1.200-2.200", "1.583x", "-", "+1.1%", "yes"] in rows(text)
    assert ["DSI/SI", "+38.9%", "-", "-", "-"] in rows(text)


def test_json_document() -> None:
    document = to_json(validation())
    dsi = document["algorithms"]["dsi"]
    assert dsi["predicted_s"] == 0.25 and dsi["actual_s"] == pytest.approx(0.25)
    assert dsi["predicted_ci95_s"] == [0.2, 0.3] and dsi["inside_ci95"] is True
    assert dsi["in_sample"] == pytest.approx({"predicted_s": 0.2, "error_pct": -20.0})
    assert dsi["actual_ci95_s"] == pytest.approx([0.1504, 0.4156], abs=1e-4)
    assert dsi["error_pct_by_model"] == pytest.approx({"paper": 120.0, "traced": 80.0, "full": 0})
    assert dsi["latencies_s"] == [0.24, 0.26] and dsi["lossless"] is True
    assert dsi["where_time_went"]["drafter"]["forwards"] == 3
    dsi_over_nonsi = document["speedups"]["dsi_over_nonsi"]
    assert dsi_over_nonsi["predicted"] == pytest.approx(2.0)
    assert dsi_over_nonsi["predicted_ci95"] == pytest.approx([1.5, 2.75])
    assert dsi_over_nonsi["in_sample"]["predicted"] == pytest.approx(2.75)
    assert dsi_over_nonsi["actual"] == pytest.approx(2.04)
    assert document["pair"]["path"] == "/pairs/test-0" and document["pair"]["size"] == "test"
    assert document["protocol"] == {
        "held_out": True,
        "calibration_prompts": [{"file": "heldout.py", "offset": o} for o in (128, 192, 256)],
        "evaluation_prompts": [{"file": "heldout.py", "offset": o} for o in (0, 64)],
    }
    assert document["scenario"]["lookahead"] == 3 and document["scenario"]["servers"] == 2
    assert document["scenario"]["reference_device"] == "cpu"
    assert document["acceptance"]["traces"] == ["1101", "0111", "1111"]
    assert document["acceptance"]["evaluation_traces"] == ["1100", "0111"]
    assert document["acceptance"]["evaluation_rate"] == pytest.approx(0.625)
    assert document["transformers"] == {"greedy_s": 0.6, "assisted_s": 0.3, "tokens_match": True}
    assert document["calibration"]["target"]["mean_ms"] == pytest.approx([10.0, 12.0])
