"""Run every CPU benchmark and write docs/benchmarks.json (raw figures) and docs/benchmarks.md (tables).

    python bench/run_all.py                # full sizes within --budget-min (20) minutes on a quiet 2-core machine
    python bench/run_all.py --quick --out /tmp/bench   # tiny sizes, a smoke test of every job (~2 minutes)

    python bench/run_all.py --render       # rewrite both files from docs/benchmarks.json (after make bench-1m)

Jobs, each a script under bench/ run as its own subprocess (its memory and Ray instance end
with it): padding.py, throughput.py, scale.py (10k, 30k, 100k notes), bench_map.py (10k, 50k,
100k points with single-scale t-SNE, then 10k with the default two scales). Then scale at 1M
notes, only if a prediction from the sizes already measured (linear, plus 20%) fits in the time
left: on a 2-core machine it does not (tokenizing 1M notes alone takes about 6 minutes), so
`make bench-1m` measures it on its own (`scale.py --sizes 1000000`, about 12 minutes) into
docs/benchmarks-scale-1m.json, which this runner then includes, labelled with its own commit
and date. A job that fails is reported as failed in both files; the others still run.

Two files measured elsewhere are merged when present in --out, each labelled with its own
command and commit: docs/benchmarks-gpu.json (the GPU acceptance run, bench/nvembed_device.py
on a lent GPU: see GPU_COMMAND) and docs/benchmarks-fullsize.json (`make check-fullsize`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import REPO, git_commit, library_versions, log, machine_info, md_table, now  # noqa: E402

BENCH = Path(__file__).resolve().parent
JOBS = ("padding", "throughput", "scale", "map")
# Arguments of each job's first invocation; three scale sizes so that linearity is testable.
# The map runs single-scale t-SNE at every size: the default second scale (n/100) grows ~n^2 and
# does not finish at 100k points on 2 cores; its cost is shown at 10k by EXTRA_RUNS.
FIRST_RUNS = {"scale": ["--sizes", "10000,30000,100000"], "map": ["--sizes", "10000,50000,100000", "--multiscale", "off"]}
QUICK_RUNS = {"padding": ["--quick"], "throughput": ["--quick"], "scale": ["--quick"], "map": ["--sizes", "1000", "--multiscale", "off"]}
EXTRA_RUNS = [("map", ["--sizes", "10000", "--multiscale", "auto"])]
LARGER_SCALE = 1_000_000  # only while the budget lasts; else measured apart by `make bench-1m`
SEPARATE_SCALE = "benchmarks-scale-1m.json"  # written by `make bench-1m`, merged into the scale job
MARGIN = 1.2  # predictions of a larger size are scaled up by this much before comparing with the time left
RESERVE_S = 30  # kept back for writing the reports
TIMEOUTS_S = {"padding": 900, "throughput": 1800, "map": 3600, "scale": 3600}  # hangs only; the budget is separate
GPU_FILE, FULLSIZE_FILE = "benchmarks-gpu.json", "benchmarks-fullsize.json"
CRASH_FILE, FANOUT_FILE = "benchmarks-crash.json", "benchmarks-fanout.json"  # `make bench-ops`
# One call on a lent GPU machine, from the repository root, after
# `mkdir -p .gpu && cp ../shared/data/mtsamples.parquet .gpu/ && echo /.gpu/ >> .git/info/exclude`
# (../shared does not travel), with carry [".gpu"]; then copy $OUT/gpu_acceptance.json to docs/benchmarks-gpu.json.
GPU_COMMAND = "PYTHONUNBUFFERED=1 python3 bench/nvembed_device.py --mtsamples .gpu/mtsamples.parquet --json $OUT/gpu_acceptance.json"
FULLSIZE_COMMAND = "make check-fullsize"


def separate_job(path: Path, command: str, pending: str) -> dict:
    """A job measured elsewhere (another machine, another make target): its JSON file, or pending."""
    if path.is_file():
        return {"status": "ok", "command": command, "file": f"docs/{path.name}", "result": json.loads(path.read_text())}
    return {"status": "pending", "command": command, "error": pending}


def separate_jobs(out_dir: Path, gpu_json: Path | None = None) -> dict:
    return {
        "gpu": separate_job(gpu_json or out_dir / GPU_FILE, GPU_COMMAND, "no device was lent to a session yet"),
        "fullsize": separate_job(out_dir / FULLSIZE_FILE, FULLSIZE_COMMAND, "no finished run recorded (it needs ~16 GB of disk, ~18 GiB of free memory and a quiet machine)"),
        "crash": separate_job(out_dir / CRASH_FILE, "make bench-ops", "not measured yet"),
        "fanout": separate_job(out_dir / FANOUT_FILE, "make bench-ops", "not measured yet"),
    }


def run_job(name: str, cmd: list[str], json_path: Path, timeout: float) -> dict:
    """Run one job, echoing its stderr (progress) live; returns its JSON document or the failure."""
    log(f"run_all: {name}: {' '.join(cmd[1:])}")
    started = time.perf_counter()
    # Its own process group, so that a job that hangs is ended together with the Ray processes it started.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    tail: deque[str] = deque(maxlen=30)

    def pump() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip())
            sys.stderr.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except KeyboardInterrupt:  # the group does not get the terminal's Ctrl-C: pass it on, then stop
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        raise
    reader.join(timeout=10)
    seconds = round(time.perf_counter() - started, 1)
    shown = [str(Path(c).relative_to(REPO)) if c.startswith(str(REPO)) else c for c in cmd[1:]]
    if "--json" in shown:  # a temporary file: not part of how to reproduce the figures
        del shown[shown.index("--json") : shown.index("--json") + 2]
    status = {"command": "python " + " ".join(shown), "seconds": seconds}
    if proc.returncode == 0 and json_path.is_file():
        return {**status, "status": "ok", "result": json.loads(json_path.read_text())}
    why = f"timed out after {timeout:.0f} s" if proc.returncode in (-9, 137) else f"exit code {proc.returncode}"
    log(f"run_all: {name} failed ({why})")
    return {**status, "status": "failed", "error": why, "stderr_tail": list(tail)[-12:]}


def job_command(name: str, json_path: Path, args: list[str]) -> list[str] | str:
    """The command of one job invocation, or why it cannot run."""
    script = BENCH / ("bench_map.py" if name == "map" else f"{name}.py")
    if not script.is_file():
        return f"{script.relative_to(REPO)} is not in this checkout"
    cmd = [sys.executable, str(script)]
    if name == "map":  # maintained apart from this runner: check the options it is called with still exist
        usage = subprocess.run([*cmd, "--help"], capture_output=True, text=True, cwd=REPO).stdout
        missing = [flag for flag in ("--sizes", "--json") if flag not in usage]
        if missing:
            return f"{script.relative_to(REPO)} has no {', '.join(missing)} option: its command line changed"
    return cmd + args + ["--json", str(json_path)]


def invoke(name: str, tmp: Path, args: list[str]) -> dict:
    json_path = tmp / f"{name}-{len(list(tmp.iterdir()))}.json"
    cmd = job_command(name, json_path, args)
    if isinstance(cmd, str):
        log(f"run_all: {name}: skipped: {cmd}")
        return {"status": "skipped", "error": cmd}
    return run_job(name, cmd, json_path, TIMEOUTS_S[name])


def predict_scale_s(n: int, job: dict) -> float | None:
    """Seconds a scale run of `n` notes would take, from the linear fit of the sizes measured; None if unknown."""
    from bench.scale import GENERATE_S_PER_NOTE

    fit = (job.get("result") or {}).get("fit") or {}
    if "ms_per_note" not in fit:
        return None
    return MARGIN * (fit["fixed_s"] + fit["ms_per_note"] * n / 1e3 + GENERATE_S_PER_NOTE * n)  # fixed_s: process and Ray start


def merge(name: str, job: dict, extra: dict) -> dict:
    """One job's entry from several invocations (sizes run at different times): runs/results joined."""
    if job.get("status") != "ok":
        return extra if extra.get("status") == "ok" else job
    if extra.get("status") != "ok":
        return {**job, "failures": job.get("failures", []) + [extra]}
    merged = dict(job["result"])
    if name == "scale":
        from bench.scale import fit

        merged["runs"] = sorted(job["result"]["runs"] + extra["result"]["runs"], key=lambda r: r["notes"])
        merged["fit"] = fit(merged["runs"])
    else:
        merged["results"] = job["result"].get("results", []) + extra["result"].get("results", [])
    merged["command"] = f"{job['command']}; {extra['command']}"
    return {**job, "command": merged["command"], "seconds": round(job["seconds"] + extra["seconds"], 1), "result": merged}


