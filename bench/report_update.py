"""The section of docs/benchmarks.md for `make bench-update` (bench/update.py's document)."""

from __future__ import annotations

from bench.common import md_table

UPDATE_FILE = "benchmarks-update.json"  # MiniLM on whole notes, at a few thousand notes
UPDATE_100K_FILE = "benchmarks-update-100k.json"  # MiniLM at the 100k notes, each cut to its first words
UPDATE_PROBE_FILE = "benchmarks-update-probe.json"  # the probe encoder at the 100k
UPDATE_COMMAND = "make bench-update"  # part of make bench
MODELS = {
    "minilm": "MiniLM",
    "probe": "the probe encoder (`bench/probe_encoder.py`: MiniLM's tokenizer and every step of a real run but "
    "the model's arithmetic, so the full run is as cheap as a run can be and the update's share the largest)",
}


def update_section(job: dict, probe: dict | None = None, at_100k: dict | None = None) -> str:
    """Notes embedded by `embed --update`, its time beside the full run's, and the bytes it rewrote (issue 22).

    `at_100k`, where measured, is the issue's run (MiniLM, 100k notes cut short) and comes first; `job` is
    MiniLM on whole notes at a size that fits here; `probe` the pipeline alone at 100k notes.
    """
    parts = ["## Updating embeddings: `embed --update`"]
    if at_100k is not None and at_100k.get("status") == "ok":
        parts.append(_one_run(at_100k, "### 100k notes, MiniLM"))
    parts.append(_one_run(job, "### Whole notes, MiniLM"))
    if probe is not None and probe.get("status") == "ok":
        model_run = job.get("result") if job.get("status") == "ok" else None
        parts.append(_one_run(probe, "### At 100k notes, the pipeline alone (probe encoder)", model_run))
    return "\n\n".join(parts)


def _one_run(job: dict, title: str, model_run: dict | None = None) -> str:
    if job.get("status") != "ok":
        return f"{title}\n\n**Not measured** ({job.get('error')}): run `{job.get('command', UPDATE_COMMAND)}`."
    d = job["result"]
    r, m = d["record"], d["machine"]
    exact = d["embedded"] == d["expected_to_embed"]
    met = d["share_beyond_startup"] <= d["goal_share"]
    return "\n".join(
        [
            title,
            "",
            f"`{d['command']}` (commit {d['git_commit']}, {d['generated_at']}, load {m['load_average_1m_at_start']} at the "
            f"start, {m['load_average_1m_at_end']} at the end, on {m['logical_cores']} cores): a {d['n']:,}-note sample "
            f"corpus{_cut_note(d)} embedded once with {MODELS[d.get('model', 'minilm')]} (`--executor local`), "
            f"then an export with {d['new']:,} new notes (1%) and "
            f"{d['changed']:,} changed (0.1%), then the same update again (nothing to embed: the fixed cost)."
            + _size_note(d),
            "",
            md_table(
                ["", "Wall s", "Share of the full run"],
                [
                    ["full run", f"{d['full_seconds']:,.1f}", "1.000"],
                    [
                        f"update ({d['embedded']:,} notes embedded)",
                        f"{d['update_seconds']:,.1f}",
                        f"{d['share_of_full']:.4f}",
                    ],
                    [
                        "fixed: planning (the no-op update)",
                        f"{d['planning_seconds']:,.2f}",
                        f"{d['planning_seconds'] / d['full_seconds']:.4f}",
                    ],
                    [
                        "fixed: model load",
                        f"{d['model_load_seconds']:,.2f}",
                        f"{d['model_load_seconds'] / d['full_seconds']:.4f}",
                    ],
                    [
                        "update beyond the fixed start-up",
                        f"{max(d['update_seconds'] - d['startup_seconds'], 0):,.1f}",
                        f"{d['share_beyond_startup']:.4f}",
                    ],
                ],
            ),
            "",
            f"- Notes embedded: {d['embedded']:,} of {d['expected_to_embed']:,} expected: {'exact' if exact else '**WRONG**'}.",
            _goal_line(d, met, model_run),
            f"- Bytes: {r['bytes_rewritten'] / 1e6:,.1f} MB rewritten in {r['shards_rewritten']} shards holding changed "
            f"notes, {r['bytes_written'] / 1e6:,.2f} MB of new shards ({r['new_shards']}), of "
            f"{d['directory_bytes'] / 1e6:,.1f} MB of shards: changed notes spread evenly touch every shard, and each "
            "touched shard is rewritten whole (one atomic file replacement keeps plain readers at one row per note).",
        ]
    )


def _cut_note(d: dict) -> str:
    """How notes were cut short (`--note-words`), and what that does to the update's share."""
    if not d.get("note_words"):
        return ""
    return (
        f", each note cut to its first {d['note_words']} words ({d['full_tokens'] / d['n']:,.0f} tokens a note on "
        "average: shorter notes leave the model less of both runs and the pipeline as much, so the update's share "
        "is, if anything, larger than with whole notes),"
    )


def _size_note(d: dict) -> str:
    """What whole notes at the issue's 100k would cost here, from this run's own rate."""
    if d["n"] >= 100_000 or d.get("model", "minilm") != "minilm" or d.get("note_words"):
        return ""
    rate = d["n"] / d["full_seconds"]
    return (
        f" At this run's {rate:,.1f} notes/s (MiniLM on {d['machine']['logical_cores']} shared cores), the issue's "
        f"100k whole notes would take {100_000 / rate / 3600:,.1f} h for the full run alone."
    )


def _goal_line(d: dict, met: bool, model_run: dict | None) -> str:
    """The goal's verdict for a model's run; for the probe's, its share against a model's full run at this n."""
    if d.get("model", "minilm") == "minilm":
        return f"- Goal (share beyond the start-up ≤ {d['goal_share']:.0%}): {'met' if met else '**MISSED**'}."
    line = (
        f"- Goal: not judged on this run. With no model time in the full run, its share ({d['share_beyond_startup']:.1%} "
        "beyond the start-up) is the update's pipeline against the pipeline alone; vector bytes are the probe's "
        "one-hot vectors, which compress to almost nothing."
    )
    if model_run:
        rate = model_run["n"] / model_run["full_seconds"]
        full_s = d["n"] / rate + d["full_seconds"]  # a model's full run at this n: its measured rate, plus the pipeline
        update_s = max(d["update_seconds"] - d["startup_seconds"], 0) + d["embedded"] / rate
        line += (
            f" Estimated against MiniLM at its rate measured above ({rate:,.1f} notes/s): a full run of {d['n']:,} notes "
            f"about {full_s / 3600:,.1f} h, this update about {update_s:,.0f} s, {update_s / full_s:.2%} of it "
            "(an estimate from two measurements, not a run)."
        )
    return line
