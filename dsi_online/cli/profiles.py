"""`dsi-online profiles`: the shipped and the user's profiles, with their provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import JsonPath, check_output, output_console, write_json
from dsi_online.errors import ProfileError
from dsi_online.sim.latency import ModelLatency
from dsi_online.sim.profile import (
    Profile,
    readable_profiles,
    resolve_profile,
    shipped_profiles,
    user_profiles,
    user_profiles_dir,
)

profiles_app = typer.Typer(
    help=(
        "List the shipped profiles and yours ($DSI_ONLINE_PROFILES, else "
        "~/.config/dsi-online/profiles), with where their numbers came from."
    ),
)
app.add_typer(profiles_app, name="profiles")


@dataclass(frozen=True)
class ProfileEntry:
    """One profile as `profiles --json` lists it."""

    name: str
    origin: str  # "user" or "shipped"
    path: str
    source: str
    hardware: str
    date: str
    command: str
    target: str
    drafter: str
    c: float
    acceptance: float | None
    acceptance_source: str | None

    @classmethod
    def of(cls, profile: Profile, origin: str) -> ProfileEntry:
        """The entry of a loaded profile."""
        prov = profile.provenance
        acc = profile.acceptance
        return cls(
            name=profile.name,
            origin=origin,
            path=str(profile.path),
            source=prov.source,
            hardware=prov.hardware,
            date=prov.date,
            command=prov.command,
            target=profile.target.name,
            drafter=profile.drafter.name,
            c=profile.c,
            acceptance=None if acc is None else acc.rate,
            acceptance_source=None if acc is None else acc.source,
        )


def warn_skipped(exc: ProfileError) -> None:
    """Say in one line on stderr that a profile file was left out, and why."""
    typer.echo(f"warning: skipped {' '.join(str(exc).split())}", err=True)


def find_profile(name_or_path: str) -> Profile:
    """resolve_profile, warning on stderr of each profile file that does not load."""
    return resolve_profile(name_or_path, warn_skipped)


def list_profiles() -> list[ProfileEntry]:
    """Every readable profile, the user's first; unreadable ones are reported on stderr."""
    return [ProfileEntry.of(p, origin) for origin, p in readable_profiles(warn_skipped)]


@profiles_app.callback(invoke_without_command=True)
def profiles(ctx: typer.Context, json_path: JsonPath = None) -> None:
    """List the profiles (yours, then the shipped ones) with their provenance."""
    if ctx.invoked_subcommand is not None:
        return
    check_output(json_path, "--json")
    entries = list_profiles()
    table = Table(title=Text(f"Profiles (yours live in {user_profiles_dir()})"))
    for column in ("name", "origin", "target / drafter", "c", "acceptance", "hardware", "date"):
        table.add_column(column, overflow="fold")
    for e in entries:
        acceptance = "-" if e.acceptance is None else f"{e.acceptance:.3g}"
        cells = (e.name, e.origin, f"{e.target} / {e.drafter}", f"{e.c:.3g}", acceptance)
        table.add_row(*(Text(cell) for cell in (*cells, e.hardware, e.date)))
    console = output_console(json_path)
    console.print(table)
    if not entries:
        console.print(Text("no profiles yet: make one with dsi-online measure latency --out"))
    if json_path is not None:
        write_json([asdict(e) for e in entries], json_path)


def _latency(model: ModelLatency) -> str:
    return f"TTFT {model.ttft.describe()}, TPOT {model.tpot.describe()}"


def _origin(profile: Profile) -> str:
    if profile.path in user_profiles():
        return "user"
    return "shipped" if profile.path in shipped_profiles() else "file"


@profiles_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A profile's name, or the path of a profile file.")],
    json_path: JsonPath = None,
) -> None:
    """Print one profile: its models' latencies, its acceptance rate and provenance."""
    check_output(json_path, "--json")
    profile = find_profile(name)
    entry = ProfileEntry.of(profile, _origin(profile))
    rows = [
        ("path", f"{entry.path} ({entry.origin})"),
        ("target", f"{profile.target.name}: {_latency(profile.target.latency)}"),
        ("drafter", f"{profile.drafter.name}: {_latency(profile.drafter.latency)}"),
        ("c", f"{profile.c:.4g}"),
    ]
    acc = profile.acceptance
    if acc is None:
        rows.append(("acceptance", "none: give --acceptance"))
    else:
        ci = "" if acc.ci95 is None else f", 95% CI [{acc.ci95[0]:.4f}, {acc.ci95[1]:.4f}]"
        rows.append(("acceptance", f"{acc.rate:.4f}{ci}"))
        if acc.by_position:
            rows.append(("by position", ", ".join(f"{a:.3f}" for a in acc.by_position)))
        rows.append(("acceptance source", acc.source))
    prov = profile.provenance
    rows += [
        ("source", prov.source),
        ("hardware", prov.hardware),
        ("date", prov.date),
        ("command", prov.command),
    ]
    if prov.notes:
        rows.append(("notes", prov.notes))
    table = Table(title=Text(f"Profile {profile.name}"), show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, value in rows:
        table.add_row(field, Text(value))
    output_console(json_path).print(table)
    if json_path is not None:
        write_json(asdict(entry), json_path)
