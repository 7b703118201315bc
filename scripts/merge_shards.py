"""Snakemake script of rule `merge_shards`: all logic lives in rollsweep.pipeline.steps."""

from rollsweep.pipeline.steps import merge_shards

rows = merge_shards(list(snakemake.input), snakemake.output[0])  # noqa: F821 - from Snakemake
with open(snakemake.log[0], "w") as handle:  # noqa: F821
    print(f"merged {len(snakemake.input)} shards, {rows} rows", file=handle)  # noqa: F821
