"""The rollout collector: stream tasks to an agent's ``/run`` and write rollout rows in order.

Design points:
- the input is validated in a first streaming pass, before any request, so bad input costs
  nothing and writes nothing;
- at most ``num_samples_in_parallel`` rollouts are in flight (a fixed pool of workers that take
  the next rollout from one shared generator), so memory does not grow with the number of
  rollouts; requests go through httpx's types to aiohttp's pool (rollsweep.transport) on uvloop;
- finished rows are appended to a checkpoint beside the output (not a Snakemake output, which
  would be deleted on failure); a rerun skips what the checkpoint holds;
- ``+num_workers=N`` splits the unfinished rollouts into N contiguous task ranges, one worker
  process each, each with a checkpoint part of its own; the parent merges all parts;
- the output is written at the end from the checkpoint in task-major order (line i is task
  i // num_repeats, repeat i % num_repeats), aside and renamed, so it appears whole or not at all;
- infrastructure failures (after retries) go to ``<stem>_failures.jsonl``, never into the output;
- an agent that does not answer at the start, or stops accepting connections mid-run, ends the
  run at once with its URL named; SIGINT/SIGTERM cancel what is in flight and keep the
  checkpoint whole (``Interrupted``), so a rerun resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gc
import hashlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import signal
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from rollsweep.config import CollectSettings
from rollsweep.errors import ServerUnavailable, UsageError
from rollsweep.protocol import (
    AGENT_REF_KEY,
    FAILURE_CLASS_KEY,
    NO_PERSIST_KEY,
    ROLLOUT_INDEX_KEY,
    TASK_INDEX_KEY,
    derive_seed,
    with_seed,
)
from rollsweep.rollouts.jsonl import atomic_output, dumps, iter_jsonl
from rollsweep.rollouts.names import (
    aggregate_metrics_path_for,
    checkpoint_files,
    checkpoint_path,
    failures_path_for,
)
from rollsweep.rollouts.reader import iter_rows
from rollsweep.rollouts.rows import validate_task
from rollsweep.rollouts.text import output_text
from rollsweep.transport import AiohttpTransport

#: The cyclic GC's thresholds while collecting. Thousands of rollouts in flight are millions of
#: live objects that every collection scans again; with CPython's default (700, 10, 10) the GC
#: took ~40 % of the collector's CPU at 16,384 in flight (1.6x the CPU per rollout at 64).
#: Rarer collections cost ~15 MB more RSS at 1,024 in flight (bounded, not growing per row).
GC_THRESHOLDS = (5_000, 10, 10)
#: Sampling keys that are not part of a configuration's identity.
NON_PARAM_KEYS = ("input", "instructions", "tools", "metadata", "seed", "tool_choice")
FSYNC_EVERY_ROWS = 64
#: The most bytes read at once when copying rows from a checkpoint into the output.
READ_AHEAD = 1 << 20
FSYNC_EVERY_SECONDS = 1.0
#: The longest ``Retry-After`` honoured; a server asking for more gets this much.
MAX_RETRY_AFTER_S = 60.0


# --------------------------------------------------------------------------- input


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


# --------------------------------------------------------------------------- checkpoint


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
        good_end = 0
        with open(path, "rb") as handle:
            offset = 0
            for raw in handle:
                length = len(raw)
                if not raw.endswith(b"\n"):
                    break
                try:
                    row = orjson.loads(raw)
                    task_index, rollout_index = (
                        int(row["_ng_task_index"]),
                        int(row["_ng_rollout_index"]),
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    break
                index.add(task_index, rollout_index, offset, length, file)
                offset += length
                good_end = offset
        if good_end != path.stat().st_size:
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
    return index


def read_checkpoint(path: Path, tasks: range, repeats: range) -> CheckpointIndex:
    """Index one checkpoint file (see read_checkpoints)."""
    return read_checkpoints([path], tasks, repeats)


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


def write_ordered_output(paths: list[Path], index: CheckpointIndex, output: Path) -> int:
    """Copy the indexed rows of the checkpoint files into ``output`` in task-major order,
    atomically.

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
        run_file, run_start, run_end = -1, 0, 0

        def copy_run() -> None:
            if run_end > run_start:
                data = os.pread(fds[run_file], run_end - run_start, run_start)
                if len(data) != run_end - run_start:
                    raise OSError(f"{paths[run_file]} is shorter than its index says")
                sink.write(data)

        for task_index in index.tasks:
            for rollout_index in index.repeats:
                place = index.get(task_index, rollout_index)
                if place is None:
                    continue
                file, offset, length = place
                written += 1
                if file == run_file and offset == run_end and run_end - run_start < READ_AHEAD:
                    run_end += length
                    continue
                copy_run()
                run_file, run_start, run_end = file, offset, offset + length
        copy_run()
    return written


