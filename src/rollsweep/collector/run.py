"""A whole collection run: check the agent, resume from the checkpoint, collect, write outputs.

``collect`` is the entry point; one task range runs in this process (``window``), or with
``+num_workers=N`` one per worker process (``workers``), and the output is merged from all
checkpoint files, task-major, as from one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from rollsweep.collector.checkpoint import read_checkpoints
from rollsweep.collector.http import check_reachable
from rollsweep.collector.loop import run_async
from rollsweep.collector.metrics import write_aggregate_metrics
from rollsweep.collector.output import (
    mean_reward_of,
    remove_stale_temporaries,
    write_failures,
    write_ordered_output,
)
from rollsweep.collector.progress import Tally
from rollsweep.collector.tasks import TaskScan, configuration_hash, repeat_range, task_range
from rollsweep.collector.window import RangeJob, RangeResult, collect_range
from rollsweep.collector.workers import run_workers, split_tasks
from rollsweep.config import CollectSettings
from rollsweep.rollouts.names import checkpoint_files, checkpoint_path, failures_path_for


@dataclass
class CollectResult:
    """What a run wrote, and the figures of its summary line."""

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
    tally = Tally(total=len(done.tasks) * len(done.repeats), skipped=done.count)
    width = settings.num_samples_in_parallel
    job = RangeJob(settings, scan, run_url, agent_name, done, files[0], 0, width, output.name)
    results = _collect_ranges(job, files, output, config_hash)
    failures = [failure for result in results for failure in result.failures]
    for result in results:
        tally.add(result.tally)

    n_rows = write_ordered_output(files, done, output)
    write_failures(sidecar, failures)
    if not failures and not tally.not_persisted:
        for path in files:
            path.unlink(missing_ok=True)
    mean = mean_reward_of(output) if tally.skipped else tally.mean_reward
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


def _collect_ranges(
    job: RangeJob, files: list[Path], output: Path, config_hash: str
) -> list[RangeResult]:
    """Collect ``job`` in this process or, with ``+num_workers``, split into one worker process
    per task range: their checkpoint parts are added to ``files``, their rows to ``job.done``."""
    done, width = job.done, job.width
    parts = job.settings.num_workers
    ranges = split_tasks(done, parts) if parts > 1 else []
    if len(ranges) <= 1:
        return [run_async(collect_range(job))]
    jobs = []
    for k, tasks in enumerate(ranges):
        path = checkpoint_path(output, config_hash, k)
        if path not in files:
            files.append(path)
        share = width // len(ranges) + (k < width % len(ranges))
        jobs.append(
            dataclasses.replace(
                job,
                done=done.part(tasks),
                checkpoint=path,
                file=files.index(path),
                width=max(1, share),
                label=f"{output.name} [{k + 1}/{len(ranges)}]",
                position=k,
            )
        )
    results = run_workers(jobs)
    for result in results:
        done.update(result.done)
    return results
