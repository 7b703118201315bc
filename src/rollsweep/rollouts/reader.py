"""The one reader of rollouts files: whole rows, or a few columns parsed by polars block by block.

- ``iter_rows``: every row as a dict, streaming (rescore, error diagnosis); it lives in
  ``rollsweep.rollouts.jsonl``, which needs no polars, so the collector starts without it;
- ``read_columns``: strict, for aggregation: chosen columns of a whole file in bounded memory;
  any line that is not a rollout row is a UsageError naming file, line and key;
- ``parse_block``: tolerant, for the viewer: the small columns of a block of lines with their
  offsets; lines that are not JSON objects are skipped and reported, not fatal (a viewer should
  still show a file whose last line was cut by a killed run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import orjson
import polars as pl

from rollsweep.errors import UsageError
from rollsweep.rollouts.jsonl import iter_rows
from rollsweep.rollouts.rows import check_rollout_row, finite_number, plain_int

#: Bytes read per block by the strict reader: bounds memory whatever the file size.
READ_BLOCK_BYTES = 16 << 20
#: The small columns every reader of rollouts looks at (the viewer sorts and filters on them).
KEY_SCHEMA: dict[str, pl.DataType] = {
    "reward": pl.Float64(),
    "_ng_task_index": pl.Int64(),
    "_ng_rollout_index": pl.Int64(),
    "task_id": pl.String(),
}

Schema = Mapping[str, pl.DataType]


def open_rollouts(path: str | os.PathLike[str]) -> IO[bytes]:
    """The file, opened for binary reading; a missing file or a directory is a UsageError."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UsageError("file not found", path=str(path)) from None
    except IsADirectoryError:
        raise UsageError("is a directory, expected a JSONL file", path=str(path)) from None
    except PermissionError:
        raise UsageError("permission denied", path=str(path)) from None


def line_blocks(
    handle: IO[bytes], *, first: int, size: int, end: int | None = None
) -> Iterator[bytes]:
    """Blocks of whole lines (``first`` bytes, then ``size``; a line longer than a block is read
    on); the last block may lack its newline. Stops at byte ``end`` when given."""
    pending = b""
    position = 0
    block_size = first
    while True:
        wanted = block_size if end is None else min(block_size, max(end - position, 0))
        block = handle.read(wanted) if wanted else b""
        block_size = size
        if not block:
            if pending:
                yield pending
            return
        position += len(block)
        data = pending + block if pending else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a block: read on
            pending = data
            continue
        pending = data[cut:]
        yield data[:cut]


# --------------------------------------------------------------------------- strict


def read_columns(path: str | os.PathLike[str], schema: Schema) -> pl.DataFrame:
    """Columns of a JSONL file, parsed by polars block by block (blank lines skipped); a value
    of the wrong type is a UsageError naming file, line and key."""
    with open_rollouts(path) as handle:
        parts = [
            _parse_strict(data, schema, path)
            for data in line_blocks(handle, first=READ_BLOCK_BYTES, size=READ_BLOCK_BYTES)
        ]
    if not parts:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(parts, rechunk=True)


def check_first_row(path: str | os.PathLike[str]) -> None:
    """Validate the first row of a file as a ``RolloutRow``: a task file or a failures sidecar
    given by mistake is named, not averaged (a UsageError naming line and key)."""
    for number, row in iter_rows(path):
        check_rollout_row(row, path=str(path), line=number)
        return


def _parse_strict(data: bytes, schema: Schema, path: str | os.PathLike[str]) -> pl.DataFrame:
    if not data.strip():
        return pl.DataFrame(schema=dict(schema))
    try:
        return pl.read_ndjson(data, schema=dict(schema))
    except pl.exceptions.PolarsError as error:
        _diagnose(path, schema)
        raise UsageError(f"cannot read: {str(error).splitlines()[0]}", path=str(path)) from None


def _diagnose(path: str | os.PathLike[str], schema: Schema) -> None:
    """Slow path after a parse error: find the line and key at fault and raise a UsageError."""
    for number, row in iter_rows(path):  # raises for invalid JSON, naming the line
        for key, dtype in schema.items():
            problem = _type_problem(row.get(key), dtype)
            if problem is not None:
                sub, message = problem
                raise UsageError(message, path=str(path), line=number, key=key + sub)


