"""Reading a command line: NeMo Gym's ``+key=value`` overrides and argparse with one-line errors.

The one owner of both; every command of this package parses its argv here.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rollsweep.errors import UsageError
from rollsweep.rollouts.rows import describe_validation_error

HELP_WORDS = ("-h", "--help", "help", "+help")


def wants_help(args: list[str]) -> bool:
    return any(arg in HELP_WORDS for arg in args)


def parse_scalar(text: str) -> Any:
    """A command-line value as a YAML scalar or flow collection (``0.5``, ``true``, ``[a,b]``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Hydra-style ``+a.b=value`` arguments into a nested dict (the ``+`` is optional)."""
    result: dict[str, Any] = {}
    for arg in args:
        text = arg[1:] if arg.startswith("+") else arg
        if text.startswith("+"):  # '++key=value' (Hydra's force-add) means the same here
            text = text[1:]
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UsageError(f"expected +key=value, got {arg!r}")
        parts = key.split(".")
        node = result
        for part in parts[:-1]:
            existing = node.setdefault(part, {})
            if not isinstance(existing, dict):
                raise UsageError("is given both as a value and as a group", key=f"+{key}")
            node = existing
        node[parts[-1]] = parse_scalar(raw)
    return result


def validate_settings(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate overrides into a model; errors name the ``+key``."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        key, message = describe_validation_error(error)
        if message == "Extra inputs are not permitted":
            known = ", ".join(f"+{name}" for name in model.model_fields)
            message = f"unknown key (known: {known})"
        raise UsageError(message, key=f"+{key}" if key else None) from None


def settings_help(model: type[BaseModel], header: str) -> str:
    """``--help`` of a ``+key=value`` command: the header, then each key of its settings."""
    lines = [header, "", "keys (+key=value; dotted keys nest, values are YAML scalars):"]
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else f"default {info.get_default()!r}"
        if name == "responses_create_params":
            default = "optional"
        description = info.description or ""
        lines.append(f"  +{name:<26} {description} ({default})")
    return "\n".join(lines)


class UsageParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2 (a UsageError)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")
