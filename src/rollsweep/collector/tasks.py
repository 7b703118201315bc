"""The input side of a run: validate the task file, the ranges a run covers, the requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rollsweep.collector.checkpoint import CheckpointIndex
from rollsweep.config import CollectSettings
from rollsweep.errors import UsageError
from rollsweep.protocol import (
    AGENT_REF_KEY,
    ROLLOUT_INDEX_KEY,
    TASK_INDEX_KEY,
    derive_seed,
    with_seed,
)
from rollsweep.rollouts.jsonl import iter_jsonl
from rollsweep.rollouts.rows import validate_task

#: Sampling keys that are not part of a configuration's identity.
NON_PARAM_KEYS = ("input", "instructions", "tools", "metadata", "seed", "tool_choice")

#: One rollout to run: (task index, repeat index, the request for ``/run``, its seed).
Job = tuple[int, int, dict[str, Any], int | None]


@dataclass(frozen=True)
class TaskScan:
    """What the validation pass learned about an input file."""

    path: Path
    n_tasks: int
    sha256: str


def scan_tasks(path: Path, limit: int | None, max_line_bytes: int) -> TaskScan:
    """Validate every task row up to ``limit`` (streaming) and hash what was read."""
    digest = hashlib.sha256()
    seen_ids: dict[str, int] = {}
    n_tasks = 0
    shown = str(path)
    for line, data in iter_jsonl(path, max_line_bytes=max_line_bytes):
        if limit is not None and n_tasks >= limit:
            break
        task = validate_task(data, path=shown, line=line)
        if task.task_id is not None:
            task_id = str(task.task_id)
            if task_id in seen_ids:
                raise UsageError(
                    f"duplicate task_id {task_id!r} (first on line {seen_ids[task_id]})",
                    path=shown,
                    line=line,
                    key="task_id",
                )
            seen_ids[task_id] = line
        digest.update(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
        n_tasks += 1
    if n_tasks == 0:
        raise UsageError("no tasks to run (the file is empty, or +limit=0)", path=shown)
    return TaskScan(path=path, n_tasks=n_tasks, sha256=digest.hexdigest())


def iter_tasks(path: Path, limit: int | None, max_line_bytes: int) -> Iterator[dict[str, Any]]:
    """The task rows again, streaming (already validated by scan_tasks)."""
    for index, (_, data) in enumerate(iter_jsonl(path, max_line_bytes=max_line_bytes)):
        if limit is not None and index >= limit:
            return
        yield data


def task_range(settings: CollectSettings, scan: TaskScan) -> range:
    """The task indices this run covers: a chunk of the first ``limit`` tasks."""
    stop = scan.n_tasks if settings.task_stop is None else min(settings.task_stop, scan.n_tasks)
    return range(min(settings.task_start, stop), stop)


def repeat_range(settings: CollectSettings) -> range:
    """The repeat indices this run covers (a shard of repeats when first_repeat > 0)."""
    return range(settings.first_repeat, settings.first_repeat + settings.num_repeats)


def build_request(
    task: dict[str, Any],
    overrides: dict[str, Any],
    seed: int | None,
    task_index: int,
    rollout_index: int,
    agent_name: str | None = None,
) -> dict[str, Any]:
    """The task as sent to ``/run``, in NeMo Gym's request schema.

    Command-line sampling overrides are applied; the seed goes where NeMo Gym's servers read it
    (``metadata.extra_body``), never as a key its request models forbid; the indices and the
    agent reference are those NeMo Gym's own collector sends.
    """
    params = with_seed({**task["responses_create_params"], **overrides}, seed)
    request = {
        **task,
        "responses_create_params": params,
        TASK_INDEX_KEY: task_index,
        ROLLOUT_INDEX_KEY: rollout_index,
    }
    if agent_name is not None and AGENT_REF_KEY not in task:
        request[AGENT_REF_KEY] = {"name": agent_name}
    return request


def effective_params(request: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters that identify a configuration (no input, tools or seed)."""
    params = request["responses_create_params"]
    return {k: v for k, v in params.items() if k not in NON_PARAM_KEYS}


def configuration_hash(settings: CollectSettings, scan: TaskScan, target: str) -> str:
    """Identity of a run's results: a checkpoint is reused only for the same hash."""
    identity = {
        "input_sha256": scan.sha256,
        "target": target,
        "limit": settings.limit,
        "num_repeats": settings.num_repeats,
        "first_repeat": settings.first_repeat,
        "task_start": settings.task_start,
        "task_stop": settings.task_stop,
        "overrides": settings.responses_create_params.model_dump(exclude_none=True),
        "seed": settings.seed,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def pending_jobs(
    scan: TaskScan,
    settings: CollectSettings,
    done: CheckpointIndex,
    agent_name: str | None,
) -> Iterator[Job]:
    """The (task, repeat) rollouts of ``done``'s task range that are not finished, in order."""
    overrides = settings.responses_create_params.model_dump(exclude_none=True)
    tasks = done.tasks
    sends_seeds = settings.sends_seeds
    for task_index, task in enumerate(iter_tasks(scan.path, tasks.stop, settings.max_line_bytes)):
        if task_index < tasks.start:
            continue
        for rollout_index in done.repeats:
            if (task_index, rollout_index) in done:
                continue
            seed = derive_seed(settings.seed, task_index, rollout_index) if sends_seeds else None
            request = build_request(task, overrides, seed, task_index, rollout_index, agent_name)
            yield task_index, rollout_index, request, seed