def add_separate_scale(jobs: dict, out_dir: Path) -> dict | None:
    """Merge the sizes `make bench-1m` measured apart into the scale job; returns where they came from.

    Runs merged by an earlier render are dropped first, so a newer file replaces them; a size
    this run measured itself is never replaced.
    """
    from bench.scale import fit

    job, path = jobs.get("scale", {}), out_dir / SEPARATE_SCALE
    if job.get("status") != "ok" or not path.is_file():
        return None
    separate = json.loads(path.read_text())
    own = [r for r in job["result"]["runs"] if not r.get("separate")]
    new = [dict(r, separate=True) for r in separate["runs"] if r["notes"] not in {o["notes"] for o in own}]
    if not new:
        return None
    runs = sorted(own + new, key=lambda r: r["notes"])
    jobs["scale"] = {**job, "result": {**job["result"], "runs": runs, "fit": fit(runs)}}
    return {"file": f"docs/{SEPARATE_SCALE}", "command": separate["command"], "generated_at": separate.get("generated_at"),
            "git_commit": separate.get("git_commit"), "seconds": separate.get("seconds"), "notes": [r["notes"] for r in new],
            "sizes": [r["notes"] for r in separate["runs"]],
            "load_average_1m_at_start": (separate.get("machine") or {}).get("load_average_1m_at_start"),
            "process_peak_growth": (separate.get("fit") or {}).get("process_peak_growth")}


# ---------------------------------------------------------------- the two reports

GOALS = {"padding_efficiency": 0.97, "ratio_vs_ceiling": 0.9, "ratio_vs_sentence_transformers": 1.0}
LINEAR_TOLERANCE = 0.25  # the last step's cost per note may differ from the first's by this much
FLAT_AT_1M = 0.10  # flat: the total peak, growing as measured, would rise by at most 10% by 1M notes
MEMORY_GROUPS = {"driver": "driver_peak_rss_mib", "largest Ray worker (the embed actor)": "single_worker_peak_rss_mib",
                 "its private memory (USS)": "single_worker_peak_uss_mib", "all Ray workers": "workers_peak_rss_mib",
                 "Ray daemons": "ray_system_peak_rss_mib", "total": "total_peak_rss_mib"}


def _result(jobs: dict, name: str) -> dict | None:
    job = jobs.get(name, {})
    return job.get("result") if job.get("status") == "ok" else None


def headline(jobs: dict) -> dict:
    """The top-level figures of benchmarks.json: None where the job did not run or lacked its data."""
    padding, throughput = _result(jobs, "padding"), _result(jobs, "throughput")
    mts = (padding or {}).get("corpora", {}).get("mtsamples", {})
    sample = (padding or {}).get("corpora", {}).get("sample_corpus", {})
    eff = lambda corpus: corpus.get("strategies", {}).get("embednv_cpu", {}).get("padding_efficiency")  # noqa: E731
    steady = (throughput or {}).get("embednv_in_process", {})
    figures = {
        "padding_efficiency": eff(mts),
        "padding_efficiency_sample_corpus": eff(sample),
        "ratio_vs_ceiling": (throughput or {}).get("ratio_vs_ceiling"),
        "ratio_vs_sentence_transformers": (throughput or {}).get("ratio_vs_sentence_transformers"),
        "steady_ratio_vs_ceiling": steady.get("steady_ratio_vs_ceiling"),
        "steady_ratio_vs_sentence_transformers": steady.get("steady_ratio_vs_sentence_transformers"),
        "tokens_per_s": {"ceiling": None, "sentence_transformers": None, "embednv": None},
        "goals": GOALS,
    }
    if throughput:
        rates = throughput["tokens_per_s"]
        figures["tokens_per_s"] = {"ceiling": rates["a"], "sentence_transformers": rates["b"], "embednv": rates["c"]}
    figures["goals_met"] = {k: (figures[k] >= goal if figures[k] is not None else None) for k, goal in GOALS.items()}
    return figures


