"""Ray job entry point for `embednv map`: the same options, run as a job on a Ray cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/map_corpus.py /mnt/embednv/runs/r1/embeddings --out /mnt/embednv/runs/r1/map \\
        --texts /mnt/embednv/notes

Every option is the CLI's (`python jobs/map_corpus.py --help` prints them); this file only
prepares the process (jobs/_entry.py), then hands its arguments to the `map`
command of `embednv.cli`. The job's driver (on the head unless the submission reserves
resources elsewhere) plans, reads the notes and writes the map; PCA, k-means and t-SNE run as one
Ray task with one GPU on a GPU worker when the cluster has one (`--placement auto`, the default),
else in the driver on CPU. See docs/map.md, "Where the heavy phases run".
"""

from __future__ import annotations

from _entry import run_cli_command

if __name__ == "__main__":
    run_cli_command("map", __file__)
