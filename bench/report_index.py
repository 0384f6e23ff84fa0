"""The section of docs/benchmarks.md for `make bench-index` (bench/cohort_index.py's document).

Apart from report.py and report_separate.py to keep each module short; run_all.py reads the
document from docs/benchmarks-index.json like the other files measured by their own target.
"""

from __future__ import annotations

from bench.common import md_table

INDEX_FILE = "benchmarks-index.json"
INDEX_COMMAND = "make bench-index"  # part of make bench


def index_section(job: dict) -> str:
    """Build, size, latency and recall@50 of each index kind, against the goals of issue 23."""
    title = "## Cohort index: `embednv index`"
    if job.get("status") != "ok":
        return f"{title}\n\n**Not measured** ({job.get('error')}): run `{job.get('command', INDEX_COMMAND)}`."
    doc = job["result"]
    rows, verdicts = [], []
    for r in doc["runs"]:
        met = r["recall_at_50"] >= doc["goal_recall"] and r["median_ms"] < doc["goal_median_ms"]
        verdicts.append(f"{r['kind']} {'met' if met else '**MISSED**'}")
        phases = r["phase_seconds"]
        rows.append(
            [
                f"{r['kind']} (`{r['factory']}`)",
                f"{r['nprobe']} of {r['nlist']:,}",
                f"{r['build_seconds']:.0f} ({phases['train']:.0f} / {phases['add']:.0f} / {phases['calibrate']:.0f} / "
                f"{phases['write']:.0f})",
                f"{r['peak_rss_mib']:,.0f}",
                f"{(r['index_bytes'] + r['ids_bytes']) / 2**20:,.0f} ({r['size_vs_vectors']:.2f}x)",
                f"{r['median_ms']:.1f} / {r['p95_ms']:.1f}",
                f"{r['recall_at_50']:.3f} ({r['recall_at_50_corpus_queries']:.3f} / {r['recall_at_50_fresh_queries']:.3f})",
                f"{r['calibration_recall']:.3f}",
                " / ".join(f"{s:.1f}" for s in r["cli_near_s"]),
            ]
        )
    m = doc["machine"]
    end_load = f" at the start, {doc['load_average_1m_at_end']} at the end," if "load_average_1m_at_end" in doc else ""
    return "\n".join(
        [
            title,
            "",
            f"`{doc['command']}` (`{INDEX_COMMAND}`; commit {doc['git_commit']}, {doc['generated_at']}, load "
            f"{m['load_average_1m_at_start']}{end_load} on {m['logical_cores']} cores, {doc['seconds'] / 60:.0f} minutes): "
            f"{doc['n']:,} x {doc['dim']}-d unit vectors in {doc['clusters']} planted clusters (`bench_map.write_synthetic`, "
            f"{doc['shard_bytes'] / 2**20:,.0f} MiB of shards, {doc['vectors_bytes'] / 2**20:,.0f} MiB as float32), "
            f"{doc['queries']} queries: half corpus notes (as `--near`, each left out of its own answer), half new "
            f"vectors from the same clusters (as `--query`). Recall@{doc['k']} is against the exact top {doc['k']}. "
            f"Goal: recall@{doc['k']} ≥ {doc['goal_recall']} and median latency < {doc['goal_median_ms']:.0f} ms: "
            f"{', '.join(verdicts)}.",
            "",
            md_table(
                [
                    "Kind",
                    "nprobe of lists",
                    "Build s (train / add / calibrate / write)",
                    "Build peak RSS MiB",
                    "Index + ids MiB (vs vectors)",
                    "Query ms median / p95",
                    "Recall@50 (corpus / new queries)",
                    "Build's own calibration",
                    "`cohort --near` s, new process",
                ],
                rows,
            ),
            "",
            f"Query latency is `IndexSearch.nearest` after the index is opened once (memory-mapped; the page cache "
            f"holds it), which is what `cohort` runs per query. A `cohort --near` command also starts Python, imports "
            f"pyarrow and FAISS, reads every shard's footer (the staleness check) and finds the note's vector: the last "
            f"column. The scan it replaces, `cohort --near ID --exact`, took {doc['cli_near_exact_s'][0]:.1f} s. "
            "docs/scaling.md projects these figures to 10M x 4,096-d.",
        ]
    )
