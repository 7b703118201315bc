"""``ng_viewer +input_jsonl_fpath=FILE [+port=N]`` and ``rollsweep view FILE_OR_DIR [FILE2]``."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rollsweep.errors import UsageError

DEFAULT_PORT = 7860
HOST = "127.0.0.1"

NG_VIEWER_HELP = f"""\
usage: ng_viewer +input_jsonl_fpath=FILE [+compare_jsonl_fpath=FILE2] [+port=N] \
[+open_browser=true]

Browse a rollouts file in the browser: rewards, filters (reward < 0.3, text), tasks with their
repeats side by side (μ, σ), each rollout's conversation and verifier details, a reward
histogram. With +compare_jsonl_fpath, compare two files paired by task and repeat.
+input_jsonl_fpath may also be a pipeline experiment directory (results/EXPERIMENT).
Serves on {HOST} only; +port=0 picks a free port (default {DEFAULT_PORT}).

keys:
  +input_jsonl_fpath     rollouts JSONL file, or an experiment directory (required)
  +compare_jsonl_fpath   a second rollouts file to compare with (optional)
  +port                  TCP port on {HOST} (default {DEFAULT_PORT}; 0 = any free port)
  +open_browser          open the page in the default browser (default false)"""


class ViewerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_jsonl_fpath: str = Field(description="rollouts JSONL file or experiment directory")
    compare_jsonl_fpath: str | None = None
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    open_browser: bool = False


def _listen(port: int) -> socket.socket:
    from rollsweep.servers.stack import bind_socket

    try:
        return bind_socket(HOST, port)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {HOST}:{port}: {error.strerror} (choose another port, or 0 for "
            "any free port)",
            key="port",
        ) from None


def serve(
    paths: list[str],
    *,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Index the sources, serve the viewer on 127.0.0.1 until Ctrl-C or SIGTERM."""
    import uvicorn

    from rollsweep.viewer.app import Workspace, create_app

    workspace = Workspace(paths)  # UsageError for a bad path, before any port is taken
    sock = _listen(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    app = create_app(workspace)
    described = ", ".join(source.label for source in workspace.sources[:4])
    if len(workspace.sources) > 4:
        described += f", … ({len(workspace.sources)} files)"
    print(f"rollsweep viewer: {url}  ({described}; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    )

    def announce() -> None:
        # wait until uvicorn serves, then tell the caller / open a browser
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        if server.started:
            if on_ready is not None:
                on_ready(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, name="viewer ready", daemon=True).start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        workspace.close()
    return 0


def _settings(args: list[str]) -> ViewerSettings:
    from rollsweep.config import parse_overrides, validate_settings

    data: dict[str, Any] = parse_overrides(args)
    for key in ("input_jsonl_fpath", "compare_jsonl_fpath"):
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            data[key] = str(data[key])
    if "input_jsonl_fpath" not in data:
        raise UsageError("missing: the rollouts file to view", key="+input_jsonl_fpath")
    return validate_settings(ViewerSettings, data)


def ng_viewer_main(argv: list[str]) -> int:
    """``ng_viewer +input_jsonl_fpath=FILE [+compare_jsonl_fpath=F2] [+port=N]``; exit status."""
    from rollsweep.cli import run_guarded

    if any(arg in ("-h", "--help", "help", "+help") for arg in argv):
        print(NG_VIEWER_HELP)
        return 0

    def action() -> int:
        settings = _settings(argv)
        paths = [settings.input_jsonl_fpath]
        if settings.compare_jsonl_fpath:
            paths.append(settings.compare_jsonl_fpath)
        return serve(paths, port=settings.port, open_browser=settings.open_browser)

    return run_guarded(action)


def ng_viewer() -> None:
    """Console script ``ng_viewer``."""
    sys.exit(ng_viewer_main(sys.argv[1:]))


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2 (a UsageError)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see rollsweep view --help)")


def view_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rollsweep view",
        description=(
            "Browse rollouts in the browser (127.0.0.1 only). One file: table, filters, tasks "
            "with repeats, conversations, histogram. Two files: compare, paired by task and "
            "repeat. A pipeline experiment directory (results/EXPERIMENT): switch between its "
            "configurations."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_EXPERIMENT_DIR")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 = any free"
    )
    parser.add_argument("--open", action="store_true", help="open the default browser")
    return parser


def view_main(argv: list[str]) -> int:
    """``rollsweep view FILE_OR_EXPERIMENT_DIR [FILE2] [--port N] [--open]``; exit status."""
    from rollsweep.cli import run_guarded

    def action() -> int:
        try:
            ns = view_parser().parse_args(argv)
        except SystemExit as done:  # --help
            return int(done.code or 0)
        if not 0 <= ns.port <= 65535:
            raise UsageError(f"must be between 0 and 65535, got {ns.port}", key="--port")
        return serve([str(Path(p)) for p in ns.paths], port=ns.port, open_browser=ns.open)

    return run_guarded(action)