def markdown(doc: dict) -> str:
    jobs = doc["jobs"]
    skipped = lambda name: [s for s in doc.get("skipped_for_budget", []) if s["job"] == name]  # noqa: E731
    sections = [_header(doc), _summary(doc), _padding(jobs["padding"]), _throughput(jobs["throughput"]),
                _scale(jobs["scale"], skipped("scale"), doc.get("separate_scale")), _map(jobs["map"], skipped("map")), _gpu(jobs["gpu"]),
                _fullsize(jobs.get("fullsize", {"status": "pending", "command": FULLSIZE_COMMAND, "error": "not run yet"})),
                _operations(jobs, "crash"), _operations(jobs, "fanout"), _footer(doc)]
    return "\n\n".join(s for s in sections if s) + "\n"


def _verdict(value, goal: float, why: str = "") -> str:
    if value is None:
        return "not measured"
    return "met" if value >= goal else f"**MISSED**{': ' + why if why else ''}"


def _not_run(job: dict) -> str:
    status = job.get("status", "not run")
    text = f"**Not measured** ({status}): {job.get('error', '')}"
    if job.get("command"):
        text += f"\n\nCommand: `{job['command']}`"
    if job.get("stderr_tail"):
        text += "\n\n```\n" + "\n".join(job["stderr_tail"]) + "\n```"
    return text


def _header(doc: dict) -> str:
    m, v = doc["machine"], doc["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{doc['command']}`{'' if doc['quick'] else ' (`make bench`)'} on {doc['generated_at']}, "
        f"commit {doc['git_commit'] or 'unknown'}, "
        f"in {doc['total_seconds'] / 60:.1f} minutes. Raw figures: [benchmarks.json](benchmarks.json).",
        "",
        f"**Machine**: {m['cpu_model']}, {m['logical_cores']} logical cores ({m['physical_cores']} physical), "
        f"{m['ram_gib']} GiB RAM, no GPU; {m['os']}, Python {m['python']}. Load average when started: {m['load_average_1m_at_start']}.",
        "",
        "**Libraries**: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
    ]
    warnings = []
    if doc["quick"]:
        warnings.append("**Quick run (`--quick`)**: every job at tiny sizes as a smoke test. These figures are not "
                        "benchmarks: fixed start-up costs dominate them. Regenerate with `make bench`.")
    if m["load_average_1m_at_start"] > 0.5 * m["logical_cores"]:
        warnings.append(f"**Busy machine**: the load average was {m['load_average_1m_at_start']} on {m['logical_cores']} cores "
                        "when the run started, so timings are noisy and slower than on a quiet machine.")
    if doc.get("note"):
        warnings.append(f"**Note**: {doc['note']}")
    return "\n".join(lines) + "".join(f"\n\n> {w}" for w in warnings)


def _throughput_limit(t: dict, short: bool = False) -> str:
    """Why embednv's wall-time rate falls short, from the figures themselves."""
    cli = t["median_seconds"]["c"]
    steady = t.get("embednv_in_process")
    if not steady or not steady.get("steady_tokens_per_s"):
        return f"fixed start-up costs in a {cli:.0f} s run (not broken down: the in-process runs were skipped)"
    work = t["tokens"] / steady["steady_tokens_per_s"]
    if short:
        return (f"{cli - work:.0f} s of the {cli:.0f} s run are start-up and shut-down; once running, "
                f"{steady['steady_ratio_vs_ceiling']:.2f} of (a) and {steady['steady_ratio_vs_sentence_transformers']:.2f} of (b). See Throughput")
    rest = steady["cli_overhead_s"] - steady["ray_start_s"]
    return (f"fixed costs: of the {cli:.0f} s CLI run, about {cli - work:.0f} s are not embedding: Ray start-up "
            f"{steady['ray_start_s']:.0f} s, interpreter start, imports and Ray shut-down {rest:.0f} s, and the fixed cost of "
            f"a run on a started Ray (actor start, model load; the 8-note run) {steady['small_median_s']:.0f} s. Once running, "
            f"embednv reaches {steady['steady_ratio_vs_ceiling']:.2f} of the ceiling and "
            f"{steady['steady_ratio_vs_sentence_transformers']:.2f} of sentence-transformers")


