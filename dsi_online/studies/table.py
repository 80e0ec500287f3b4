"""The paper's kind of table: per profile, each algorithm at its best lookahead.

For every profile the lookaheads k = 1..max_lookahead are played on the virtual clock with the
profile's latency distributions, DSI on ceil(1 / (k c)) target servers capped at max_servers.
SI's best k minimises SI's mean latency and DSI's best k minimises DSI's: each speedup compares
each algorithm at its own best k. Every cell uses the same seed, so repeat i of every cell shares
the oracle's coins and the latency draws, and speedups across cells stay paired comparisons.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from dsi_online.assumptions import ASSUMPTIONS
from dsi_online.errors import InvalidParameterError
from dsi_online.schedulers.registry import gpus_held
from dsi_online.sim.profile import Profile
from dsi_online.sim.runner import Progress, ScenarioResult, run_many
from dsi_online.sim.scenario import (
    MAX_REPEATS,
    MAX_SERVERS,
    MAX_TOKENS,
    Scenario,
    check_acceptance,
    check_int,
)
from dsi_online.sim.stats import Speedup

ACCEPTANCE_FROM_PROFILE = "profile"
ACCEPTANCE_FROM_USER = "user"
MAX_TABLE_LOOKAHEAD = 100
"""Largest lookahead the table's search tries (every k is a scenario per profile)."""


@dataclass(frozen=True)
class TableConfig:
    """The search every profile gets: lookaheads, the server cap, tokens, repeats, seed."""

    acceptance: float | None = None
    tokens: int = 200
    repeats: int = 10
    seed: int = 0
    max_lookahead: int = 10
    max_servers: int = 8

    def __post_init__(self) -> None:
        if self.acceptance is not None:
            check_acceptance(self.acceptance)
        check_int(self.tokens, "tokens", "--tokens/-S", maximum=MAX_TOKENS)
        check_int(self.repeats, "repeats", "--repeats/-r", maximum=MAX_REPEATS)
        check_int(self.seed, "seed", "--seed", minimum=0)
        check_int(
            self.max_lookahead, "maximum lookahead", "--max-lookahead", maximum=MAX_TABLE_LOOKAHEAD
        )
        check_int(self.max_servers, "maximum target servers", "--max-servers", maximum=MAX_SERVERS)


@dataclass(frozen=True)
class ProfilePlan:
    """One profile's scenarios, one per lookahead k = 1..max_lookahead."""

    profile: Profile
    acceptance: float
    acceptance_source: str
    scenarios: tuple[Scenario, ...]
    servers_needed: tuple[int, ...]


def _acceptance(profile: Profile, config: TableConfig) -> tuple[float, str]:
    if config.acceptance is not None:
        return config.acceptance, ACCEPTANCE_FROM_USER
    if profile.acceptance is None:
        raise InvalidParameterError(
            f"profile {profile.name} has no acceptance rate: give --acceptance/-a within [0, 1]"
        )
    return profile.acceptance.rate, ACCEPTANCE_FROM_PROFILE


def plan_profile(profile: Profile, config: TableConfig) -> ProfilePlan:
    """The scenarios of `profile`; raise InvalidParameterError when it lacks an acceptance rate."""
    acceptance, source = _acceptance(profile, config)
    scenarios: list[Scenario] = []
    needed: list[int] = []
    for k in range(1, config.max_lookahead + 1):
        base = Scenario(
            target=profile.target.latency,
            drafter=profile.drafter.latency,
            acceptance=acceptance,
            lookahead=k,
            servers=1,
            tokens=config.tokens,
            repeats=config.repeats,
            seed=config.seed,
            profile=profile.name,
        )
        needed.append(base.servers_needed)
        scenarios.append(replace(base, servers=min(base.servers_needed, config.max_servers)))
    return ProfilePlan(profile, acceptance, source, tuple(scenarios), tuple(needed))


