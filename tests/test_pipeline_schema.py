"""config/schema.json is generated from the pipeline config's pydantic models, and says the same."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from rollsweep.pipeline.config import PipelineConfig
from rollsweep.pipeline.schema import render

SCHEMA = REPO / "config" / "schema.json"


def test_checked_in_schema_is_the_generated_one():
    assert SCHEMA.read_text() == render(), (
        "config/schema.json is stale: python -m rollsweep.pipeline.schema > config/schema.json"
    )


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_shipped_configs_pass_both(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    PipelineConfig.model_validate(config)
    validate(copy.deepcopy(config), str(SCHEMA))


BAD = {
    "count below its minimum": (
        {"experiments": {"x": {"input": "t.jsonl", "num_repeats": 0}}},
        "['experiments']['x']['num_repeats']",
    ),
    "unknown key": (
        {"experiments": {"x": {"input": "t.jsonl", "num_repeat": 2}}},
        "'num_repeat' was unexpected",
    ),
    "grid key that is not sweepable": (
        {"experiments": {"x": {"input": "t.jsonl", "grid": {"temperature": [0.1]}}}},
        "'temperature' does not match",
    ),
    "empty grid": (
        {"experiments": {"x": {"input": "t.jsonl", "grid": {"agent_name": []}}}},
        "['experiments']['x']['grid']['agent_name']",
    ),
    "unknown metric": (
        {"stats": {"metric": "median"}, "experiments": {"x": {"input": "t.jsonl"}}},
        "['stats']['metric']",
    ),
    "no experiments": ({"experiments": {}}, "['experiments']"),
    "missing input": ({"experiments": {"x": {}}}, "'input' is a required property"),
    "malformed head URL": (
        {"head_url": "localhost:11000", "experiments": {"x": {"input": "t.jsonl"}}},
        "['head_url']",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_schema_and_models_reject_the_same_configs(case):
    """Snakemake's validate() names the offending key, and the models refuse the config too."""
    config, named = BAD[case]
    with pytest.raises(WorkflowError) as info:
        validate(copy.deepcopy(config), str(SCHEMA))
    assert named in str(info.value)
    with pytest.raises(ValueError):
        PipelineConfig.model_validate(config)


def test_schema_documents_each_key():
    """Every experiment key has a description (the schema doubles as the key reference)."""
    schema = json.loads(SCHEMA.read_text())
    for model in ("ExperimentConfig", "StatsSettings"):
        for key, spec in schema["$defs"][model]["properties"].items():
            assert spec.get("description"), f"{model}.{key} has no description"


@pytest.mark.parametrize("value", ["true", "false"])
def test_command_line_booleans_pass(value, tmp_path):
    """`--config start_servers=false` arrives as a string; the models read it as a boolean and
    the schema checks what they made of it (it used to refuse the string)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", f"start_servers={value}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is not of type 'boolean'" not in result.stderr