def _summary(doc: dict) -> str:
    jobs = doc["jobs"]
    throughput = _result(jobs, "throughput")
    limit = _throughput_limit(throughput, short=True) if throughput else ""
    fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else "–"  # noqa: E731
    reps = throughput["repetitions"]["c"] if throughput else 0
    rows = [
        ["Padding efficiency, embednv on MTSamples", fmt(doc["padding_efficiency"]), "≥ 0.97",
         _verdict(doc["padding_efficiency"], 0.97), "`bench/padding.py`: exact count, 1 run"],
        ["Padding efficiency, embednv on the sample corpus", fmt(doc["padding_efficiency_sample_corpus"]), "≥ 0.97",
         _verdict(doc["padding_efficiency_sample_corpus"], 0.97), "`bench/padding.py`: exact count, 1 run"],
        ["Throughput embednv / ceiling (c/a), wall time", fmt(doc["ratio_vs_ceiling"]), "≥ 0.9",
         _verdict(doc["ratio_vs_ceiling"], 0.9, limit), f"`bench/throughput.py`: tokens/s, median of {reps}"],
        ["Throughput embednv / sentence-transformers (c/b), wall time", fmt(doc["ratio_vs_sentence_transformers"]), "≥ 1.0",
         _verdict(doc["ratio_vs_sentence_transformers"], 1.0, limit), f"`bench/throughput.py`: tokens/s, median of {reps}"],
        ["Throughput embednv / ceiling once started (steady state)", fmt(doc["steady_ratio_vs_ceiling"]), "(no goal)",
         "–", "`bench/throughput.py`: in-process runs, see below"],
    ]
    scale = _result(jobs, "scale")
    if scale and scale.get("fit"):
        linear, flat = _scale_verdicts(scale)
        rows.append(["Scale: wall time linear in notes", linear[0], "linear", linear[1], "`bench/scale.py`: 1 run per size"])
        rows.append(["Scale: peak memory flat", flat[0], "flat", flat[1], "`bench/scale.py`: 1 run per size"])
        growth = (doc.get("separate_scale") or {}).get("process_peak_growth")
        if growth:
            worst_role, worst = max(((r, g["uss"]["growth"] or 0) for r, g in growth.items()), key=lambda x: x[1])
            sizes = doc["separate_scale"]["sizes"]
            rows.append([f"Scale: each process's peak private memory, {sizes[0]:,} → {sizes[-1]:,} notes (side by side)",
                         f"worst {worst:.2f}x ({worst_role}); embed actor {growth.get('embed_actor', {}).get('uss', {}).get('growth', '–')}x",
                         f"each ≤ {1 + FLAT_AT_1M:.2f}x", "met" if worst <= 1 + FLAT_AT_1M else "**MISSED**",
                         "`make bench-1m`: 1 run per size, USS sampled every 0.25 s"])
    else:
        rows.append(["Scale: time linear, memory flat", "–", "linear, flat", "not measured", "`bench/scale.py`"])
    gpu = _result(jobs, "gpu")
    mts = ((gpu or {}).get("sections") or {}).get("mtsamples") or {}
    rows.append(["GPU: NV-Embed-v2 on MTSamples, tokens/s (MFU)",
                 f"{mts['tokens_per_s']:,.0f} ({mts['mfu']:.1%})" if mts.get("tokens_per_s") and mts.get("mfu") is not None else "–",
                 "–", "pending: no device was lent" if not gpu else ("measured" if mts.get("status") == "ok" else "**failed**"),
                 "`bench/nvembed_device.py` on a lent GPU: see GPU below"])
    full = _result(jobs, "fullsize")
    rows.append(["Full-size checkpoint on CPU: embed actor peak RSS / weights",
                 f"{full['actor_peak_rss_over_checkpoint']:.3f}" if full else "–", f"≤ {(full or {}).get('goal_ratio', 1.10):.2f}",
                 ("met" if full["goal_met"] else "**MISSED**") if full else "not measured", "`make check-fullsize`: 1 run"])
    return "## Summary\n\n" + md_table(["Figure", "Value", "Goal", "Status", "How measured"], rows)


def _padding(job: dict) -> str:
    out = ["## Padding efficiency", ""]
    if job.get("status") != "ok":
        return "\n".join(out + [_not_run(job)])
    p = job["result"]
    out.append(
        "Real tokens divided by padded tokens processed (a batch of B windows padded to its longest, W, costs B x W). "
        "Token windows come from the real path, embednv's `NoteTokenizer` "
        f"({p['tokenizer']}): notes over 512 tokens are split into overlapping windows. embednv batches as its embed actor does: windows of `window_rows` consecutive rows "
        "within each shard of `rows_per_shard` rows, `plan_batches` with the default token budget and its 0.97 floor. "
        f"Pure computation, deterministic: `{p['command']}` (1 run, {p['seconds']:.0f} s). Goal: ≥ {p['goal']} for embednv."
    )
    for key, corpus in p["corpora"].items():
        if "skipped" in corpus:
            out += ["", f"**{key}**: skipped: {corpus['skipped']}."]
            continue
        out += ["", f"**{corpus['corpus']}**: {corpus['rows']:,} rows, {corpus['notes_embedded']:,} notes embedded "
                f"({corpus['notes_split']:,} split into windows), {corpus['windows']:,} windows, {corpus['real_tokens']:,} real tokens.", ""]
        rows = []
        for name, s in corpus["strategies"].items():
            verdict = _verdict(s["padding_efficiency"], p["goal"]) if name.startswith("embednv_c") else "(reference)"
            rows.append([s["label"], f"{s['padding_efficiency']:.3f}", verdict, s["micro_batches"], s["mean_windows_per_batch"], s["padded_tokens"]])
        out.append(md_table(["Batching", "Padding efficiency", "vs goal", "Micro-batches", "Windows per batch", "Padded tokens"], rows))
    return "\n".join(out)


