"""The rollout collector: stream tasks to an agent's ``/run`` and write rollout rows in order.

Design points:
- the input is validated in a first streaming pass, before any request, so bad input costs
  nothing and writes nothing;
- at most ``num_samples_in_parallel`` rollouts are in flight (a fixed pool of workers that take
  the next rollout from one shared generator), so memory does not grow with the number of
  rollouts; requests go through httpx's types to aiohttp's pool on uvloop;
- finished rows are appended to a checkpoint beside the output (not a Snakemake output, which
  would be deleted on failure); a rerun skips what the checkpoint holds;
- ``+num_workers=N`` splits the unfinished rollouts into N contiguous task ranges, one worker
  process each, each with a checkpoint part of its own; the parent merges all parts;
- the output is written at the end from the checkpoint in task-major order (line i is task
  i // num_repeats, repeat i % num_repeats), aside and renamed, so it appears whole or not at all;
- infrastructure failures (after retries) go to ``<stem>_failures.jsonl``, never into the output;
- an agent that does not answer at the start, or stops accepting connections mid-run, ends the
  run at once with its URL named; SIGINT/SIGTERM cancel what is in flight and keep the
  checkpoint whole (``Interrupted``), so a rerun resumes.

Modules, in the order a run uses them:
- ``tasks``: validate the task file, the run's task and repeat ranges, the requests, identity;
- ``checkpoint``: the progress files, their index of finished rows, the appending writer;
- ``run``: ``collect``, the whole run (one range in this process, or ``workers``' processes);
- ``workers``: the ``+num_workers`` mode, one process per contiguous task range;
- ``window``: one task range with at most N rollouts in flight;
- ``http``: the aiohttp-backed transport, POST with retries, the reachability check;
- ``results``: what an agent's answer becomes, a rollout row or a failure record;
- ``progress``: the tally of a run and its progress bar or log lines;
- ``loop``: the event loop (uvloop), signal handling, ``Interrupted``;
- ``output``: the ordered output, the failures sidecar, leftovers of killed runs;
- ``metrics``: the agent's ``/aggregate_metrics`` answer, written beside the output.
"""
