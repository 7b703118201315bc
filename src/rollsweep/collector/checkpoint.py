"""Resume state: the progress files beside the output, an index of their rows, the writer.

Finished rows are appended to a checkpoint file whose name carries the configuration's hash
(a rerun with other settings starts afresh); ``+num_workers`` runs have one part per worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

from rollsweep.protocol import ROLLOUT_INDEX_KEY, TASK_INDEX_KEY
from rollsweep.rollouts.jsonl import dumps

FSYNC_EVERY_ROWS = 64
FSYNC_EVERY_SECONDS = 1.0


class CheckpointIndex:
    """Where each finished rollout's row sits: which checkpoint file, at what offset.

    Three flat arrays over the run's (task, repeat) slots: 14 bytes a rollout instead of a dict
    entry, so memory stays small however many rollouts a run has.
    """

    def __init__(self, tasks: range, repeats: range) -> None:
        self.tasks = tasks
        self.repeats = repeats
        slots = len(tasks) * len(repeats)
        self._offsets = array("q", [-1]) * slots
        self._lengths = array("i", [0]) * slots
        self._files = array("h", [0]) * slots
        self.count = 0

    def _slot(self, task_index: int, rollout_index: int) -> int | None:
        if task_index not in self.tasks or rollout_index not in self.repeats:
            return None
        return (task_index - self.tasks.start) * len(self.repeats) + (
            rollout_index - self.repeats.start
        )

    def add(
        self, task_index: int, rollout_index: int, offset: int, length: int, file: int = 0
    ) -> None:
        """Record a row; the first one of a (task, repeat) wins."""
        slot = self._slot(task_index, rollout_index)
        if slot is not None and self._offsets[slot] < 0:
            self._offsets[slot] = offset
            self._lengths[slot] = length
            self._files[slot] = file
            self.count += 1

    def get(self, task_index: int, rollout_index: int) -> tuple[int, int, int] | None:
        """(file, offset, length) of a finished rollout's row, or None."""
        slot = self._slot(task_index, rollout_index)
        if slot is None or self._offsets[slot] < 0:
            return None
        return self._files[slot], self._offsets[slot], self._lengths[slot]

    def __contains__(self, key: tuple[int, int]) -> bool:
        return self.get(*key) is not None

    def pending(self, task_index: int) -> int:
        """How many repeats of a task are not finished."""
        start = (task_index - self.tasks.start) * len(self.repeats)
        return sum(1 for slot in range(start, start + len(self.repeats)) if self._offsets[slot] < 0)

    def part(self, tasks: range) -> CheckpointIndex:
        """A copy of the slots of a sub-range of tasks (what one worker is given)."""
        part = CheckpointIndex(tasks, self.repeats)
        width = len(self.repeats)
        start, stop = (
            (tasks.start - self.tasks.start) * width,
            (tasks.stop - self.tasks.start) * width,
        )
        part._offsets = self._offsets[start:stop]
        part._lengths = self._lengths[start:stop]
        part._files = self._files[start:stop]
        part.count = sum(1 for offset in part._offsets if offset >= 0)
        return part

    def update(self, part: CheckpointIndex) -> None:
        """Take back a worker's slots (its sub-range, finished rows added)."""
        width = len(self.repeats)
        start = (part.tasks.start - self.tasks.start) * width
        stop = start + len(part._offsets)
        before = sum(1 for offset in self._offsets[start:stop] if offset >= 0)
        self._offsets[start:stop] = part._offsets
        self._lengths[start:stop] = part._lengths
        self._files[start:stop] = part._files
        self.count += part.count - before


def read_checkpoints(paths: list[Path], tasks: range, repeats: range) -> CheckpointIndex:
    """Index the whole rows of the checkpoint files (file id = position in ``paths``); a torn
    last line is cut off its file."""
    index = CheckpointIndex(tasks, repeats)
    for file, path in enumerate(paths):
        if not path.exists():
            continue
        good_end = _index_file(path, index, file)
        if good_end != path.stat().st_size:
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
    return index


def _index_file(path: Path, index: CheckpointIndex, file: int) -> int:
    """Add one checkpoint file's whole rows to ``index``; the end of the last whole row."""
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                row = orjson.loads(raw)
                task_index, rollout_index = int(row[TASK_INDEX_KEY]), int(row[ROLLOUT_INDEX_KEY])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                break
            index.add(task_index, rollout_index, offset, len(raw), file)
            offset += len(raw)
    return offset


class CheckpointWriter:
    """Appends rows to one checkpoint file and indexes them.

    Rows finished in one turn of the event loop go to the OS in one ``write`` at the end of that
    turn (before the loop waits again, so ``kill -9`` loses none that the collector had finished
    handling); an fsync every N rows or T seconds, in a thread so the loop does not wait for the
    disk, guards against a machine crash.
    """

    def __init__(self, path: Path, index: CheckpointIndex, file: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._index = index
        self._file = file
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._size = os.fstat(self._fd).st_size
        self._pending: list[bytes] = []
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future[None] | None = None

    def append(self, task_index: int, rollout_index: int, row: dict[str, Any]) -> None:
        data = dumps(row)
        self._index.add(task_index, rollout_index, self._size, len(data), self._file)
        self._size += len(data)
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    def _write_pending(self) -> bool:
        """Hand the pending rows to the OS in one write; False when there were none."""
        if not self._pending:
            return False
        view = memoryview(b"".join(self._pending))
        self._pending.clear()
        while view:
            view = view[os.write(self._fd, view) :]
        return True

    def flush(self) -> None:
        """Hand the pending rows to the OS; start an fsync when one is due."""
        if self._write_pending():
            self._unsynced += 1
        now = time.monotonic()
        due = self._unsynced >= FSYNC_EVERY_ROWS or (
            self._unsynced and now - self._last_sync >= FSYNC_EVERY_SECONDS
        )
        if due and (self._syncing is None or self._syncing.done()):
            self._unsynced = 0
            self._last_sync = now
            loop = asyncio.get_running_loop()
            self._syncing = loop.run_in_executor(None, os.fsync, self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._write_pending()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
