"""The two kinds of directory embednv writes, embeddings and maps, and how to tell them apart.

Both keep a `_manifest.json`, so a command pointed at the other's directory (`embed --out MAP`,
`map EMB --out EMB`) would replace that manifest and leave a directory that neither reads. Each
command asks `kind_of` first and refuses the other's, `--overwrite` included.
"""

from __future__ import annotations

import re

EMBEDDINGS, MAP = "embeddings", "map"

MANIFEST = "_manifest.json"
# Embeddings: shards, then the errors and the marker written last.
SUCCESS, ERRORS, ERROR_PARTS = "_SUCCESS", "_errors.parquet", "_errors"
INDEX_DIR = "_index"  # `embednv index`: the nearest-neighbour index, beside the shards (embednv/index/store.py)
SHARD_NAME = re.compile(r"^part-(\d{5,})\.parquet$")
# A map: one row per note, the clusters, and the pages people open.
MAP_FILE, CLUSTERS_FILE, CLUSTERS_MD = "map.parquet", "clusters.parquet", "clusters.md"
PNG_FILE, HTML_FILE, METRICS_FILE = "map.png", "map.html", "metrics.json"
MAP_FILES = (MAP_FILE, CLUSTERS_FILE, CLUSTERS_MD, PNG_FILE, HTML_FILE, METRICS_FILE)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def kind_of(names: list[str], manifest: dict | None) -> str | None:
    """EMBEDDINGS, MAP or None (empty, or only other people's files) from a directory's listing and manifest.

    The manifest says so itself (`"kind"`); manifests written before it did are told apart by
    their keys, and a directory without one by its files.
    """
    if manifest is not None:
        if manifest.get("kind") in (EMBEDDINGS, MAP):
            return manifest["kind"]
        return EMBEDDINGS if "fingerprint" in manifest else MAP
    if any(SHARD_NAME.match(n) for n in names) or {SUCCESS, ERRORS, ERROR_PARTS} & set(names):
        return EMBEDDINGS
    if set(MAP_FILES) & set(names):
        return MAP
    return None
