"""The section of docs/benchmarks.md for `make bench-map-update` (bench/map_update.py's document).

Apart from report.py to keep each module short; run_all.py reads docs/benchmarks-map-update.json
like the other files measured by their own target.
"""

from __future__ import annotations

from bench.common import md_table

MAP_UPDATE_FILE = "benchmarks-map-update.json"
MAP_UPDATE_COMMAND = "make bench-map-update"  # part of make bench
WITHIN = 0.10  # issue 23: sampled+placed within 10% of the full fit


def map_update_section(job: dict) -> str:
    title = "## Map update and sample-then-place: `embednv map --update`, `--sample-above`"
    if job.get("status") != "ok":
        return f"{title}\n\n**Not measured** ({job.get('error')}): run `{job.get('command', MAP_UPDATE_COMMAND)}`."
    doc = job["result"]
    m = doc["machine"]
    parts = [
        title,
        "",
        f"`{doc['command']}` (`{MAP_UPDATE_COMMAND}`; commit {doc['git_commit']}, {doc['generated_at']}, load "
        f"{m['load_average_1m_at_start']} at the start, {doc['load_average_1m_at_end']} at the end, on "
        f"{m['logical_cores']} cores, {doc['seconds'] / 60:.0f} minutes). Single-scale t-SNE on every side.",
    ]
    for run in doc.get("runs", []):  # a document put together from separate runs says so, run by run
        parts[-1] += (
            f" {run['part']}: commit {run['git_commit']}, {run['generated_at']}, load {run['load_average_1m_at_start']} "
            f"to {run['load_average_1m_at_end']}, {run['seconds'] / 60:.0f} minutes{'; ' + run['note'] if run.get('note') else ''}."
        )
    update = doc.get("update")
    if update is None:
        parts += ["", "**Map update not measured**: MTSamples was not found at `../shared/data/`."]
    else:
        rows = [
            [
                "full refit of every note",
                f"{update['refit_seconds']:.1f} (`embednv map`)",
                "",
                f"{update['refit_knn_placed']:.3f}",
                f"{update['refit_map_nmi']:.3f}",
            ]
        ]
        for method, r in update["methods"].items():
            rows.append(
                [
                    f"`map --update`, {method}",
                    f"{r['update_seconds']:.1f} (placement {r['place_seconds']:.2f})",
                    f"{r['same_cluster_placed']:.3f} (fitted notes: {r['same_cluster_fitted']:.3f})",
                    f"{r['knn_placed']:.3f}",
                    f"{r['map_nmi']:.3f}",
                ]
            )
        parts += [
            "",
            f"**Map update**, MTSamples: {update['notes']:,} notes (deduplicated by text), embedded once with the "
            f"bundled MiniLM; {update['placed']:,} held out, the rest mapped ({update['fit_seconds']:.0f} s), then "
            "all of them placed by `map --update` or mapped again from scratch. Same-cluster rate: each update "
            "cluster is mapped to the refit cluster holding most of its fitted notes; the share of placed notes "
            "that land in their refit cluster (for the fitted notes, the same figure says how much two k-means "
            "runs agree at all). kNN preservation@10 of the placed notes: of each one's 10 nearest notes in 50-d, "
            "the share that are among its 10 nearest on the map. Map NMI: k-means on the 2-D map (k = the "
            "number of specialties) against `medical_specialty`.",
            "",
            md_table(
                ["Run", "Seconds", "Same cluster as the refit", "kNN preservation@10 (placed notes)", "Map NMI"],
                rows,
            ),
        ]
    for key, what in (
        (
            "sampled_corpus",
            "sample-corpus notes (MiniLM over each note's first {tokens} tokens), against their specialty",
        ),
        ("sampled_large", "synthetic 384-d notes, 30 planted clusters"),
        ("sampled_mtsamples", "MTSamples (MiniLM), against `medical_specialty`"),
    ):
        pair = doc.get(key)
        if pair is None:
            continue
        what = what.format(tokens=pair.get("tokens"))
        full, sampled = pair["full"], pair["sampled"]
        rows, verdicts = [], []
        for metric, label in (
            ("knn_all", "kNN preservation@10, all notes"),
            ("knn_placed", "kNN preservation@10, placed notes"),
            ("map_nmi", "map NMI against the labels"),
        ):
            a, b = full[metric], sampled[metric]
            ratio = b / a if a else float("nan")
            verdicts.append(ratio >= 1 - WITHIN)
            rows.append([label, f"{a:.3f}", f"{b:.3f}", f"{ratio:.2f}"])
        rows.append(
            [
                "t-SNE phase, s (sampled: fit + place + refine)",
                f"{full['tsne_seconds']:.0f}",
                f"{sampled['tsne_seconds']:.0f}",
                "",
            ]
        )
        rows.append(["`embednv map` end to end, s", f"{full['seconds']:.0f}", f"{sampled['seconds']:.0f}", ""])
        verdict = "met" if all(verdicts) else "**MISSED**"
        parts += [
            "",
            f"**Sample, then place**, {pair['n']:,} {what}: t-SNE on a stratified sample of {pair['sample_size']:,} "
            f"({pair['sampled_manifest']['method']} placement of the other {pair['sampled_manifest']['placed']:,}"
            + (
                f", then {refined['iterations']} t-SNE iterations over every note at perplexity {refined['perplexity']:g}"
                if (refined := pair["sampled_manifest"].get("refined"))
                else ""
            )
            + ") "
            f"vs every note in the fit. Goal: each figure within {WITHIN:.0%} of the full fit: {verdict}."
            + _seeds_note(pair),
            "",
            md_table(["", "full fit", "sampled + placed", "ratio"], rows),
        ]
    return "\n".join(parts)


def _seeds_note(pair: dict) -> str:
    """How many t-SNE seeds each figure averages, and each seed's own ratios (older documents: one seed)."""
    per_seed = pair.get("per_seed") or []
    if len(per_seed) < 2:
        return ""
    ratios = []
    for metric, label in (("knn_all", "kNN all"), ("map_nmi", "map NMI")):
        values = [r["sampled"][metric] / r["full"][metric] for r in per_seed if r["full"][metric]]
        ratios.append(f"{label} " + ", ".join(f"{v:.2f}" for v in values))
    return (
        f" Each figure is the mean over {len(per_seed)} t-SNE seeds a side (each map's NMI itself the mean of "
        f"{pair.get('kmeans_runs', 1)} k-means runs); each seed's ratio: {'; '.join(ratios)}."
    )
