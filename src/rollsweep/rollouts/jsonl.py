"""Streaming JSONL input with precise errors, and atomic output files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from rollsweep.errors import UsageError

#: Lines longer than this are refused: a runaway line is nearly always a broken file.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


def iter_jsonl(
    path: str | os.PathLike[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for each non-blank line, streaming.

    Raises UsageError naming the file and line for a missing file, invalid UTF-8, a line that
    is not JSON, or a line over ``max_line_bytes``.
    """
    shown = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise UsageError("file not found", path=shown) from None
    except IsADirectoryError:
        raise UsageError("is a directory, expected a JSONL file", path=shown) from None
    except PermissionError:
        raise UsageError("permission denied", path=shown) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > max_line_bytes:
                raise UsageError(
                    f"line is {len(raw):,} bytes, over the limit of {max_line_bytes:,} "
                    "(+max_line_bytes)",
                    path=shown,
                    line=number,
                )
            if not raw.strip():
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UsageError(
                    f"invalid UTF-8 at byte {error.start}", path=shown, line=number
                ) from None
            try:
                yield number, orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                detail = str(error).split(":")[0]
                if not raw.endswith(b"\n"):
                    detail += " (the last line looks truncated)"
                raise UsageError(f"invalid JSON: {detail}", path=shown, line=number) from None


def iter_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object is a
    UsageError naming file and line."""
    for number, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise UsageError(
                f"expected a JSON object (a rollout row), got a JSON {type(row).__name__}",
                path=str(path),
                line=number,
            )
        yield number, row


def dumps(row: Any) -> bytes:
    """One JSONL line (with its newline)."""
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write a file aside and rename it into place, so readers never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
