"""Snakemake script of rule `aggregate`: all logic lives in rollsweep.pipeline.steps."""

from pathlib import Path

from rollsweep.analysis.settings import StatsSettings
from rollsweep.pipeline.config import ExperimentConfig
from rollsweep.pipeline.steps import aggregate_experiment

params = snakemake.params  # noqa: F821 - injected by Snakemake
output = snakemake.output  # noqa: F821
aggregate_experiment(
    snakemake.wildcards.experiment,  # noqa: F821
    ExperimentConfig.model_validate(params.experiment),
    StatsSettings.model_validate(params.stats),
    params.seed,
    list(snakemake.input.rollouts),  # noqa: F821
    str(Path(output.summary_csv).parent),
    plots_dir=str(Path(output.reward_vs_params).parent),
    race_paths=list(snakemake.input.race),  # noqa: F821
)
with open(snakemake.log[0], "w") as handle:  # noqa: F821
    print(f"aggregated {len(snakemake.input.rollouts)} configurations", file=handle)  # noqa: F821
