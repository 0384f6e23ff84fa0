"""embednv: clinical notes to embeddings (Ray Data + NV-Embed-v2) and a map of their cohorts.

The Python API, each imported on first use so that `import embednv` (and `embednv --help`)
stays instant:
- `Embedder(model=...).encode(texts)`: texts to unit vectors in this process (`embednv.api`);
- `run_embed(EmbedConfig(inputs=..., out=...))`: the `embednv embed` job itself, on Ray
  (`embednv.embed.run`), returning its `RunSummary`;
- `run_map(MapConfig(emb_dir=..., out_dir=...))`: the `embednv map` command (`embednv.mapping.run`).
"""

__version__ = "0.1.0"
__all__ = ["EmbedConfig", "Embedder", "MapConfig", "__version__", "run_embed", "run_map"]

_LAZY = {
    "Embedder": "embednv.api",
    "EmbedConfig": "embednv.embed.config",
    "run_embed": "embednv.embed.run",
    "MapConfig": "embednv.mapping.run",
    "run_map": "embednv.mapping.run",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embednv' has no attribute {name!r}")
