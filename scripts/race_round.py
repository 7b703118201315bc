"""Snakemake script of checkpoint `race_round`: all logic lives in rollsweep.pipeline.steps."""

from rollsweep.analysis.settings import StatsSettings
from rollsweep.pipeline.config import ExperimentConfig
from rollsweep.pipeline.steps import race_round

params = snakemake.params  # noqa: F821 - injected by Snakemake
inputs = snakemake.input  # noqa: F821
named = set(inputs.keys())  # (`in` on Snakemake's input list looks at the files, not names)
shard_files = {
    label: list(inputs[f"config{position}"])
    for position, label in enumerate(params.labels)
    if f"config{position}" in named
}
outcome = race_round(
    int(snakemake.wildcards.round),  # noqa: F821
    shard_files,
    inputs.previous[0] if inputs.previous else None,
    ExperimentConfig.model_validate(params.experiment),
    StatsSettings.model_validate(params.stats),
    params.seed,
    snakemake.output[0],  # noqa: F821
)
with open(snakemake.log[0], "w") as handle:  # noqa: F821
    print(
        f"round {outcome['round']}: leader {outcome['leader']}, dropped {outcome['dropped']}, "
        f"left {outcome['alive']}, stop: {outcome['reason']}",
        file=handle,
    )
