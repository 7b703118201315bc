"""``ng_collect_rollouts`` (and ``rollsweep collect``): validate, find or start the servers,
collect."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rollsweep.cli.args import parse_overrides, validate_settings
from rollsweep.collector.http import check_reachable
from rollsweep.collector.loop import Interrupted, run_async
from rollsweep.collector.run import collect
from rollsweep.collector.tasks import scan_tasks
from rollsweep.config import CollectSettings, StackConfig, load_stack_config
from rollsweep.errors import ServerUnavailable, UsageError
from rollsweep.paths import resolve_input
from rollsweep.pipeline.identity import agent_identity
from rollsweep.protocol import servers_of_kind
from rollsweep.servers.stack import HEAD_URL_ENV, Stack, discover


def _agent_at_head(head: str, agent_name: str, served: dict[str, Any]) -> str:
    agents = servers_of_kind(served, "agent")
    if agent_name not in agents:
        known = ", ".join(sorted(agents)) or "none"
        raise UsageError(
            f"the head server at {head} has no agent {agent_name!r} (its agents: {known})",
            key="+agent_name",
        )
    return agents[agent_name]


def head_identity(served: dict[str, Any], agent_name: str) -> str:
    """A served agent's identity: its name and what its head says about it and its servers."""
    return json.dumps({"agent": agent_name, "config": served.get(agent_name)}, sort_keys=True)


def _agent_at_given_head(settings: CollectSettings, given: str) -> tuple[str, str]:
    served = discover(given, timeout_s=settings.connect_timeout_s)
    if served is None:
        raise ServerUnavailable(
            f"cannot read the head server's config at {given}/global_config_dict_yaml "
            "(is ng_run running there?)"
        )
    assert settings.agent_name is not None
    url = _agent_at_head(given, settings.agent_name, served)
    print(f"using agent {settings.agent_name} at {url} (head {given})", file=sys.stderr)
    return url, head_identity(served, settings.agent_name)


def resolve_agent(settings: CollectSettings) -> tuple[str | None, str, StackConfig | None]:
    """Where the rollouts come from: (agent URL, identity for the checkpoint, stack config).

    In order: ``+agent_url``; a head named on the command line (``+head_url`` or NeMo Gym's
    ``+head_server.host/port``), which must answer and list the agent - never a silent local
    fallback; a running head (the workflow's, or the config's port, NeMo Gym's default
    127.0.0.1:11000 included) that lists the agent; else the local stack config's agent, whose
    servers the caller starts (URL None).
    """
    if settings.agent_url is not None:
        base = settings.agent_url.rstrip("/")
        return base, base, None
    assert settings.agent_name is not None
    if settings.given_head_url is not None:
        return (*_agent_at_given_head(settings, settings.given_head_url), None)

    config = load_stack_config(settings.config_paths)
    head = os.environ.get(HEAD_URL_ENV) or (
        f"http://{config.head_server.host}:{config.head_server.port}"
    )
    served = discover(head)
    agents = servers_of_kind(served, "agent") if served else {}
    if settings.agent_name in agents:
        print(f"using the servers of ng_run at {head}", file=sys.stderr)
        return agents[settings.agent_name], head_identity(served or {}, settings.agent_name), None
    if settings.agent_name not in config.agents:
        known = ", ".join(sorted(config.agents))
        running = f"; the head at {head} has: {', '.join(sorted(agents))}" if served else ""
        raise UsageError(
            f"unknown agent {settings.agent_name!r} (known: {known}{running})", key="+agent_name"
        )
    identity = json.dumps(agent_identity(config, settings.agent_name), sort_keys=True)
    return None, identity, config


def _input_path(settings: CollectSettings) -> Path:
    """The task file to read (bundled files by name too); the output must be another file."""
    input_path = resolve_input(settings.input_jsonl_fpath)
    output_path = Path(settings.output_jsonl_fpath)
    if output_path.exists() and output_path.is_dir():
        raise UsageError("is a directory, expected a file path", key="+output_jsonl_fpath")
    if input_path.exists() and output_path.exists() and output_path.samefile(input_path):
        raise UsageError("must differ from +input_jsonl_fpath", key="+output_jsonl_fpath")
    return input_path


def _on_sigterm(signum: int, _frame: object) -> None:
    raise Interrupted(signum)  # unwinds like Ctrl-C: servers stopped, checkpoint kept


def main(argv: list[str]) -> int:
    """Validate everything, find or start the servers, collect; 1 over +max_failure_rate."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    settings: CollectSettings = validate_settings(CollectSettings, parse_overrides(argv))
    input_path = _input_path(settings)
    scan = scan_tasks(input_path, settings.limit, settings.max_line_bytes)
    if str(input_path) != settings.input_jsonl_fpath:
        print(f"reading bundled {input_path}", file=sys.stderr)
    agent_url, target, stack_config = resolve_agent(settings)
    if agent_url is not None:
        run_async(check_reachable(agent_url))
        result = collect(settings, scan, agent_url, target=target, agent_name=settings.agent_name)
    else:
        assert stack_config is not None and settings.agent_name is not None
        with Stack(stack_config, agents=[settings.agent_name]) as stack:
            url = stack.agent_urls()[settings.agent_name]
            result = collect(settings, scan, url, target=target, agent_name=settings.agent_name)
    print(result.summary_line(), file=sys.stderr)
    total = result.n_rows + result.n_failures
    if total and result.n_failures / total > settings.max_failure_rate:
        print(
            f"error: {result.n_failures} of {total} rollouts failed, over +max_failure_rate="
            f"{settings.max_failure_rate}; rerun to retry only those",
            file=sys.stderr,
        )
        return 1
    return 0
