"""The ``+key=value`` commands' settings and ``--help`` texts.

Kept apart from the commands so that ``--help`` loads neither the collector nor uvicorn,
FastAPI or polars.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rollsweep.cli.args import settings_help
from rollsweep.config import CollectSettings
from rollsweep.viewer import DEFAULT_PORT, HOST

COLLECT_HELP = settings_help(
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


class ViewerSettings(BaseModel):
    """``ng_viewer``'s keys."""

    model_config = ConfigDict(extra="forbid")

    input_jsonl_fpath: str = Field(description="rollouts JSONL file, or an experiment directory")
    compare_jsonl_fpath: str | None = Field(
        default=None, description="a second rollouts file to compare with"
    )
    port: int = Field(
        default=DEFAULT_PORT, ge=0, le=65535, description=f"TCP port on {HOST}; 0 = any free port"
    )
    open_browser: bool = Field(default=False, description="open the page in the default browser")


NG_VIEWER_HELP = settings_help(
    ViewerSettings,
    "usage: ng_viewer +input_jsonl_fpath=FILE [+compare_jsonl_fpath=FILE2] [+port=N] "
    "[+open_browser=true]\n\n"
    "Browse a rollouts file in the browser: rewards, filters (reward < 0.3, text), tasks with\n"
    "their repeats side by side (μ, σ), each rollout's conversation and verifier details, a\n"
    "reward histogram. With +compare_jsonl_fpath, compare two files paired by task and repeat.\n"
    "+input_jsonl_fpath may also be a pipeline experiment directory (results/EXPERIMENT).\n"
    f"Serves on {HOST} only.",
)

#: command module -> its --help
HELP = {"collect": COLLECT_HELP, "serve": RUN_HELP, "ng_viewer": NG_VIEWER_HELP}
