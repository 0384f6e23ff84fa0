"""embednv: clinical notes to embeddings (Ray Data + NV-Embed-v2) and a map of their cohorts."""

__version__ = "0.1.0"
