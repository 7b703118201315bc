"""Response objects, both ways: a chat completion → a Responses object (with the fields the
schema requires), and a Responses object → a chat completion (serving chat clients)."""

from __future__ import annotations

import time
from typing import Any

from rollsweep.rollouts.text import CONTENT_TEXT_PARTS, content_text
from rollsweep.servers.conversion.common import (
    ConversionError,
    arguments_text,
    digest,
    strip_prefix,
    token_counts,
)
from rollsweep.servers.conversion.tools import chat_message_calls

# ---------------------------------------------------------------------------------------------
# Chat Completions response → Responses object


def chat_response_to_responses(
    chat: dict[str, Any],
    *,
    request: dict[str, Any] | None = None,
    response_id: str | None = None,
    created_at: int | None = None,
    text_tool_calls: bool = False,
) -> dict[str, Any]:
    """A Chat Completions response → a Responses API object (first choice only).

    ``request`` is the original Responses request: its sampling parameters, tools, instructions
    and ``max_output_tokens`` are echoed as the Responses API does. ``finish_reason`` ``length``
    gives ``status: "incomplete"`` with ``incomplete_details.reason = "max_output_tokens"``.
    Ids are derived from the chat id (or from a hash of the completion when it has none) unless
    ``response_id`` is given. With ``text_tool_calls``, a message without structured tool calls
    whose text holds tool calls (see ``tools.parse_text_tool_calls``) naming only tools of the
    request is turned into ``function_call`` items.
    """
    if not isinstance(chat, dict):
        raise ConversionError(f"a chat completion must be an object, not {type(chat).__name__}")
    request = request if isinstance(request, dict) else {}
    if response_id:
        base = strip_prefix(str(response_id), "resp_")
    else:
        chat_id = str(chat.get("id") or "")
        base = strip_prefix(chat_id, "chatcmpl-", "chatcmpl_") or digest(chat)

    choice = _first_choice(chat)
    output: list[dict[str, Any]] = []
    incomplete_details = error = None
    if choice is None:
        status = "failed"
        error = {"code": "server_error", "message": "the chat completion has no choices"}
    else:
        status, incomplete_details = _status(choice.get("finish_reason"))
        output = _output_items(choice, request, base, status, text_tool_calls)

    if created_at is None:
        created = chat.get("created")
        created_at = int(created) if isinstance(created, int | float) else int(time.time())
    text_config = request.get("text") if isinstance(request.get("text"), dict) else None
    response = {
        "id": response_id or f"resp_{base}",
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": chat.get("model") or request.get("model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning"),
        "temperature": request.get("temperature"),
        "text": text_config or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": list(request.get("tools") or []),
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation", "disabled"),
        "usage": _chat_usage_to_responses(chat.get("usage")),
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
    if request.get("seed") is not None:
        response["seed"] = request["seed"]  # not a Responses field, but our sampling parameter
    return response


def complete_response(response: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A Responses object with every field the OpenAI schema requires, taken from the request
    where the backend left them out (NeMo Gym's openai_model validates against that schema)."""
    done = dict(response)
    done.setdefault("object", "response")
    done.setdefault("created_at", int(time.time()))
    done.setdefault("output", [])
    done.setdefault("parallel_tool_calls", request.get("parallel_tool_calls", True))
    done.setdefault("tool_choice", request.get("tool_choice", "auto"))
    done.setdefault("tools", list(request.get("tools") or []))
    usage = done.get("usage")
    if isinstance(usage, dict):
        usage = dict(usage)
        usage.setdefault("input_tokens_details", {"cached_tokens": 0, "cache_write_tokens": 0})
        usage.setdefault("output_tokens_details", {"reasoning_tokens": 0})
        done["usage"] = usage
    return done


def _first_choice(chat: dict[str, Any]) -> dict[str, Any] | None:
    choices = chat.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _status(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """The response's status and incomplete details for a choice's ``finish_reason``."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _output_items(
    choice: dict[str, Any],
    request: dict[str, Any],
    base: str,
    status: str,
    text_tool_calls: bool,
) -> list[dict[str, Any]]:
    """A choice's reasoning, message and tool calls as Responses output items."""
    output: list[dict[str, Any]] = []
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(
            {
                "type": "reasoning",
                "id": f"rs_{base}",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": reasoning}],
                "status": status,
            }
        )
    calls, content = chat_message_calls(message, request, text_tool_calls)
    text = content_text(content)
    refusal = message.get("refusal")
    if text or refusal or not calls:
        parts = _message_parts(text, refusal, choice)
        output.append(
            {
                "type": "message",
                "id": f"msg_{base}",
                "status": status,
                "role": "assistant",
                "content": parts,
            }
        )
    for i, call in enumerate(calls):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{base}_{i}",
                "call_id": str(call["id"] or f"call_{base}_{i}"),
                "name": call["name"],
                "arguments": call["arguments"],
                "status": status,
            }
        )
    return output


def _message_parts(text: str, refusal: Any, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The content parts of the assistant message: its text (with logprobs), its refusal."""
    parts: list[dict[str, Any]] = []
    if text or not refusal:
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
        logprobs = (choice.get("logprobs") or {}).get("content")
        if isinstance(logprobs, list):
            part["logprobs"] = logprobs
        parts.append(part)
    if refusal:
        parts.append({"type": "refusal", "refusal": str(refusal)})
    return parts


def _chat_usage_to_responses(usage: Any) -> dict[str, Any] | None:
    """Chat usage as Responses usage."""
    if not isinstance(usage, dict):
        return None
    counts = token_counts(usage, "prompt_tokens", "completion_tokens")
    return {
        "input_tokens": counts.input,
        "input_tokens_details": {
            "cached_tokens": counts.cached,
            "cache_write_tokens": 0,  # chat completions do not report it (newer SDKs need it)
        },
        "output_tokens": counts.output,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning},
        "total_tokens": counts.total,
    }


# ---------------------------------------------------------------------------------------------
# Responses object → Chat Completions response


def responses_response_to_chat(resp: dict[str, Any]) -> dict[str, Any]:
    """A Responses API object → a Chat Completions response with one choice.

    Text of all ``message`` items is joined into the assistant ``content`` (``None`` when there
    is none and there are tool calls); ``function_call`` items become ``tool_calls``; reasoning
    text goes to ``reasoning_content`` (the vLLM convention). ``finish_reason``: ``length`` for
    ``incomplete``/``max_output_tokens``, else ``tool_calls`` when there are calls, else
    ``stop``.
    """
    if not isinstance(resp, dict):
        raise ConversionError(f"a response must be an object, not {type(resp).__name__}")
    message, logprobs = _assistant_message(resp.get("output") or [])
    resp_id = str(resp.get("id") or "")
    created = resp.get("created_at")
    usage = resp.get("usage")
    chat_usage = None
    if isinstance(usage, dict):
        counts = token_counts(usage, "input_tokens", "output_tokens")
        chat_usage = {
            "prompt_tokens": counts.input,
            "completion_tokens": counts.output,
            "total_tokens": counts.total,
            "prompt_tokens_details": {"cached_tokens": counts.cached},
            "completion_tokens_details": {"reasoning_tokens": counts.reasoning},
        }
    return {
        "id": "chatcmpl-" + (strip_prefix(resp_id, "resp_") or digest(resp)),
        "object": "chat.completion",
        "created": int(created) if isinstance(created, int | float) else int(time.time()),
        "model": resp.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": logprobs} if logprobs is not None else None,
                "finish_reason": _finish_reason(resp, bool(message.get("tool_calls"))),
            }
        ],
        "usage": chat_usage,
    }


def _assistant_message(output: list[Any]) -> tuple[dict[str, Any], list[Any] | None]:
    """The output items as one assistant message, and the text's logprobs (None without)."""
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    logprobs: list[Any] | None = None
    tool_calls: list[dict[str, Any]] = []
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for part in content or []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") in CONTENT_TEXT_PARTS:
                    texts.append(str(part.get("text") or ""))
                    if isinstance(part.get("logprobs"), list):
                        logprobs = logprobs or []
                        logprobs.extend(part["logprobs"])
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif kind == "function_call":
            tool_calls.append(_tool_call(item))
        elif kind == "reasoning":
            for part in [*(item.get("content") or []), *(item.get("summary") or [])]:
                if isinstance(part, dict) and part.get("type") in CONTENT_TEXT_PARTS:
                    reasoning.append(str(part.get("text") or ""))
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
    }
    if refusals:
        message["refusal"] = "\n".join(refusals)
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    return message, logprobs


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A ``function_call`` item as a chat tool call."""
    return {
        "id": str(item.get("call_id") or item.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(item.get("name") or ""),
            "arguments": arguments_text(item.get("arguments")),
        },
    }


def _finish_reason(resp: dict[str, Any], has_tool_calls: bool) -> str:
    details = resp.get("incomplete_details") or {}
    if resp.get("status") == "incomplete" and details.get("reason") == "content_filter":
        return "content_filter"
    if resp.get("status") == "incomplete":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"
