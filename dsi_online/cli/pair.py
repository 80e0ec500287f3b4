"""`dsi-online pair train`: train (or find in the cache) the byte-level target/drafter pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dsi_online.cli.app import app
from dsi_online.cli.common import announce, make_console, progress_bar
from dsi_online.measure.torch_runtime import passive_openmp
from dsi_online.pair.info import PairInfo
from dsi_online.pair.recipes import SIZES, get_recipe
from dsi_online.pair.store import TrainResult, train_pair
from dsi_online.pair.train import TrainProgress, total_units
from dsi_online.reports.run import COMPACT, number_column

pair_app = typer.Typer(
    help=(
        "A real small model pair made here: a byte-level Llama target and a distilled "
        "drafter, trained on the Python standard library's source. Needs pip install "
        "'dsi-online\\[measure]'."
    ),
    no_args_is_help=True,
)
app.add_typer(pair_app, name="pair")


def _summary(info: PairInfo) -> Table:
    """Both models' shapes, training and losses, one row each."""
    table = Table(title=Text(f"pair {info.size!r}, seed {info.seed}"), **COMPACT)
    columns = ("model", "layers\nx d", "params", "steps", "batch", "train\ns")
    for column in (*columns, "train\nloss", "held-out\nloss"):
        number_column(table, column)
    for name, model in (("target", info.target), ("drafter", info.drafter)):
        table.add_row(
            name,
            f"{model.layers} x {model.hidden}",
            f"{model.parameters / 1e6:.3g}M",
            str(model.steps),
            f"{model.batch}x{model.seq_len}",
            f"{model.seconds:.1f}",
            f"{model.final_train_loss:.3f}",
            f"{model.heldout_loss:.3f}",
        )
    return table


def train_with_progress(size: str, seed: int, out: Path | str | None = None) -> TrainResult:
    """Train the pair (or find it in the cache) under a progress bar."""
    recipe = get_recipe(size)
    passive_openmp()  # the weights do not depend on it; the speed does
    took = " (5 min 10 s on an idle 2-core CPU, docs/pair.md)" if size == "small" else ""

    def starting(folder: Path) -> None:
        announce(
            f"pair train: training the {size} pair (seed {seed}), {total_units(recipe)} "
            f"steps{took}, into the cache {folder}"
        )

    with progress_bar(f"training {size} pair", total_units(recipe)) as bar:
        task = bar.task_ids[0]

        def report(event: TrainProgress) -> None:
            loss = "" if event.loss is None else f", loss {event.loss:.3f}"
            bar.update(task, completed=event.done, description=f"{event.phase}{loss}")

        return train_pair(size, seed, out, report, starting)


@pair_app.command("train")
def train(
    size: Annotated[
        str, typer.Option(help=f"Preset: {' or '.join(SIZES)} (test: seconds, for tests).")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the weights and the training batches.")] = 0,
    out: Annotated[
        str | None,
        typer.Option(
            help="Also copy the pair into this folder (new or empty).", show_default=False
        ),
    ] = None,
) -> None:
    """Train the pair into the cache (reused when already there); --out copies it."""
    result = train_with_progress(size, seed, out)
    info = result.info
    console = make_console()
    if result.trained:
        console.print(Text(f"trained the pair into {result.cache_path}"))
    else:
        console.print(
            Text(f"found the pair in the cache, reused (no training): {result.cache_path}")
        )
    if out is not None:
        console.print(Text(f"pair in {result.path}"))
    console.print(_summary(info))
    agreement = info.agreement
    low, high = agreement.ci95
    text_low, text_high = agreement.text_ci95
    console.print(
        Text(
            f"greedy agreement (acceptance) on the target's generations after held-out prompts: "
            f"{agreement.rate:.3f}, 95% CI [{low:.3f}, {high:.3f}] ({agreement.positions} "
            f"positions of {agreement.prompts} prompts); on the held-out text itself: "
            f"{agreement.text_rate:.3f} [{text_low:.3f}, {text_high:.3f}]"
        )
    )
    latency = info.latency
    console.print(
        Text(
            f"decode forward on {latency.threads} thread: target {latency.target_ms:.3g} ms, "
            f"drafter {latency.drafter_ms:.3g} ms, c = {latency.c:.3f} (measured at training)"
        )
    )
