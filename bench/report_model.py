"""The section of docs/benchmarks.md for `bench/nvembed_model.py`: NV-Embed-v2's forward before and
after packing (memory, FLOPs, CPU speed, parity), from docs/benchmarks-nvembed-model.json."""

from __future__ import annotations

from bench.common import md_table

MODEL_FILE = "benchmarks-nvembed-model.json"
MODEL_COMMAND = f"python bench/nvembed_model.py --json docs/{MODEL_FILE}"


def _met(value: float, goal: float, higher: bool = True) -> str:
    ok = value >= goal if higher else value <= goal
    return "met" if ok else "**missed**"


def model_section(job: dict) -> str:
    """Padding-free attention and the head on pooled rows: what the micro-batch costs, before and after."""
    out = [
        "## NV-Embed-v2's forward: packed windows, head on pooled tokens",
        "",
        '"Before" is `embednv/models/nvembed.py` as it was before this work (right-padded batch, key-padding '
        'mask, K/V repeated, the pooling head on every position); "after" packs a micro-batch\'s windows end to '
        "end (no padded token in any matmul or attention, no mask; varlen FlashAttention on CUDA) and runs the "
        "head on the pooled tokens only; the head and the MLP run in chunks of rows of at most 256 MiB per widest "
        "intermediate. Real width = NV-Embed-v2's at 2 layers. Memory and FLOPs are counted op by op on the meta "
        "device (65,536 tokens at real width would take 2 CPU cores about an hour), in bfloat16 as on a GPU; an "
        "attention op counts as its output, as a fused kernel holds no T x T matrix. The count is checked against "
        "real runs of the head below. Method and caveats: "
        "`bench/nvembed_model.py`.",
        "",
    ]
    if job.get("status") != "ok":
        return "\n".join(
            out + [f"**Not measured** ({job.get('status')}): {job.get('error', '')}. Run `{job['command']}`."]
        )
    r = job["result"]
    goals, m = r["goals"], r["micro_batch"]
    out.append(
        f"From `{job['file']}` ({r['generated_at']}, commit {r['git_commit']}, before = `{r['base']}`, torch "
        f"{r['torch']}, {r['threads']} thread(s) for timings, load average {r['machine']['load_average_1m_at_start']} "
        f"at start, {r['seconds'] / 60:.0f} minutes{', **quick**' if r['quick'] else ''}). Corpus: {r['batch']['notes']:,} "
        f"{r['batch']['corpus']} notes, {r['batch']['tokenizer']}, micro-batches planned by the pipeline at 65,536 tokens."
    )
    flops = r["corpus_flops"]
    rows = [
        [
            "The micro-batch (queries: similar-notes)",
            f"{m['windows']} windows, {m['real_tokens']:,} real tokens, "
            f"{m['padded_tokens']:,} padded, {m['pooled_tokens']:,} pooled ({m['n_skip']} instruction positions each)",
            "",
            "",
        ],
        [
            "Peak tensor memory, bf16",
            f"{m['peak_gib_before']} GiB",
            f"{m['peak_gib_after']} GiB",
            f"{m['memory_ratio']}x lower (goal ≥ {goals['memory_ratio']}x: {_met(m['memory_ratio'], goals['memory_ratio'])})",
        ],
        [
            "Useful / executed FLOPs, this micro-batch",
            f"{m['flops_useful'] / m['flops_before']:.4f} ({m['flops_before'] / 1e12:.1f} TFLOP)",
            f"{m['flops_useful'] / m['flops_after']:.5f} ({m['flops_after'] / 1e12:.1f} TFLOP)",
            f"goal ≥ {goals['useful_over_executed']}: {_met(m['useful_over_executed_after'], goals['useful_over_executed'])}"
            " (the rest: the head's one-hot pooling sum)",
        ],
    ]
    for side, f in flops.items():
        rows.append(
            [
                f"Useful / executed FLOPs, every {side} micro-batch (32 layers, analytic)",
                f"{f['useful_over_executed_before']:.4f}",
                "1 (only real, pooled tokens are computed)",
                f"{f['micro_batches']} micro-batches",
            ]
        )
    out += ["", md_table(["", "Before", "After", ""], rows)]
    if "head_check" in r:
        h = r["head_check"]
        under = h["after"]["rss_peak_mib"] / h["after"]["counted_peak_mib"]  # how much the count may miss
        out += [
            "",
            f"Check of the count: the pooling head alone at real width, float32, {h['tokens']:,} tokens on CPU, "
            "peak resident memory it adds in a fresh process (VmHWM) against the meta-device count "
            f"(after: chunks of {h['after']['chunk_bytes'] >> 20} MiB, so that chunking shows at this size):",
            "",
            md_table(
                ["", "RSS high-water", "Counted", "Counted / RSS"],
                [
                    [
                        name,
                        f"{h[name]['rss_peak_mib']:,} MiB",
                        f"{h[name]['counted_peak_mib']:,} MiB",
                        f"{h[name]['counted_peak_mib'] / h[name]['rss_peak_mib']:.2f}",
                    ]
                    for name in ("before", "after")
                ],
            ),
            "",
            "The count leaves out kernels' own scratch space (here the CPU attention kernel's buffers), hence "
            f"ratios below 1. Were the after figure {under:.2f}x higher, as here, the micro-batch's ratio above "
            f"would be {m['memory_ratio'] / under:.1f}x.",
        ]
    speed = []
    for name, label in (("tiny", "tiny test checkpoint"), ("real_width", "real width, 2 layers")):
        if name in r:
            s = r[name]
            tokens = f"{sum(s['windows']):,} tokens in {len(s['windows'])} windows ({len(s['windows']) * max(s['windows']):,} padded)"
            speed.append(
                [
                    label,
                    tokens,
                    f"{s['median_before']:.3f} s",
                    f"{s['median_after']:.3f} s",
                    f"{s['speedup']}x",
                    f"{s['cosine_vs_reference_min']:.6f}",
                    f"{s['cosine_bf16_vs_fp32_min']:.5f}",
                ]
            )
            if "median_after_compiled" in s:
                speed.append(
                    [
                        f"{label}, `compile_blocks`",
                        tokens,
                        f"{s['median_before']:.3f} s",
                        f"{s['median_after_compiled']:.3f} s",
                        f"{s['speedup_compiled']}x (first call {s['compile_seconds_first_call']} s, compile cache warm)",
                        "",
                        "",
                    ]
                )
    out += [
        "",
        f"CPU time of one forward ({r['threads']} torch thread(s), process CPU seconds: other users of the machine "
        "inflate wall time, not this), median of alternated repeats; parity of the after path (goal: cosine ≥ "
        f"{goals['cosine']} to the float64 reference of tests/models/test_nvembed.py; bf16 reported):",
        "",
        md_table(
            ["Model", "Micro-batch", "Before", "After", "Speed-up", "Cosine to reference (min)", "bf16 vs fp32 (min)"],
            speed,
        ),
    ]
    return "\n".join(out)