# --------------------------------------------------------------------------- requests


class RolloutFailed(Exception):
    """A rollout that could not be completed; ``kind`` says why."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.attempts = attempts
        #: nothing accepted the connection (the server may be gone, not just busy)
        self.refused = False


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: in-flight rollouts were cancelled, the checkpoint kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _retry_after_seconds(reply: httpx.Response) -> float | None:
    """The wait a 429/503 asks for (``Retry-After``: seconds or an HTTP date), capped."""
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def backoff_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff with full jitter for the given (1-based) attempt."""
    return random.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))


JSON_HEADERS = (("content-type", "application/json"),)


def _parse_json(content: bytes) -> Any:
    """An answer's JSON (orjson; the standard parser for what orjson refuses, e.g. NaN)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


async def post_with_retries(
    client: httpx.AsyncClient | httpx.AsyncBaseTransport,
    url: str | httpx.URL,
    payload: dict[str, Any],
    max_attempts: int,
    tries: list[int] | None = None,
) -> tuple[dict[str, Any], int]:
    """POST with retries for infrastructure errors only; returns (json, attempts used).

    ``client`` is an httpx client or, on the collector's fast path, an httpx transport (sent
    ``httpx.Request`` objects directly: the client's per-request machinery costs more than the
    transport under it). Retried: timeouts, transport errors (refused or dropped connections),
    5xx, and 429 (after its ``Retry-After`` when given, else exponential backoff with full
    jitter). Not retried: any other 4xx (bad input for the agent or its verifier). ``tries[0]``
    follows the attempts made, for a caller whose total timeout may interrupt this.
    """
    content = orjson.dumps(payload)
    direct = isinstance(client, httpx.AsyncBaseTransport)
    for attempt in range(1, max_attempts + 1):
        if tries is not None:
            tries[0] = attempt
        delay: float | None = None
        try:
            if direct:
                request = httpx.Request("POST", url, content=content, headers=JSON_HEADERS)
                reply = await client.handle_async_request(request)
            else:
                reply = await client.post(url, content=content, headers=JSON_HEADERS)
        except httpx.TimeoutException as error:
            failure = RolloutFailed("timeout", f"{type(error).__name__} from {url}", attempt)
        except httpx.TransportError as error:
            failure = RolloutFailed("connection", f"{type(error).__name__}: {error}", attempt)
            failure.refused = isinstance(error, httpx.ConnectError)
        except httpx.HTTPError as error:
            failure = RolloutFailed("http_error", f"{type(error).__name__}: {error}", attempt)
        else:
            status = reply.status_code
            if status < 400:
                try:
                    return _parse_json(reply.content), attempt
                except ValueError:
                    failure = RolloutFailed("bad_response", "the answer is not JSON", attempt)
                    raise failure from None
            detail = reply.text[:300].replace("\n", " ")
            if status == 429 or status >= 500:
                failure = RolloutFailed(f"http_{status}", detail, attempt)
                delay = _retry_after_seconds(reply)
            else:
                raise RolloutFailed(f"http_{status}", detail, attempt)
        if attempt == max_attempts:
            raise failure
        if delay is not None:
            delay += random.uniform(0, 0.1 * delay)  # honour it, but do not come back in step
        await asyncio.sleep(delay if delay is not None else backoff_delay(attempt))
    raise AssertionError("unreachable")


def to_rollout_row(
    request: dict[str, Any],
    result: dict[str, Any],
    task_index: int,
    rollout_index: int,
    seed: int | None,
    latency_s: float,
) -> dict[str, Any]:
    """Merge what the agent returned with the task and the collector's bookkeeping."""
    if not isinstance(result, dict) or "reward" not in result:
        raise RolloutFailed("bad_response", "the agent's answer has no 'reward'", 1)
    reward = result["reward"]
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise RolloutFailed("bad_response", f"the agent's reward is not a number: {reward!r}", 1)
    row = {**request, **result}
    response = row.get("response") if isinstance(row.get("response"), dict) else {}
    if "output" not in row:
        row["output"] = output_text(response)
    metrics = dict(row.get("metrics") or {})
    metrics["latency_s"] = round(latency_s, 6)
    # An agent that reports no metrics of its own (NeMo Gym's) still has the model's usage.
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    for key in ("input_tokens", "output_tokens"):
        if key not in metrics and isinstance(usage.get(key), int):
            metrics[key] = usage[key]
    row["metrics"] = metrics
    row[TASK_INDEX_KEY] = task_index
    row[ROLLOUT_INDEX_KEY] = rollout_index
    row["params"] = effective_params(request)
    row["seed"] = seed
    return row


