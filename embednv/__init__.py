"""embednv: clinical notes to embeddings (Ray Data + NV-Embed-v2) and a map of their cohorts.

The Python API, each imported on first use so that `import embednv` (and `embednv --help`)
stays instant:
- `Embedder(model=...).encode(texts)`: texts to unit vectors in this process (`embednv.api`);
- `run_embed(EmbedConfig(inputs=..., out=...))`: the `embednv embed` job itself, on Ray
  (`embednv.pipeline`), returning its `RunSummary`.
"""

__version__ = "0.1.0"
__all__ = ["EmbedConfig", "Embedder", "__version__", "run_embed"]

_LAZY = {"Embedder": "embednv.api", "EmbedConfig": "embednv.config", "run_embed": "embednv.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embednv' has no attribute {name!r}")
