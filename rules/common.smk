# Load and validate the config (one clear line and exit 2 on a bad one), and name the targets.
import json
import sys

from rollsweep.errors import UsageError
from rollsweep.pipeline.config import load_pipeline_config
from rollsweep.pipeline.plan import ExperimentPlan
from rollsweep.rollouts.names import (
    AGGREGATE_FILES,
    MANIFEST_FILE,
    PLOT_FILES,
    PLOTS_DIR,
    RACE_DIR,
    ROLLOUTS_FILE,
    ROLLOUTS_PER_ROUND_PNG,
)

CONFIG_SOURCE = ", ".join(str(path) for path in workflow.configfiles) or "config"
try:
    PIPELINE = load_pipeline_config(config, source=CONFIG_SOURCE)
except UsageError as error:
    print(f"error: {error.render()}", file=sys.stderr)
    sys.exit(2)
# `--config start_servers=false` arrives as a string, which the models read as the boolean it
# means; the schema (generated from the same models) then checks what they made of it
validate(PIPELINE.model_dump(mode="json", exclude_none=True), "../config/schema.json")

RESULTS = PIPELINE.results_dir
EXPERIMENTS = list(PIPELINE.experiments)
# each experiment's configurations and shards, computed once (on first use) for all its jobs
PLANS = {name: ExperimentPlan(PIPELINE, name) for name in EXPERIMENTS}


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    config=r"default|[^/~]+~[^/]+(/[^/~]+~[^/]+)*",
    shard=r"r\d+-c\d+",
    round=r"[1-9]\d*",


def shard_files(wildcards):
    plan = PLANS[wildcards.experiment]
    if plan.experiment.adaptive is None:
        return plan.shard_files(wildcards.config)
    return plan.shard_files(
        wildcards.config, rounds_raced(wildcards.experiment, wildcards.config)
    )


def race_round_outcome(experiment, number):
    """The outcome of an adaptive experiment's round (Snakemake runs that round's checkpoint,
    and what it needs, before asking again)."""
    path = checkpoints.race_round.get(experiment=experiment, round=str(number)).output[
        0
    ]
    with open(path) as handle:
        return json.load(handle)


def race_rounds(experiment):
    """An adaptive experiment's round outcomes in order, up to the one that ended the race;
    lazy, so a caller that stops early waits for no later round."""
    number = 1
    while True:
        outcome = race_round_outcome(experiment, number)
        yield outcome
        if outcome["stop"]:
            return
        number += 1


def rounds_raced(experiment, label):
    """How many rounds a configuration of an adaptive experiment took part in."""
    for outcome in race_rounds(experiment):
        if outcome["stop"] or label not in outcome["alive"]:
            return outcome["round"]


def race_round_inputs(wildcards):
    """A round's inputs: the round before's outcome, and the shards of rounds 1..N of each
    configuration still in the race (named by its position in the grid)."""
    plan = PLANS[wildcards.experiment]
    number = int(wildcards.round)
    labels = list(plan.configurations)
    inputs = {"previous": []}
    if number > 1:
        before = race_round_outcome(wildcards.experiment, number - 1)
        if before["stop"]:
            raise ValueError(
                f"{wildcards.experiment}: the race stopped at round {number - 1}"
            )
        inputs["previous"] = [plan.race_round_file(number - 1)]
        labels = before["alive"]
    positions = {label: index for index, label in enumerate(plan.configurations)}
    for label in labels:
        inputs[f"config{positions[label]}"] = plan.shard_files(label, rounds=number)
    return inputs


def race_files(experiment):
    """The outcome files of an adaptive experiment's rounds, up to the one that ended the race
    ([] for an experiment that is not adaptive)."""
    plan = PLANS[experiment]
    if plan.experiment.adaptive is None:
        return []
    return [
        plan.race_round_file(outcome["round"]) for outcome in race_rounds(experiment)
    ]


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
        if PIPELINE.experiments[experiment].adaptive is not None:
            targets.append(
                f"{RESULTS}/{experiment}/{PLOTS_DIR}/{ROLLOUTS_PER_ROUND_PNG}"
            )
        if PIPELINE.experiments[experiment].rescore_with:
            targets += [
                f"{RESULTS}/{experiment}/rescored/{label}/report.txt"
                for label in PLANS[experiment].configurations
            ]
    return targets
