"""The sharded engine of the two heavy nodes (`embed_images`, `compute_heatmaps`) on Dask.

Off by default (`dask: null` in conf/base/dask.yml): both nodes run in-process and nothing
here is used. With a `dask:` mapping in an environment:

- Set-up: `settings` (the dask config as one typed object), `client` (a LocalCluster on
  127.0.0.1 or an existing scheduler), `hooks` (DaskClientHook: the client of a run, closed
  after it), `engine` (what the nodes ask: the client, the store, the run's catalog).
- The work: `embedding` and `heatmaps` (the nodes' sharded paths), `keys` (what a row
  depends on), `store` (finished shards and the key index), `shards` (planning, the shard
  loop, gathering in row order), `worker` (what a worker runs), `plugin` (the encoder on
  every worker).
"""
