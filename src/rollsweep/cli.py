"""Command lines: ``ng_collect_rollouts``, ``ng_run`` (NeMo Gym style) and ``rollsweep``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollsweep.config import (
    CollectSettings,
    StackConfig,
    load_stack_config,
    parse_overrides,
    validate_settings,
)
from rollsweep.errors import ServerUnavailable, UsageError
from rollsweep.paths import BUNDLED_DATA, resolve_input
from rollsweep.pipeline.identity import agent_identity
from rollsweep.protocol import servers_of_kind
from rollsweep.servers.stack import HEAD_URL_ENV


def run_guarded(action: Callable[[], int]) -> int:
    """Run a command; bad input becomes one line on stderr and exit status 2."""
    try:
        return action()
    except UsageError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return UsageError.exit_code
    except ServerUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)  # collector.Interrupted says which
        print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


def _wants_help(args: list[str]) -> bool:
    return any(arg in ("-h", "--help", "help", "+help") for arg in args)


def _settings_help(model: type, header: str) -> str:
    lines = [header, "", "keys (+key=value; dotted keys nest, values are YAML scalars):"]
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else f"default {info.get_default()!r}"
        if name == "responses_create_params":
            default = "optional"
        description = info.description or ""
        lines.append(f"  +{name:<26} {description} ({default})")
    return "\n".join(lines)


COLLECT_HELP = _settings_help(
    CollectSettings,
    "usage: ng_collect_rollouts +agent_name=NAME +input_jsonl_fpath=IN.jsonl "
    "+output_jsonl_fpath=OUT.jsonl [+key=value ...]\n\n"
    "Collect rollouts: each task row (x num_repeats) goes to the agent's /run; rows are written\n"
    "in task-major order. The agent is found at +agent_url, at a head named by +head_url or\n"
    "+head_server.host/port (rollsweep's ng_run or NeMo Gym's), at a running head on the stack\n"
    "config's port; otherwise the servers the agent needs start here and stop at the end.\n\n"
    "example: ng_collect_rollouts +agent_name=my_agent +input_jsonl_fpath=debug_tasks.jsonl \\\n"
    "           +output_jsonl_fpath=/tmp/debug_rollouts.jsonl +limit=5 +num_samples_in_parallel=1",
)

RUN_HELP = (
    "usage: ng_run [+config_paths=[a.yaml,b.yaml]] [+head_server.port=N] [+key=value ...]\n\n"
    "Start every server of a stack config (default: config/servers.yaml) on 127.0.0.1 and a head\n"
    "server that lists them, so that ng_collect_rollouts uses them. Ctrl-C or SIGTERM stops all.\n"
    "Other +keys override the config, e.g. +model_servers.policy_model.backend=simulated."
)


def _agent_at_head(head: str, agent_name: str, served: dict[str, Any]) -> str:
    agents = servers_of_kind(served, "agent")
    if agent_name not in agents:
        known = ", ".join(sorted(agents)) or "none"
        raise UsageError(
            f"the head server at {head} has no agent {agent_name!r} (its agents: {known})",
            key="+agent_name",
        )
    return agents[agent_name]


def resolve_agent(settings: CollectSettings) -> tuple[str | None, str, StackConfig | None]:
    """Where the rollouts come from: (agent URL, identity for the checkpoint, stack config).

    In order: ``+agent_url``; a head named on the command line (``+head_url`` or NeMo Gym's
    ``+head_server.host/port``), which must answer and list the agent - never a silent local
    fallback; a running head (the workflow's, or the config's port, NeMo Gym's default
    127.0.0.1:11000 included) that lists the agent; else the local stack config's agent, whose
    servers the caller starts (URL None).
    """
    from rollsweep.servers.stack import discover

    if settings.agent_url is not None:
        base = settings.agent_url.rstrip("/")
        return base, base, None
    assert settings.agent_name is not None
    given = settings.given_head_url
    if given is not None:
        served = discover(given, timeout_s=settings.connect_timeout_s)
        if served is None:
            raise ServerUnavailable(
                f"cannot read the head server's config at {given}/global_config_dict_yaml "
                "(is ng_run running there?)"
            )
        url = _agent_at_head(given, settings.agent_name, served)
        print(f"using agent {settings.agent_name} at {url} (head {given})", file=sys.stderr)
        return url, head_identity(served, settings.agent_name), None

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


def head_identity(served: dict[str, Any], agent_name: str) -> str:
    """A served agent's identity: its name and what its head says about it and its servers."""
    return json.dumps({"agent": agent_name, "config": served.get(agent_name)}, sort_keys=True)


