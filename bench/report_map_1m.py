"""The section of docs/benchmarks.md for `make bench-map-1m` (bench/bench_map_1m.py's document).

Apart from report.py to keep each module short; run_all.py reads the document from
docs/benchmarks-map-1m.json like the other files measured by their own target.
"""

from __future__ import annotations

from bench.common import md_table

MAP_1M_FILE = "benchmarks-map-1m.json"
MAP_1M_COMMAND = "make bench-map-1m"  # not part of make bench: it holds the machine for long
GOAL_N = 1_000_000  # issue 23: `embednv map --texts` on 1M notes in under 30 minutes


def map_1m_section(job: dict) -> str:
    """The driver's memory for note text at two sizes, and `embednv map --texts` phase by phase."""
    title = "## The map at scale: `embednv map --texts`, driver memory and a million notes"
    if job.get("status") != "ok":
        return f"{title}\n\n**Not measured** ({job.get('error')}): run `{job.get('command', MAP_1M_COMMAND)}`."
    doc = job["result"]
    m = doc["machine"]
    parts = [
        title,
        "",
        f"`{doc['command']}` (`{MAP_1M_COMMAND}`; commit {doc['git_commit']}, {doc['generated_at']}, load "
        f"{m['load_average_1m_at_start']} at the start, {m.get('load_average_1m_at_end')} at the end, on "
        f"{m['logical_cores']} cores, {doc['seconds'] / 60:.0f} minutes)."
        + (f" Conditions: {doc['conditions']}." if doc.get("conditions") else ""),
    ]
    ok = [r for r in doc["notes"] if "error" not in r]
    if ok:
        growth = doc.get("notes_peak_growth")
        verdict = (
            "one size only"
            if growth is None
            else f"peak {growth:+.1%} from {ok[0]['n']:,} to {ok[-1]['n']:,} notes: "
            + ("met" if abs(growth) <= doc["flat_within"] else "**MISSED**")
            + f" (goal within {doc['flat_within']:.0%})"
        )
        rows = [
            [f"{r['n']:,}", f"{r['seconds']:,.0f}", f"{r['rss_before_mb']:,.0f}", f"{r['peak_rss_mb']:,.0f}",
             ", ".join(f"{p:,}" for p in r.get("peaks_mb", [r["peak_rss_mb"]]))]
            for r in ok
        ]  # fmt: skip
        runs = ok[0].get("runs", 1)
        parts += [
            "",
            "**Driver memory with `--texts`** (`note_columns.read_note_columns`: the texts and labels streamed and "
            "joined to the map's ids batch by batch, every cluster's terms counted, then c-TF-IDF; sample-corpus "
            f"notes, 50 clusters, each size in a fresh process, {runs} run(s) per size alternating, medians): "
            f"{verdict}. What still grows with n is the map's own per-note arrays, not the text: its ids and "
            "the permutation that sorts them (12 bytes a note for integer ids), each note's cluster and "
            "known-label code (4 bytes each), a flag a note while a file is read: about 21 bytes a note.",
            "",
            md_table(["Notes", "Seconds", "RSS before (MiB)", "Peak RSS (MiB)", "Peak RSS of each run (MiB)"], rows),
        ]
        again = doc.get("notes_measured")  # the notes phase measured again apart (`--skip-map`), replacing it
        if again:
            remark = f" {again['remark']}" if again.get("remark") else ""
            parts += ["", f"Driver memory from `{again['command']}` (commit {again['git_commit']}, "
                      f"{again['generated_at']}, load {again['load']}).{remark}"]  # fmt: skip
    run = doc.get("map")
    if run is None:
        parts += ["", f"The end-to-end map was not run (`--skip-map`); run `{MAP_1M_COMMAND}`."]
    elif "error" in run:
        parts += ["", f"`embednv map` at {run['n']:,} notes **failed**: {run['error']}."]
    else:
        met = "met" if run["seconds"] <= doc["goal_s"] else "**MISSED**"
        if run["n"] < GOAL_N:  # the goal is for a million notes: a smaller run is a measurement, not a verdict
            met = f"not judged at {run['n']:,} notes (the goal is for {GOAL_N:,})"
        rows = [[name, f"{p['seconds']:,.1f}", p.get("peak_rss_mb")] for name, p in run["phases"].items()]
        parts += [
            "",
            f"**`embednv map --texts` at {run['n']:,} x {run['dim']}-d** (synthetic planted clusters, sample-corpus "
            f"texts, placement {run['placement']}, backend {run['backend']}): {run['seconds'] / 60:.1f} minutes end "
            f"to end, goal {doc['goal_s'] / 60:.0f}: {met}; process peak {run['process_peak_rss_mb']:,} MiB; map.html "
            f"draws {run.get('html_points_drawn') or 0:,} points. Phases from the map's own manifest (`timings_s`, "
            "`peak_rss_mb`: each phase's peak, the kernel's high-water mark reset as it starts):",
            "",
            md_table(["Phase", "Seconds", "Peak RSS (MiB)"], rows),
        ]
    return "\n".join(parts)
