"""NeMo Gym's wire protocol, in one place: seeds, failure markers, and the head's config dict.

Both directions use it: rollsweep's collector talking to NeMo Gym's servers, and NeMo Gym's
collector talking to rollsweep's. Facts of NeMo Gym 0.4.0 that it encodes:

- request models forbid extra keys in ``responses_create_params``; a rollout's seed travels as
  ``responses_create_params.metadata.extra_body``, a JSON *string* such as ``{"seed": 7}``
  (its openai_model server sends ``metadata`` upstream as it is);
- a row with ``_ng_failure_class`` is an infrastructure failure (it goes to the failures
  sidecar), a row with ``_ng_no_persist`` is written nowhere;
- the head server answers ``GET /global_config_dict_yaml`` with the whole config as YAML text
  inside a JSON string; the server named X is at ``X.<kind>.<type>.host/port``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

FAILURE_CLASS_KEY = "_ng_failure_class"
NO_PERSIST_KEY = "_ng_no_persist"
TASK_INDEX_KEY = "_ng_task_index"
ROLLOUT_INDEX_KEY = "_ng_rollout_index"
AGENT_REF_KEY = "agent_ref"
HEAD_SERVER_KEY = "head_server"

#: The config-dict sections of each server kind, and the kind names rollsweep uses for them.
KIND_SECTIONS = {
    "agent": "responses_api_agents",
    "model": "responses_api_models",
    "resources": "resources_servers",
}


# --------------------------------------------------------------------------- seeds


def derive_seed(run_seed: int, task_index: int, rollout_index: int) -> int:
    """A rollout's seed: a stable function of (run seed, task index, repeat index)."""
    digest = hashlib.sha256(f"{run_seed}:{task_index}:{rollout_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _extra_body(metadata: Any) -> dict[str, Any]:
    raw = metadata.get("extra_body") if isinstance(metadata, dict) else None
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def request_seed(params: dict[str, Any]) -> int | None:
    """The seed a Responses request carries: top-level ``seed``, else NeMo Gym's extra_body."""
    for seed in (params.get("seed"), _extra_body(params.get("metadata")).get("seed")):
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    return None


def with_seed(params: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """``params`` with the seed where NeMo Gym's servers read it (and nowhere else).

    A top-level ``seed`` (outside NeMo Gym's request schema) is moved into
    ``metadata.extra_body``; other extra_body keys and metadata entries are kept.
    """
    out = {key: value for key, value in params.items() if key != "seed"}
    seed = params.get("seed") if seed is None else seed
    if seed is None:
        return out
    metadata = dict(out.get("metadata") or {})
    extra = {**_extra_body(metadata), "seed": seed}
    if len(extra) == 1 and type(seed) is int:
        # what json.dumps writes for it, without its encoder's per-call cost (once a rollout)
        metadata["extra_body"] = f'{{"seed": {seed}}}'
    else:
        metadata["extra_body"] = json.dumps(extra, sort_keys=True)
    out["metadata"] = metadata
    return out


def rollout_seed(task: dict[str, Any], run_seed: int = 0) -> int | None:
    """The seed an agent gives a rollout: the request's own, else one derived from its indices.

    NeMo Gym's collector sends ``_ng_task_index``/``_ng_rollout_index`` and (unless asked) no
    seed; deriving it the way rollsweep's collector does makes repeats differ and makes both
    collectors' rollouts equal row for row.
    """
    params = task.get("responses_create_params") or {}
    seed = request_seed(params) if isinstance(params, dict) else None
    if seed is not None:
        return seed
    task_index, rollout_index = task.get(TASK_INDEX_KEY), task.get(ROLLOUT_INDEX_KEY)
    if isinstance(task_index, int) and isinstance(rollout_index, int):
        return derive_seed(run_seed, task_index, rollout_index)
    return None


# --------------------------------------------------------------------------- the head's config


def encode_config_dict(config: dict[str, Any]) -> str:
    """The body of ``GET /global_config_dict_yaml``: YAML text (FastAPI JSON-encodes the str)."""
    return yaml.safe_dump(config, sort_keys=False)


def decode_config_dict(body: str) -> dict[str, Any]:
    """The config dict from a ``/global_config_dict_yaml`` answer (JSON string of YAML text)."""
    text = json.loads(body)
    if not isinstance(text, str):
        raise ValueError("expected a JSON string of YAML text")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("the config is not a mapping")
    return data


def servers_of_kind(config: dict[str, Any], kind: str) -> dict[str, str]:
    """Server name -> base URL for one kind ("agent", "model", "resources") of a config dict."""
    section = KIND_SECTIONS[kind]
    found: dict[str, str] = {}
    for name, entry in config.items():
        by_type = entry.get(section) if isinstance(entry, dict) else None
        if not isinstance(by_type, dict):
            continue
        for server in by_type.values():
            if isinstance(server, dict) and server.get("host") and server.get("port"):
                found[str(name)] = f"http://{server['host']}:{server['port']}"
                break
    return found


def server_entry(kind: str, server_type: str, url: str, **settings: Any) -> dict[str, Any]:
    """One server's entry of a config dict, NeMo Gym's shape: ``{<kind>: {<type>: {...}}}``."""
    parsed = url.split("://", 1)[-1]
    host, _, port = parsed.partition(":")
    return {KIND_SECTIONS[kind]: {server_type: {"host": host, "port": int(port), **settings}}}
