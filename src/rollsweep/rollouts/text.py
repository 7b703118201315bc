"""The text of a task and of a response: one helper per question, used by every reader.

- ``content_text``: the text of a message's content, in either API;
- ``output_text``: the final assistant text of a Responses object (what ``output`` holds);
- ``joined_output_text``: every ``output_text`` part joined (the OpenAI SDK's property);
- ``final_output``: a row's final text for display (``output``, else from its response);
- ``prompt_text``: the task's last user message.
"""

from __future__ import annotations

import json
from typing import Any

#: Text part types, in either API, whose ``text`` is plain text.
CONTENT_TEXT_PARTS = frozenset(
    {"input_text", "output_text", "text", "summary_text", "reasoning_text"}
)
#: Content parts that carry an answer's text (refusal and reasoning parts do not).
TEXT_PART_TYPES = ("output_text", "text", None)


def content_text(content: Any, *, labels: bool = False) -> str:
    """The text of a content value (a string, or a list of parts, joined by newlines).

    By default only text parts count (CONTENT_TEXT_PARTS). ``labels=True`` is for display: any
    part with a ``text`` counts, a refusal shows as ``[refusal] ...`` and another part as
    ``[its type]``. Anything else is shown as JSON.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, ensure_ascii=False)
    texts = (_part_text(part, labels) for part in content)
    return "\n".join(text for text in texts if text is not None)


def _part_text(part: Any, labels: bool) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return None
    if not labels:
        return str(part.get("text") or "") if part.get("type") in CONTENT_TEXT_PARTS else None
    if isinstance(part.get("text"), str):
        return part["text"]
    if isinstance(part.get("refusal"), str):
        return f"[refusal] {part['refusal']}"
    return f"[{part['type']}]" if part.get("type") else None


def _output_items(response: Any) -> list[dict[str, Any]]:
    output = response.get("output") if isinstance(response, dict) else None
    return [item for item in output if isinstance(item, dict)] if isinstance(output, list) else []


def last_assistant_message(response: Any) -> dict[str, Any] | None:
    """The last assistant ``message`` item of a Responses object (an item without a type or a
    role counts as one: the Responses API only puts assistant messages in ``output``)."""
    for item in reversed(_output_items(response)):
        is_message = item.get("type", "message") == "message"
        if is_message and item.get("role", "assistant") == "assistant":
            return item
    return None


def output_text(response: dict[str, Any] | None) -> str:
    """The final assistant text of a Responses object: the ``output_text`` parts of its last
    assistant ``message`` item, concatenated (``""`` when there is none)."""
    message = last_assistant_message(response)
    content = message.get("content") if message is not None else None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(part.get("text") or "")
        for part in content
        if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES
    )


def joined_output_text(response: dict[str, Any] | None) -> str:
    """Every ``output_text`` part of every message item, joined with no separator.

    This is the OpenAI SDK's ``Response.output_text``, which NeMo Gym's math_with_judge and
    mcqa servers grade (so text written before a tool call counts, unlike ``output_text``).
    """
    parts: list[str] = []
    for item in _output_items(response):
        if item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict)
                and part.get("type") == "output_text"
                and isinstance(part.get("text"), str)
            )
    return "".join(parts)


def final_output(row: dict[str, Any]) -> str:
    """A rollout row's final text for display: ``output``, else the last assistant message of
    its response (all its parts labelled, see ``content_text``)."""
    output = row.get("output")
    if isinstance(output, str):
        return output
    message = last_assistant_message(row.get("response"))
    if message is not None:
        return content_text(message.get("content"), labels=True)
    return "" if output is None else json.dumps(output, ensure_ascii=False)


def prompt_text(row: dict[str, Any]) -> str:
    """The task's last user message (or its string input, or ``prompt``)."""
    params = row.get("responses_create_params")
    given = params.get("input") if isinstance(params, dict) else None
    if isinstance(given, str):
        return given
    if isinstance(given, list):
        for item in reversed(given):
            if isinstance(item, dict) and item.get("role") == "user":
                return content_text(item.get("content"), labels=True)
    prompt = row.get("prompt")
    return prompt if isinstance(prompt, str) else ""
