"""The rollout collector: stream tasks to an agent's ``/run`` and write rollout rows in order.

Design points:
- the input is validated in a first streaming pass, before any request, so bad input costs
  nothing and writes nothing;
- at most ``num_samples_in_parallel`` rollouts are in flight (a fixed pool of workers fed by a
  bounded queue), so memory does not grow with the number of rollouts;
- finished rows are appended to a checkpoint beside the output (not a Snakemake output, which
  would be deleted on failure); a rerun skips what the checkpoint holds;
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
import os
import random
import re
import signal
import sys
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpcore
import httpx
import orjson

from rollsweep.config import CollectSettings
from rollsweep.errors import ServerUnavailable, UsageError
from rollsweep.jsonl import atomic_output, dumps, iter_jsonl
from rollsweep.protocol import (
    AGENT_REF_KEY,
    FAILURE_CLASS_KEY,
    NO_PERSIST_KEY,
    ROLLOUT_INDEX_KEY,
    TASK_INDEX_KEY,
    aggregate_metrics_path_for,
    derive_seed,
    failures_path_for,
    with_seed,
)
from rollsweep.rows import validate_task
from rollsweep.servers.conversion import output_text

#: Connections per httpx client. httpcore's pool does work quadratic in its size on every
#: request (64 connections in one client already cost ~7 ms of CPU per rollout), so each
#: client holds only a few; all share one SSL context (building one costs ~25 ms).
#: Measured by benchmarks/collector_throughput.py.
CONNECTIONS_PER_CLIENT = 4
#: Connections being opened at once, over all clients: thousands of workers starting together
#: would otherwise starve the event loop until their connect timeouts fire.
CONNECTS_IN_FLIGHT = 64
#: The cyclic GC's thresholds while collecting. Thousands of rollouts in flight are millions of
#: live objects that every collection scans again; with CPython's default (700, 10, 10) the GC
#: took ~40 % of the collector's CPU at 16,384 in flight (1.6x the CPU per rollout at 64).
#: Rarer collections cost ~15 MB more RSS at 1,024 in flight (bounded, not growing per row).
GC_THRESHOLDS = (5_000, 10, 10)
#: Sampling keys that are not part of a configuration's identity.
NON_PARAM_KEYS = ("input", "instructions", "tools", "metadata", "seed", "tool_choice")
FSYNC_EVERY_ROWS = 64
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


def checkpoint_path(output: Path, config_hash: str) -> Path:
    """The progress file beside the output; its name carries the configuration hash."""
    return output.parent / f".{output.name}.{config_hash}.ckpt.jsonl"


class CheckpointIndex:
    """Where each finished rollout's row sits in the checkpoint.

    Two flat arrays over the run's (task, repeat) slots: 12 bytes a rollout instead of a dict
    entry, so memory stays small however many rollouts a run has.
    """

    def __init__(self, tasks: range, repeats: range) -> None:
        self.tasks = tasks
        self.repeats = repeats
        slots = len(tasks) * len(repeats)
        self._offsets = array("q", [-1]) * slots
        self._lengths = array("i", [0]) * slots
        self.count = 0

    def _slot(self, task_index: int, rollout_index: int) -> int | None:
        if task_index not in self.tasks or rollout_index not in self.repeats:
            return None
        return (task_index - self.tasks.start) * len(self.repeats) + (
            rollout_index - self.repeats.start
        )

    def add(self, task_index: int, rollout_index: int, offset: int, length: int) -> None:
        """Record a row; the first one of a (task, repeat) wins."""
        slot = self._slot(task_index, rollout_index)
        if slot is not None and self._offsets[slot] < 0:
            self._offsets[slot] = offset
            self._lengths[slot] = length
            self.count += 1

    def get(self, task_index: int, rollout_index: int) -> tuple[int, int] | None:
        slot = self._slot(task_index, rollout_index)
        if slot is None or self._offsets[slot] < 0:
            return None
        return self._offsets[slot], self._lengths[slot]

    def __contains__(self, key: tuple[int, int]) -> bool:
        return self.get(*key) is not None


def read_checkpoint(path: Path, tasks: range, repeats: range) -> CheckpointIndex:
    """Index the whole rows of a checkpoint; a torn last line is cut off the file."""
    index = CheckpointIndex(tasks, repeats)
    if not path.exists():
        return index
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
            index.add(task_index, rollout_index, offset, length)
            offset += length
            good_end = offset
    if good_end != path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return index


class CheckpointWriter:
    """Appends rows, each handed to the OS at once (so ``kill -9`` loses none), and fsyncs
    them in batches (every N rows or T seconds) against a machine crash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(dumps(row))
        self._handle.flush()
        self._unsynced += 1
        now = time.monotonic()
        if self._unsynced >= FSYNC_EVERY_ROWS or now - self._last_sync >= FSYNC_EVERY_SECONDS:
            self.sync()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._handle.closed:
            self.sync()
            self._handle.close()