@dataclass(frozen=True)
class TableRow:
    """One profile's line of the table: the pair, its settings, best lookaheads and speedups.

    si_over_nonsi uses SI's best k, dsi_over_nonsi DSI's best k, and dsi_over_si compares DSI at
    its best k with SI at its best k. gpu_seconds_dsi_over_nonsi (busy GPU-seconds) and
    reserved_gpu_seconds_dsi_over_nonsi (latency x GPUs held) are at DSI's best k.
    """

    profile: str
    path: str
    target: str
    drafter: str
    target_ttft_ms: float
    target_tpot_ms: float
    drafter_ttft_ms: float
    drafter_tpot_ms: float
    c: float
    acceptance: float
    acceptance_source: str
    best_k_si: int
    best_k_dsi: int
    dsi_servers: int
    dsi_servers_needed: int
    servers_capped: bool
    nonsi_mean_ms: float
    si_mean_ms: float
    dsi_mean_ms: float
    si_over_nonsi: Speedup
    dsi_over_nonsi: Speedup
    dsi_over_si: Speedup
    gpu_seconds_dsi_over_nonsi: float
    reserved_gpu_seconds_dsi_over_nonsi: float
    lossless: bool
    tokens: int
    repeats: int
    seed: int

    def record(self) -> dict[str, Any]:
        """The row as flat plain values in COLUMNS order (speedups as value, CI low, CI high)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Speedup):
                out[f.name] = value.value
                out[f"{f.name}_ci95_low"] = value.ci_low
                out[f"{f.name}_ci95_high"] = value.ci_high
            else:
                out[f.name] = value
        return out


def _columns() -> tuple[str, ...]:
    names: list[str] = []
    for f in fields(TableRow):
        names.append(f.name)
        if f.name in ("si_over_nonsi", "dsi_over_nonsi", "dsi_over_si"):
            names += [f"{f.name}_ci95_low", f"{f.name}_ci95_high"]
    return tuple(names)


COLUMNS = _columns()


def _best(results: Sequence[ScenarioResult], algorithm: str) -> ScenarioResult:
    """The cell with the lowest mean latency of `algorithm`; the smallest k on a tie."""
    return min(results, key=lambda r: (r.algorithms[algorithm].mean_s, r.scenario.lookahead))


def summarise(plan: ProfilePlan, results: Sequence[ScenarioResult]) -> TableRow:
    """The table row of one profile from its cells' results (in lookahead order)."""
    si_cell = _best(results, "si")
    dsi_cell = _best(results, "dsi")
    nonsi = dsi_cell.algorithms["nonsi"]
    si = si_cell.algorithms["si"]
    dsi = dsi_cell.algorithms["dsi"]
    best_k_dsi = dsi_cell.scenario.lookahead
    needed = plan.servers_needed[best_k_dsi - 1]
    profile = plan.profile
    return TableRow(
        profile=profile.name,
        path=str(profile.path) if profile.path is not None else "",
        target=profile.target.name,
        drafter=profile.drafter.name,
        target_ttft_ms=profile.target.latency.ttft.mean * 1e3,
        target_tpot_ms=profile.target.latency.tpot.mean * 1e3,
        drafter_ttft_ms=profile.drafter.latency.ttft.mean * 1e3,
        drafter_tpot_ms=profile.drafter.latency.tpot.mean * 1e3,
        c=profile.c,
        acceptance=plan.acceptance,
        acceptance_source=plan.acceptance_source,
        best_k_si=si_cell.scenario.lookahead,
        best_k_dsi=best_k_dsi,
        dsi_servers=dsi_cell.scenario.servers,
        dsi_servers_needed=needed,
        servers_capped=needed > dsi_cell.scenario.servers,
        nonsi_mean_ms=nonsi.mean_s * 1e3,
        si_mean_ms=si.mean_s * 1e3,
        dsi_mean_ms=dsi.mean_s * 1e3,
        si_over_nonsi=si_cell.speedups.si_over_nonsi,
        dsi_over_nonsi=dsi_cell.speedups.dsi_over_nonsi,
        dsi_over_si=Speedup.paired(si.latency_s, dsi.latency_s),
        gpu_seconds_dsi_over_nonsi=float(np.mean(dsi.busy_s) / np.mean(nonsi.busy_s)),
        reserved_gpu_seconds_dsi_over_nonsi=dsi.mean_s
        * gpus_held("dsi", dsi_cell.scenario.servers)
        / (nonsi.mean_s * gpus_held("nonsi", 1)),
        lossless=all(r.lossless for r in results),
        tokens=dsi_cell.scenario.tokens,
        repeats=dsi_cell.scenario.repeats,
        seed=dsi_cell.scenario.seed,
    )


def total_repeats(profiles: Sequence[Profile], config: TableConfig) -> int:
    """How many repeats `build_table` plays: the total of its progress callbacks."""
    return len(profiles) * config.max_lookahead * config.repeats


def build_table(
    profiles: Sequence[Profile], config: TableConfig, progress: Progress | None = None
) -> list[TableRow]:
    """One row per profile; every (profile, k) cell plays in one virtual-clock event loop.

    Every profile is checked (acceptance rate) before anything runs; `progress(n)` after each
    repeat.
    """
    plans = [plan_profile(p, config) for p in profiles]
    results = run_many([s for p in plans for s in p.scenarios], "virtual", progress=progress)
    width = config.max_lookahead
    return [summarise(plan, results[i * width : (i + 1) * width]) for i, plan in enumerate(plans)]


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(rows: Sequence[TableRow]) -> str:
    """The CSV text of the table: a header of COLUMNS, then one line per row (no CI: empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        record = row.record()
        writer.writerow([_csv_value(record[name]) for name in COLUMNS])
    return buffer.getvalue()


def to_json(rows: Sequence[TableRow]) -> dict[str, Any]:
    """The JSON document of the table: row objects with the CSV's columns, and the model's
    assumptions that flatter DSI."""
    return {"rows": [row.record() for row in rows], "assumptions": list(ASSUMPTIONS)}
