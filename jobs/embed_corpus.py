"""Ray job entry point for `embednv embed`: the same options, run on a running Ray cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/embed_corpus.py s3://bucket/notes/ --out s3://bucket/runs/r1/embeddings \\
        --model /mnt/embednv/models/NV-Embed-v2

Every option is the CLI's (`python jobs/embed_corpus.py --help` prints them); this file only
prepares the process, then hands its arguments to the `embed` command of `embednv.cli`.

Start-up (joining the cluster, running this repository's copy) is in jobs/_entry.py.

See cluster/README.md for submitting to KubeRay or a `ray up` cluster.
"""

from __future__ import annotations

from _entry import run_cli_command

if __name__ == "__main__":
    run_cli_command("embed", __file__)
