"""Profiles: a target/drafter pair's latency models and acceptance rate, with provenance.

A profile is a TOML file (times in milliseconds)::

    name = "my-pair"
    [provenance]
    source = "measured with dsi-online measure latency"
    hardware = "NVIDIA H100 80GB HBM3"
    date = "2026-11-22"
    command = "dsi-online measure latency --model ..."
    [target]
    name = "lmsys/vicuna-13b-v1.3"
    ttft = { kind = "empirical", samples_ms = [41.2, 40.9] }
    tpot = { kind = "lognormal", mean_ms = 30.0, cv = 0.05 }
    [drafter]
    name = "double7/vicuna-68m"
    ttft = { kind = "constant", ms = 3.1 }
    tpot = { kind = "constant", ms = 2.9 }
    cost = { tokens = [1, 2, 4], mean_ms = [2.9, 3.1, 3.6], reference_context = 64,
             attention_ns = 50.0, layers = 2, idle_ms = [], idle_factor = [],
             contended = 1.0, ratios = [],     # optional: a forward's cost by its tokens
             prefill_tokens = 64, prefill_ms = 9.0, transit_ms = [0.1, 0.1],
             interruptible = true, prefill = "finish", dispatch_ms = 0.05 }  # optional too
    [acceptance]            # optional: without it the user gives --acceptance
    rate = 0.63
    source = "dsi-online measure acceptance ..."

Every number in a profile must say where it came from: `provenance` is required.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from dsi_online.errors import DSIOnlineError, ProfileError
from dsi_online.sim.cost import TokenCost
from dsi_online.sim.latency import Constant, Empirical, LatencyModel, LogNormal, ModelLatency

SHIPPED_DIR = Path(__file__).parent.parent / "profiles"
USER_DIR_ENV = "DSI_ONLINE_PROFILES"
PROVENANCE_FIELDS = ("source", "hardware", "date", "command")


@dataclass(frozen=True)
class Provenance:
    """Where a profile's numbers came from."""

    source: str
    hardware: str
    date: str
    command: str
    notes: str = ""


@dataclass(frozen=True)
class ModelProfile:
    """One model of the pair: its name and its latency model."""

    name: str
    latency: ModelLatency


@dataclass(frozen=True)
class AcceptanceProfile:
    """A measured (or cited) acceptance rate and where it came from."""

    rate: float
    source: str
    by_position: tuple[float, ...] = ()
    ci95: tuple[float, float] | None = None
    samples: int | None = None


@dataclass(frozen=True)
class Profile:
    """A target/drafter pair: both latency models, an optional acceptance rate, provenance."""

    name: str
    target: ModelProfile
    drafter: ModelProfile
    provenance: Provenance
    acceptance: AcceptanceProfile | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def c(self) -> float:
        """Drafter TPOT / target TPOT (mean latencies)."""
        return self.drafter.latency.tpot.mean / self.target.latency.tpot.mean


def _fail(where: str, message: str) -> ProfileError:
    return ProfileError(f"profile {where}: {message}")


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise _fail(where, f"missing table [{key}]")
    return value


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"field '{key}' must be a non-empty string")
    return value


