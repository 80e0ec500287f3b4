"""The model's assumptions that flatter DSI (docs/model.md), stated wherever results are shown:
in the verdict of `run`, under the tables of `sweep`, `table` and `heatmap`, and in every
JSON document as "assumptions"."""

from __future__ import annotations

from collections.abc import Sequence

INDEPENDENT_DRAWS = (
    "each forward's latency is an independent draw, so redundant DSI jobs racing on several "
    "servers gain from the fastest draw: with noisy latencies DSI's edge grows with the "
    "coefficient of variation"
)
FLAT_VERIFY = "a forward's latency does not depend on how many tokens it verifies"
FREE_CANCEL = "a cancelled forward frees its server at once"
MESSAGES = (
    "with a communication delay non-SI sends no messages while DSI pays two per job, so "
    "'DSI is never slower than non-SI' holds only without one"
)

ASSUMPTIONS = (INDEPENDENT_DRAWS, FLAT_VERIFY, FREE_CANCEL, MESSAGES)
"""Every assumption, for JSON documents and the docs."""

ALWAYS = f"Assumed, in DSI's favour: {FLAT_VERIFY}; {FREE_CANCEL}."
"""The sentence every report ends with."""

RACING_NOTE = (
    "Latencies vary here (each forward an independent draw): part of DSI's gain comes from "
    "redundant jobs racing on independent draws, which real servers sharing load may not give."
)
TOKEN_COST = (
    "Measured here, not assumed: the profile prices each forward by the tokens it processes, "
    "and a cancelled forward keeps its server until its next layer boundary."
)
"""The sentence that replaces ALWAYS when the latency models are token-cost models."""
COMM_NOTE = (
    "With a communication delay DSI pays two messages per job and non-SI none: DSI can be "
    "slower than non-SI."
)


def notes(
    *,
    variable_latency: bool,
    comm_delay: bool,
    token_cost: bool = False,
    only: Sequence[str] = (),
) -> list[str]:
    """The sentences a report of these results must carry: the racing caveat when latencies
    vary, the message caveat with a communication delay, and ALWAYS, or TOKEN_COST when a
    profile's token-cost models price the forwards (those two assumptions then do not hold).
    `only`, with token_cost: the profiles priced so when the others are not (a table of
    several): TOKEN_COST is said of them and ALWAYS of the rest."""
    sentences = []
    if variable_latency:
        sentences.append(RACING_NOTE)
    if comm_delay:
        sentences.append(COMM_NOTE)
    if token_cost and only:
        sentences.append(f"For {', '.join(only)}: {TOKEN_COST} For the others: {ALWAYS}")
    else:
        sentences.append(TOKEN_COST if token_cost else ALWAYS)
    return sentences
