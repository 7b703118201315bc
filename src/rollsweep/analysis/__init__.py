"""Aggregation of an experiment's rollouts: statistics, tables, the best pick, plots.

- ``read``: a configuration's rollouts as columns (through ``rollsweep.rollouts.reader``) and
  its failure count;
- ``configs``: a configuration (parameters, rollouts) and the parameter columns of tables;
- ``statistics``: jq's mean, pass@k, the task-clustered bootstrap and standard error, the
  paired sign-flip test;
- ``tables``: summary, per task, task outcomes, reward distribution;
- ``picks``: the best configuration and whether the data separate it from the next;
- ``outputs``: every file of an experiment in one call (``write_experiment_outputs``);
- ``plots``: the PNG plots from those files.
"""
