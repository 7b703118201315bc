# The servers a run needs start once for the whole workflow (not once per job) and stop at its
# end, failed or not; they also die with this process (PR_SET_PDEATHSIG). Collection jobs find
# them through the head server URL in the environment, or start their own when it is unreachable
# (cluster nodes), e.g. with a served model endpoint from the stack config.
from rollsweep.pipeline import start_workflow_servers

WORKFLOW_SERVERS = []


onstart:
    if PIPELINE.start_servers:
        WORKFLOW_SERVERS.append(start_workflow_servers(PIPELINE))


onsuccess:
    for servers in WORKFLOW_SERVERS:
        servers.stop()


onerror:
    for servers in WORKFLOW_SERVERS:
        servers.stop()