# --------------------------------------------------------------------------- progress


@dataclass
class Tally:
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    not_persisted: int = 0
    reward_sum: float = 0.0
    started: float = field(default_factory=time.monotonic)
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.done if self.done else float("nan")


class Progress:
    """A tqdm bar on a terminal (redrawn at most 10 times a second); plain log lines every few
    seconds otherwise."""

    def __init__(
        self, tally: Tally, enabled: bool | None, label: str, position: int | None = None
    ) -> None:
        self.tally = tally
        self.label = label
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._last_log = time.monotonic()
        self._unshown = 0
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=tally.total,
                initial=tally.skipped,
                unit="rollout",
                desc=label,
                dynamic_ncols=True,
                smoothing=0.1,
                position=position,
            )

    def update(self) -> None:
        tally = self.tally
        now = time.monotonic()
        finished = tally.done + tally.failed + tally.skipped + tally.not_persisted
        if self._bar is not None:
            self._unshown += 1
            if now - self._last_log >= 0.1 or finished == tally.total:
                self._last_log = now
                self._bar.update(self._unshown)
                self._unshown = 0
                self._bar.set_postfix(
                    reward=f"{tally.mean_reward:.3f}", failed=tally.failed, refresh=False
                )
            return
        if now - self._last_log >= 10 or finished == tally.total:
            self._last_log = now
            elapsed = now - tally.started
            fresh = tally.done + tally.failed
            rate = fresh / elapsed if elapsed > 0 else 0.0
            eta = (tally.total - finished) / rate if rate > 0 else float("inf")
            print(
                f"[{self.label}] {finished}/{tally.total} rollouts, {rate:.1f}/s, "
                f"ETA {eta:.0f}s, mean reward {tally.mean_reward:.3f}, failures {tally.failed}, "
                f"retries {tally.retried}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._unshown)
            self._bar.close()


# --------------------------------------------------------------------------- the run


@dataclass
class CollectResult:
    output: Path
    n_rows: int
    n_failures: int
    n_skipped: int
    mean_reward: float
    wall_s: float
    failures_path: Path | None
    checkpoint: Path
    n_retries: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    n_not_persisted: int = 0
    aggregate_metrics_path: Path | None = None

    def summary_line(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.failure_kinds.items()))
        failures = f"{self.n_failures} failed" + (f" [{kinds}]" if kinds else "")
        if self.failures_path:
            failures += f" (see {self.failures_path})"
        resumed = f", {self.n_skipped} resumed from checkpoint" if self.n_skipped else ""
        dropped = (
            f", {self.n_not_persisted} not persisted (_ng_no_persist; a rerun runs them)"
            if self.n_not_persisted
            else ""
        )
        return (
            f"{self.n_rows} rollouts, mean reward {self.mean_reward:.3f}, {failures}, "
            f"{self.n_retries} retries{resumed}{dropped}, {self.wall_s:.1f} s -> {self.output}"
        )


