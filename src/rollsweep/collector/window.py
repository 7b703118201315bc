"""One task range collected with at most N rollouts in flight (in this process or a worker's).

A fixed pool of N asyncio workers shares one generator of pending rollouts: each takes the next
as it frees up, so the window is refilled the moment a rollout ends (no queue, no feeding task
to wait on), and memory does not grow with the number of rollouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rollsweep.collector.checkpoint import CheckpointIndex, CheckpointWriter
from rollsweep.collector.http import (
    AiohttpTransport,
    RolloutFailed,
    check_reachable,
    post_with_retries,
)
from rollsweep.collector.loop import CancelOnSignal
from rollsweep.collector.progress import Progress, Tally
from rollsweep.collector.results import failure_message, failure_record, to_rollout_row
from rollsweep.collector.tasks import Job, TaskScan, pending_jobs
from rollsweep.config import CollectSettings
from rollsweep.errors import ServerUnavailable
from rollsweep.protocol import FAILURE_CLASS_KEY, NO_PERSIST_KEY

#: The cyclic GC's thresholds while collecting. Thousands of rollouts in flight are millions of
#: live objects that every collection scans again; with CPython's default (700, 10, 10) the GC
#: took ~40 % of the collector's CPU at 16,384 in flight (1.6x the CPU per rollout at 64).
#: Rarer collections cost ~15 MB more RSS at 1,024 in flight (bounded, not growing per row).
GC_THRESHOLDS = (5_000, 10, 10)


@dataclass(frozen=True)
class RangeJob:
    """One task range to collect: ``done``'s range, into checkpoint file ``file`` of ``done``."""

    settings: CollectSettings
    scan: TaskScan
    run_url: str
    agent_name: str | None
    done: CheckpointIndex
    checkpoint: Path
    file: int
    width: int
    label: str
    position: int | None = None


@dataclass
class RangeResult:
    """What collecting one task range did (in-process, or in one worker process)."""

    tally: Tally
    failures: list[dict[str, Any]]
    done: CheckpointIndex


async def collect_range(job: RangeJob) -> RangeResult:
    """Run every rollout of the job's task range not in ``done``; append rows to its checkpoint,
    at most ``width`` in flight. SIGINT/SIGTERM end it with ``Interrupted``."""
    settings, done = job.settings, job.done
    tally = Tally(total=len(done.tasks) * len(done.repeats), skipped=done.count)
    progress = Progress(tally, settings.progress, label=job.label, position=job.position)
    writer = CheckpointWriter(job.checkpoint, done, job.file)
    timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    transport = AiohttpTransport(max_connections=job.width, timeout=timeout)
    window = _Window(settings, job.run_url, writer, progress, transport)
    gc_thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # start-up's objects (modules, settings) are not scanned again
    try:
        jobs = pending_jobs(job.scan, settings, done, job.agent_name)
        await window.run(jobs, max(1, min(job.width, tally.total - done.count)))
    finally:
        writer.close()
        progress.close()
        await transport.aclose()
        gc.unfreeze()
        gc.set_threshold(*gc_thresholds)
    return RangeResult(tally=tally, failures=window.failures, done=done)


class _Window:
    """The state of one range's collection: where rollouts go, and what came of them."""

    def __init__(
        self,
        settings: CollectSettings,
        run_url: str,
        writer: CheckpointWriter,
        progress: Progress,
        transport: AiohttpTransport,
    ) -> None:
        self.run_url = run_url
        self.max_attempts = settings.max_attempts
        self.rollout_timeout_s = settings.rollout_timeout_s
        self.connect_timeout_s = settings.connect_timeout_s
        self.writer = writer
        self.progress = progress
        self.tally = progress.tally
        self.transport = transport
        self.failures: list[dict[str, Any]] = []

    async def run(self, jobs: Iterator[Job], n_workers: int) -> None:
        """Run the jobs with ``n_workers`` in flight; a worker that raises (the agent is gone)
        or a signal ends the wait at once, and cancels the others."""
        workers = [asyncio.create_task(self._drain(jobs)) for _ in range(n_workers)]
        try:
            with CancelOnSignal(asyncio.current_task()):
                await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*workers, return_exceptions=True)

    async def _drain(self, jobs: Iterator[Job]) -> None:
        for job in jobs:
            await self.run_one(job)

    async def run_one(self, job: Job) -> None:
        """One rollout, to a row in the checkpoint or a failure record."""
        task_index, rollout_index, request, seed = job
        started = time.perf_counter()
        tries = [0]
        try:
            async with asyncio.timeout(self.rollout_timeout_s):
                result, _ = await post_with_retries(
                    self.transport, self.run_url, request, self.max_attempts, tries
                )
            if isinstance(result, dict) and result.get(NO_PERSIST_KEY):
                # NeMo Gym's "kill-shaped" result: written nowhere, so a rerun runs it again.
                self.tally.not_persisted += 1
                self.progress.update()
                return
            if isinstance(result, dict) and result.get(FAILURE_CLASS_KEY) is not None:
                kind = str(result[FAILURE_CLASS_KEY])
                raise RolloutFailed(kind, failure_message(result), max(tries[0], 1))
            latency_s = time.perf_counter() - started
            row = to_rollout_row(request, result, task_index, rollout_index, seed, latency_s)
        except RolloutFailed as error:
            if error.refused:
                await self._stop_if_gone()
            self._fail(job, error.kind, error.message, tries)
        except TimeoutError:
            message = f"no result within +rollout_timeout_s={self.rollout_timeout_s}"
            self._fail(job, "rollout_timeout", message, tries)
        except Exception as error:  # one odd answer must not end the run
            self._fail(job, "collector_error", f"{type(error).__name__}: {error}"[:300], tries)
        else:
            self.writer.append(task_index, rollout_index, row)
            self.tally.done += 1
            self.tally.reward_sum += float(row["reward"])
        if tries[0] > 1:
            self.tally.retried += tries[0] - 1
        self.progress.update()

    async def _stop_if_gone(self) -> None:
        """Refused after every retry: when the agent is gone, end the run here (fail fast,
        naming the URL) instead of failing every remaining rollout the same way."""
        try:
            await check_reachable(self.run_url, timeout_s=self.connect_timeout_s)
        except ServerUnavailable as gone:
            raise ServerUnavailable(
                f"{gone} (mid-run; finished rollouts are kept in {self.writer.path}, "
                "rerun to resume)"
            ) from None

    def _fail(self, job: Job, kind: str, message: str, tries: list[int]) -> None:
        task_index, rollout_index, request, _ = job
        attempts = max(tries[0], 1)
        self.failures.append(
            failure_record(task_index, rollout_index, request, kind, message, attempts)
        )
        self.tally.failed += 1
        self.tally.failure_kinds[kind] += 1