def _throughput(job: dict) -> str:
    out = ["## Throughput: MiniLM on CPU", ""]
    if job.get("status") != "ok":
        return "\n".join(out + [_not_run(job)])
    t = job["result"]
    r, sec, reps = t["tokens_per_s"], t["median_seconds"], t["repetitions"]
    out.append(
        f"Text set: {t['text_set']}: {t['notes']} notes, {t['tokens']:,} tokens ({t['mean_tokens_per_note']} per note, "
        "[CLS] and [SEP] included). All fit the 512-token window, so the three do identical work: no truncation, no chunking "
        f"(the vectors agree: max 1 - cosine vs (a) is {t['max_cosine_gap']['b_vs_a']:.1e} for (b), {t['max_cosine_gap']['c_vs_a']:.1e} for (c)). "
        f"{t['torch_threads']} torch threads. Run order `{t['order']}` (alternated so drift hits all three alike); each figure is "
        "the median of its repetitions; tokens/s = tokens / median seconds."
    )
    out += ["", md_table(["", "What is timed", "Repetitions", "Median s", "Tokens/s", "vs (a)"], [
        ["(a) ceiling", f"bare loop: tokenizer ({t['ceiling_tokenize_median_s']:.1f} s of it) + AutoModel + mean pooling, "
         f"length-sorted, batch {t['ceiling_batch_size']} (best of sweep {t['ceiling_sweep_notes_per_s']} notes/s); model loaded before",
         reps["a"], sec["a"], r["a"], 1.0],
        ["(b) sentence-transformers", t["commands"]["b"] + "; model loaded before", reps["b"], sec["b"], r["b"], round(r["b"] / r["a"], 3)],
        ["(c) embednv embed", "`" + t["commands"]["c"] + "`: everything from launch to exit (interpreter, imports, Ray start-up, "
         "actor start, model load, tokenization, embedding, shard writing, Ray shut-down)", reps["c"], sec["c"], r["c"], t["ratio_vs_ceiling"]],
    ] + ([["(d) diagnostic: embednv's steps, no Ray", t["commands"]["d"], reps["d"], sec["d"], r["d"], t["steps_ratio_vs_ceiling"]]]
         if "d" in r else []))]
    limit = _throughput_limit(t)
    if r["b"] > r["a"]:
        out += ["", f"> **(a) measured below (b)**: the bare loop should be the fastest of the three. Its batch size "
                f"({t['ceiling_batch_size']}) came from a sweep on a busy machine, and small batches suffer most when the "
                "cores are shared; read c/a with that in mind, and c/b as the firmer figure."]
    out += ["", f"- **c/a = {t['ratio_vs_ceiling']:.3f}** (goal ≥ 0.9): {_verdict(t['ratio_vs_ceiling'], 0.9, limit)}.",
            f"- **c/b = {t['ratio_vs_sentence_transformers']:.3f}** (goal ≥ 1.0): {_verdict(t['ratio_vs_sentence_transformers'], 1.0, limit)}.",
            f"- embednv's own summary line: `{t['embednv_cli_summary']}` (its clock starts after interpreter start-up and imports)."]
    steady = t.get("embednv_in_process")
    if steady:
        out += ["", "embednv in-process, on a Ray instance already running (`run_embed`, same file, alternated with an 8-note file; "
                f"the first run only warms up; Ray start-up measured once: {steady['ray_start_s']:.1f} s):", "",
                md_table(["", "Repetitions", "Median s", "Tokens/s", "vs (a)", "vs (b)"], [
                    ["warm Ray, full file (actor start + model load included)", len(steady["full_s"]), steady["warm_median_s"],
                     steady["warm_tokens_per_s"], round(steady["warm_tokens_per_s"] / r["a"], 3), round(steady["warm_tokens_per_s"] / r["b"], 3)],
                    ["8-note file (the fixed cost of a run)", len(steady["small_s"]), steady["small_median_s"], None, None, None],
                    ["steady state = tokens / (full - 8-note)", "–", None, steady.get("steady_tokens_per_s"),
                     steady.get("steady_ratio_vs_ceiling"), steady.get("steady_ratio_vs_sentence_transformers")],
                ]),
                "", f"Padding efficiency of that run (from its manifest): {steady['padding_efficiency']:.3f}."]
        if steady.get("steady_ratio_vs_steps") and "d" in r:
            out += ["", f"Where the time goes, as ratios of rates: embednv's own steps without Ray (d) run at "
                    f"{t['steps_ratio_vs_ceiling']:.2f} of the bare loop (its batching, tokenization and Arrow handling); the same "
                    f"steps in a Ray actor (steady) at {steady['steady_ratio_vs_steps']:.2f} of (d) (the actor sharing the cores "
                    f"with Ray's own processes and tasks); the CLI's start-up and shut-down then take c to {t['ratio_vs_ceiling']:.2f}."]
    return "\n".join(out)


def _scale_verdicts(s: dict) -> tuple[tuple[str, str], tuple[str, str]]:
    f = s["fit"]
    steps = f["marginal_s_per_1k_notes"]
    drift = abs(steps[-1] - steps[0]) / steps[0] if len(steps) > 1 and steps[0] > 0 else 0.0
    linear_ok = drift <= LINEAR_TOLERANCE and f["max_relative_residual"] <= LINEAR_TOLERANCE
    line = f"{f['fixed_s']:.0f} s + {f['ms_per_note']:.2f} ms/note (max deviation {f['max_relative_residual']:.0%})"
    if len(steps) < 2:
        linear = (line, "not tested: two sizes always fit a line")
    else:
        linear = (line, "met" if linear_ok else f"**MISSED**: cost per 1k notes went {' → '.join(f'{x:.2f} s' for x in steps)}")
    growth = _memory_growth(s["runs"])
    total = growth["total"]
    flat_ok = total["at_1m_mib"] <= (1 + FLAT_AT_1M) * total["first_mib"]
    culprits = sorted((g for g in growth if g not in ("total", "all Ray workers")), key=lambda g: -growth[g]["per_100k_mib"])
    where = "; ".join(f"{g} {growth[g]['first_mib']:,.0f} → {growth[g]['last_mib']:,.0f} MiB" for g in culprits[:2])
    flat = (f"total peak RSS {total['first_mib']:,.0f} → {total['last_mib']:,.0f} MiB ({total['per_100k_mib']:+,.0f} MiB per 100k notes)",
            "met" if flat_ok else f"**MISSED**: growing as measured, {total['at_1m_mib'] / 1024:,.1f} GiB at 1M notes; it grows in: {where}")
    return linear, flat


def _skipped_lines(skipped: list[dict], unit: str) -> list[str]:
    return [f"- **{s['size']:,} {unit}: not measured**, skipped to keep the run within its budget "
            f"(predicted {s['predicted_s'] if s['predicted_s'] is not None else '?'} s from the smaller sizes, "
            f"{s['budget_left_s']} s left). Run it with `python bench/{'scale.py' if s['job'] == 'scale' else 'bench_map.py'} "
            f"--sizes {s['size']}` or a larger `run_all.py --budget-min`." for s in skipped]


