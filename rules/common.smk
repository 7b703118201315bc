# Load and validate the config (one clear line and exit 2 on a bad one), and name the targets.
import sys

from rollsweep.errors import UsageError
from rollsweep.pipeline.config import load_pipeline_config
from rollsweep.pipeline.plan import ExperimentPlan
from rollsweep.rollouts.names import (
    AGGREGATE_FILES,
    MANIFEST_FILE,
    PLOT_FILES,
    PLOTS_DIR,
    ROLLOUTS_FILE,
)

CONFIG_SOURCE = ", ".join(str(path) for path in workflow.configfiles) or "config"
try:
    PIPELINE = load_pipeline_config(config, source=CONFIG_SOURCE)
except UsageError as error:
    print(f"error: {error.render()}", file=sys.stderr)
    sys.exit(2)
# `--config start_servers=false` arrives as a string, which the models read as the boolean it
# means; the schema (generated from the same models) then checks what they made of it
validate(PIPELINE.model_dump(mode="json"), "../config/schema.json")

RESULTS = PIPELINE.results_dir
EXPERIMENTS = list(PIPELINE.experiments)
# each experiment's configurations and shards, computed once (on first use) for all its jobs
PLANS = {name: ExperimentPlan(PIPELINE, name) for name in EXPERIMENTS}


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    config=r"default|[^/~]+~[^/]+(/[^/~]+~[^/]+)*",
    shard=r"r\d+-c\d+",


def shard_files(wildcards):
    return PLANS[wildcards.experiment].shard_files(wildcards.config)


def rescore_verifier_file(experiment):
    """The verifier file as an input (so editing it reruns the rescore), [] for a bundled name."""
    spec = PIPELINE.experiments[experiment].rescore_with
    return [spec] if spec and spec.endswith(".py") else []


def all_targets():
    targets = [
        f"{RESULTS}/{experiment}/{name}"
        for experiment in EXPERIMENTS
        for name in [
            *AGGREGATE_FILES,
            *(f"{PLOTS_DIR}/{plot}" for plot in PLOT_FILES),
            MANIFEST_FILE,
        ]
    ]
    for experiment in EXPERIMENTS:
        if PIPELINE.experiments[experiment].rescore_with:
            targets += [
                f"{RESULTS}/{experiment}/rescored/{label}/report.txt"
                for label in PLANS[experiment].configurations
            ]
    return targets
