"""Embedding models: a small registry, a tokenizer side (CPU) and an encoder side (GPU/CPU)."""
