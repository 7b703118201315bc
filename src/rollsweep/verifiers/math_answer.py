"""``math``: is the final answer mathematically equal to ``expected_answer``?

Task fields (NeMo Gym's math environments): ``question`` (shown to the model through
``responses_create_params``; not needed to grade) and ``expected_answer`` (a number or a LaTeX
expression, e.g. ``"12"``, ``"\\frac{1}{2}"``).

The answer is the content of the last ``\\boxed{...}`` in the final assistant text; without one,
the last number in the text. Equality is decided by Hugging Face's ``math_verify`` (``parse`` and
``verify``), so ``0.5``, ``1/2`` and ``\\frac{1}{2}`` agree. Details: ``extracted_answer`` (the text
that was graded, or None) and ``expected_answer``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from math_verify import parse, verify

from rollsweep.verifiers.base import Verifier, VerifierError, final_text

#: Answers longer than this are not handed to sympy (a runaway answer is wrong anyway).
MAX_ANSWER_CHARS = 300

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    for opening in reversed(list(_BOX_OPEN.finditer(text))):
        depth = 1
        for index in range(opening.end(), len(text)):
            char = text[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[opening.end() : index].strip()
        # an unclosed box: try an earlier one
    return None


def last_number(text: str) -> str | None:
    """The last number written in the text (``1,000`` -> ``1000``), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "")


def extract_answer(text: str) -> str | None:
    """The answer the model gave: the last boxed expression, else the last number."""
    boxed = last_boxed(text)
    if boxed:
        return boxed
    return last_number(text)


def _timeouts() -> int | None:
    # math_verify's timeouts use signal.alarm, which only works in the main thread; servers
    # verify in worker threads, where answers are kept short instead (MAX_ANSWER_CHARS).
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    timeout = _timeouts()
    parsed = parse(text, parsing_timeout=timeout)
    if not parsed and "$" not in text:
        parsed = parse(f"${text}$", parsing_timeout=timeout)
    return parsed


def answers_match(expected: str, answer: str) -> bool:
    """True when ``answer`` is mathematically equal to ``expected`` (by math_verify)."""
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    gold = _parse(expected)
    if not gold:
        raise VerifierError(f"math_verify cannot parse expected_answer {expected!r}")
    candidate = _parse(answer)
    if not candidate:
        # e.g. "\boxed{12 apples}": grade the number inside
        number = last_number(answer)
        candidate = _parse(number) if number else []
    if not candidate:
        return False
    return bool(verify(gold, candidate, timeout_seconds=_timeouts()))


def verify_math(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Reward 1.0 when the extracted answer equals ``expected_answer``, else 0.0."""
    expected = task.get("expected_answer")
    if (
        expected is None
        or isinstance(expected, bool)
        or not isinstance(expected, str | int | float)
    ):
        raise VerifierError(
            "the math verifier needs an 'expected_answer' field (a string or a number), "
            f"got {expected!r}"
        )
    expected = str(expected)
    answer = extract_answer(final_text(response))
    correct = answer is not None and answers_match(expected, answer)
    return {
        "reward": 1.0 if correct else 0.0,
        "extracted_answer": answer,
        "expected_answer": expected,
    }


VERIFIER = Verifier(name="math", verify=verify_math)
