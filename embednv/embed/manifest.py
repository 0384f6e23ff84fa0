"""`_manifest.json`: exactly what produced an output, and the fingerprint that guards reruns."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone

from embednv.directories import EMBEDDINGS
from embednv.embed.config import EmbedConfig
from embednv.embed.inputs import InputPlan
from embednv.models.base import ModelRef
from embednv.runtime import library_versions


def fingerprint_fields(config: EmbedConfig, ref: ModelRef, plan: InputPlan, dtype: str) -> dict:
    """Everything that changes the output's content. Batch sizes and device count do not."""
    return {
        "inputs": [[f.uri, f.size, f.mtime_ns] for f in plan.files],
        "model": [ref.name, ref.revision],
        "id_column": config.id_column,
        "id_type": str(plan.id_type),
        "text_column": config.text_column,
        "instruction": config.instruction,
        "max_tokens": ref.max_tokens,
        "dtype": dtype,
        "rows_per_shard": config.rows_per_shard,
    }


def fingerprint(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def changed_fields(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    config: EmbedConfig, ref: ModelRef, plan: InputPlan, device: str, dtype: str, batch_tokens: int, fields: dict
) -> dict:
    return {
        "kind": EMBEDDINGS,
        "status": "running",
        "fingerprint": fingerprint(fields),
        "fingerprint_fields": fields,
        "model": {"name": ref.name, "kind": ref.kind, "path": ref.path, "revision": ref.revision},
        "dim": ref.dim,
        "dtype": dtype,
        "device": device,
        "instruction": config.instruction,
        "max_tokens": ref.max_tokens,
        "batch_tokens": batch_tokens,
        "id_column": config.id_column,
        "id_type": str(plan.id_type),
        "text_column": config.text_column,
        "rows_per_shard": config.rows_per_shard,
        "inputs": [{"uri": f.uri, "format": f.format, "rows": f.n_rows, "bytes": f.size} for f in plan.files],
        "skipped_files": [{"uri": uri, "reason": reason} for uri, reason in plan.skipped_files],
        "shards": len(plan.shards),
        "rows_in": plan.n_rows,
        "versions": library_versions(),
        "config": {k: v for k, v in asdict(config).items() if k not in ("inputs",)},
        "started_at": now(),
    }