def _is_number(value: Any) -> TypeGuard[int | float]:
    """A finite TOML number (TOML also spells inf and nan, which no field of a profile takes)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if not _is_number(value):
        raise _fail(where, f"field '{key}' must be a finite number; got {value!r}")
    return float(value)


def _integer(data: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = data.get(key)
    if not _is_number(value) or value != int(value) or value < minimum:
        raise _fail(where, f"field '{key}' must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _latency(data: Mapping[str, Any], where: str) -> LatencyModel:
    kind = data.get("kind")
    try:
        if kind == "constant":
            return Constant(_number(data, "ms", where) / 1e3)
        if kind == "lognormal":
            return LogNormal(_number(data, "mean_ms", where) / 1e3, _number(data, "cv", where))
        if kind == "empirical":
            if not isinstance(data.get("samples_ms"), list):
                raise _fail(where, "field 'samples_ms' must be a list of finite numbers")
            return Empirical(tuple(s / 1e3 for s in _numbers(data, "samples_ms", where)))
    except ProfileError:
        raise
    except DSIOnlineError as exc:
        raise _fail(where, exc.cli_message) from None
    raise _fail(where, f"field 'kind' must be constant, lognormal or empirical; got {kind!r}")


def _model(data: Mapping[str, Any], role: str, where: str) -> ModelProfile:
    section = _table(data, role, where)
    here = f"{where} [{role}]"
    ttft = _latency(_table(section, "ttft", here), f"{here}.ttft")
    tpot = _latency(_table(section, "tpot", here), f"{here}.tpot")
    cost = _cost(_table(section, "cost", here), f"{here}.cost") if "cost" in section else None
    return ModelProfile(_string(section, "name", here), ModelLatency(ttft, tpot, cost))


def _numbers(data: Mapping[str, Any], key: str, where: str) -> tuple[float, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise _fail(where, f"field '{key}' must be a list of finite numbers; got {value!r}")
    return tuple(float(v) for v in value)


def _token_counts(data: Mapping[str, Any], where: str) -> tuple[int, ...]:
    counts = _numbers(data, "tokens", where)
    if not all(t == int(t) for t in counts):
        raise _fail(where, f"field 'tokens' must be a list of integers; got {list(counts)}")
    return tuple(int(t) for t in counts)


def _cost(data: Mapping[str, Any], where: str) -> TokenCost:
    """A [ROLE.cost] table: a forward's latency by the tokens it processes (times in ms)."""
    try:
        return TokenCost(
            tokens=_token_counts(data, where),
            mean_s=tuple(m / 1e3 for m in _numbers(data, "mean_ms", where)),
            reference_context=_integer(data, "reference_context", where, 0),
            attention_s=_number(data, "attention_ns", where) / 1e9,
            ratios=_numbers(data, "ratios", where),
            layers=_integer(data, "layers", where, 1),
            idle_s=tuple(g / 1e3 for g in _numbers(data, "idle_ms", where)),
            idle_factor=_numbers(data, "idle_factor", where),
            contended=_number(data, "contended", where),
            crowded=_numbers(data, "crowded", where),
            prefill_tokens=_integer(data, "prefill_tokens", where, 0)
            if "prefill_tokens" in data
            else 0,
            prefill_s=_number(data, "prefill_ms", where) / 1e3 if "prefill_ms" in data else 0.0,
            transit_s=_pair(data, "transit_ms", where),
            interruptible=_flag(data, "interruptible", where),
            prefill=_choice(data, "prefill", where, ("finish", "stop")),
            dispatch_s=_number(data, "dispatch_ms", where) / 1e3 if "dispatch_ms" in data else 0.0,
        )
    except ProfileError:
        raise
    except DSIOnlineError as exc:
        raise _fail(where, exc.cli_message) from None


def cost_to_toml(cost: TokenCost) -> dict[str, Any]:
    """The TOML table of a token-cost model (milliseconds, nanoseconds for attention)."""
    return {
        "tokens": list(cost.tokens),
        "mean_ms": [round(m * 1e3, 6) for m in cost.mean_s],
        "reference_context": cost.reference_context,
        "attention_ns": cost.attention_s * 1e9,
        "layers": cost.layers,
        "idle_ms": [g * 1e3 for g in cost.idle_s],
        "idle_factor": list(cost.idle_factor),
        "contended": cost.contended,
        "crowded": list(cost.crowded),
        "ratios": list(cost.ratios),
        "prefill_tokens": cost.prefill_tokens,
        "prefill_ms": cost.prefill_s * 1e3,
        "transit_ms": [t * 1e3 for t in cost.transit_s],
        "interruptible": cost.interruptible,
        "prefill": cost.prefill,
        "dispatch_ms": cost.dispatch_s * 1e3,
    }