def failure_message(result: dict[str, Any]) -> str:
    """What a row marked ``_ng_failure_class`` says about its failure (first field that has it)."""
    for key in ("failure_message", "error", "message", "detail"):
        value = result.get(key)
        if value:
            return str(value)[:300]
    return f"the agent marked the rollout {FAILURE_CLASS_KEY}={result[FAILURE_CLASS_KEY]!r}"


def remove_stale_temporaries(*paths: Path) -> None:
    """Delete what a run killed while writing left: atomic_output's temporary files."""
    for path in paths:
        pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
        with contextlib.suppress(FileNotFoundError):
            for stale in path.parent.iterdir():
                if pattern.fullmatch(stale.name):
                    stale.unlink(missing_ok=True)


def _install_signal_handlers(
    on_signal: Callable[[int], None],
) -> list[tuple[int, Any]]:
    """Route SIGINT/SIGTERM to ``on_signal`` in the running loop; returns what to restore."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous = signal.getsignal(signum)
            loop.add_signal_handler(signum, on_signal, signum)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            continue
        installed.append((signum, previous))
    return installed


def _restore_signal_handlers(installed: list[tuple[int, Any]]) -> None:
    loop = asyncio.get_running_loop()
    for signum, previous in installed:
        loop.remove_signal_handler(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


def _jobs(
    scan: TaskScan,
    settings: CollectSettings,
    done: CheckpointIndex,
    agent_name: str | None,
) -> Iterator[tuple[int, int, dict[str, Any], int | None]]:
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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (it is, with uvicorn[standard]), else asyncio's.

    uvloop cuts the collector's CPU per rollout by ~10 % (benchmarks/collector_vs_nemo_gym.py).
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - e.g. on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_async(coroutine: Any) -> Any:
    """``asyncio.run`` on the collector's event loop (see new_event_loop)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)


@dataclass
class RangeResult:
    """What collecting one task range did (in-process, or in one worker process)."""

    tally: Tally
    failures: list[dict[str, Any]]
    done: CheckpointIndex


