"""What the conversions share: errors, the result type, key lists and small value helpers."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection
from typing import Any, NamedTuple

#: One logger for the whole package (what a converter dropped, at DEBUG level).
log = logging.getLogger(__package__)

#: Keys copied unchanged between the two request shapes: standard on one or both endpoints, or
#: sampling extras that vLLM / llama.cpp accept on both.
PASSTHROUGH_KEYS = (
    "temperature",
    "top_p",
    "seed",
    "parallel_tool_calls",
    "user",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "top_k",
    "min_p",
    "repetition_penalty",
)

#: Responses message roles (Chat Completions uses the same names plus ``tool``).
MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})


class ConversionError(ValueError):
    """A body that cannot be converted at all (not an object, ``input`` of the wrong type)."""


class Converted(NamedTuple):
    """A converted request body and what was dropped on the way (human-readable, in order)."""

    body: dict[str, Any]
    dropped: list[str]


def finish_request(
    converted: dict[str, Any],
    body: dict[str, Any],
    handled: Collection[str],
    dropped: list[str],
    direction: str,
) -> Converted:
    """The converted body, with the body's other (non-null) keys added to ``dropped``; what was
    dropped is logged."""
    dropped.extend(
        sorted(key for key, value in body.items() if key not in handled and value is not None)
    )
    if dropped:
        log.debug("%s dropped: %s", direction, "; ".join(dropped))
    return Converted(converted, dropped)


def json_text(value: Any) -> str:
    """Arguments and tool outputs as the JSON/text string both APIs expect."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def arguments_text(value: Any) -> str:
    """Function-call arguments as a JSON string (``"{}"`` when missing)."""
    if value is None or value == "":
        return "{}"
    return json_text(value)


def token_count(value: Any) -> int:
    """A token count as an int (0 for missing or junk values)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


class TokenCounts(NamedTuple):
    input: int
    output: int
    total: int
    cached: int
    reasoning: int


def token_counts(usage: dict[str, Any], input_key: str, output_key: str) -> TokenCounts:
    """The token counts of a usage object in either API, whose input and output counts are
    ``input_key`` and ``output_key`` (details under ``<key>_details``); a missing total is their
    sum."""
    input_tokens = token_count(usage.get(input_key))
    output_tokens = token_count(usage.get(output_key))
    total = usage.get("total_tokens")
    input_details = usage.get(f"{input_key}_details") or {}
    output_details = usage.get(f"{output_key}_details") or {}
    return TokenCounts(
        input=input_tokens,
        output=output_tokens,
        total=token_count(total) if total is not None else input_tokens + output_tokens,
        cached=token_count(input_details.get("cached_tokens")),
        reasoning=token_count(output_details.get("reasoning_tokens")),
    )


def strip_prefix(value: str, *prefixes: str) -> str:
    for prefix in prefixes:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def digest(value: Any) -> str:
    """A short stable hash of a JSON value (ids for completions that have none)."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