def write_ordered_output(checkpoint: Path, output: Path, tasks: range, repeats: range) -> int:
    """Copy the checkpoint's rows into ``output`` in task-major order, atomically."""
    index = read_checkpoint(checkpoint, tasks, repeats)
    written = 0
    with open(checkpoint, "rb") as source, atomic_output(output) as sink:
        for task_index in tasks:
            for rollout_index in repeats:
                place = index.get(task_index, rollout_index)
                if place is None:
                    continue
                source.seek(place[0])
                sink.write(source.read(place[1]))
                written += 1
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


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    max_attempts: int,
    tries: list[int] | None = None,
) -> tuple[dict[str, Any], int]:
    """POST with retries for infrastructure errors only; returns (json, attempts used).

    Retried: timeouts, transport errors (refused or dropped connections), 5xx, and 429 (after
    its ``Retry-After`` when given, else exponential backoff with full jitter). Not retried: any
    other 4xx (bad input for the agent or its verifier). ``tries[0]`` follows the attempts made,
    for a caller whose total timeout may interrupt this.
    """
    for attempt in range(1, max_attempts + 1):
        if tries is not None:
            tries[0] = attempt
        delay: float | None = None
        try:
            reply = await client.post(url, json=payload)
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
                    return reply.json(), attempt
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
    """A tqdm bar on a terminal; plain log lines every few seconds otherwise."""

    def __init__(self, tally: Tally, enabled: bool | None, label: str) -> None:
        self.tally = tally
        self.label = label
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._last_log = time.monotonic()
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=tally.total,
                initial=tally.skipped,
                unit="rollout",
                desc=label,
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self) -> None:
        tally = self.tally
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                reward=f"{tally.mean_reward:.3f}", failed=tally.failed, refresh=False
            )
            return
        now = time.monotonic()
        finished = tally.done + tally.failed + tally.skipped + tally.not_persisted
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


async def _jobs(
    scan: TaskScan, settings: CollectSettings, done: CheckpointIndex, agent_name: str | None
) -> AsyncIterator[tuple[int, int, dict[str, Any], int | None]]:
    overrides = settings.responses_create_params.model_dump(exclude_none=True)
    tasks = task_range(settings, scan)
    for task_index, task in enumerate(iter_tasks(scan.path, tasks.stop, settings.max_line_bytes)):
        if task_index < tasks.start:
            continue
        for rollout_index in repeat_range(settings):
            if (task_index, rollout_index) in done:
                continue
            seed = (
                derive_seed(settings.seed, task_index, rollout_index)
                if settings.sends_seeds
                else None
            )
            request = build_request(task, overrides, seed, task_index, rollout_index, agent_name)
            yield task_index, rollout_index, request, seed
        if task_index % 256 == 0:
            await asyncio.sleep(0)  # let workers run while a long file is read


