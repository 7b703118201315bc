from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from rollsweep.cli.args import parse_overrides, validate_settings
from rollsweep.config import CollectSettings, EmbeddedSettings, deep_merge, load_stack_config
from rollsweep.errors import UsageError
from rollsweep.paths import DEFAULT_STACK_CONFIG


def test_overrides_nest_dotted_keys_and_parse_yaml_scalars():
    parsed = parse_overrides(
        [
            "+agent_name=my_agent",
            "+limit=5",
            "+responses_create_params.temperature=0.5",
            "num_repeats=3",
            "+config_paths=[a.yaml,b.yaml]",
            "+resume=false",
        ]
    )
    assert parsed == {
        "agent_name": "my_agent",
        "limit": 5,
        "responses_create_params": {"temperature": 0.5},
        "num_repeats": 3,
        "config_paths": ["a.yaml", "b.yaml"],
        "resume": False,
    }


def test_override_without_equals_is_an_error():
    with pytest.raises(UsageError, match="expected \\+key=value"):
        parse_overrides(["+limit"])


def test_settings_validate_types_and_name_the_key():
    base = {"agent_name": "a", "input_jsonl_fpath": "in", "output_jsonl_fpath": "out"}
    settings = validate_settings(CollectSettings, {**base, "limit": 5})
    assert settings.limit == 5 and settings.num_repeats == 1
    with pytest.raises(UsageError) as info:
        validate_settings(
            CollectSettings, {**base, "responses_create_params": {"temperature": "hot"}}
        )
    assert "+responses_create_params.temperature" in str(info.value)
    assert "'hot'" in str(info.value)
    with pytest.raises(UsageError, match=r"\+limit"):
        validate_settings(CollectSettings, {**base, "limit": -1})
    with pytest.raises(UsageError, match=r"\+bogus: unknown key"):
        validate_settings(CollectSettings, {**base, "bogus": 1})
    with pytest.raises(UsageError, match="temperature"):
        validate_settings(
            CollectSettings, {**base, "responses_create_params": {"temperature": math.nan}}
        )


def test_settings_need_an_agent():
    with pytest.raises(UsageError, match="agent_name"):
        validate_settings(CollectSettings, {"input_jsonl_fpath": "i", "output_jsonl_fpath": "o"})


def test_default_stack_config_has_the_seed_agents():
    config = load_stack_config()
    assert {"my_agent", "test_verifier"} <= set(config.agents)
    assert config.model_servers["policy_model"].backend == "embedded"
    verifier = config.resources_servers["verifier_under_test"].verifier
    assert verifier.endswith("config/verifiers/test_verifier.py")
    assert DEFAULT_STACK_CONFIG.exists()


def test_stack_config_rejects_dangling_references(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model_servers: {m: {backend: simulated}}\n"
        "resources_servers: {r: {verifier: math}}\n"
        "agents: {a: {model_server: nope, resources_server: r}}\n"
    )
    with pytest.raises(UsageError, match="model_server 'nope'"):
        load_stack_config([path])


def test_stack_config_reports_yaml_errors_with_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("agents:\n  a: [unclosed\n")
    with pytest.raises(UsageError) as info:
        load_stack_config([path])
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value)


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"a": {"b": 9}})
    assert merged == {"a": {"b": 9, "c": 2}} and base == {"a": {"b": 1, "c": 2}}


def test_embedded_pool_fits_the_cpus_it_is_given():
    """Contexts of n_threads each fill the CPU budget, 1 to 4; n_instances, when set, wins."""
    assert [EmbeddedSettings().contexts(cpus) for cpus in (1, 2, 3, 8)] == [1, 2, 3, 4]
    assert EmbeddedSettings(n_threads=2).contexts(5) == 2
    assert EmbeddedSettings(n_threads=4).contexts(2) == 1
    assert EmbeddedSettings(n_instances=3).contexts(1) == 3
    assert EmbeddedSettings().max_cpus() == 4
    assert EmbeddedSettings(n_instances=3, n_threads=2).max_cpus() == 6


@pytest.mark.parametrize(("omp", "expected"), [("1", 1), ("", 2), ("junk", 2), ("64", 2)])
def test_usable_cpus_honour_omp_num_threads_and_affinity(omp, expected):
    """What a Snakemake job gives (OMP_NUM_THREADS = its threads) within the CPUs the process may
    use (here pinned to two by sched_setaffinity, as SLURM's binding would)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    code = (
        "import os; os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2]); "
        "from rollsweep.servers.backends.embedded import usable_cpus; print(usable_cpus())"
    )
    env = {**os.environ, "OMP_NUM_THREADS": omp}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == expected
