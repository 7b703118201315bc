"""Child processes that never outlive their parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Ask Linux to SIGTERM this process when its parent dies, even by ``kill -9``.

    Pass it as ``preexec_fn`` to ``subprocess.Popen``: servers and worker processes then never
    linger as orphans. Elsewhere than Linux it does nothing.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
