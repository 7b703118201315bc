"""Reproducibility manifests: what made a result, and would a rerun use the same?

``results/{experiment}/manifest.json`` records, beside an experiment's outputs: the resolved
config (the experiment, its seeds and statistics settings, the stack of servers its agents use),
the hashes of its input files (tasks, baseline, user verifier files), the model (backend and
name; for the embedded model, the GGUF file's hash), the versions of the packages that shape the
numbers, the git state of the workflow and the executor that ran it.

``rollsweep check-manifest RESULTS_DIR`` (rollsweep.pipeline.check) rebuilds the same record
from the current files and environment, with the invocation recorded in the manifest (config
files, ``--config`` overrides, working directory), and names every difference: exit 0 when a
rerun would use the same inputs and versions, 1 with one line per drift otherwise, 2 for bad
input.

Only names of environment variables are ever recorded (``api_key_env``), never their values.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rollsweep.config import StackConfig, load_stack_config
from rollsweep.errors import UsageError
from rollsweep.pipeline.config import ExperimentConfig, load_pipeline_config, served_by
from rollsweep.pipeline.facts import file_digest, git_state, model_record, package_versions
from rollsweep.pipeline.identity import configuration_identity
from rollsweep.pipeline.plan import configurations
from rollsweep.rollouts.jsonl import atomic_output
from rollsweep.servers.stack import discover

FORMAT = 1


def _agents(experiment: ExperimentConfig) -> list[str]:
    return sorted({experiment.agent_name, *map(str, experiment.grid.get("agent_name", []))})


def _inputs(
    chosen: ExperimentConfig, verifiers: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """The experiment's input files (tasks, baseline, verifier files) with their hashes."""
    roles = {chosen.input: "tasks"}
    if chosen.baseline:
        roles[chosen.baseline] = "baseline"
    if chosen.rescore_with and chosen.rescore_with.endswith(".py"):
        roles[chosen.rescore_with] = "rescore verifier"
    inputs = {
        path: {"role": role, "path": str(Path(path).resolve())} for path, role in roles.items()
    }
    for name, verifier in verifiers:
        if verifier.endswith(".py"):
            inputs[verifier] = {"role": f"verifier of {name}", "path": verifier}
    for entry in inputs.values():
        entry.update(file_digest(entry["path"]))
    return inputs


def _stack_used(stack: StackConfig, agents: list[str]) -> StackConfig:
    """The part of a stack that these agents use (their models and resources servers)."""
    models = sorted({stack.agents[name].model_server for name in agents})
    resources = sorted({stack.agents[name].resources_server for name in agents})
    return stack.model_copy(
        update={
            "agents": {name: stack.agents[name] for name in agents},
            "model_servers": {name: stack.model_servers[name] for name in models},
            "resources_servers": {name: stack.resources_servers[name] for name in resources},
        }
    )


def build_manifest(
    config: dict[str, Any],
    experiment: str,
    *,
    config_files: list[str],
    config_overrides: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
    workflow_dir: str | Path | None = None,
    executor: str | None = None,
) -> dict[str, Any]:
    """The manifest of one experiment of a pipeline config (Snakemake's merged config dict).

    Relative paths in the config are read relative to ``workdir`` (default: the current one).
    """
    workdir = Path(workdir or os.getcwd()).resolve()
    workflow_dir = Path(workflow_dir).resolve() if workflow_dir is not None else None
    with contextlib.chdir(workdir):
        pipeline = load_pipeline_config(config, source=", ".join(config_files) or "config")
        if experiment not in pipeline.experiments:
            raise UsageError(f"experiment {experiment!r} is not in the config")
        chosen = pipeline.experiments[experiment]
        external = served_by(pipeline, chosen)
        stack = _stack_used(
            load_stack_config(pipeline.stack_config), [] if external else _agents(chosen)
        )
        verifiers = [(name, server.verifier) for name, server in stack.resources_servers.items()]
        seed = pipeline.seed if chosen.seed is None else chosen.seed
        manifest = {
            "format": FORMAT,
            "experiment": experiment,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "executor": executor,
            "invocation": {
                "workdir": str(workdir),
                "config_files": [str(Path(path).resolve()) for path in config_files],
                "config_overrides": dict(config_overrides or {}),
            },
            "config": {
                "seed": pipeline.seed,
                "stats": pipeline.stats.model_dump(),
                "stack_config": list(pipeline.stack_config),
                "experiment": chosen.model_dump(mode="json"),
            },
            "seeds": {"collection": seed, "bootstrap": pipeline.seed},
            "inputs": _inputs(chosen, verifiers),
            "stack": stack.model_dump(include={"agents", "model_servers", "resources_servers"}),
            "models": {name: model_record(model) for name, model in stack.model_servers.items()},
            "servers": served_identity(external, _agents(chosen)) if external else None,
            "identity": {
                point.label: configuration_identity(pipeline, experiment, point.values)
                for point in configurations(experiment, chosen)
            },
            "packages": package_versions(),
            "python": platform.python_version(),
            "git": git_state(workflow_dir) if workflow_dir is not None else None,
        }
    if workflow_dir is not None:
        manifest["invocation"]["workflow_dir"] = str(workflow_dir)
    return manifest


