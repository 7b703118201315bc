"""What a run leaves: the ordered output, the failures sidecar, no leftovers of killed runs."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rollsweep.collector.checkpoint import CheckpointIndex
from rollsweep.protocol import ROLLOUT_INDEX_KEY, TASK_INDEX_KEY
from rollsweep.rollouts.jsonl import atomic_output, dumps, iter_rows

#: The most bytes read at once when copying rows from a checkpoint into the output.
READ_AHEAD = 1 << 20


def write_ordered_output(paths: list[Path], index: CheckpointIndex, output: Path) -> int:
    """Copy the indexed rows of the checkpoint files into ``output`` in task-major order,
    atomically; the number of rows written.

    Rows that lie end to end in one file are read in one ``pread`` (up to READ_AHEAD):
    a run's rows are mostly in order already. Reads, not a memory map, so that the file's pages
    do not count in the collector's RSS.
    """
    written = 0
    with contextlib.ExitStack() as stack:
        fds: list[int] = []
        for path in paths:
            fd = os.open(path, os.O_RDONLY) if path.exists() else -1
            if fd >= 0:
                stack.callback(os.close, fd)
            fds.append(fd)
        sink = stack.enter_context(atomic_output(output))
        for file, start, end, rows in _spans(index):
            data = os.pread(fds[file], end - start, start)
            if len(data) != end - start:
                raise OSError(f"{paths[file]} is shorter than its index says")
            sink.write(data)
            written += rows
    return written


def _spans(index: CheckpointIndex) -> Iterator[tuple[int, int, int, int]]:
    """(file, start, end, rows) of the byte ranges that hold the indexed rows in task-major
    order, each a run of rows that lie end to end in one file (grown past READ_AHEAD no more)."""
    run_file, run_start, run_end, run_rows = -1, 0, 0, 0
    for task_index in index.tasks:
        for rollout_index in index.repeats:
            place = index.get(task_index, rollout_index)
            if place is None:
                continue
            file, offset, length = place
            if file == run_file and offset == run_end and run_end - run_start < READ_AHEAD:
                run_end += length
                run_rows += 1
                continue
            if run_rows:
                yield run_file, run_start, run_end, run_rows
            run_file, run_start, run_end, run_rows = file, offset, offset + length, 1
    if run_rows:
        yield run_file, run_start, run_end, run_rows


def write_failures(sidecar: Path, failures: list[dict[str, Any]]) -> None:
    """The failure records in task-major order, atomically; no file when there are none."""
    if not failures:
        sidecar.unlink(missing_ok=True)
        return
    failures.sort(key=lambda f: (f[TASK_INDEX_KEY], f[ROLLOUT_INDEX_KEY]))
    with atomic_output(sidecar) as handle:
        for failure in failures:
            handle.write(dumps(failure))


def remove_stale_temporaries(*paths: Path) -> None:
    """Delete what a run killed while writing left: atomic_output's temporary files."""
    for path in paths:
        pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
        with contextlib.suppress(FileNotFoundError):
            for stale in path.parent.iterdir():
                if pattern.fullmatch(stale.name):
                    stale.unlink(missing_ok=True)


def mean_reward_of(path: Path) -> float:
    """The mean reward of an output file's rows (NaN when it has none)."""
    total = count = 0
    for _, row in iter_rows(path):
        total += row["reward"]
        count += 1
    return total / count if count else float("nan")
