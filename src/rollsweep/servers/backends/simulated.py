"""A seeded stand-in policy with a known reward-vs-temperature curve (tests and benchmarks only).

For a request at temperature T the chance of a right answer is

    p(T) = clip(peak_reward - curvature * (T - optimum_temperature)**2 + offset(task), 0, 1)

where ``offset(task)`` is a fixed per-prompt shift, uniform in [-task_spread, task_spread], so
that tasks differ in difficulty while the mean over many tasks follows the curve. The right
answer comes from the request's ``metadata.expected_answer`` (the agent adds it for simulated
model servers only). Every draw is a pure function of (seed, prompt): reruns are identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import Any

from rollsweep.config import SimulatedSettings


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

    def answer(self, body: dict[str, Any]) -> tuple[str, bool]:
        """The text for a request and whether it is the right answer."""
        prompt = _prompt_text(body)
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        seed = body.get("seed") or 0
        offset = self.settings.task_spread * (2 * _stable_unit("task", prompt) - 1)
        chance = success_probability(self.settings, temperature, offset)
        rng = random.Random(_stable_unit("draw", seed, prompt))
        expected = (body.get("metadata") or {}).get("expected_answer")
        if expected is None:
            return "I am not sure.", False
        expected = str(expected)
        correct = rng.random() < chance
        chosen = expected if correct else wrong_answer(expected, rng)
        return f"The answer is \\boxed{{{chosen}}}.", correct

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
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