#: Config keys whose values are secrets: never written into a manifest.
_SECRET_WORDS = ("api_key", "token", "secret", "password")


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "[redacted]"
            if any(word in str(key).lower() for word in _SECRET_WORDS)
            else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def served_identity(external: dict[str, str], agents: list[str]) -> dict[str, Any]:
    """What a running head (or agent) reports about the servers an experiment used: the
    head's URL and its config-dict entries for the agents and the servers they name, secrets
    redacted. An agent given by URL reports nothing but its URL."""
    if "agent_url" in external:
        return {"agent_url": external["agent_url"]}
    head = external["head_url"].rstrip("/")
    served = discover(head, timeout_s=10.0)
    if served is None:
        return {"head_url": head, "reachable": False}
    entries = {name: served.get(name) for name in agents}
    named = set()
    for entry in entries.values():
        for server in (entry or {}).values():
            for settings in (server or {}).values() if isinstance(server, dict) else []:
                for ref in (settings or {}).values() if isinstance(settings, dict) else []:
                    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                        named.add(ref["name"])
    return {
        "head_url": head,
        "agents": _redacted(entries),
        "servers": _redacted({name: served.get(name) for name in sorted(named)}),
    }


def executor_name(workflow: Any) -> str | None:
    """The executor plugin of a Snakemake run (``local``, ``slurm``, ...), from its workflow."""
    plugin = getattr(workflow, "executor_plugin", None)
    return getattr(plugin, "name", None) if plugin is not None else None


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a manifest."""
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
    with atomic_output(path) as handle:
        handle.write(text.encode())


def write_experiment_manifest(
    path: str | Path,
    config: dict[str, Any],
    experiment: str,
    *,
    config_files: Iterable[str | Path],
    config_overrides: dict[str, Any] | None,
    workflow_dir: str | Path,
    executor: str | None,
) -> dict[str, Any]:
    """What the Snakemake rule ``manifest`` calls (in the run's working directory)."""
    manifest = build_manifest(
        json.loads(json.dumps(dict(config), default=str)),
        experiment,
        config_files=[str(Path(p).resolve()) for p in config_files],
        config_overrides=json.loads(json.dumps(dict(config_overrides or {}), default=str)),
        workflow_dir=workflow_dir,
        executor=executor,
    )
    write_manifest(path, manifest)
    return manifest


def write_workflow_manifest(
    workflow: Any, config: dict[str, Any], experiment: str, output: str, log: str
) -> None:
    """The body of the Snakemake rule ``manifest``: the run's config files, ``--config``
    overrides, workflow directory and executor come from Snakemake's ``workflow`` object."""
    manifest = write_experiment_manifest(
        output,
        config,
        experiment,
        config_files=workflow.configfiles,
        config_overrides=dict(workflow.config_settings.config or {}),
        workflow_dir=workflow.basedir,
        executor=executor_name(workflow),
    )
    with open(log, "w") as handle:
        print(f"manifest written ({manifest['executor']} executor)", file=handle)
