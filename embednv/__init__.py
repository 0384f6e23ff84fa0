"""embednv: clinical notes to embeddings (Ray Data + NV-Embed-v2) and a map of their cohorts.

`from embednv import Embedder` is the Python API (see `embednv.api`). It is imported on first
use, so that `import embednv` (and `embednv --help`) stays instant.
"""

__version__ = "0.1.0"
__all__ = ["Embedder", "__version__"]


def __getattr__(name: str):
    if name == "Embedder":
        from embednv.api import Embedder

        return Embedder
    raise AttributeError(f"module 'embednv' has no attribute {name!r}")
