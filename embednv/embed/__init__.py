"""The corpus job: files -> checked rows -> token windows -> vectors -> Parquet shards.

Each step is a plain function or class on pyarrow tables (plan, read, tokenize, batching,
chunking, worker, assemble, output, manifest); `run` is the policy (plan, resume, summary) and
`ray_job` the only one of them that imports Ray (the map's is `mapping/ray_stage`).
"""
