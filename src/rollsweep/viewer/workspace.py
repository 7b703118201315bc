"""The files a viewer shows: one, two (compare), or every ``rollouts*.jsonl`` under a pipeline
experiment directory (``results/{experiment}/{param~value...}/rollouts.jsonl``), labelled by
their directory, each indexed once in the background."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from rollsweep.errors import UsageError
from rollsweep.rollouts.names import is_failures_file
from rollsweep.viewer import query
from rollsweep.viewer.index import RolloutIndex, check_rollouts_file


@dataclass
class Source:
    id: int
    label: str
    path: Path
    index: RolloutIndex

    def describe(self) -> dict[str, Any]:
        status = self.index.status()
        mean = None
        if status["complete"] and status["rows"]:
            mean = query.finite(self.index.snapshot().get_column("reward").mean())
        return {"id": self.id, "label": self.label, "path": str(self.path), "mean": mean, **status}


def _natural_key(label: str) -> list[Any]:
    parts: list[Any] = []
    for piece in re.split(r"([/~])", label):
        try:
            parts.append((0, float(piece), ""))
        except ValueError:
            parts.append((1, 0.0, piece))
    return parts


def _is_rollouts_file(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and name.startswith("rollouts")
        and name.endswith(".jsonl")
        and not is_failures_file(name)
        and not name.startswith(".")
    )


def find_sources(paths: list[str | Path]) -> list[tuple[str, Path]]:
    """(label, file) for each file given, or for each rollouts file under a directory given.

    A directory is a pipeline experiment: its files are labelled by their directory relative
    to it (``temperature~0.5``), with the file's stem added when it is not ``rollouts``.
    """
    found: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("rollouts*.jsonl") if _is_rollouts_file(p))
            if not files:
                raise UsageError(
                    "no rollouts*.jsonl file below this directory (expected a pipeline "
                    "experiment such as results/temperature_sweep, or a JSONL file)",
                    path=str(path),
                )
            labelled = []
            for file in files:
                relative = file.parent.relative_to(path).as_posix()
                label = "." if relative == "." else relative
                if file.stem != "rollouts":
                    label = file.stem if label == "." else f"{label}:{file.stem}"
                labelled.append((label, file))
            found.extend(sorted(labelled, key=lambda item: _natural_key(item[0])))
        else:
            check_rollouts_file(path)
            found.append((path.name, path))
    labels = [label for label, _ in found]
    if len(set(labels)) < len(labels):  # same file names: show their paths instead
        found = [(str(file), file) for _, file in found]
    return found


class Workspace:
    """The sources a viewer shows, each indexed once in the background."""

    def __init__(self, paths: list[str | Path], *, compare: bool | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.sources = [
            Source(number, label, file, RolloutIndex(file))
            for number, (label, file) in enumerate(find_sources(paths))
        ]
        self.compare = len(self.sources) == 2 if compare is None else compare
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], Any] = {}
        # index every source, one at a time, the first ones first
        self._warm = threading.Thread(target=self._warm_all, name="index all", daemon=True)
        self._warm.start()

    def _warm_all(self) -> None:
        for source in self.sources:
            source.index.wait()

    def source(self, number: int) -> Source:
        if not 0 <= number < len(self.sources):
            raise HTTPException(404, f"no source {number} (there are {len(self.sources)})")
        source = self.sources[number]
        source.index.start()
        return source

    def reload(self, number: int) -> Source:
        with self._lock:
            old = self.source(number)
            old.index.wait()
            old.index.close()
            fresh = Source(old.id, old.label, old.path, RolloutIndex(old.path).start())
            self.sources[number] = fresh
            self._cache = {k: v for k, v in self._cache.items() if number not in k[1:3]}
            return fresh

    def cached(self, key: tuple[Any, ...], build: Any) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = build()
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = value
        return value

    def close(self) -> None:
        for source in self.sources:
            source.index.wait(timeout=30)
            source.index.close()
