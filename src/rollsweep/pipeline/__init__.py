"""The sweep pipeline behind the Snakefile: its config, plans, result identities, manifests.

- ``config``: ``config/config.yaml`` as pydantic models (the schema is generated from them);
- ``plan``: configurations, shards and collection commands of an experiment;
- ``identity``: what shapes a configuration's rollouts, hashed into the collection rule's params;
- ``steps``: merging shards and aggregating an experiment (the script rules' bodies);
- ``servers``: the servers a workflow run starts once;
- ``manifest``, ``facts``, ``check``: reproducibility manifests and ``check-manifest``.
"""
