# rollsweep: sweep grids and repeats into rollout collections, then statistics, picks and plots.
#
#   snakemake --cores 2                                  # the four seed experiments
#   snakemake --cores 2 --configfile config/smoke.yaml   # the same shape, small
#   snakemake --report report.html                       # HTML report with the plots
#   snakemake --profile profiles/slurm                   # on a SLURM cluster
from snakemake.utils import min_version, validate

min_version("9.0")


# The default config, unless --configfile names another (Snakemake would merge the two).
if not workflow.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/servers.smk"
include: "rules/collect.smk"
include: "rules/race.smk"
include: "rules/aggregate.smk"
include: "rules/manifest.smk"
include: "rules/rescore.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onsuccess:
    # the verdict of each experiment, and what more data would settle a tie
    from rollsweep.pipeline.steps import verdict_lines

    for line in verdict_lines(PIPELINE):
        print(line)