def _pair(data: Mapping[str, Any], key: str, where: str) -> tuple[float, float]:
    """An optional pair of milliseconds, in seconds ((0, 0) when absent)."""
    values = _numbers(data, key, where) if key in data else (0.0, 0.0)
    if len(values) != 2:
        raise _fail(where, f"field '{key}' must be two numbers")
    return values[0] / 1e3, values[1] / 1e3


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    """An optional boolean (true when absent)."""
    value = data.get(key, True)
    if not isinstance(value, bool):
        raise _fail(where, f"field '{key}' must be true or false")
    return value


def _choice(
    data: Mapping[str, Any], key: str, where: str, choices: tuple[Literal["finish", "stop"], ...]
) -> Literal["finish", "stop"]:
    """An optional string among `choices` (the first when absent)."""
    value = data.get(key, choices[0])
    for choice in choices:
        if value == choice:
            return choice
    raise _fail(where, f"field '{key}' must be one of {', '.join(choices)}")


def _acceptance(data: Mapping[str, Any], where: str) -> AcceptanceProfile | None:
    if "acceptance" not in data:
        return None
    section = _table(data, "acceptance", where)
    here = f"{where} [acceptance]"
    rate = _number(section, "rate", here)
    if not 0 <= rate <= 1:
        raise _fail(here, f"field 'rate' must be within [0, 1]; got {rate}")
    by_position = _numbers(section, "by_position", here)
    if not all(0 <= x <= 1 for x in by_position):
        raise _fail(here, f"field 'by_position' must hold rates within [0, 1]; got {by_position}")
    ci95 = None
    if "ci95" in section:
        bounds = _numbers(section, "ci95", here)
        if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1] <= 1:
            raise _fail(
                here, f"field 'ci95' must be [low, high] with 0 <= low <= high <= 1; got {bounds}"
            )
        ci95 = (bounds[0], bounds[1])
        if not bounds[0] <= rate <= bounds[1]:
            raise _fail(here, f"field 'ci95' {list(bounds)} must contain the rate {rate}")
    samples = _integer(section, "samples", here, 1) if "samples" in section else None
    return AcceptanceProfile(
        rate=rate,
        source=_string(section, "source", here),
        by_position=by_position,
        ci95=ci95,
        samples=samples,
    )


def parse_profile(data: Mapping[str, Any], where: str, name: str) -> Profile:
    """Build a Profile from parsed TOML data; `where` names the source in errors."""
    prov = _table(data, "provenance", where)
    here = f"{where} [provenance]"
    provenance = Provenance(
        source=_string(prov, "source", here),
        hardware=_string(prov, "hardware", here),
        date=_string(prov, "date", here),
        command=_string(prov, "command", here),
        notes=_string(prov, "notes", here) if "notes" in prov else "",
    )
    return Profile(
        name=_string(data, "name", where) if "name" in data else name,
        target=_model(data, "target", where),
        drafter=_model(data, "drafter", where),
        provenance=provenance,
        acceptance=_acceptance(data, where),
    )


