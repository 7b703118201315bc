"""Typed models of the data that crosses the boundaries: task rows in, rollout rows out."""

from __future__ import annotations

import math
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollsweep.errors import UsageError

Row = TypeVar("Row", bound=BaseModel)


class SamplingParams(BaseModel):
    """The typed sampling keys of a Responses request; other keys pass through untouched."""

    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    max_output_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None


class ResponsesCreateParams(SamplingParams):
    """An OpenAI Responses API request body without the model."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None


def finite_number(value: Any) -> float | None:
    """A JSON number as a float (None for booleans, non-numbers, NaN and infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def plain_int(value: Any) -> int | None:
    """A JSON integer that fits 63 bits (None otherwise, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -(2**62) < value < 2**62 else None


class AgentRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class TaskRow(BaseModel):
    """One line of an input JSONL file (NeMo Gym compatible)."""

    model_config = ConfigDict(extra="allow")

    responses_create_params: ResponsesCreateParams
    task_id: str | int | None = None
    agent_ref: AgentRef | None = None


class RolloutMetrics(BaseModel):
    """What rollsweep's collector measures of a rollout (an agent may add its own keys)."""

    model_config = ConfigDict(extra="allow")

    latency_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    input_tokens: int | None = None
    output_tokens: int | None = None
    turns: int | None = None
    tool_calls: int | None = None


class RolloutRow(BaseModel):
    """One line of a rollouts file: the task's fields plus what the rollout produced.

    NeMo Gym's rows have the first three; rollsweep's collector writes them all (its tests
    check a collected row against this model), and aggregation reads ``reward`` and the two
    indices. The strict reader checks the first row of every file with it.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    responses_create_params: dict[str, Any]
    response: dict[str, Any]
    reward: float = Field(allow_inf_nan=False)
    task_index: int | None = Field(default=None, alias="_ng_task_index", ge=0)
    rollout_index: int | None = Field(default=None, alias="_ng_rollout_index", ge=0)
    task_id: str | int | None = None
    output: str | None = None
    metrics: RolloutMetrics | None = None
    params: dict[str, Any] | None = None
    seed: int | None = None


#: Error kinds whose message already says all (the value is absent, or the check names it).
_NO_VALUE_SHOWN = ("missing", "extra_forbidden", "value_error")


def describe_validation_error(error: ValidationError) -> tuple[str | None, str]:
    """The first problem of a pydantic error as (dotted key, message)."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    # show the offending value for a field, never a whole object for a cross-field check
    if first["loc"] and "input" in first and first["type"] not in _NO_VALUE_SHOWN:
        shown = repr(first["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = f"{message}, got {shown}"
    return key, message


def validate_task(data: Any, *, path: str, line: int) -> TaskRow:
    """Validate one parsed input line, raising a UsageError that names file, line and key."""
    return _validated(TaskRow, data, path=path, line=line)


def _validated(model: type[Row], data: Any, *, path: str, line: int) -> Row:
    if not isinstance(data, dict):
        raise UsageError(
            f"expected a JSON object, got a JSON {type(data).__name__}", path=path, line=line
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        key, message = describe_validation_error(error)
        raise UsageError(message, path=path, line=line, key=key) from None


def check_rollout_row(data: Any, *, path: str, line: int) -> RolloutRow:
    """Validate one parsed rollouts line, raising a UsageError that names file, line and key."""
    return _validated(RolloutRow, data, path=path, line=line)