def _failures(job: dict) -> list[str]:
    return [f"- A further size failed: `{f.get('command', '?')}`: {f.get('error', '')}" for f in job.get("failures", [])]


def _memory_growth(runs: list[dict]) -> dict[str, dict]:
    """Per process group: peak MiB at the smallest and largest size, the slope, and where it leads at 1M notes."""
    first, last = runs[0], runs[-1]
    growth = {}
    for group, key in MEMORY_GROUPS.items():
        a, b = first["memory"].get(key), last["memory"].get(key)
        if a is None or b is None:
            continue
        slope = (b - a) / (last["notes"] - first["notes"]) if last["notes"] > first["notes"] else 0.0
        growth[group] = {"first_mib": a, "last_mib": b, "per_100k_mib": slope * 1e5, "at_1m_mib": a + max(slope, 0) * (1e6 - first["notes"])}
    return growth


def _scale(job: dict, skipped: list[dict], separate: dict | None = None) -> str:
    out = ["## Scale: the pipeline from 10k notes up", ""]
    if job.get("status") != "ok":
        return "\n".join(out + [_not_run(job)])
    s = job["result"]
    out.append(
        f"`{s['command']}`: each size one subprocess driving `run_embed` as `embednv embed` does, with a fresh local Ray "
        f"instance, on a fresh sample corpus (seed 0; writing it is not timed), {s['repetitions']} run per size. Model: "
        f"{s['model']}, so the tokenizer, reader, Ray Data stages, batching and shard writing are measured, not MiniLM "
        "(`--cpu-threads 1`: ops this small run slower on two threads, and the tokenizer needs the other core). Memory: RSS sampled "
        "every 0.25 s (psutil) for the driver and for the processes under it; workers = Ray worker processes (`ray::...`, "
        "summed per sample; PSS in the JSON splits the object-store pages they share), Ray daemons = gcs_server, raylet, agents."
    )
    rows = [[f"{r['notes']:,}{' †' if r.get('separate') else ''}", r["tokens"], r["seconds"], r["notes_per_s"], r["tokens_per_s"], r["memory"]["driver_peak_rss_mib"],
             r["memory"]["workers_peak_rss_mib"], r["memory"]["single_worker_peak_rss_mib"], r["memory"]["ray_system_peak_rss_mib"],
             r["memory"]["total_peak_rss_mib"]] for r in s["runs"]]
    out += ["", md_table(["Notes", "Tokens", "Wall s", "Notes/s", "Tokens/s", "Driver peak MiB", "Workers peak MiB (sum)",
                          "Largest worker MiB", "Ray daemons MiB", "Total peak MiB"], rows)]
    f = s.get("fit")
    if f:
        linear, flat = _scale_verdicts(s)
        out += ["", f"- **Time**: {linear[0]}; cost per 1k notes between consecutive sizes: "
                f"{', '.join(f'{x:.2f} s' for x in f['marginal_s_per_1k_notes'])}. Goal linear (within {LINEAR_TOLERANCE:.0%}): {linear[1]}.",
                f"- **Memory**: {flat[0]}. Goal flat (growing as measured, at most {FLAT_AT_1M:.0%} more by 1M notes): {flat[1]}.",
                "- Peak MiB per process group, smallest → largest size: " + "; ".join(
                    f"{g} {v['first_mib']:,.0f} → {v['last_mib']:,.0f} ({v['per_100k_mib']:+,.0f} per 100k notes)"
                    for g, v in _memory_growth(s["runs"]).items()) + "."]
        if separate:
            out.append(f"- † measured apart by `make bench-1m` (`{separate['command']}`, {separate['seconds'] / 60:.0f} minutes) "
                       f"on {separate['generated_at']}, commit {separate['git_commit']}: too long for `make bench`'s 20 minutes "
                       f"on 2 cores. Its file: `{separate['file']}`. Its wall times are comparable with the rows above only "
                       f"when both machines were quiet (load average at its start: {separate.get('load_average_1m_at_start', 'not recorded')}); "
                       "the time fit mixes the two measurements.")
        if separate and separate.get("process_peak_growth"):
            out += ["", _process_flatness(separate)]
        if f.get("extrapolated"):
            e = f["extrapolated"]
            out.append(f"- **1M notes: not measured.** Extrapolated from the linear fit: about {e['seconds'] / 60:.0f} minutes "
                       f"(label: extrapolation, {e['how']}).")
    measured = {r["notes"] for r in s["runs"]}
    return "\n".join(out + _skipped_lines([k for k in skipped if k["size"] not in measured], "notes") + _failures(job))


def _process_flatness(separate: dict) -> str:
    """Each process role's peak at the smallest and largest size `make bench-1m` ran side by side."""
    first, last = separate["sizes"][0], separate["sizes"][-1]
    rows, worst = [], 0.0
    for role, g in sorted(separate["process_peak_growth"].items()):
        uss, rss = g["uss"], g["rss"]
        worst = max(worst, uss["growth"] or 0)
        rows.append([role, f"{uss['mib'][0]:,.0f} → {uss['mib'][1]:,.0f}", uss["growth"], f"{rss['mib'][0]:,.0f} → {rss['mib'][1]:,.0f}",
                     rss["growth"], "yes" if (uss["growth"] or 0) <= 1 + FLAT_AT_1M else "**no**"])
    verdict = "met" if worst <= 1 + FLAT_AT_1M else "**MISSED**"
    return "\n".join([
        f"**Every process, {first:,} → {last:,} notes** (measured side by side by `make bench-1m`, same code and machine): "
        "each role's largest process, peak private memory (USS: what the process holds itself) and peak RSS (which also "
        "counts object-store pages it maps, shared with other processes). Goal: every USS peak at the largest size within "
        f"{FLAT_AT_1M:.0%} of the smallest: {verdict} (worst {worst:.2f}x).", "",
        md_table(["Process role", f"USS MiB", "USS ratio", "RSS MiB", "RSS ratio", f"within {FLAT_AT_1M:.0%}"], rows)])


