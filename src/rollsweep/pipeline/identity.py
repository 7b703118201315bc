"""The identity of a configuration's rollouts: everything that shapes them, as one document.

The collection rule carries its hash as a Snakemake param, and Snakemake reruns a job whose
params changed; so editing what makes the rollouts (the agent's model backend and its settings,
the model file, the agent's steps, the verifier or the verifier file's code, the task file, the
sampling parameters, the seed, the collector settings that change rows) reruns exactly the
configurations it touches, and nothing else. The manifest records the same documents.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from rollsweep.config import ModelServerConfig, StackConfig, load_stack_config
from rollsweep.paths import default_model_path
from rollsweep.pipeline.config import PipelineConfig, served_by
from rollsweep.pipeline.facts import file_digest

#: Model-server settings that change where or how patiently a model is asked, not what it says.
_NOT_IDENTITY = {"timeout_s", "api_key_env"}


def file_sha256(path: str | Path) -> str | None:
    """A file's sha256 (computed once per path, size and mtime in a process); None if missing."""
    return file_digest(path).get("sha256")


def model_identity(model: ModelServerConfig) -> dict[str, Any]:
    """The active backend and its settings; the embedded model's GGUF by content."""
    settings = getattr(model, model.backend)
    described = {
        key: value
        for key, value in (settings.model_dump() if settings is not None else {}).items()
        if key not in _NOT_IDENTITY
    }
    identity: dict[str, Any] = {"backend": model.backend, "settings": described}
    if model.backend == "embedded":
        path = model.embedded.model_path or default_model_path()
        identity["gguf_sha256"] = file_sha256(path)
    return identity


def verifier_identity(verifier: str) -> dict[str, Any]:
    """A bundled verifier by name, a verifier file by its code."""
    if verifier.endswith(".py"):
        return {"file": Path(verifier).name, "sha256": file_sha256(verifier)}
    return {"name": verifier}


def agent_identity(stack: StackConfig, agent_name: str) -> dict[str, Any]:
    """What a local agent's rollouts depend on in the stack config."""
    agent = stack.agents[agent_name]
    return {
        "agent": agent_name,
        "max_steps": agent.max_steps,
        "model": model_identity(stack.model_servers[agent.model_server]),
        "verifier": verifier_identity(stack.resources_servers[agent.resources_server].verifier),
    }


@functools.lru_cache(maxsize=64)
def _stack(paths: tuple[str, ...]) -> StackConfig:
    return load_stack_config(list(paths))


def configuration_identity(
    pipeline: PipelineConfig, experiment_name: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Everything that shapes one configuration's rollouts (see the module docstring)."""
    experiment = pipeline.experiments[experiment_name]
    agent_name = str(values.get("agent_name", experiment.agent_name))
    external = served_by(pipeline, experiment)
    if external:
        agent: dict[str, Any] = {"agent": agent_name, **external}
    else:
        agent = agent_identity(_stack(tuple(pipeline.stack_config)), agent_name)
    params = experiment.responses_create_params.model_dump(exclude_none=True)
    params |= {key.split(".", 1)[1]: value for key, value in values.items() if "." in key}
    return {
        "agent": agent,
        "tasks_sha256": file_sha256(experiment.input),
        "limit": experiment.limit,
        "responses_create_params": params,
        "seed": pipeline.seed if experiment.seed is None else experiment.seed,
        # a shard's repeats: the rounds of an adaptive experiment set where each shard starts
        "num_repeats": experiment.total_repeats,
        **({"round_repeats": experiment.adaptive.round_repeats} if experiment.adaptive else {}),
    }


def identity_hash(document: dict[str, Any]) -> str:
    """A short stable hash of an identity document."""
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