async def collect_range(
    settings: CollectSettings,
    scan: TaskScan,
    run_url: str,
    agent_name: str | None,
    done: CheckpointIndex,
    checkpoint: Path,
    file: int,
    width: int,
    label: str,
    position: int | None = None,
) -> RangeResult:
    """Run every rollout of ``done``'s task range not in it; append rows to ``checkpoint``
    (file id ``file`` of ``done``), at most ``width`` in flight."""
    total = len(done.tasks) * len(done.repeats)
    tally = Tally(total=total, skipped=done.count)
    progress = Progress(tally, settings.progress, label=label, position=position)
    writer = CheckpointWriter(checkpoint, done, file)
    failures: list[dict[str, Any]] = []
    timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    transport = AiohttpTransport(max_connections=width, timeout=timeout)
    url = httpx.URL(run_url)
    max_attempts = settings.max_attempts
    rollout_timeout_s = settings.rollout_timeout_s
    gc_thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # start-up's objects (modules, settings) are not scanned again

    def fail(
        task_index: int, rollout_index: int, request: dict, kind: str, message: str, attempts: int
    ) -> None:
        failures.append(
            {
                TASK_INDEX_KEY: task_index,
                ROLLOUT_INDEX_KEY: rollout_index,
                "task_id": request.get("task_id"),
                "error_kind": kind,
                "message": message,
                "attempts": attempts,
            }
        )
        tally.failed += 1
        tally.failure_kinds[kind] += 1

    async def run_one(job: tuple[int, int, dict[str, Any], int | None]) -> None:
        task_index, rollout_index, request, seed = job
        started = time.perf_counter()
        tries = [0]
        try:
            async with asyncio.timeout(rollout_timeout_s):
                result, _ = await post_with_retries(transport, url, request, max_attempts, tries)
            if isinstance(result, dict) and result.get(NO_PERSIST_KEY):
                # NeMo Gym's "kill-shaped" result: written nowhere, so a rerun runs it again.
                tally.not_persisted += 1
                progress.update()
                return
            if isinstance(result, dict) and result.get(FAILURE_CLASS_KEY) is not None:
                raise RolloutFailed(
                    str(result[FAILURE_CLASS_KEY]), failure_message(result), max(tries[0], 1)
                )
            row = to_rollout_row(
                request, result, task_index, rollout_index, seed, time.perf_counter() - started
            )
        except RolloutFailed as error:
            if error.refused:
                # Refused after every retry: when the agent is gone, stop here (fail fast,
                # naming the URL) instead of failing every remaining rollout the same way.
                try:
                    await check_reachable(run_url, timeout_s=settings.connect_timeout_s)
                except ServerUnavailable as gone:
                    raise ServerUnavailable(
                        f"{gone} (mid-run; finished rollouts are kept in {checkpoint}, "
                        "rerun to resume)"
                    ) from None
            fail(task_index, rollout_index, request, error.kind, error.message, max(tries[0], 1))
        except TimeoutError:
            message = f"no result within +rollout_timeout_s={rollout_timeout_s}"
            fail(task_index, rollout_index, request, "rollout_timeout", message, max(tries[0], 1))
        except Exception as error:  # one odd answer must not end the run
            message = f"{type(error).__name__}: {error}"[:300]
            fail(task_index, rollout_index, request, "collector_error", message, max(tries[0], 1))
        else:
            writer.append(task_index, rollout_index, row)
            tally.done += 1
            tally.reward_sum += float(row["reward"])
        if tries[0] > 1:
            tally.retried += tries[0] - 1
        progress.update()

    # The workers share one job generator: each takes the next rollout as it frees up, so the
    # window is refilled the moment a rollout ends (no queue, no feeding task to wait on).
    jobs = _jobs(scan, settings, done, agent_name)

    async def worker() -> None:
        for job in jobs:
            await run_one(job)

    # SIGINT/SIGTERM: cancel what is in flight, keep the checkpoint whole, report the signal
    # (the caller then stops the servers it started and exits 130/143).
    main = asyncio.current_task()
    caught: list[int] = []

    def on_signal(signum: int) -> None:
        if not caught and main is not None:
            caught.append(signum)
            main.cancel()

    pending = total - done.count
    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(width, pending)))]
    installed = _install_signal_handlers(on_signal)
    try:
        # A worker that raises (the agent is gone) ends the wait at once.
        await asyncio.gather(*workers)
    except asyncio.CancelledError:
        if caught:
            raise Interrupted(caught[0]) from None
        raise
    finally:
        _restore_signal_handlers(installed)
        for task in workers:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*workers, return_exceptions=True)
        writer.close()
        progress.close()
        await transport.aclose()
        gc.unfreeze()
        gc.set_threshold(*gc_thresholds)
    return RangeResult(tally=tally, failures=failures, done=done)


def _split_tasks(done: CheckpointIndex, parts: int) -> list[range]:
    """Contiguous task ranges with about equal unfinished rollouts (empty ones left out)."""
    pending = [done.pending(task) for task in done.tasks]
    total = sum(pending)
    ranges: list[range] = []
    start, acc = done.tasks.start, 0
    for offset, count in enumerate(pending):
        acc += count
        if len(ranges) < parts - 1 and acc >= total * (len(ranges) + 1) / parts:
            stop = done.tasks.start + offset + 1
            ranges.append(range(start, stop))
            start = stop
    ranges.append(range(start, done.tasks.stop))
    return [r for r in ranges if len(r) and sum(done.pending(t) for t in r)]


