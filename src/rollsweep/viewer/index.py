"""An index over a rollouts JSONL file: byte offsets and the small columns, built in the background.

The file is read once, block by block, by rollsweep.rollouts.reader's tolerant mode: the byte
offsets of the rows and the few fields the viewer sorts and filters on (reward, task index,
repeat, task_id). A row's body is read later, by offset, only when it is shown. The first block
is small, so the first page of rows is ready almost at once while the rest of the file is
indexed; queries work on whatever is indexed so far (``snapshot()``) and say how far indexing
has got.

Lines that are not JSON objects are skipped and reported (file and line), not fatal: a viewer
should still show a file whose last line was cut by a killed run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from rollsweep.errors import UsageError
from rollsweep.rollouts.reader import line_blocks, parse_block

#: The first block is small so that the first page shows at once; the rest go in big blocks.
FIRST_BLOCK_BYTES = 256 * 1024
BLOCK_BYTES = 8 * 1024 * 1024
#: Bad lines remembered for the report (all are counted).
MAX_REPORTED_BAD_LINES = 20

#: Columns of the index frame.
INDEX_SCHEMA: dict[str, Any] = {
    "i": pl.Int64,  # row number (0-based, blank and bad lines not counted)
    "line": pl.Int64,  # line number in the file (1-based)
    "offset": pl.Int64,
    "length": pl.Int64,
    "reward": pl.Float64,
    "task_index": pl.Int64,
    "repeat": pl.Int64,
    "task_id": pl.String,
}


def check_rollouts_file(path: Path) -> None:
    """Refuse what cannot be a rollouts file: missing, a directory, or a first line not JSON."""
    shown = str(path)
    if not path.exists():
        raise UsageError("file not found", path=shown)
    if path.is_dir():
        raise UsageError("is a directory without rollouts*.jsonl files below it", path=shown)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except PermissionError:
        raise UsageError("permission denied", path=shown) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise UsageError(
                    "not a JSONL file (this line is not JSON)", path=shown, line=number
                ) from None
            if not isinstance(value, dict):
                raise UsageError(
                    f"expected one JSON object per line, got a {type(value).__name__}",
                    path=shown,
                    line=number,
                )
            return


class RolloutIndex:
    """Offsets and small columns of one rollouts file, built by a background thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._chunks: list[pl.DataFrame] = []
        self._snapshot: pl.DataFrame | None = None
        self._snapshot_chunks = -1
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._fd: int | None = None
        self._stat: tuple[int, int, int] | None = None
        self._search_cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.rows = 0
        self.bytes_total = 0
        self.bytes_done = 0
        self.bad_lines = 0
        self.bad_line_report: list[dict[str, Any]] = []
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None

    # ------------------------------------------------------------------ building

    def start(self) -> RolloutIndex:
        """Start indexing in the background (once); return self."""
        with self._lock:
            if self._thread is not None:
                return self
            self._fd = os.open(self.path, os.O_RDONLY)
            stat = os.fstat(self._fd)
            self._stat = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            self.bytes_total = stat.st_size
            self._thread = threading.Thread(
                target=self._run, name=f"index {self.path.name}", daemon=True
            )
            self.started_at = time.monotonic()
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until indexing is finished (True) or the timeout passes (False)."""
        self.start()
        return self._done.wait(timeout)

    @property
    def complete(self) -> bool:
        return self._done.is_set()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _run(self) -> None:
        try:
            self._build()
        except Exception as error:  # reported to the page, never a crash of the server
            self.error = f"{self.path}: indexing stopped: {type(error).__name__}: {error}"
        finally:
            self.finished_at = time.monotonic()
            self._done.set()

    def _build(self) -> None:
        fd = self._fd
        assert fd is not None
        line = 0
        row = 0
        with os.fdopen(os.dup(fd), "rb", buffering=0) as handle:
            blocks = line_blocks(
                handle, first=FIRST_BLOCK_BYTES, size=BLOCK_BYTES, end=self.bytes_total
            )
            offset = 0
            for data in blocks:
                frame, lines = self._parse_block(data, offset, line, row)
                self._append(frame, len(data))
                offset += len(data)
                line += lines
                row += frame.height

    def _append(self, frame: pl.DataFrame, n_bytes: int) -> None:
        with self._lock:
            if frame.height:
                self._chunks.append(frame)
            self.rows += frame.height
            self.bytes_done += n_bytes

    def _parse_block(
        self, data: bytes, base_offset: int, base_line: int, base_row: int
    ) -> tuple[pl.DataFrame, int]:
        """Index one block of whole lines; return (frame, number of lines in the block)."""
        block = parse_block(data, base_line)
        self.bad_lines += len(block.bad)
        for number, reason in block.bad[: MAX_REPORTED_BAD_LINES - len(self.bad_line_report)]:
            self.bad_line_report.append({"line": number, "error": reason})
        frame = pl.DataFrame(
            {
                "i": np.arange(base_row, base_row + len(block.starts), dtype=np.int64),
                "line": block.lines,
                "offset": block.starts.astype(np.int64) + base_offset,
                "length": block.lengths.astype(np.int64),
                "reward": block.columns.get_column("reward"),
                "task_index": block.columns.get_column("_ng_task_index"),
                "repeat": block.columns.get_column("_ng_rollout_index"),
                "task_id": block.columns.get_column("task_id"),
            },
            schema=INDEX_SCHEMA,
        )
        return frame, block.n_lines

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> pl.DataFrame:
        """Everything indexed so far, as one frame (cached until the next block arrives)."""
        with self._lock:
            if self._snapshot_chunks != len(self._chunks):
                if self._chunks:
                    self._snapshot = pl.concat(self._chunks, rechunk=True)
                    # keep one chunk: later snapshots concatenate less
                    self._chunks = [self._snapshot]
                else:
                    self._snapshot = pl.DataFrame(schema=INDEX_SCHEMA)
                self._snapshot_chunks = len(self._chunks)
            assert self._snapshot is not None
            return self._snapshot

    def read_row(self, i: int) -> dict[str, Any]:
        """The full row number ``i`` (0-based), read by offset."""
        frame = self.snapshot()
        if not 0 <= i < frame.height:
            raise IndexError(i)
        offset = int(frame.get_column("offset")[i])
        length = int(frame.get_column("length")[i])
        return self.read_at(offset, length)

    def read_at(self, offset: int, length: int) -> dict[str, Any]:
        fd = self._fd
        if fd is None:
            raise RuntimeError("index not started")
        return orjson.loads(os.pread(fd, length, offset))

    def read_many(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        """The full rows of an index frame's rows (a page), in its order."""
        offsets = frame.get_column("offset").to_list()
        lengths = frame.get_column("length").to_list()
        return [self.read_at(o, n) for o, n in zip(offsets, lengths, strict=True)]

    def stale(self) -> bool:
        """True when the file on disk is no longer the one indexed (replaced or changed)."""
        if self._stat is None:
            return False
        try:
            stat = self.path.stat()
        except OSError:
            return True
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns) != self._stat

    # ------------------------------------------------------------------ text search

    def search(self, needle: str, frame: pl.DataFrame | None = None) -> np.ndarray:
        """A boolean mask over ``frame`` (default: the snapshot): rows whose JSON contains
        ``needle`` (case-insensitive for ASCII; the text may also appear JSON-escaped).

        Streams the file in blocks; results are cached per (needle, rows indexed).
        """
        frame = self.snapshot() if frame is None else frame
        key = (needle, frame.height)
        with self._lock:
            if key in self._search_cache:
                self._search_cache.move_to_end(key)
                return self._search_cache[key]
        mask = self._scan(needle, frame)
        with self._lock:
            self._search_cache[key] = mask
            while len(self._search_cache) > 16:
                self._search_cache.popitem(last=False)
        return mask

    def _scan(self, needle: str, frame: pl.DataFrame) -> np.ndarray:
        mask = np.zeros(frame.height, dtype=bool)
        if not frame.height or self._fd is None:
            return mask
        lowered = needle.lower()
        patterns = {lowered.encode(), orjson.dumps(lowered)[1:-1].lower()}
        patterns = {p for p in patterns if p}
        if not patterns:
            return mask
        offsets = frame.get_column("offset").to_numpy()
        end = int(offsets[-1] + frame.get_column("length")[-1])
        position = 0
        while position < end:
            data = os.pread(self._fd, min(BLOCK_BYTES, end - position), position)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if cut == 0 or position + len(data) >= end:
                cut = len(data)
            data = data[:cut].lower()
            for pattern in patterns:
                found = data.find(pattern)
                while found >= 0:
                    row = int(np.searchsorted(offsets, position + found, side="right")) - 1
                    if row >= 0:
                        mask[row] = True
                    next_line = data.find(b"\n", found)
                    if next_line < 0:
                        break
                    found = data.find(pattern, next_line + 1)
            position += cut
        return mask

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        done = self.complete
        elapsed = None
        if self.started_at is not None:
            elapsed = (self.finished_at if done else time.monotonic()) - self.started_at
        return {
            "rows": self.rows,
            "complete": done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "progress": 1.0
            if done
            else self.bytes_done / self.bytes_total
            if self.bytes_total
            else 0.0,
            "index_seconds": round(elapsed, 3) if elapsed is not None else None,
            "bad_lines": self.bad_lines,
            "bad_line_report": list(self.bad_line_report),
            "error": self.error,
            "stale": self.stale(),
        }
