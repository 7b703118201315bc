"""The servers of a whole workflow run: started once in ``onstart`` (rules/servers.smk)."""

from __future__ import annotations

import os
import sys

from rollsweep.config import load_stack_config
from rollsweep.pipeline.config import PipelineConfig, agents_used
from rollsweep.servers.stack import HEAD_URL_ENV, BackgroundStack, Stack


def start_workflow_servers(pipeline: PipelineConfig) -> BackgroundStack | None:
    """Start the servers of the pipeline's agents once, with a head server that jobs find via
    the ``ROLLSWEEP_HEAD_URL`` environment variable; returns the handle to stop them."""
    agents = agents_used(pipeline)
    if not agents:
        return None  # every experiment uses servers that already run
    servers = BackgroundStack(Stack(load_stack_config(pipeline.stack_config), agents=agents))
    head_url = servers.start()
    os.environ[HEAD_URL_ENV] = head_url
    print(f"rollsweep: servers for {', '.join(agents)} at {head_url}", file=sys.stderr)
    return servers
