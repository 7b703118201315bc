"""Verifiers: bundled ones by name, or a user's Python file.

``load_verifier("auto" | "math" | "mcqa" | "instruction_following" | "tool_use" | "path.py")``
returns a :class:`Verifier`; its ``verify(task, response)`` returns ``{"reward": float, ...}``.
A user file is read again when it changes, so calling ``load_verifier`` per request is cheap and
always gives the current code.
"""

from __future__ import annotations

from pathlib import Path

from rollsweep.config import BUNDLED_VERIFIER_NAMES
from rollsweep.verifiers import auto
from rollsweep.verifiers.base import (
    ToolFn,
    Verifier,
    VerifierError,
    final_text,
    function_calls,
    normalize_result,
)
from rollsweep.verifiers.user_file import load_user_verifier

_BUNDLED: dict[str, Verifier] = {auto.VERIFIER.name: auto.VERIFIER, **auto.DISPATCHED}

#: The names ``load_verifier`` accepts besides a ``.py`` path (the config validates against the
#: same list without importing the verifiers).
BUNDLED_VERIFIERS: tuple[str, ...] = BUNDLED_VERIFIER_NAMES
if set(_BUNDLED) != set(BUNDLED_VERIFIERS):  # pragma: no cover - a programming error
    raise ImportError(f"bundled verifiers {sorted(_BUNDLED)} != {sorted(BUNDLED_VERIFIERS)}")


def load_verifier(spec: str | Path) -> Verifier:
    """A bundled verifier by name, or the verifier defined in a ``.py`` file (see user_file)."""
    text = str(spec).strip()
    if text in _BUNDLED:
        return _BUNDLED[text]
    if text.endswith(".py"):
        return load_user_verifier(text)
    raise VerifierError(
        f"unknown verifier {text!r}: give a bundled name ({', '.join(BUNDLED_VERIFIERS)}) "
        "or the path of a Python file ending in .py that defines verify(task, response)"
    )


__all__ = [
    "BUNDLED_VERIFIERS",
    "ToolFn",
    "Verifier",
    "VerifierError",
    "final_text",
    "function_calls",
    "load_verifier",
    "normalize_result",
]