def load_profile(path: str | Path) -> Profile:
    """Load a profile from a TOML file; raise ProfileError naming what is wrong."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(where, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(where, f"cannot be read ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(where, f"is not valid TOML ({exc})") from None
    profile = parse_profile(data, where, path.stem)
    return Profile(
        profile.name,
        profile.target,
        profile.drafter,
        profile.provenance,
        profile.acceptance,
        path=path,
    )


def shipped_profiles() -> list[Path]:
    """Paths of the profiles that ship with dsi_online."""
    return sorted(SHIPPED_DIR.glob("*.toml"))


def user_profiles_dir() -> Path:
    """The user's profile directory: $DSI_ONLINE_PROFILES, else ~/.config/dsi-online/profiles."""
    configured = os.environ.get(USER_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".config" / "dsi-online" / "profiles"


def user_profiles() -> list[Path]:
    """Paths of the profiles in the user's profile directory (none when it does not exist)."""
    directory = user_profiles_dir()
    return sorted(directory.glob("*.toml")) if directory.is_dir() else []


Skipped = Callable[[ProfileError], None]
"""Told of each profile file that does not load, which listings leave out."""


def readable_profiles(skipped: Skipped | None = None) -> list[tuple[str, Profile]]:
    """Every profile that loads, as (origin, profile): the user's ("user") first, then the
    shipped ones ("shipped"); a file that does not load is left out, and `skipped` (the
    command line warns on stderr) gets its ProfileError."""
    found: list[tuple[str, Profile]] = []
    for origin, paths in (("user", user_profiles()), ("shipped", shipped_profiles())):
        for path in paths:
            try:
                found.append((origin, load_profile(path)))
            except ProfileError as exc:
                if skipped is not None:
                    skipped(exc)
    return found


def resolve_profile(name_or_path: str, skipped: Skipped | None = None) -> Profile:
    """Load a profile by the name `dsi-online profiles` lists (its `name` field), else by its
    file's stem, among the user's profiles first, then the shipped ones; else as a path.
    Files that do not load are passed over (see readable_profiles)."""
    if not name_or_path.strip():
        raise ProfileError(
            f"profile {name_or_path!r}: empty; name a profile (dsi-online profiles lists them) "
            "or a file"
        )
    found = readable_profiles(skipped)
    for group in ("user", "shipped"):
        mine = [profile for origin, profile in found if origin == group]
        for profile in mine:
            if profile.name == name_or_path:
                return profile
        for profile in mine:
            if profile.path is not None and profile.path.stem == name_or_path:
                return profile
    candidates = [profile for _, profile in found]
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        names = ", ".join(dict.fromkeys(p.name for p in candidates)) or "none"
        raise ProfileError(
            f"profile {name_or_path}: no such file, nor a profile of that name (readable "
            f"profiles: {names}; yours live in {user_profiles_dir()})"
        )
    return load_profile(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def latency_to_toml(model: LatencyModel) -> dict[str, Any]:
    """The TOML table of a latency model (milliseconds)."""
    if isinstance(model, Constant):
        return {"kind": "constant", "ms": model.value * 1e3}
    if isinstance(model, LogNormal):
        return {"kind": "lognormal", "mean_ms": model.mean_s * 1e3, "cv": model.cv}
    if isinstance(model, Empirical):
        return {"kind": "empirical", "samples_ms": [round(s * 1e3, 6) for s in model.samples]}
    raise TypeError(f"unknown latency model {model!r}")


def profile_to_toml(profile: Profile) -> str:
    """Serialise a profile to the TOML format `load_profile` reads."""
    lines = [f"name = {_toml_value(profile.name)}", "", "[provenance]"]
    prov = profile.provenance
    for key in (*PROVENANCE_FIELDS, "notes"):
        value = getattr(prov, key)
        if value:
            lines.append(f"{key} = {_toml_value(value)}")
    for role, model in (("target", profile.target), ("drafter", profile.drafter)):
        lines += ["", f"[{role}]", f"name = {_toml_value(model.name)}"]
        lines.append(f"ttft = {_toml_value(latency_to_toml(model.latency.ttft))}")
        lines.append(f"tpot = {_toml_value(latency_to_toml(model.latency.tpot))}")
        if model.latency.cost is not None:
            lines.append(f"cost = {_toml_value(cost_to_toml(model.latency.cost))}")
    if profile.acceptance is not None:
        acc = profile.acceptance
        lines += ["", "[acceptance]", f"rate = {acc.rate!r}", f"source = {_toml_value(acc.source)}"]
        if acc.by_position:
            lines.append(f"by_position = {_toml_value(list(acc.by_position))}")
        if acc.ci95 is not None:
            lines.append(f"ci95 = {_toml_value(list(acc.ci95))}")
        if acc.samples is not None:
            lines.append(f"samples = {acc.samples}")
    return "\n".join(lines) + "\n"
