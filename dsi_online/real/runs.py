"""What a real run's records say in the simulator's terms: the schedulers' own loop time
before each forward (`dispatch_gaps`) and each forward's round trip beside the servers busy
when it began (`run_forwards`), which the calibration turns into the simulator's dispatch
time and its slowdowns beside busy servers (`dsi_online.real.calibrate.Calibration`)."""

from __future__ import annotations

from dataclasses import dataclass

from dsi_online.real.backend import RealRunResult
from dsi_online.real.server import ForwardRecord
from dsi_online.schedulers.seam import Role


@dataclass(frozen=True)
class RunForward:
    """One forward after the prefill in a real scheduler's run, in the simulator's terms
    (`run_forwards`): the other servers' forwards computing when it began, the tokens it ran
    after `context` cached ones, its server's idle seconds before it, its seconds from begin
    to the reply's delivery (a cancelled one: to its worker's end), the layers it ran, and
    whether it was cancelled."""

    busy: int
    tokens: int
    context: int
    idle_s: float
    seconds: float
    layers: int
    cancelled: bool


def dispatch_gaps(run: RealRunResult) -> dict[Role, list[float]]:
    """Per role, the loop's time before each forward of a real run: from the latest reply
    delivered before its submission (the run's start for the first; replies of cancelled
    forwards, which nothing awaits, aside) to its submission."""
    gaps: dict[Role, list[float]] = {"target": [], "drafter": []}
    delivered: list[float] = []
    for record in run.records:  # by submission time
        before = [d for d in delivered if d <= record.submitted_s]
        gaps[record.role].append(record.submitted_s - max(before, default=0.0))
        if record.cancel_s is None:
            delivered.append(record.delivered_s)
    return gaps


def run_forwards(run: RealRunResult) -> dict[Role, list[RunForward]]:
    """Per role, a real run's forwards after the prefill that ran a layer or more as
    `RunForward`s, timed as the simulator prices one (`SimulatedServer`): a forward begins
    at its submission, or when its server's previous forward ended if that was still
    stopping after a cancel; it ends at its reply's delivery (a cancelled one: when its
    worker stopped); the busy ones are the other servers' forwards between their begin and
    end at its begin, its idle time runs from its server's previous end (the run's start
    before the first). A forward cancelled before its first layer costs the same in both
    (until the cancel) and is left out."""
    spans: list[tuple[str, float, float, ForwardRecord]] = []
    for server in run.servers:
        last = 0.0
        for r in server.records:
            end = r.ended_s if r.cancelled else r.delivered_s
            spans.append((r.server, max(r.submitted_s, last), end, r))
            last = max(last, end)
    found: dict[Role, list[RunForward]] = {"target": [], "drafter": []}
    previous: dict[str, float] = {}
    for name, begin, end, r in spans:
        idle = max(0.0, begin - previous.get(name, 0.0))
        previous[name] = max(previous.get(name, 0.0), end)
        if r.layers > 0 and r.prompt == 0 and r.processed > 0:
            busy = sum(other != name and a <= begin < b for other, a, b, _ in spans)
            found[r.role].append(
                RunForward(busy, r.processed, r.kept, idle, end - begin, r.layers, r.cancelled)
            )
    return found
