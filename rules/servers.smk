# The run's lifecycle. The servers a run needs start once for the whole workflow (not once per
# job) and stop at its end, failed or not; they also die with this process (PR_SET_PDEATHSIG).
# Collection jobs find them through the head server URL in the environment, or start their own
# when it is unreachable (cluster nodes), e.g. with a served model endpoint from the stack config.
# A run killed with -9 leaves Snakemake's locks behind; the next run removes them when their
# owner is gone (rollsweep.locks), so `--rerun-incomplete` resumes without `--unlock`.
import sys

from rollsweep.locks import clear_stale_locks, record_owner, release_owner
from rollsweep.pipeline.servers import start_workflow_servers

WORKFLOW_SERVERS = []

if workflow.is_main_process:
    stale_owner = clear_stale_locks()
    if stale_owner is not None:
        print(
            f"rollsweep: removed the locks of an interrupted run (process {stale_owner} is gone)",
            file=sys.stderr,
        )


def finish_run():
    for servers in WORKFLOW_SERVERS:
        if servers is not None:
            servers.stop()
    release_owner()


onstart:
    record_owner()
    if PIPELINE.start_servers:
        WORKFLOW_SERVERS.append(start_workflow_servers(PIPELINE))


onsuccess:
    finish_run()


onerror:
    finish_run()