def collect_command(args: list[str]) -> int:
    """``ng_collect_rollouts``: validate everything, find or start the servers, collect."""
    from rollsweep.collector import (
        Interrupted,
        check_reachable,
        collect,
        run_async,
        scan_tasks,
    )
    from rollsweep.servers.stack import Stack

    def on_sigterm(signum: int, _frame: object) -> None:
        raise Interrupted(signum)  # unwinds like Ctrl-C: servers stopped, checkpoint kept

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)

    settings: CollectSettings = validate_settings(CollectSettings, parse_overrides(args))
    given_input = settings.input_jsonl_fpath
    input_path = resolve_input(given_input)
    output_path = Path(settings.output_jsonl_fpath)
    if output_path.exists() and output_path.is_dir():
        raise UsageError("is a directory, expected a file path", key="+output_jsonl_fpath")
    if input_path.exists() and output_path.exists() and output_path.samefile(input_path):
        raise UsageError("must differ from +input_jsonl_fpath", key="+output_jsonl_fpath")

    scan = scan_tasks(input_path, settings.limit, settings.max_line_bytes)
    if str(input_path) != given_input:
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


def run_command(args: list[str]) -> int:
    """``ng_run``: start all servers of a config and a head server; stop all on exit."""
    import uvicorn

    from rollsweep.servers.stack import Stack, bind_socket, create_head_app

    overrides = parse_overrides(args)
    paths = overrides.pop("config_paths", None)
    if isinstance(paths, str):
        paths = [paths]
    config = load_stack_config(paths, overrides)
    try:
        head_socket = bind_socket(config.head_server.host, config.head_server.port)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {config.head_server.host}:{config.head_server.port}: "
            f"{error.strerror} (another ng_run? choose +head_server.port=N)",
            key="+head_server.port",
        ) from None
    stack = Stack(config)
    try:
        stack.start()
        port = head_socket.getsockname()[1]
        head = create_head_app(stack, f"http://{config.head_server.host}:{port}")
        for kind, servers in stack.urls().items():
            for name, url in servers.items():
                print(f"{kind:<9} {name:<24} {url}", file=sys.stderr)
        print(
            f"head      http://{config.head_server.host}:{port}  (Ctrl-C stops all)",
            file=sys.stderr,
            flush=True,
        )
        server = uvicorn.Server(uvicorn.Config(head, log_level="warning", access_log=False))
        asyncio.run(server.serve(sockets=[head_socket]))
    finally:
        stack.stop()
    return 0


def ng_collect_rollouts(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if _wants_help(args):
        print(COLLECT_HELP)
        sys.exit(0)
    sys.exit(run_guarded(lambda: collect_command(args)))


def ng_run(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if _wants_help(args):
        print(RUN_HELP)
        sys.exit(0)
    sys.exit(run_guarded(lambda: run_command(args)))


def _make_tasks(ns: argparse.Namespace) -> int:
    from rollsweep.taskgen import write_bundled_tasks

    counts = write_bundled_tasks(Path(ns.out_dir))
    for name, count in counts.items():
        print(f"{count:>5}  {Path(ns.out_dir) / name}")
    return 0


def _view(rest: list[str]) -> int:
    from rollsweep.viewer import view_main

    return view_main(rest)


def _rescore(rest: list[str]) -> int:
    from rollsweep.rescore import rescore_main

    return rescore_main(rest)


def _check_manifest(rest: list[str]) -> int:
    from rollsweep.pipeline.check import check_manifest_main

    return check_manifest_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollsweep",
        description="Collect rollouts, sweep parameters and study rewards of LLM agents.",
        epilog="The sweep pipeline itself runs with `snakemake --cores N` in the repository.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    collect = commands.add_parser(
        "collect", help="collect rollouts (same as ng_collect_rollouts)", add_help=False
    )
    collect.set_defaults(handler=lambda ns, rest: collect_command(rest))
    serve = commands.add_parser("serve", help="start the servers (same as ng_run)", add_help=False)
    serve.set_defaults(handler=lambda ns, rest: run_command(rest))
    view = commands.add_parser(
        "view", help="browse rollouts in the browser (same as ng_viewer)", add_help=False
    )
    view.set_defaults(handler=lambda ns, rest: _view(rest))
    rescore = commands.add_parser(
        "rescore", help="re-run a verifier on frozen rollouts, no model calls", add_help=False
    )
    rescore.set_defaults(handler=lambda ns, rest: _rescore(rest))
    check = commands.add_parser(
        "check-manifest",
        help="would a rerun use the same inputs and versions? (names what drifted)",
        add_help=False,
    )
    check.set_defaults(handler=lambda ns, rest: _check_manifest(rest))
    make = commands.add_parser("make-tasks", help="regenerate the bundled task files")
    make.add_argument("out_dir", nargs="?", default=str(BUNDLED_DATA))
    make.set_defaults(handler=lambda ns, rest: _make_tasks(ns))
    return parser


def rollsweep_main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if args and args[0] in ("collect", "serve") and _wants_help(args[1:]):
        print(COLLECT_HELP if args[0] == "collect" else RUN_HELP)
        sys.exit(0)
    ns, rest = parser.parse_known_args(args)
    if rest and ns.command not in ("collect", "serve", "view", "rescore", "check-manifest"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler: Callable[[Any, list[str]], int] = ns.handler
    sys.exit(run_guarded(lambda: handler(ns, rest)))
