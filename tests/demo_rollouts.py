"""Synthetic rollout files, no model involved: viewer and rescore tests, viewer benchmark.

``write_demo_rollouts(path, n_tasks, n_repeats)`` writes rows shaped exactly like the
collector's (task fields, ``reward``, ``output``, ``response``, ``_ng_task_index``,
``_ng_rollout_index``, ``metrics``, ``params``, ``seed``, ``verification``), task-major with
repeats adjacent. Rewards are a deterministic function of (task, repeat, temperature), so two
files at different temperatures differ on some rows only. Every 10th task is a tool-use task
(function call + output); task 3 carries HTML and a ``<script>`` in its prompt and output.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

from rollsweep.rollouts.jsonl import dumps

#: Task 3's prompt and output: rollout text that must render as text and never run.
SCRIPT_PAYLOAD = (
    '<script>window.__pwned = 1; document.title = "pwned"</script>'
    '<img src=x onerror="window.__pwned = 2"><b>bold?</b>'
)


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def demo_reward(task_index: int, repeat: int, temperature: float) -> float:
    """0.0, 0.5 or 1.0: each task has a difficulty; higher temperature flips a few repeats."""
    difficulty = _unit("difficulty", task_index)
    draw = _unit("draw", task_index, repeat)
    noise = _unit("noise", task_index, repeat, round(temperature, 3))
    score = difficulty * 0.7 + draw * 0.3
    if noise < temperature * 0.15:
        score = 1.0 - score
    if score < 0.35:
        return 1.0
    if score < 0.55:
        return 0.5
    return 0.0


def demo_rollout(
    task_index: int, repeat: int, *, temperature: float = 0.7, model: str = "simulated"
) -> dict[str, Any]:
    """One rollout row."""
    a, b = 3 + task_index % 97, 5 + (task_index * 7) % 89
    answer = a + b
    reward = demo_reward(task_index, repeat, temperature)
    given = answer if reward == 1.0 else answer + 1 + repeat % 3
    seed = int(_unit("seed", task_index, repeat) * 2**31)
    tool_task = task_index % 10 == 9
    if task_index == 3:
        prompt = f"Explain this snippet: {SCRIPT_PAYLOAD} then add {a} + {b}."
        text = f"It is markup: {SCRIPT_PAYLOAD}\nThe sum is \\boxed{{{given}}}."
    elif reward == 0.5:  # the right number, but not in the requested format
        prompt = f"What is {a} + {b}? Put the final answer in \\boxed{{}}."
        given = answer
        text = f"{a} + {b} = {answer}, so the answer is {answer}."
    else:
        prompt = f"What is {a} + {b}? Put the final answer in \\boxed{{}}."
        text = (
            f"Let me add {a} and {b} step by step.\n{a} + {b} = {given}.\n"
            f"The answer is \\boxed{{{given}}}."
        )
    output_items: list[dict[str, Any]] = []
    if tool_task:
        call_id = f"call_{task_index}_{repeat}"
        output_items.append(
            {
                "type": "function_call",
                "id": f"fc_{task_index}_{repeat}",
                "name": "calculator",
                "arguments": f'{{"expression": "{a} + {b}"}}',
                "call_id": call_id,
                "status": "completed",
            }
        )
        output_items.append(
            {"type": "function_call_output", "call_id": call_id, "output": str(given)}
        )
    output_items.append(
        {
            "type": "message",
            "id": f"msg_{task_index}_{repeat}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    )
    input_tokens = 20 + len(prompt) // 4
    output_tokens = 8 + len(text) // 4
    params = {"temperature": temperature, "max_output_tokens": 96}
    row: dict[str, Any] = {
        "task_id": f"demo-{task_index:06d}-{'tool' if tool_task else 'math'}",
        "responses_create_params": {
            "input": [{"role": "user", "content": prompt}],
            "max_output_tokens": 96,
            "temperature": temperature,
            "seed": seed,
            **(
                {
                    "tools": [
                        {
                            "type": "function",
                            "name": "calculator",
                            "description": "Evaluate an arithmetic expression.",
                            "parameters": {
                                "type": "object",
                                "properties": {"expression": {"type": "string"}},
                                "required": ["expression"],
                            },
                        }
                    ]
                }
                if tool_task
                else {}
            ),
        },
        "question": f"What is {a} + {b}?",
        "expected_answer": str(answer),
        "verifier": "math",
        "reward": reward,
        "output": text,
        "response": {
            "id": f"resp_{task_index}_{repeat}",
            "object": "response",
            "model": model,
            "status": "completed",
            "output": output_items,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            "temperature": temperature,
        },
        "metrics": {
            "latency_s": round(0.2 + _unit("lat", task_index, repeat), 4),
            "model_latency_s": round(0.15 + _unit("lat", task_index, repeat) * 0.9, 4),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "turns": 2 if tool_task else 1,
            "tool_calls": 1 if tool_task else 0,
        },
        "verification": {
            "extracted_answer": str(given) if reward != 0.5 else None,
            "expected_answer": str(answer),
            "format_ok": reward != 0.5,
            "verifier": "math",
        },
        "_ng_task_index": task_index,
        "_ng_rollout_index": repeat,
        "params": params,
        "seed": seed,
    }
    return row


def iter_demo_rollouts(
    n_tasks: int, n_repeats: int = 5, *, temperature: float = 0.7
) -> Iterator[dict[str, Any]]:
    for task_index in range(n_tasks):
        for repeat in range(n_repeats):
            yield demo_rollout(task_index, repeat, temperature=temperature)


def write_demo_rollouts(
    path: str | os.PathLike[str],
    n_tasks: int,
    n_repeats: int = 5,
    *,
    temperature: float = 0.7,
) -> int:
    """Write ``n_tasks * n_repeats`` rows; return the number written."""
    count = 0
    with open(path, "wb") as handle:
        buffer: list[bytes] = []
        for row in iter_demo_rollouts(n_tasks, n_repeats, temperature=temperature):
            buffer.append(dumps(row))
            count += 1
            if len(buffer) >= 4096:
                handle.write(b"".join(buffer))
                buffer.clear()
        handle.write(b"".join(buffer))
    return count
