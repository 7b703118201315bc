"""User verifiers: a Python file with ``def verify(task, response) -> float | dict``.

The file may also define ``TOOLS = {"name": fn}`` (each ``fn(arguments, task)``) and
``TOOL_SPECS = [...]`` (OpenAI Responses function-tool specs for them).

The file is read again whenever its modification time, size or inode changes, so an edited
``verify()`` takes effect at the next rollout without restarting any server. A file that no
longer loads (a syntax error while editing) makes verification fail with that error until it
is fixed; nothing falls back silently to the old code.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rollsweep.verifiers.base import ToolFn, Verifier, VerifierError, normalize_result


class _Loaded:
    """One successful load of the file: its verify function, tools and tool specs."""

    def __init__(self, module: types.ModuleType, path: Path) -> None:
        verify = getattr(module, "verify", None)
        if not callable(verify):
            raise VerifierError(f"{path}: defines no verify(task, response) function")
        tools = getattr(module, "TOOLS", None) or {}
        if not isinstance(tools, Mapping) or not all(
            isinstance(k, str) and callable(v) for k, v in tools.items()
        ):
            raise VerifierError(f"{path}: TOOLS must be a dict of tool name -> function")
        specs = getattr(module, "TOOL_SPECS", None) or []
        if not isinstance(specs, list | tuple) or not all(isinstance(s, dict) for s in specs):
            raise VerifierError(f"{path}: TOOL_SPECS must be a list of tool spec dicts")
        self.verify = verify
        self.tools: dict[str, ToolFn] = dict(tools)
        self.tool_specs: list[dict[str, Any]] = [dict(s) for s in specs]


def _stat_key(path: Path) -> tuple[int, int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise VerifierError(f"verifier file not found: {path}") from None
    except OSError as error:
        raise VerifierError(f"cannot read verifier file {path}: {error.strerror}") from None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _error_line(error: BaseException, path: Path) -> str:
    """'path:line' of the deepest frame of the user's file in a traceback, or the path."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.realpath(frame.filename) == os.path.realpath(path):
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def _load_module(path: Path, generation: int) -> types.ModuleType:
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        raise VerifierError(f"verifier file not found: {path}") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        where = f"{path}:{error.lineno}" if error.lineno else str(path)
        raise VerifierError(f"{where}: syntax error: {error.msg}") from None
    name = f"rollsweep_user_verifier_{abs(hash(str(path))):x}_{generation}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses, pickling and typing look modules up by name
    try:
        exec(code, module.__dict__)
    except Exception as error:
        sys.modules.pop(name, None)
        raise VerifierError(
            f"{_error_line(error, path)}: error while loading the verifier: "
            f"{type(error).__name__}: {error}"
        ) from error
    # drop the previous generation's module
    previous = f"rollsweep_user_verifier_{abs(hash(str(path))):x}_{generation - 1}"
    sys.modules.pop(previous, None)
    return module


class UserVerifierFile:
    """A verifier file, reloaded when it changes. ``current()`` gives its latest Verifier."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()
        self._lock = threading.RLock()
        self._key: tuple[int, int, int] | None = None
        self._loaded: _Loaded | None = None
        self._verifier: Verifier | None = None
        self._generation = 0
        self.loads = 0  # how many times the file was (re)loaded, for tests and logs
        self._refresh()

    def _refresh(self) -> _Loaded:
        """The loaded file, read again first if it changed on disk."""
        with self._lock:
            key = _stat_key(self.path)
            if key != self._key or self._loaded is None:
                self._generation += 1
                module = _load_module(self.path, self._generation)
                loaded = _Loaded(module, self.path)
                self._loaded, self._key = loaded, key
                self.loads += 1
                self._verifier = Verifier(
                    name=str(self.path),
                    verify=self._verify,
                    tools=_LiveTools(self),
                    tool_specs=loaded.tool_specs,
                )
            return self._loaded

    def current(self) -> Verifier:
        """The Verifier of the file as it is now on disk."""
        self._refresh()
        assert self._verifier is not None
        return self._verifier

    def _verify(self, task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        loaded = self._refresh()
        try:
            result = loaded.verify(task, response)
        except VerifierError:
            raise
        except Exception as error:
            raise VerifierError(
                f"{_error_line(error, self.path)}: verify() raised {type(error).__name__}: {error}"
            ) from error
        try:
            return normalize_result(result)
        except VerifierError as error:
            raise VerifierError(f"{self.path}: {error}") from None

    def tool(self, name: str) -> ToolFn | None:
        return self._refresh().tools.get(name)

    def tool_names(self) -> list[str]:
        return list(self._refresh().tools)


class _LiveTools(Mapping[str, ToolFn]):
    """The file's TOOLS as they are now on disk (read again when the file changes)."""

    def __init__(self, owner: UserVerifierFile) -> None:
        self._owner = owner

    def __getitem__(self, name: str) -> ToolFn:
        tool = self._owner.tool(name)
        if tool is None:
            raise KeyError(name)
        return tool

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner.tool_names())

    def __len__(self) -> int:
        return len(self._owner.tool_names())


_files: dict[Path, UserVerifierFile] = {}
_files_lock = threading.Lock()


def load_user_verifier(path: str | os.PathLike[str]) -> Verifier:
    """The Verifier of a Python file, cached per file and reloaded when the file changes.

    Errors (VerifierError): the file is missing, has a syntax error (file and line named),
    fails while loading, or defines no ``verify`` function.
    """
    resolved = Path(path).expanduser().resolve()
    with _files_lock:
        handle = _files.get(resolved)
        if handle is None:
            handle = UserVerifierFile(resolved)
            _files[resolved] = handle
            return handle.current()
    return handle.current()
