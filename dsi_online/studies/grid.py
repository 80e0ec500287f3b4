"""The one resumable grid driver that heatmap and sweep share: independent cells computed in
chunks (in this process, on a process pool or as Ray tasks), each finished item appended to a
journal as it arrives, so that an interrupted run continues with `resume` without
recomputing what the journal holds. On Ctrl-C the pool is terminated at once and the
journal keeps every batch that came back (see `dsi_online.interrupts`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TextIO, TypeVar

from dsi_online.errors import require
from dsi_online.studies.parallel import EXECUTORS, Executor, run_chunks
from dsi_online.studies.results import complete_lines

Cell = TypeVar("Cell")
Chunk = TypeVar("Chunk")
Item = TypeVar("Item")
Key = TypeVar("Key", bound=Hashable)

Progress = Callable[[int, int], None]
"""progress(cells done, cells in the grid), called first before any work starts, then as
results arrive."""


@dataclass(frozen=True)
class Execution:
    """Where a grid's chunks run: `workers` processes (1: in this process) or Ray tasks."""

    workers: int
    backend: Executor = "process"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        workers = self.workers
        require(
            isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
            f"workers (--workers) must be an integer >= 1; got {workers}",
        )
        require(
            self.backend in EXECUTORS,
            f"backend (--backend) must be one of {', '.join(EXECUTORS)}; got {self.backend!r}",
        )
        require(
            self.ray_address is None or self.backend == "ray",
            "ray address (--ray-address) needs --backend ray",
        )


@dataclass(frozen=True)
class JournalFormat(Generic[Item, Key]):
    """How one kind of item is journaled: an optional header line, one line per item, and
    how a journal's complete text is read back (`decode(path, text)`)."""

    header: str | None
    encode: Callable[[Item], str]
    decode: Callable[[Path, str], list[Item]]
    key: Callable[[Item], Key]


class Journal(Generic[Item, Key]):
    """The items computed so far, one line each, appended and flushed batch by batch; a last
    line cut short by an interrupt is dropped when the journal is opened again."""

    def __init__(self, path: Path, form: JournalFormat[Item, Key]) -> None:
        self.path = path
        self._form = form
        complete = complete_lines(path)
        self.items: dict[Key, Item] = {
            form.key(item): item for item in (form.decode(path, complete) if complete else [])
        }
        self._file: TextIO = path.open("a", encoding="utf-8")
        if not complete and form.header is not None:
            self._file.write(form.header)
            self._file.flush()

    def add(self, items: Iterable[Item]) -> None:
        """Append items, then flush."""
        for item in items:
            self.items[self._form.key(item)] = item
            self._file.write(self._form.encode(item))
        self._file.flush()

    def __enter__(self) -> Journal[Item, Key]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


@dataclass(frozen=True)
class GridProgress:
    """What a driven grid did: cells computed now and cells reused from the journal."""

    computed: int
    reused: int


def drive(
    journal: Journal[Item, Key],
    cells: Sequence[Cell],
    cell_key: Callable[[Cell], Key],
    chunk: Callable[[list[Cell]], Sequence[Chunk]],
    compute: Callable[[Chunk], Sequence[Item]],
    execution: Execution,
    *,
    command: str,
    progress: Progress | None = None,
    after_batch: Callable[[], None] | None = None,
) -> GridProgress:
    """Compute every cell whose key the journal lacks, chunk by chunk, journaling each batch
    as it arrives (then `after_batch()`). `compute` must be a module-level function (or a
    functools.partial of one)."""
    with ExitStack() as stack:
        todo = [cell for cell in cells if cell_key(cell) not in journal.items]
        done = reused = len(cells) - len(todo)
        chunks = chunk(todo)
        if progress is not None:
            progress(done, len(cells))
        batches = run_chunks(
            compute,
            chunks,
            workers=execution.workers,
            backend=execution.backend,
            ray_address=execution.ray_address,
            stack=stack,
            command=command,
        )
        for batch in batches:
            journal.add(batch)
            done += len(batch)
            if after_batch is not None:
                after_batch()
            if progress is not None:
                progress(done, len(cells))
    return GridProgress(len(todo), reused)
