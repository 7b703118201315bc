"""Snakemake script of rule `plot_race`: all logic lives in rollsweep.pipeline.steps."""

from rollsweep.pipeline.config import ExperimentConfig
from rollsweep.pipeline.steps import plot_race

plot_race(
    snakemake.wildcards.experiment,  # noqa: F821 - injected by Snakemake
    ExperimentConfig.model_validate(snakemake.params.experiment),  # noqa: F821
    list(snakemake.input),  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
with open(snakemake.log[0], "w") as handle:  # noqa: F821
    print(f"plotted {len(snakemake.input)} rounds", file=handle)  # noqa: F821