def _map(job: dict, skipped: list[dict]) -> str:
    out = ["## Map stage: PCA, k-means, t-SNE on CPU", ""]
    if job.get("status") != "ok":
        return "\n".join(out + [_not_run(job)])
    m = job["result"]
    results = m.get("results", [])
    out.append(f"`{job['command']}` (`bench/bench_map.py`): synthetic unit vectors, each size in its own process, 1 run per size; "
               "peak = highest RSS of that process sampled every 20 ms while the phase ran.")
    rows = []
    for r in results:
        ph = r.get("phases", {})
        cell = lambda name: (ph.get(name, {}).get("seconds"), ph.get(name, {}).get("peak_rss_mb"))  # noqa: E731
        scales = " and ".join(f"{p:g}" for p in r.get("tsne_perplexities", []))
        rows.append([r.get("n"), r.get("dim"), *cell("pca"), *cell("kmeans"), r.get("k"), scales or r.get("error", "–"),
                     *cell("tsne"), r.get("total_s")])
    out += ["", md_table(["Points", "Dim", "PCA s", "PCA peak MB", "k-means s", "k-means peak MB", "k", "t-SNE perplexities",
                          "t-SNE s", "t-SNE peak MB", "Total s"], rows),
            "", "t-SNE perplexities: 30 alone is single-scale (`--multiscale off`); two values are the default of "
            "`embednv map`, which adds a second scale of n/100 up to 100k points. Its neighbour lists grow with n, so its "
            "cost grows ~n²: at 100k points on 2 cores it did not finish in 25 minutes (docs/map.md), hence single-scale "
            "at the larger sizes here."]
    lines = _skipped_lines(skipped, "points") + _failures(job)
    return "\n".join(out + ([""] + lines if lines else []))


def _gpu(job: dict) -> str:
    out = ["## GPU: NV-Embed-v2 acceptance", "",
           "`bench/nvembed_device.py` runs the shipped code on one lent GPU in one call (no Ray, no pip): a random "
           "full-size NV-Embed-v2 checkpoint in the official layout, loaded by embednv's loader; every MTSamples note "
           "through the pipeline's own stages; bf16 against fp32; an out-of-memory split forced by a memory cap; the map "
           "stage on 100k 4096-d vectors. From the repository root: `mkdir -p .gpu && cp ../shared/data/mtsamples.parquet "
           ".gpu/ && echo /.gpu/ >> .git/info/exclude`, then one device run with carry `[\".gpu\"]` and "
           f"`{GPU_COMMAND}`; copy the JSON to `docs/{GPU_FILE}` and run `python bench/run_all.py --render`.", ""]
    if job.get("status") != "ok":
        return "\n".join(out + ["**Pending**: no device was lent to a session yet."])
    r = job["result"]
    sections = r.get("sections", {})
    out.append(f"From `{job['file']}`: {r.get('card')}, torch {r.get('torch')}, CUDA {r.get('cuda')}, commit {r.get('git_commit')}, "
               f"{r.get('generated_at')}, {r.get('seconds', 0):.0f} s in all{' (**dry run**)' if r.get('dry_run') else ''}.")
    rows = []
    for name, sec in sections.items():
        if sec.get("status") != "ok":
            rows.append([name, sec.get("status"), sec.get("error") or sec.get("why")])
            continue
        figures = {
            "checkpoint": lambda x: f"{x['bytes'] / 1e9:.1f} GB, {x['params'] / 1e9:.2f}B params, {x['seconds']} s; tokenizer: {x['tokenizer']}",
            "load": lambda x: f"{x['seconds_to_load']} s, {x.get('gpu_allocated_gib')} GiB on the GPU",
            "mtsamples": lambda x: (f"{x['embedded']:,} of {x['rows_in_file']:,} notes ({x['errored']} error rows), {x['window_tokens']:,} tokens: "
                                    f"{x['tokens_per_s']:,.0f} tokens/s, {x['notes_per_s']:,.1f} notes/s, MFU {x['mfu'] if x['mfu'] is None else format(x['mfu'], '.1%')}, "
                                    f"peak GPU {x['peak_gpu_gib']} GiB, padding efficiency {x['padding_efficiency']}, "
                                    f"{x['shards_written']} shards read back ({x['dim_read_back']}-d){'' if x['complete'] else ', **stopped at its time cap**'}"),
            "cosine": lambda x: f"bf16 vs fp32 on {x['notes']} notes: min {x['min_cosine']}, mean {x['mean_cosine']} (goal ≥ {x['goal']}: {'met' if x['goal_met'] else '**MISSED**'})",
            "oom": lambda x: (f"{x['note_tokens']:,}-token note in {x['windows']} windows of {x['window']}: {x['oom_splits']} splits under the cap, "
                              f"embedded {x['embedded']}, cosine to the uncapped vector {x['cosine_to_uncapped']}"),
            "map": lambda x: f"{x['points']:,} x {x['dim']}: {x.get('note')}; seconds per phase {x.get('timings_s')}",
        }.get(name, lambda x: "")
        try:
            rows.append([name, "ok", figures(sec)])
        except (KeyError, TypeError, ValueError):
            rows.append([name, "ok", "see the JSON"])
    return "\n".join(out + ["", md_table(["Section", "Status", "Figures"], rows)])


def _operations(jobs: dict, name: str) -> str:
    """Crash and fan-out figures: measured apart by `make bench-ops`; each script renders its own section."""
    import importlib

    job = jobs.get(name) or {"status": "pending", "command": "make bench-ops", "error": "not measured yet"}
    if job.get("status") != "ok":
        title = {"crash": "Lost work on a crash", "fanout": "How many GPUs one driver feeds"}[name]
        return f"## {title}\n\n**Not measured** ({job.get('error')}): run `{job['command']}`."
    return importlib.import_module(f"bench.{name}").markdown(job["result"]).rstrip("\n")


