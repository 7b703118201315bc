"""Snakemake script of rule `rescore`: all logic lives in rollsweep.rescore."""

from rollsweep.rescore import rescore

result = rescore(
    snakemake.input.rollouts,  # noqa: F821 - injected by Snakemake
    snakemake.params.verifier,  # noqa: F821
    snakemake.output.rollouts,  # noqa: F821
)
report = result.report()
with open(snakemake.output.report, "w") as handle:  # noqa: F821
    handle.write(report + "\n")
with open(snakemake.log[0], "w") as handle:  # noqa: F821
    handle.write(report + "\n")
