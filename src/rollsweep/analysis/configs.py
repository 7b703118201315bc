"""One configuration of a sweep: its parameters and rollouts, and its parameter columns.

A configuration is a dict of parameter values (``{"temperature": 0.5}``) with its rollouts; its
name is its label (``rollouts.names.config_label``). Every table puts the parameter columns and
``config`` in front of its rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from rollsweep.rollouts.names import config_label


@dataclass(frozen=True)
class ConfigRollouts:
    """One configuration: its parameters, its rollouts (``load_rollouts``), its failure count."""

    params: Mapping[str, Any]
    rollouts: pl.DataFrame
    n_failures: int = 0
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label if self.label is not None else config_label(self.params)


#: A ConfigRollouts, or a tuple (params, frame) or (params, frame, n_failures).
ConfigLike = ConfigRollouts | tuple[Any, ...]


def as_configs(configs: Sequence[ConfigLike]) -> list[ConfigRollouts]:
    """Accept ConfigRollouts or tuples ``(params, frame)`` / ``(params, frame, n_failures)``."""
    result = []
    for item in configs:
        if isinstance(item, ConfigRollouts):
            result.append(item)
        elif isinstance(item, tuple) and len(item) in (2, 3):
            result.append(
                ConfigRollouts(dict(item[0]), item[1], int(item[2] or 0) if len(item) == 3 else 0)
            )
        else:
            raise TypeError(
                f"expected ConfigRollouts or (params, frame[, n_failures]), got {item!r}"
            )
    return result


def param_frame(configs: Sequence[ConfigRollouts], reserved: Sequence[str]) -> pl.DataFrame:
    """One row per configuration: its parameter columns (union of keys), ``config``, order."""
    names: list[str] = []
    for cfg in configs:
        names.extend(name for name in cfg.params if name not in names)
    clash = sorted(set(names) & {*reserved, "_order"})
    if clash:
        raise ValueError(f"parameter names clash with output columns: {', '.join(clash)}")
    rows = [
        {
            **{name: _param_value(cfg.params.get(name)) for name in names},
            "config": cfg.name,
            "_order": position,
        }
        for position, cfg in enumerate(configs)
    ]
    return pl.DataFrame(rows, infer_schema_length=None, strict=False).select(
        *names, "config", "_order"
    )


def _param_value(value: Any) -> Any:
    """Scalars stay; lists and dicts become JSON text (CSV has no nested values)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.dumps(value, sort_keys=True)


def with_params(
    configs: Sequence[ConfigRollouts], parts: Sequence[pl.DataFrame], reserved: Sequence[str]
) -> pl.DataFrame:
    """Parameter columns and ``config`` in front of each configuration's rows, stacked."""
    if not configs:
        raise ValueError("no configurations")
    params = param_frame(configs, reserved)
    tagged = [
        part.with_columns(pl.lit(position, pl.Int64).alias("_order"))
        for position, part in enumerate(parts)
    ]
    body = pl.concat(tagged, how="diagonal_relaxed")
    joined = params.join(body, on="_order", how="inner", maintain_order="right")
    return joined.drop("_order")
