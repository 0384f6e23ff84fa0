"""Sections of docs/benchmarks.md for the documents measured apart from `make bench`.

The GPU acceptance run (a lent GPU), the full-size checkpoint (`make check-fullsize`), and the
crash and fan-out figures (`make bench-ops`) each come from their own JSON file, labelled with
its own command and commit. They live apart from `report.py` to keep each module short; their
commands are defined here, once, because the report tells readers how to reproduce them and
`run_all.py` records the same commands in benchmarks.json.
"""

from __future__ import annotations

from bench.common import md_table

GPU_FILE = "benchmarks-gpu.json"
# One call on a lent GPU machine, from the repository root, after `make device-files` (.gpu/: MTSamples, the
# official tokenizer files, the padded model; .device-wheels/: openTSNE), with carry [".gpu", ".device-wheels"];
# then copy $OUT/gpu_acceptance.json to docs/benchmarks-gpu.json and $OUT/map.png to docs/benchmarks-gpu-map.png.
GPU_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device-wheels/*-cp312-*.whl && "
    "PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 470 python3 bench/nvembed_device.py --mtsamples .gpu/mtsamples.parquet "
    "--tokenizer .gpu/tokenizer --padded-model .gpu/nvembed_padded.py --figures $OUT --json $OUT/gpu_acceptance.json"
)
# Why the GPU section is still pending; the generator writes it (run_all.py --render), never a hand edit.
GPU_PENDING = (
    "no GPU device has been lent to a session since the acceptance run was written (issue 24: the device tool "
    "answered not_drawn); it needs one call of at most 8 minutes"
)
FULLSIZE_COMMAND = "make check-fullsize"
OPERATIONS_COMMAND = "make bench-ops"  # writes both the crash and the fan-out file
MAP_COMMAND = "make bench-map"  # writes the default-map and the map.html file; part of make bench
OPERATIONS_TITLES = {
    "crash": "Lost work on a crash",
    "fanout": "How many GPUs one driver feeds",
    "map_default": "The default map, end to end",
    "map_html": "map.html: size and load time",
}


def gpu_section(job: dict) -> str:
    """The GPU acceptance run, or how to make it: no CPU run can stand in for it."""
    out = [
        "## GPU: NV-Embed-v2 acceptance",
        "",
        "`bench/nvembed_device.py` runs the shipped code on one lent GPU in one call (no Ray; openTSNE carried as a "
        "wheel): a random full-size NV-Embed-v2 checkpoint in the official layout with NV-Embed-v2's own tokenizer "
        "files; every MTSamples note through `run_embed` with the local executor (load time, tokens/s and MFU on the "
        "model stage, peak memory); the packed forward beside the padded one it replaced; an out-of-memory split forced "
        "by a memory cap; bf16 against fp32; the map (PCA, k-means, t-SNE; PCA on cupy too) on 100k 4096-d vectors. "
        "Each section says ok, partial, skipped or failed, with why. From the repository root: `make device-files`, "
        'then one device run with carry `[".gpu", ".device-wheels"]` and '
        f"`{GPU_COMMAND}`; copy the JSON to `docs/{GPU_FILE}` and run `python bench/run_all.py --render`.",
        "",
    ]
    out += [
        "**The cuML map path is unmeasured.** `embednv map --placement gpu-worker` (cuML PCA, k-means and t-SNE on a "
        "GPU worker) is tested on CPU only, against a real Ray head that advertises a GPU and a fake cuML "
        "(`tests/fake_cuml/`): no device was lent to a session that could run it, and the device machine has no cuML "
        "(no package registry there to install it). Its speed, memory and map quality on a GPU are not known.",
        "",
    ]
    if job.get("status") != "ok":
        return "\n".join(out + [f"**Pending**: {job.get('error') or GPU_PENDING}."])
    r = job["result"]
    sections = r.get("sections", {})
    out.append(
        f"From `{job['file']}`: {r.get('card')}, torch {r.get('torch')}, CUDA {r.get('cuda')}, commit {r.get('git_commit')}, "
        f"{r.get('generated_at')}, {r.get('seconds', 0):.0f} s in all{' (**dry run**)' if r.get('dry_run') else ''}."
    )
    rows = []
    for name, sec in sections.items():
        why = sec.get("why") or sec.get("error")  # "error": documents written before the statuses had a why
        if sec.get("status") not in ("ok", "partial"):
            rows.append([name, sec.get("status"), why])
            continue
        figures = {
            "checkpoint": lambda x: (
                f"{x['bytes'] / 1e9:.1f} GB, {x['params'] / 1e9:.2f}B params, {x['seconds']} s; tokenizer: {x['tokenizer']}"
            ),
            "load": lambda x: f"{x['seconds_to_load']} s, {x.get('gpu_allocated_gib')} GiB on the GPU",
            "mtsamples": lambda x: (
                f"{x['embedded']:,} of {x['rows_in_file']:,} notes ({x['errored']} error rows), {x['window_tokens']:,} tokens: "
                f"{x['tokens_per_s']:,.0f} tokens/s, {x['notes_per_s']:,.1f} notes/s, "
                f"MFU {x['mfu'] if x['mfu'] is None else format(x['mfu'], '.1%')}, "
                f"peak GPU {x['peak_gpu_gib']} GiB, padding efficiency {x['padding_efficiency']}, "
                f"{x['shards_written']} shards read back ({x['dim_read_back']}-d); model load {x.get('seconds_to_load')} s"
            ),
            "attention": lambda x: (
                f"{x['windows']} windows, {x['real_tokens']:,} tokens ({x['padded_tokens']:,} padded): padded "
                f"{x['padded']['median_s']} s, packed ({x['kernel_auto']}) {x['packed']['median_s']} s, packed sdpa "
                f"{x['packed_sdpa']['median_s']} s; peak GiB {x['padded']['peak_gib']} / {x['packed']['peak_gib']}; "
                f"cosine to padded {x['packed']['cosine_to_padded_min']}"
            ),
            "cosine": lambda x: (
                f"bf16 vs fp32 on {x['notes']} notes: min {x['min_cosine']}, mean {x['mean_cosine']} "
                f"(goal ≥ {x['goal']}: {'met' if x['goal_met'] else '**MISSED**'})"
            ),
            "oom": lambda x: (
                f"{x['note_tokens']:,}-token note in {x['windows']} windows of {x['window']}: {x['oom_splits']} splits under the cap, "
                f"embedded {x['embedded']}, cosine to the uncapped vector {x['cosine_to_uncapped']}"
            ),
            "map": lambda x: f"{x['points']:,} x {x['dim']}: {x.get('note')}; seconds per phase {x.get('timings_s')}",
        }.get(name, lambda x: "")
        try:
            said = figures(sec)
        except (KeyError, TypeError, ValueError):
            said = "see the JSON"
        rows.append([name, sec["status"], f"{why}; {said}" if sec["status"] == "partial" else said])
    return "\n".join(out + ["", md_table(["Section", "Status", "Figures"], rows)])


def operations_section(jobs: dict, name: str) -> str:
    """Crash or fan-out figures (`name`): measured apart by `make bench-ops`, so they may be missing."""
    job = jobs.get(name) or {"status": "pending", "command": OPERATIONS_COMMAND, "error": "not measured yet"}
    if job.get("status") != "ok":
        return f"## {OPERATIONS_TITLES[name]}\n\n**Not measured** ({job.get('error')}): run `{job['command']}`."
    return {
        "crash": crash_section,
        "fanout": fanout_section,
        "map_default": map_default_section,
        "map_html": map_html_section,
    }[name](job["result"])


def fullsize_section(job: dict) -> str:
    """`make check-fullsize`: the one check of host memory against a checkpoint of the real size."""
    out = [
        "## Full-size checkpoint on CPU: `make check-fullsize`",
        "",
        "A random NV-Embed-v2 checkpoint at full size (7.85B parameters, bf16, 4 shards, official layout) through the real "
        "`embednv embed` (Ray, the CPU actor, `--device cpu --dtype bfloat16`) on a few short notes; the embed actor's "
        "peak host memory is compared with the size of the weights (goal ≤ 1.10x: loading keeps no second copy). "
        "The checkpoint is deleted afterwards.",
        "",
    ]
    if job.get("status") != "ok":
        return "\n".join(
            out + [f"**Not measured** ({job.get('status')}): {job.get('error', '')}. Run `{job['command']}`."]
        )
    r = job["result"]
    m, c = r["memory"], r["check"]
    out.append(
        f"From `{job['file']}` ({r['generated_at']}, commit {r['git_commit']}, {r['seconds'] / 60:.0f} minutes): "
        f"checkpoint {r['checkpoint']['files_bytes'] / 1e9:.2f} GB written in {r['checkpoint']['seconds']} s "
        f"({r['checkpoint']['method']}); tokenizer: {r['checkpoint']['tokenizer']}."
    )
    out += [
        "",
        md_table(
            ["Figure", "Value"],
            [
                [
                    "Output",
                    f"{c.get('rows')} notes, {c.get('dim')}-d, "
                    f"max | norm - 1 | {c.get('max_norm_error', 0):.1e}: {'ok' if c['ok'] else '**wrong**'}",
                ],
                [
                    "Embed actor peak RSS",
                    f"{m['single_worker_peak_rss_mib'] / 1024:.2f} GiB = {r['actor_peak_rss_over_checkpoint']:.3f}x the weights "
                    f"(goal ≤ {r['goal_ratio']}: {'met' if r['goal_met'] else '**MISSED**'})",
                ],
                [
                    "Embed actor peak USS (private)",
                    f"{m['single_worker_peak_uss_mib'] / 1024:.2f} GiB = {r['actor_peak_uss_over_checkpoint']:.3f}x",
                ],
                ["All processes, peak RSS", f"{m['total_peak_rss_mib'] / 1024:.2f} GiB"],
                [
                    "CPU tokens/s",
                    f"{r['tokens_per_s_embednv_clock']} on embednv's clock, {r['tokens_per_s_whole_run']} over the whole "
                    f"{r['wall_seconds']:.0f} s command (Ray start and reading 15.7 GB included; {c.get('tokens')} tokens)",
                ],
                ["CLI summary", f"`{r['cli_summary']}`"],
            ],
        ),
    ]
    return "\n".join(out)


def crash_section(doc: dict) -> str:
    """bench/crash.py's document: rows recomputed after a SIGKILL, against the bound docs/reliability.md states."""
    lines = [
        f"## {OPERATIONS_TITLES['crash']}",
        "",
        f"`{doc['command']}` ({doc['seconds'] / 60:.0f} minutes, commit {doc['git_commit']}, {doc['generated_at']}): "
        f"{doc['notes']:,} sample notes, MiniLM on CPU, {doc['actors']} actor, windows of {doc['window_rows']:,} rows. "
        "SIGKILL to the whole run (driver and its private Ray) when the log reports the fraction embedded, then the same "
        "command again. *Recomputed* is what the rerun's first line says it will embed; *lost* is the part of it that "
        "had already come back before the kill. Goal: lost <= one window per actor + the rows of shards being assembled.",
        "",
        "| shards | kill at | rows back at kill | shards on disk | rows recomputed | rows lost | within bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        shard_rows = doc["notes"] if "default" in r["sharding"] else 200
        bound = doc["actors"] * doc["window_rows"] + shard_rows
        lines.append(
            f"| {r['sharding']} | {r['kill_at']:.0%} | {r['rows_embedded_at_kill']:,} | {r['shards_on_disk_at_kill']} "
            f"| {r['rows_recomputed']:,} | {r['rows_lost']:,} | {'yes' if r['rows_lost'] <= bound else '**no**'} |"
        )
    lines += [
        "",
        "Rows come back a whole window at a time, so the log's count moves in steps of the window (1,024 rows here: "
        "34%, 68%, 100% of 3,000) and a kill lands on the first step past its fraction; where that step is the last "
        "window, the run had finished its rows when it was killed and the rerun has nothing to do.",
    ]
    complete = [r for r in doc["runs"] if "resume_complete" in r]
    lines += [
        "",
        "Reruns taken to the end: "
        + ", ".join(
            f"{r['sharding']} after {r['kill_at']:.0%}: {'every id exactly once' if r['resume_complete'] else '**incomplete**'}"
            for r in complete
        )
        + ".",
    ]
    return "\n".join(lines)


def fanout_section(doc: dict) -> str:
    """bench/fanout.py's document: the pipeline's own rate, which bounds how many GPUs one driver can feed."""
    r = doc["result"]
    steady, mb_s = r["rows_per_s_steady"], r["mb_per_s_steady"]
    if steady is None:  # every progress line came within one interval: a run too short to have a steady state
        verdict, steady, mb_s = "not measured (run too short for two progress lines)", "–", "–"
    else:
        verdict = "met" if steady >= doc["goal_rows_per_s"] else "**MISSED**"
        steady, mb_s = f"{steady:,}", f"{mb_s:,}"
    return "\n".join(
        [
            f"## {OPERATIONS_TITLES['fanout']}",
            "",
            f"`{doc['command']}` (commit {doc['git_commit']}, {doc['generated_at']}, load {doc['machine']['load_average_1m_at_start']} "
            f"on {doc['machine']['logical_cores']} cores): {r['notes']:,} short notes (~16 tokens) through the whole pipeline "
            f"with a model that costs almost nothing and emits {r['dim']:,}-d unit vectors ({doc['model']}).",
            "",
            "| rows/s (steady) | MB/s of vectors | rows/s incl. start-up | wall time "
            "| on disk (one-hot vectors: ~0) | goal ≥ 5,000 rows/s |",
            "|---|---|---|---|---|---|",
            f"| {steady} | {mb_s} | {r['rows_per_s_total']:,} | {r['seconds_total']} s "
            f"| {r['output_gb']} GB | {verdict} |",
            "",
            "Steady state: between the first and the last progress line of the run's own log "
            f"({r['steady_window']['rows']:,} rows in {r['steady_window']['to_s'] - r['steady_window']['from_s']:.1f} s). "
            "docs/scaling.md turns this into GPUs per driver.",
        ]
    )


def map_html_section(doc: dict) -> str:
    """`bench/bench_map_html.py`: map.html's size and load time, the canvas page beside the plotly one it replaced."""
    rows = [
        [
            f"{r['n']:,}",
            r["renderer"],
            f"{r['mib']}",
            f"{r['load_s_median']}",
            f"{r['painted_ms_from_navigation_median']}",
            "; ".join(r["errors_or_requests"]) or "none",
        ]
        for r in doc["runs"]
    ]
    canvas = [r for r in doc["runs"] if r["renderer"] == "canvas"]
    biggest = max(canvas, key=lambda r: r["n"]) if canvas else None
    verdict = ("met" if biggest["load_s_median"] < 10 else "**MISSED**") if biggest else "not measured"
    return "\n".join(
        [
            "## map.html: size and load time",
            "",
            f"`{doc['command']}` (commit {doc['commit']}, {doc['date']}, load {doc['machine']['load_average_1m_at_start']} on "
            f"{doc['machine']['logical_cores']} cores, Chromium {doc['chromium']} headless, median of {doc['repeats']} loads): "
            f"synthetic maps, {doc['clusters']} clusters, no note text. `canvas` is the page `embednv map` writes, `plotly` "
            f"the page it replaced. Goal: the largest canvas page loads in under 10 s: {verdict}.",
            "",
            md_table(
                ["Points", "Page", "MiB", "Load s (median)", "Painted, ms after navigation", "Errors or requests"], rows
            ),
        ]
    )


def map_default_section(doc: dict) -> str:
    """`bench/map_default.py`: the default `embednv map` end to end at 10k, 50k and 100k points."""
    rows = []
    for run in doc["runs"]:
        for label, r in (("default", run["default"]), ("--multiscale off", run.get("single_scale"))):
            if r:
                rows.append(
                    f"| {run['n']:,} | {label} | {'+'.join(str(round(p)) for p in r['perplexities'])} | {r['k']} "
                    f"| {r['seconds']} | {r['knn_preservation_10']:.3f} | {r['silhouette']:.3f} |"
                )
    biggest = max(doc["runs"], key=lambda run: run["n"])["default"]
    verdict = "met" if biggest["seconds"] <= doc["goal_s"] else "**MISSED**"
    return (
        "\n".join(
            [
                "## The default map, end to end",
                "",
                f"`{doc['command']}` (commit {doc['git_commit']}, {doc['generated_at']}, load "
                f"{doc['machine']['load_average_1m_at_start']} on {doc['machine']['logical_cores']} cores): `embednv map EMB_DIR "
                f"--out MAP_DIR` with no options on planted synthetic {doc['dim']:,}-d shards. Goal: the largest finishes within "
                f"{doc['goal_s']} s: {verdict}.",
                "",
                "| points | options | perplexities | k | wall s | kNN preservation@10 | silhouette |",
                "|---|---|---|---|---|---|---|",
                *rows,
            ]
        )
        + "\n"
    )
