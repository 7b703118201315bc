"""Every name the pipeline's files and columns are known by, in one place.

Beside a rollouts file: its failures sidecar and aggregate metrics (NeMo Gym's names), the
collector's checkpoints, a rescore's default output. In an experiment's directory: one
directory per configuration (its label), the aggregate files and the plots. And the metrics a
best configuration can be chosen by.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: A configuration's rollouts, in its directory.
ROLLOUTS_FILE = "rollouts.jsonl"
#: NeMo Gym's suffix of a failures sidecar: ``<stem>_failures.jsonl``.
FAILURES_SUFFIX = "_failures.jsonl"
#: What ``analysis.write_experiment_outputs`` writes into an experiment's directory.
SUMMARY_CSV = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"
BEST_PARAMS = "best_params.json"
PER_TASK_CSV = "per_task.csv"
TASK_OUTCOMES_CSV = "task_outcomes.csv"
REWARD_DISTRIBUTION_CSV = "reward_distribution.csv"
LOW_REWARD_ROWS = "failures.jsonl"  # the seed's name for rows under the low-reward threshold
AGGREGATE_FILES = (
    SUMMARY_CSV,
    SUMMARY_PARQUET,
    BEST_PARAMS,
    PER_TASK_CSV,
    TASK_OUTCOMES_CSV,
    REWARD_DISTRIBUTION_CSV,
    LOW_REWARD_ROWS,
)
#: The folder of the plots in an experiment's directory, and the plots with their titles.
PLOTS_DIR = "plots"
REWARD_VS_PARAMS_PNG = "reward_vs_params.png"
REWARD_DISTRIBUTION_PNG = "reward_distribution.png"
PER_TASK_VARIANCE_PNG = "per_task_variance.png"
PLOT_FILES = {
    REWARD_VS_PARAMS_PNG: "reward vs parameters",
    REWARD_DISTRIBUTION_PNG: "reward distribution",
    PER_TASK_VARIANCE_PNG: "per-task variance",
}
#: An experiment's reproducibility manifest.
MANIFEST_FILE = "manifest.json"
#: An adaptive experiment's rounds: ``race/round-N.json``, and where it spent its rollouts.
RACE_DIR = "race"
ROLLOUTS_PER_ROUND_PNG = "rollouts_per_round.png"
#: Columns of ``summary.csv`` a best configuration can be chosen by (``stats.metric``).
METRICS = ("mean", "pass_at_1", "pass_at_k", "majority_at_k")


# --------------------------------------------------------------------------- beside a rollouts file


def failures_path_for(output: str | Path) -> Path:
    """The failures sidecar beside a rollouts file: ``<stem>_failures.jsonl`` (NeMo Gym's)."""
    path = Path(output)
    return path.with_name(f"{path.stem}{FAILURES_SUFFIX}")


def is_failures_file(path: str | Path) -> bool:
    return Path(path).name.endswith(FAILURES_SUFFIX)


def aggregate_metrics_path_for(output: str | Path) -> Path:
    """Where NeMo Gym's collector writes the agent's ``/aggregate_metrics`` answer."""
    path = Path(output)
    return path.with_name(f"{path.stem}_aggregate_metrics.json")


def rescored_path_for(rollouts: str | Path) -> Path:
    """A rescore's default output: ``<stem>_rescored.jsonl`` beside the rollouts."""
    path = Path(rollouts)
    return path.with_name(f"{path.stem}_rescored.jsonl")


def checkpoint_path(output: Path, config_hash: str, part: int | None = None) -> Path:
    """The collector's progress file beside the output; its name carries the configuration hash.

    ``part`` k names worker k's file of a ``+num_workers`` run (``.w<k>.ckpt.jsonl``).
    """
    middle = "" if part is None else f"w{part}."
    return output.parent / f".{output.name}.{config_hash}.{middle}ckpt.jsonl"


def checkpoint_files(output: Path, config_hash: str) -> list[Path]:
    """Every progress file of this configuration: the main one first, then workers' parts."""
    main = checkpoint_path(output, config_hash)
    parts = sorted(
        output.parent.glob(f"{glob.escape(f'.{output.name}.{config_hash}')}.w*.ckpt.jsonl"),
        key=lambda path: int(path.name.rsplit(".w", 1)[1].split(".", 1)[0]),
    )
    return [main, *parts]


# --------------------------------------------------------------------------- configurations


def config_label(params: Mapping[str, Any]) -> str:
    """A configuration's directory, Paramspace-style: ``temperature~0.5/top_p~0.9``
    (``default`` for no parameters)."""
    if not params:
        return "default"
    return "/".join(f"{name}~{_scalar_text(value)}" for name, value in params.items())


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):  # YAML's spelling, as the config file writes it
        return str(value).lower()
    if isinstance(value, str | int | float) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
