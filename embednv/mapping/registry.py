"""Which maps were made from an embeddings directory: its manifest's `"maps"` list.

`embednv forget EMB --ids F` removes notes from the embeddings and from every map made from
them; it finds those maps here. `embednv map` adds its `--out` (an absolute path or URI) when it
finishes, once, through `OutputDir` (an atomic write). An embeddings directory without a
manifest, or one this process may not write (a read-only bucket), is left as it is, with a
warning: `forget` then cannot find this map, and must be pointed at it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from embednv.directories import MANIFEST, OutputDir
from embednv.io import is_uri

log = logging.getLogger(__name__)

MAPS_KEY = "maps"


def map_uri(out_dir: str | Path) -> str:
    text = str(out_dir)
    return text if is_uri(text) else os.path.abspath(os.path.expanduser(text))


def register_map(emb_dir: str | Path, out_dir: str | Path) -> None:
    """Add `out_dir` to `emb_dir`'s manifest's maps (no duplicates)."""
    directory = OutputDir(str(emb_dir))
    uri = map_uri(out_dir)
    try:
        manifest = directory.manifest()
        if manifest is None:
            log.warning("%s has no %s: `embednv forget` will not find this map there", emb_dir, MANIFEST)
            return
        maps = list(manifest.get(MAPS_KEY) or [])
        if uri in maps:
            return
        manifest[MAPS_KEY] = [*maps, uri]
        import json

        directory.write_text(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    except OSError as error:
        log.warning(
            "could not record this map in %s/%s (%s): `embednv forget` will not find it", emb_dir, MANIFEST, error
        )


def maps_of(emb_dir: str | Path) -> list[str]:
    """The maps recorded in `emb_dir`'s manifest, in the order they were first made."""
    manifest = OutputDir(str(emb_dir)).manifest() or {}
    return list(manifest.get(MAPS_KEY) or [])