def _type_problem(value: Any, dtype: pl.DataType) -> tuple[str, str] | None:
    """(key suffix, message) when a JSON value cannot be read as ``dtype``, else None."""
    if value is None:
        return None
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            return "", "expected an object"
        for field in dtype.fields:
            inner = value.get(field.name)
            if inner is not None and not _is_number(inner):
                return f".{field.name}", f"expected a number, got {inner!r}"
    elif dtype == pl.Float64 and not _is_number(value):
        return "", f"expected a number, got {value!r}"
    elif dtype == pl.Int64 and not (isinstance(value, int) and not isinstance(value, bool)):
        return "", f"expected an integer, got {value!r}"
    elif dtype == pl.String and isinstance(value, dict | list):
        return "", "expected a string"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def line_of_row(path: str | os.PathLike[str], row: int) -> int | None:
    """The 1-based line number of the row-th non-blank line (rows skip blank lines)."""
    seen = -1
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                seen += 1
                if seen == row:
                    return number
    return None


# --------------------------------------------------------------------------- tolerant


@dataclass
class Block:
    """The rows of a block of lines: where each sits, its KEY_SCHEMA columns, the bad lines."""

    starts: np.ndarray  # byte offset of each row in the block
    lengths: np.ndarray
    lines: np.ndarray  # 1-based line numbers in the file
    columns: pl.DataFrame
    bad: list[tuple[int, str]]  # (line number, why) of each line skipped
    n_lines: int  # lines in the block, blank and bad ones included


def parse_block(data: bytes, base_line: int) -> Block:
    """The rows of a block of whole lines (``base_line`` lines come before it in the file).

    Polars parses the block at once; on any quirk a careful line-by-line path decides, which
    skips (and reports) the lines that are not JSON objects.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buffer == 10)
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    numbers = base_line + 1 + np.arange(len(ends), dtype=np.int64)
    keep = lengths > 0
    # whitespace-only lines are blank too (rare: look only at lines starting with a space)
    first = buffer[np.minimum(starts, max(len(data) - 1, 0))] if len(data) else buffer[:0]
    for position in np.flatnonzero(keep & np.isin(first, (9, 13, 32))):
        if not data[starts[position] : ends[position]].strip():
            keep[position] = False
    starts, lengths, numbers = starts[keep], lengths[keep], numbers[keep]
    try:
        parsed = pl.read_ndjson(data, schema=KEY_SCHEMA)
    except Exception:  # any quirk: the careful per-line path below decides
        parsed = None
    if parsed is not None and parsed.height == len(starts):
        return Block(starts, lengths, numbers, parsed, [], len(ends))
    parsed, good, bad = _parse_lines(data, starts, lengths, numbers)
    return Block(starts[good], lengths[good], numbers[good], parsed, bad, len(ends))


def _parse_lines(
    data: bytes, starts: np.ndarray, lengths: np.ndarray, numbers: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray, list[tuple[int, str]]]:
    """The slow, tolerant path: orjson line by line; bad lines are skipped and reported."""
    good = np.ones(len(starts), dtype=bool)
    bad: list[tuple[int, str]] = []
    columns: dict[str, list[Any]] = {name: [] for name in KEY_SCHEMA}
    for position, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        raw = data[start : start + length]
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            reason = f"invalid JSON: {str(error).split(':')[0]}"
            value = None
        else:
            reason = f"not a JSON object but a {type(value).__name__}"
        if not isinstance(value, dict):
            good[position] = False
            bad.append((int(numbers[position]), reason))
            continue
        columns["reward"].append(finite_number(value.get("reward")))
        columns["_ng_task_index"].append(plain_int(value.get("_ng_task_index")))
        columns["_ng_rollout_index"].append(plain_int(value.get("_ng_rollout_index")))
        columns["task_id"].append(_text(value.get("task_id")))
    return pl.DataFrame(columns, schema=KEY_SCHEMA), good, bad


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