def _set_parent_death_signal() -> None:
    """Linux: this process gets SIGTERM when its parent dies (a ``kill -9``-ed collector's
    workers then stop and keep their checkpoints whole, instead of running on unowned)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_main(connection: Any, arguments: tuple[Any, ...]) -> None:
    """A ``+num_workers`` worker process: collect one task range, send back what it did."""
    _set_parent_death_signal()
    if os.getppid() == 1:  # the parent died before the line above
        return
    try:
        result = run_async(collect_range(*arguments))
        connection.send(("ok", result))
    except Interrupted as error:
        connection.send(("interrupted", error.signum))
    except ServerUnavailable as error:
        connection.send(("unavailable", str(error)))
    except BaseException as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


def _run_workers(jobs: list[tuple[Any, ...]]) -> list[RangeResult]:
    """Run ``collect_range(*job)`` for each job in its own process; their results in order.

    Forked when this process has no other thread (fast: no new interpreter), else spawned.
    A signal to this process (SIGTERM; SIGINT reaches the whole process group anyway) is
    passed on to the workers, which keep their checkpoints whole.
    """
    method = "fork" if threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    processes, connections = [], []
    try:
        for job in jobs:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, args=(send, job), daemon=True)
            process.start()
            send.close()
            processes.append(process)
            connections.append(receive)
        answers: list[tuple[str, Any] | None] = [None] * len(jobs)
        waiting = dict(enumerate(connections))
        while waiting:
            for ready in multiprocessing.connection.wait(list(waiting.values())):
                number = next(k for k, c in waiting.items() if c is ready)
                try:
                    answers[number] = ready.recv()
                except EOFError:
                    answers[number] = ("error", "the worker process died")
                del waiting[number]
                if answers[number][0] != "ok":  # type: ignore[index]
                    for process in processes:
                        if process.is_alive():
                            process.terminate()  # SIGTERM: the others stop, checkpoints kept
    except BaseException:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
        raise
    for process in processes:
        process.join()
    results: list[RangeResult] = []
    for answer in answers:
        assert answer is not None
        kind, value = answer
        if kind == "interrupted":
            raise Interrupted(value)
        if kind == "unavailable":
            raise ServerUnavailable(value)
        if kind != "ok":
            raise RuntimeError(f"a collector worker failed: {value}")
        results.append(value)
    return results


def collect(
    settings: CollectSettings,
    scan: TaskScan,
    agent_url: str,
    *,
    target: str,
    agent_name: str | None = None,
) -> CollectResult:
    """Run every (task, repeat) not yet in the checkpoint against the agent; write outputs.

    ``agent_url`` is the agent's base URL (its ``/run`` takes one rollout); ``agent_name`` goes
    into each request's ``agent_ref``, as NeMo Gym's collector sends it. With
    ``+num_workers=N`` the unfinished rollouts are split into N contiguous task ranges, each
    collected by a process of its own into a checkpoint part of its own; the output is then
    merged from all parts, task-major, as from one. Call it outside any event loop (worker
    processes are forked from this thread when it is the only one).
    """
    started = time.monotonic()
    run_url = f"{agent_url.rstrip('/')}/run"
    output = Path(settings.output_jsonl_fpath)
    config_hash = configuration_hash(settings, scan, target)
    sidecar = failures_path_for(output)
    run_async(check_reachable(run_url, timeout_s=settings.connect_timeout_s))
    remove_stale_temporaries(output, sidecar)
    files = checkpoint_files(output, config_hash)
    if not settings.resume:
        for path in files:
            path.unlink(missing_ok=True)
        files = files[:1]
    done = read_checkpoints(files, task_range(settings, scan), repeat_range(settings))
    skipped = done.count
    width = settings.num_samples_in_parallel
    ranges = _split_tasks(done, settings.num_workers) if settings.num_workers > 1 else []
    if len(ranges) > 1:
        parts = [checkpoint_path(output, config_hash, part) for part in range(len(ranges))]
        ids = []
        for path in parts:
            if path not in files:
                files.append(path)
            ids.append(files.index(path))
        widths = [width // len(ranges) + (k < width % len(ranges)) for k in range(len(ranges))]
        jobs = [
            (
                settings,
                scan,
                run_url,
                agent_name,
                done.part(tasks),
                parts[k],
                ids[k],
                max(1, widths[k]),
                f"{output.name} [{k + 1}/{len(ranges)}]",
                k,
            )
            for k, tasks in enumerate(ranges)
        ]
        results = _run_workers(jobs)
        for result in results:
            done.update(result.done)
    else:
        label = output.name
        results = [
            run_async(
                collect_range(settings, scan, run_url, agent_name, done, files[0], 0, width, label)
            )
        ]
    failures = [failure for result in results for failure in result.failures]
    tally = Tally(total=len(done.tasks) * len(done.repeats), skipped=skipped)
    for result in results:
        tally.done += result.tally.done
        tally.failed += result.tally.failed
        tally.retried += result.tally.retried
        tally.not_persisted += result.tally.not_persisted
        tally.reward_sum += result.tally.reward_sum
        tally.failure_kinds.update(result.tally.failure_kinds)

    n_rows = write_ordered_output(files, done, output)
    if failures:
        failures.sort(key=lambda f: (f[TASK_INDEX_KEY], f[ROLLOUT_INDEX_KEY]))
        with atomic_output(sidecar) as handle:
            for failure in failures:
                handle.write(dumps(failure))
    else:
        sidecar.unlink(missing_ok=True)
    if not failures and not tally.not_persisted:
        for path in files:
            path.unlink(missing_ok=True)
    mean = _mean_reward_of(output) if tally.skipped else tally.mean_reward
    metrics_path = None
    if not settings.disable_aggregation and n_rows:
        metrics_path = run_async(
            write_aggregate_metrics(agent_url, agent_name, output, settings.request_timeout_s)
        )
    return CollectResult(
        output=output,
        n_rows=n_rows,
        n_failures=len(failures),
        n_skipped=tally.skipped,
        mean_reward=mean,
        wall_s=time.monotonic() - started,
        failures_path=sidecar if failures else None,
        checkpoint=files[0],
        n_retries=tally.retried,
        failure_kinds=dict(tally.failure_kinds),
        n_not_persisted=tally.not_persisted,
        aggregate_metrics_path=metrics_path,
    )


def _for_aggregation(row: dict[str, Any]) -> dict[str, Any]:
    """A row as NeMo Gym's collector sends it to ``/aggregate_metrics``: no request, no
    response except its usage."""
    entry = {k: v for k, v in row.items() if k not in ("response", "responses_create_params")}
    usage = (row.get("response") or {}).get("usage")
    if usage:
        entry["response"] = {"usage": usage}
    return entry


async def write_aggregate_metrics(
    agent_url: str, agent_name: str | None, output: Path, timeout_s: float
) -> Path | None:
    """Ask the agent's ``/aggregate_metrics`` about the output's rows, as NeMo Gym's collector
    does at the end of a collection; write its answer beside the output.

    An agent without the endpoint (a plain ``/run`` server) is not an error: one warning line.
    """
    rows = [_for_aggregation(row) for _, row in iter_rows(output)]
    url = f"{agent_url.rstrip('/')}/aggregate_metrics"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.post(url, json={"verify_responses": rows})
    except httpx.HTTPError as error:
        print(f"warning: {url}: {type(error).__name__}; no aggregate metrics", file=sys.stderr)
        return None
    if reply.status_code != 200:
        print(
            f"warning: {url} answered {reply.status_code}; no aggregate metrics "
            "(+disable_aggregation=true skips the call)",
            file=sys.stderr,
        )
        return None
    answer = reply.json()
    entry = {
        AGENT_REF_KEY: {"name": agent_name or agent_url},
        **{
            key: answer.get(key, {})
            for key in ("agent_metrics", "key_metrics", "group_level_metrics")
        },
    }
    path = aggregate_metrics_path_for(output)
    with atomic_output(path) as handle:
        handle.write(orjson.dumps([entry], option=orjson.OPT_INDENT_2))
    return path


def _mean_reward_of(path: Path) -> float:
    total = count = 0
    for _, row in iter_rows(path):
        total += row["reward"]
        count += 1
    return total / count if count else float("nan")


async def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URL, when nothing listens there."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.host, port), timeout=timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise ServerUnavailable(f"cannot reach the agent at {url}: {error}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
