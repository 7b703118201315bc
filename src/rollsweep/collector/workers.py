"""``+num_workers=N``: the unfinished rollouts in N contiguous task ranges, one process each.

Each worker collects its range into a checkpoint part of its own and sends back what it did;
the parent merges the parts. A worker that fails stops the others (they keep their parts).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from typing import Any

from rollsweep.collector.checkpoint import CheckpointIndex
from rollsweep.collector.loop import Interrupted, run_async
from rollsweep.collector.window import RangeJob, RangeResult, collect_range
from rollsweep.errors import ServerUnavailable

#: prctl's option that asks for a signal when the parent process dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def split_tasks(done: CheckpointIndex, parts: int) -> list[range]:
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


def run_workers(jobs: list[RangeJob]) -> list[RangeResult]:
    """Collect each job's range in its own process; their results in order.

    Forked when this process has no other thread (fast: no new interpreter), else spawned.
    A signal to this process (SIGTERM; SIGINT reaches the whole process group anyway) is
    passed on to the workers, which keep their checkpoints whole.
    """
    method = "fork" if threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    processes: list[Any] = []
    try:
        connections = [_start(context, job, processes) for job in jobs]
        answers = _answers(connections, processes)
    except BaseException:
        _terminate(processes)
        for process in processes:
            process.join(timeout=30)
        raise
    for process in processes:
        process.join()
    return [_result(answer) for answer in answers]


def _start(context: Any, job: RangeJob, processes: list[Any]) -> Any:
    """Start a worker process on ``job`` (added to ``processes``); the end it answers on."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_worker_main, args=(send, job), daemon=True)
    process.start()
    send.close()
    processes.append(process)
    return receive


def _answers(connections: list[Any], processes: list[Any]) -> list[tuple[str, Any]]:
    """Each worker's answer, in order; the first one that is not "ok" stops the others."""
    answers: list[tuple[str, Any] | None] = [None] * len(connections)
    waiting = dict(enumerate(connections))
    while waiting:
        for ready in multiprocessing.connection.wait(list(waiting.values())):
            number = next(k for k, c in waiting.items() if c is ready)
            try:
                answer = ready.recv()
            except EOFError:
                answer = ("error", "the worker process died")
            answers[number] = answer
            del waiting[number]
            if answer[0] != "ok":
                _terminate(processes)  # SIGTERM: the others stop, checkpoints kept
    return [answer for answer in answers if answer is not None]


def _terminate(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()


def _result(answer: tuple[str, Any]) -> RangeResult:
    """A worker's answer as its result, or as the error it ended with."""
    kind, value = answer
    if kind == "interrupted":
        raise Interrupted(value)
    if kind == "unavailable":
        raise ServerUnavailable(value)
    if kind != "ok":
        raise RuntimeError(f"a collector worker failed: {value}")
    return value


def _worker_main(connection: Any, job: RangeJob) -> None:
    """A worker process: collect one task range, send back what it did."""
    _set_parent_death_signal()
    if os.getppid() == 1:  # the parent died before the line above
        return
    try:
        connection.send(("ok", run_async(collect_range(job))))
    except Interrupted as error:
        connection.send(("interrupted", error.signum))
    except ServerUnavailable as error:
        connection.send(("unavailable", str(error)))
    except BaseException as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


def _set_parent_death_signal() -> None:
    """Linux: this process gets SIGTERM when its parent dies (a ``kill -9``-ed collector's
    workers then stop and keep their checkpoints whole, instead of running on unowned)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