def _fullsize(job: dict) -> str:
    out = ["## Full-size checkpoint on CPU: `make check-fullsize`", "",
           "A random NV-Embed-v2 checkpoint at full size (7.85B parameters, bf16, 4 shards, official layout) through the real "
           "`embednv embed` (Ray, the CPU actor, `--device cpu --dtype bfloat16`) on a few short notes; the embed actor's "
           "peak host memory is compared with the size of the weights (goal ≤ 1.10x: loading keeps no second copy). "
           "The checkpoint is deleted afterwards.", ""]
    if job.get("status") != "ok":
        return "\n".join(out + [f"**Not measured** ({job.get('status')}): {job.get('error', '')}. Run `{job['command']}`."])
    r = job["result"]
    m, c = r["memory"], r["check"]
    out.append(f"From `{job['file']}` ({r['generated_at']}, commit {r['git_commit']}, {r['seconds'] / 60:.0f} minutes): "
               f"checkpoint {r['checkpoint']['files_bytes'] / 1e9:.2f} GB written in {r['checkpoint']['seconds']} s "
               f"({r['checkpoint']['method']}); tokenizer: {r['checkpoint']['tokenizer']}.")
    out += ["", md_table(["Figure", "Value"], [
        ["Output", f"{c.get('rows')} notes, {c.get('dim')}-d, max | norm - 1 | {c.get('max_norm_error', 0):.1e}: {'ok' if c['ok'] else '**wrong**'}"],
        ["Embed actor peak RSS", f"{m['single_worker_peak_rss_mib'] / 1024:.2f} GiB = {r['actor_peak_rss_over_checkpoint']:.3f}x the weights "
                                 f"(goal ≤ {r['goal_ratio']}: {'met' if r['goal_met'] else '**MISSED**'})"],
        ["Embed actor peak USS (private)", f"{m['single_worker_peak_uss_mib'] / 1024:.2f} GiB = {r['actor_peak_uss_over_checkpoint']:.3f}x"],
        ["All processes, peak RSS", f"{m['total_peak_rss_mib'] / 1024:.2f} GiB"],
        ["CPU tokens/s", f"{r['tokens_per_s_embednv_clock']} on embednv's clock, {r['tokens_per_s_whole_run']} over the whole "
                         f"{r['wall_seconds']:.0f} s command (Ray start and reading 15.7 GB included; {c.get('tokens')} tokens)"],
        ["CLI summary", f"`{r['cli_summary']}`"],
    ])]
    return "\n".join(out)


def _footer(doc: dict) -> str:
    rows = [[name, j.get("status"), j.get("seconds"), f"`{j['command']}`" if j.get("command") else "–"] for name, j in doc["jobs"].items()]
    return "## Jobs\n\n" + md_table(["Job", "Status", "Seconds", "Command"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every job at tiny sizes (about 2 minutes): a smoke test")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where benchmarks.json and benchmarks.md go")
    parser.add_argument("--only", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    parser.add_argument("--budget-min", type=float, default=20.0, help="minutes for the whole run: the larger sizes run only while they fit")
    parser.add_argument("--gpu-json", type=Path, default=None, help=f"the GPU acceptance JSON, if not --out/{GPU_FILE}")
    parser.add_argument("--render", action="store_true", help="only rewrite benchmarks.md from the benchmarks.json in --out")
    parser.add_argument("--note", default="", help="a line printed at the top of benchmarks.md (e.g. how quiet the machine was)")
    args = parser.parse_args()
    only = [j.strip() for j in args.only.split(",") if j.strip()]
    unknown = sorted(set(only) - set(JOBS))
    if unknown:
        parser.error(f"unknown job(s) {unknown}. Valid: {', '.join(JOBS)}")

    if args.render:
        document = json.loads((args.out / "benchmarks.json").read_text())
        document["separate_scale"] = add_separate_scale(document["jobs"], args.out) or document.get("separate_scale")
        document["jobs"].update(separate_jobs(args.out, args.gpu_json))
        (args.out / "benchmarks.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        (args.out / "benchmarks.md").write_text(markdown(document))
        log(f"run_all: rewrote {args.out / 'benchmarks.md'} from {args.out / 'benchmarks.json'}")
        return

    started = time.perf_counter()
    document = {
        "generated_at": now(),
        "quick": args.quick,
        "command": "python bench/run_all.py" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only != ",".join(JOBS) else ""),
        "note": args.note,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "versions": library_versions(),
        "budget_min": args.budget_min,
    }
    jobs: dict[str, dict] = {}
    skipped: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as tmp:
        for name in JOBS:
            if name not in only:
                jobs[name] = {"status": "not run", "error": "not in --only"}
                continue
            jobs[name] = invoke(name, Path(tmp), (QUICK_RUNS if args.quick else FIRST_RUNS).get(name, []))
        for name, extra_args in [] if args.quick else EXTRA_RUNS:
            if name in only and jobs[name].get("status") == "ok":
                jobs[name] = merge(name, jobs[name], invoke(name, Path(tmp), extra_args))
        if not args.quick and "scale" in only and jobs["scale"].get("status") == "ok":
            n = LARGER_SCALE
            left = args.budget_min * 60 - (time.perf_counter() - started) - RESERVE_S
            predicted = predict_scale_s(n, jobs["scale"])
            if predicted is None or predicted > left:
                skipped.append({"job": "scale", "size": n, "predicted_s": None if predicted is None else round(predicted), "budget_left_s": round(left)})
                log(f"run_all: scale at {n:,}: skipped, predicted {predicted or 0:.0f} s with {left:.0f} s of the budget left")
            else:
                jobs["scale"] = merge("scale", jobs["scale"], invoke("scale", Path(tmp), ["--sizes", str(n)]))
    jobs.update(separate_jobs(args.out, args.gpu_json))
    document["skipped_for_budget"] = skipped
    document["separate_scale"] = None if args.quick else add_separate_scale(jobs, args.out)
    document["total_seconds"] = round(time.perf_counter() - started, 1)
    document.update(headline(jobs))
    document["jobs"] = jobs

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (args.out / "benchmarks.md").write_text(markdown(document))
    log(f"run_all: wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.md'} in {document['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
