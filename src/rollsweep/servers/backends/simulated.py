"""A seeded stand-in policy with a known reward-vs-temperature curve (tests and benchmarks only).

For a request at temperature T the chance of a right answer is

    p(T) = clip(peak_reward - curvature * (T - optimum_temperature)**2 + offset(task), 0, 1)

where ``offset(task)`` is a fixed per-prompt shift, uniform in [-task_spread, task_spread], so
that tasks differ in difficulty while the mean over many tasks follows the curve.

To play that policy the backend must know the right answer, and a model request carries only
what the task's ``responses_create_params`` holds (every agent, NeMo Gym's included, forwards
them). So a task meant for the simulated backend carries its answer there, as Responses
``metadata`` (a string, like every metadata value)::

    {"responses_create_params": {"input": "What is 2 + 3?",
                                 "metadata": {"expected_answer": "5"}},
     "expected_answer": "5", "verifier": "math"}

A request without it gets a guess: one of the option letters the prompt lists (``A: ...``,
``B) ...``), drawn by the seed, or "I am not sure." when it lists none. Every draw is a pure
function of (seed, prompt): reruns are identical.

Fault injection (``faults:``, off by default): each request draws at most one of 500, 429 with
``Retry-After``, a hang, a dropped connection or a slow answer. The backend sleeps for hangs and
slow answers itself and raises :class:`InjectedFault` for the rest, which the model server turns
into the HTTP-level fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections import Counter
from typing import Any

from rollsweep.config import FaultSettings, SimulatedSettings

#: An option line of a multiple-choice prompt: "A: text", "B) text", "C. text".
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[:).]\s", re.MULTILINE)
#: The key of a request's ``metadata`` that holds the right answer (see the module docstring).
ANSWER_KEY = "expected_answer"
#: The fault kinds, in the order their rates are laid out on the unit interval.
FAULT_KINDS = ("error_500", "error_429", "hang", "drop_connection", "slow")


class InjectedFault(Exception):
    """A fault the model server produces at the HTTP level (500, 429, dropped connection)."""

    def __init__(self, kind: str, retry_after_s: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after_s = retry_after_s


class FaultDraw:
    """Which fault (if any) a request gets: a pure function of (seed, request, occurrence).

    The occurrence counter makes the n-th identical request (a retry) draw afresh, while a
    rerun of the same requests in the same per-request order draws the same faults.
    """

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._seen: Counter[bytes] = Counter()
        self.injected: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> str | None:
        key = hashlib.blake2b(
            repr((body.get("seed"), _prompt_text(body))).encode(), digest_size=12
        ).digest()
        occurrence = self._seen[key]
        self._seen[key] += 1
        point = _stable_unit("fault", self.settings.seed, key, occurrence)
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self.settings, kind)
            if point < edge:
                self.injected[kind] += 1
                return kind
        return None


def with_answer(task: dict[str, Any]) -> dict[str, Any]:
    """A task row whose requests tell the simulated policy its ``expected_answer`` (unchanged
    when it has none)."""
    if "expected_answer" not in task:
        return task
    params = dict(task["responses_create_params"])
    params["metadata"] = {
        **(params.get("metadata") or {}),
        ANSWER_KEY: str(task["expected_answer"]),
    }
    return {**task, "responses_create_params": params}


def success_probability(settings: SimulatedSettings, temperature: float, offset: float) -> float:
    """The curve above, for one task."""
    centred = temperature - settings.optimum_temperature
    return min(1.0, max(0.0, settings.peak_reward - settings.curvature * centred**2 + offset))


def _stable_unit(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _prompt_text(body: dict[str, Any]) -> str:
    given = body.get("input")
    if isinstance(given, str):
        return given
    return repr(given)


def wrong_answer(expected: str, rng: random.Random) -> str:
    """A plausible answer that is not ``expected``."""
    letters = "ABCDEFGHIJ"
    if len(expected) == 1 and expected.upper() in letters:
        choices = [c for c in letters[:4] if c != expected.upper()] or ["Z"]
        return rng.choice(choices)
    try:
        number = float(expected)
    except ValueError:
        return f"not {expected}"
    shifted = number + rng.choice([-3, -2, -1, 1, 2, 3])
    return str(int(shifted)) if shifted.is_integer() else str(shifted)


class SimulatedBackend:
    model_id = "simulated"

    def __init__(self, settings: SimulatedSettings) -> None:
        self.settings = settings
        self.faults = FaultDraw(settings.faults) if settings.faults.enabled else None

    def answer(self, body: dict[str, Any]) -> tuple[str, bool]:
        """The text for a request and whether it is the right answer."""
        prompt = _prompt_text(body)
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        seed = body.get("seed") or 0
        offset = self.settings.task_spread * (2 * _stable_unit("task", prompt) - 1)
        chance = success_probability(self.settings, temperature, offset)
        rng = random.Random(_stable_unit("draw", seed, prompt))
        expected = (body.get("metadata") or {}).get(ANSWER_KEY)
        if expected is None:
            letters = sorted(set(_OPTION_LINE.findall(prompt.replace("\\n", "\n"))))
            if not letters:
                return "I am not sure.", False
            return f"The answer is \\boxed{{{rng.choice(letters)}}}.", False
        expected = str(expected)
        correct = rng.random() < chance
        chosen = expected if correct else wrong_answer(expected, rng)
        return f"The answer is \\boxed{{{chosen}}}.", correct

    async def inject_fault(self, body: dict[str, Any]) -> None:
        """Draw this request's fault: sleep for a hang or a slow answer, raise for the rest."""
        kind = self.faults(body) if self.faults is not None else None
        faults = self.settings.faults
        if kind == "hang":
            await asyncio.sleep(faults.hang_s)
        elif kind == "slow":
            await asyncio.sleep(faults.slow_ms / 1000)
        elif kind is not None:
            raise InjectedFault(kind, faults.retry_after_s if kind == "error_429" else None)

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.inject_fault(body)
        text, _ = self.answer(body)
        settings = self.settings
        if settings.latency_ms or settings.latency_jitter_ms:
            jitter = random.uniform(-1, 1) * settings.latency_jitter_ms
            await asyncio.sleep(max(0.0, settings.latency_ms + jitter) / 1000)
        digest = hashlib.blake2b(repr((body.get("seed"), text)).encode(), digest_size=6).hexdigest()
        input_tokens = max(1, len(_prompt_text(body)) // 4)
        return {
            "id": f"resp_sim_{digest}",
            "object": "response",
            "created_at": int(time.time()),
            "model": self.model_id,
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": f"msg_sim_{digest}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": settings.output_tokens,
                "total_tokens": input_tokens + settings.output_tokens,
            },
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
        }

    async def aclose(self) -> None:
        return None
