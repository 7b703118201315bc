"""Stale Snakemake locks after a killed run.

Snakemake locks its working directory while it runs; ``kill -9`` leaves the locks behind and the
next run stops with "Directory cannot be locked" until ``--unlock``. rollsweep records which
process owns a run; a later run on the same host removes the locks only when that process is
gone, so `snakemake --cores N --rerun-incomplete` simply resumes after a crash. A live run's
locks are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

OWNER_FILE = Path(".snakemake") / "rollsweep_owner.json"
LOCKS_DIR = Path(".snakemake") / "locks"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_owner(workdir: Path = Path()) -> None:
    """Note this process (and host) as the owner of the running workflow's locks."""
    path = workdir / OWNER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))


def release_owner(workdir: Path = Path()) -> None:
    with contextlib.suppress(FileNotFoundError):
        (workdir / OWNER_FILE).unlink()


def clear_stale_locks(workdir: Path = Path()) -> int | None:
    """Remove the locks of a run whose owner died on this host; return its pid, else None."""
    owner_path = workdir / OWNER_FILE
    locks = workdir / LOCKS_DIR
    if not owner_path.exists() or not locks.is_dir():
        return None
    try:
        owner = json.loads(owner_path.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or _alive(pid):
        return None
    for lock in locks.iterdir():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    release_owner(workdir)
    return pid