class _PacedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that opens at most N connections at once (a shared semaphore).

    The wait for a slot is not part of the connect timeout, which then measures the connect.
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend, slots: asyncio.Semaphore) -> None:
        self._inner = inner
        self._slots = slots

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        async with self._slots:
            return await self._inner.connect_tcp(*args, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        async with self._slots:
            return await self._inner.connect_unix_socket(*args, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_clients(width: int, timeout: httpx.Timeout) -> list[httpx.AsyncClient]:
    """Enough small-pool clients for ``width`` requests in flight (call in the running loop).

    Small pools keep httpcore's per-request pool upkeep short; one SSL context and one limit
    on connections being opened are shared by all.
    """
    per_client = min(width, CONNECTIONS_PER_CLIENT)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    ssl_context = httpx.create_ssl_context()
    slots = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    clients = []
    for _ in range(math.ceil(width / per_client)):
        transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
            pool._network_backend = _PacedBackend(pool._network_backend, slots)
        client = httpx.AsyncClient(
            timeout=timeout, limits=limits, verify=ssl_context, transport=transport
        )
        clients.append(client)
    return clients


async def collect(
    settings: CollectSettings,
    scan: TaskScan,
    agent_url: str,
    *,
    target: str,
    agent_name: str | None = None,
) -> CollectResult:
    """Run every (task, repeat) not yet in the checkpoint against the agent; write outputs.

    ``agent_url`` is the agent's base URL (its ``/run`` takes one rollout); ``agent_name`` goes
    into each request's ``agent_ref``, as NeMo Gym's collector sends it.
    """
    run_url = f"{agent_url.rstrip('/')}/run"
    output = Path(settings.output_jsonl_fpath)
    config_hash = configuration_hash(settings, scan, target)
    checkpoint = checkpoint_path(output, config_hash)
    sidecar = failures_path_for(output)
    await check_reachable(run_url, timeout_s=settings.connect_timeout_s)
    remove_stale_temporaries(output, sidecar)
    if not settings.resume:
        checkpoint.unlink(missing_ok=True)
    done = read_checkpoint(checkpoint, task_range(settings, scan), repeat_range(settings))
    total = len(task_range(settings, scan)) * settings.num_repeats
    tally = Tally(total=total, skipped=done.count)
    progress = Progress(tally, settings.progress, label=output.name)
    writer = CheckpointWriter(checkpoint)
    failures: list[dict[str, Any]] = []

    width = settings.num_samples_in_parallel
    timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    clients = make_clients(width, timeout)
    gc_thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    queue: asyncio.Queue[tuple[int, int, dict[str, Any], int | None] | None] = asyncio.Queue(width)

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

    async def run_one(
        client: httpx.AsyncClient, job: tuple[int, int, dict[str, Any], int | None]
    ) -> None:
        task_index, rollout_index, request, seed = job
        started = time.perf_counter()
        tries = [0]
        try:
            async with asyncio.timeout(settings.rollout_timeout_s):
                result, _ = await post_with_retries(
                    client, run_url, request, settings.max_attempts, tries
                )
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
            message = f"no result within +rollout_timeout_s={settings.rollout_timeout_s}"
            fail(task_index, rollout_index, request, "rollout_timeout", message, max(tries[0], 1))
        except Exception as error:  # one odd answer must not end the run
            message = f"{type(error).__name__}: {error}"[:300]
            fail(task_index, rollout_index, request, "collector_error", message, max(tries[0], 1))
        else:
            writer.append(row)
            tally.done += 1
            tally.reward_sum += float(row["reward"])
        tally.retried += max(tries[0] - 1, 0)
        progress.update()

    async def worker(client: httpx.AsyncClient) -> None:
        while (job := await queue.get()) is not None:
            await run_one(client, job)

    async def feed() -> None:
        async for job in _jobs(scan, settings, done, agent_name):
            await queue.put(job)
        for _ in workers:
            await queue.put(None)

    # SIGINT/SIGTERM: cancel what is in flight, keep the checkpoint whole, report the signal
    # (the caller then stops the servers it started and exits 130/143).
    main = asyncio.current_task()
    caught: list[int] = []

    def on_signal(signum: int) -> None:
        if not caught and main is not None:
            caught.append(signum)
            main.cancel()

    workers = [asyncio.create_task(worker(clients[i % len(clients)])) for i in range(width)]
    producer = asyncio.create_task(feed())
    installed = _install_signal_handlers(on_signal)
    try:
        # A worker that raises (the agent is gone) ends the wait at once; no deadlock on a full
        # queue, since the producer is a task of its own.
        await asyncio.gather(producer, *workers)
    except asyncio.CancelledError:
        if caught:
            raise Interrupted(caught[0]) from None
        raise
    finally:
        _restore_signal_handlers(installed)
        producer.cancel()
        for task in workers:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(producer, *workers, return_exceptions=True)
        writer.close()
        progress.close()
        for client in clients:
            await client.aclose()
        gc.set_threshold(*gc_thresholds)

    n_rows = write_ordered_output(
        checkpoint, output, task_range(settings, scan), repeat_range(settings)
    )
    if failures:
        failures.sort(key=lambda f: (f[TASK_INDEX_KEY], f[ROLLOUT_INDEX_KEY]))
        with atomic_output(sidecar) as handle:
            for failure in failures:
                handle.write(dumps(failure))
    else:
        sidecar.unlink(missing_ok=True)
    if not failures and not tally.not_persisted:
        checkpoint.unlink(missing_ok=True)
    mean = _mean_reward_of(output) if tally.skipped else tally.mean_reward
    metrics_path = None
    if not settings.disable_aggregation and n_rows:
        metrics_path = await write_aggregate_metrics(
            agent_url, agent_name, output, settings.request_timeout_s
        )
    return CollectResult(
        output=output,
        n_rows=n_rows,
        n_failures=len(failures),
        n_skipped=tally.skipped,
        mean_reward=mean,
        wall_s=time.monotonic() - tally.started,
        failures_path=sidecar if failures else None,
        checkpoint=checkpoint,
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
    rows = [_for_aggregation(row) for _, row in iter_jsonl(output)]
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
    for _, row in iter_jsonl(path):
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
