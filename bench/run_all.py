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
on a lent GPU: see GPU_COMMAND in report_separate.py) and docs/benchmarks-fullsize.json
(`make check-fullsize`).

This module only runs jobs and collects their documents; bench/report.py turns them into Markdown.
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

from bench.common import REPO, git_commit, library_versions, log, machine_info, now  # noqa: E402
from bench.report import markdown  # noqa: E402
from bench.report_index import INDEX_COMMAND, INDEX_FILE  # noqa: E402
from bench.report_map_1m import MAP_1M_COMMAND, MAP_1M_FILE  # noqa: E402
from bench.report_map_update import MAP_UPDATE_COMMAND, MAP_UPDATE_FILE  # noqa: E402
from bench.report_model import MODEL_COMMAND, MODEL_FILE  # noqa: E402
from bench.report_separate import (  # noqa: E402
    FULLSIZE_COMMAND,
    GPU_COMMAND,
    GPU_FILE,
    GPU_PENDING,
    MAP_COMMAND,
    OPERATIONS_COMMAND,
)
from bench.report_update import UPDATE_100K_FILE, UPDATE_COMMAND, UPDATE_FILE, UPDATE_PROBE_FILE  # noqa: E402

BENCH = Path(__file__).resolve().parent
JOBS = ("padding", "throughput", "scale", "map")
# Arguments of each job's first invocation; three scale sizes so that linearity is testable.
# The map runs single-scale t-SNE at every size: the default second scale (n/100) grows ~n^2 and
# does not finish at 100k points on 2 cores; its cost is shown at 10k by EXTRA_RUNS.
FIRST_RUNS = {
    "scale": ["--sizes", "10000,30000,100000"],
    "map": ["--sizes", "10000,50000,100000", "--multiscale", "off"],
}
QUICK_RUNS = {
    "padding": ["--quick"],
    "throughput": ["--quick"],
    "scale": ["--quick"],
    "map": ["--sizes", "500", "--multiscale", "off"],
}
EXTRA_RUNS = [("map", ["--sizes", "10000", "--multiscale", "auto"])]
LARGER_SCALE = 1_000_000  # only while the budget lasts; else measured apart by `make bench-1m`
SEPARATE_SCALE = "benchmarks-scale-1m.json"  # written by `make bench-1m`, merged into the scale job
MARGIN = 1.2  # predictions of a larger size are scaled up by this much before comparing with the time left
RESERVE_S = 30  # kept back for writing the reports
TIMEOUTS_S = {"padding": 900, "throughput": 1800, "map": 3600, "scale": 3600}  # hangs only; the budget is separate
FULLSIZE_FILE = "benchmarks-fullsize.json"  # GPU_FILE and the commands are in report_separate.py: the report shows them
CRASH_FILE, FANOUT_FILE = "benchmarks-crash.json", "benchmarks-fanout.json"  # `make bench-ops`
MAP_DEFAULT_FILE, MAP_HTML_FILE = "benchmarks-map-default.json", "benchmarks-map-html.json"  # `make bench-map`
GOALS = {"padding_efficiency": 0.97, "ratio_vs_ceiling": 0.9, "ratio_vs_sentence_transformers": 1.0}


def separate_job(path: Path, command: str, pending: str) -> dict:
    """A job measured elsewhere (another machine, another make target): its JSON file, or pending."""
    if path.is_file():
        return {"status": "ok", "command": command, "file": f"docs/{path.name}", "result": json.loads(path.read_text())}
    return {"status": "pending", "command": command, "error": pending}


def separate_jobs(out_dir: Path, gpu_json: Path | None = None) -> dict:
    """Every job measured elsewhere, read afresh on each run and render so the newest file wins."""
    return {
        "gpu": separate_job(gpu_json or out_dir / GPU_FILE, GPU_COMMAND, GPU_PENDING),
        "fullsize": separate_job(
            out_dir / FULLSIZE_FILE,
            FULLSIZE_COMMAND,
            "no finished run recorded (it needs ~16 GB of disk, ~18 GiB of free memory and a quiet machine)",
        ),
        "crash": separate_job(out_dir / CRASH_FILE, OPERATIONS_COMMAND, "not measured yet"),
        "fanout": separate_job(out_dir / FANOUT_FILE, OPERATIONS_COMMAND, "not measured yet"),
        "map_default": separate_job(out_dir / MAP_DEFAULT_FILE, MAP_COMMAND, "not measured yet"),
        "map_html": separate_job(out_dir / MAP_HTML_FILE, MAP_COMMAND, "not measured yet"),
        "index": separate_job(out_dir / INDEX_FILE, INDEX_COMMAND, "not measured yet"),
        "map_1m": separate_job(out_dir / MAP_1M_FILE, MAP_1M_COMMAND, "not measured yet"),
        "map_update": separate_job(out_dir / MAP_UPDATE_FILE, MAP_UPDATE_COMMAND, "not measured yet"),
        "nvembed_model": separate_job(out_dir / MODEL_FILE, MODEL_COMMAND, "not measured yet"),
        "update": separate_job(out_dir / UPDATE_FILE, UPDATE_COMMAND, "not measured yet"),
        "update_probe": separate_job(out_dir / UPDATE_PROBE_FILE, UPDATE_COMMAND, "not measured yet"),
        "update_100k": separate_job(out_dir / UPDATE_100K_FILE, UPDATE_COMMAND, "not measured yet"),
    }


def run_job(name: str, cmd: list[str], json_path: Path, timeout: float) -> dict:
    """Run one job, echoing its stderr (progress) live; returns its JSON document or the failure."""
    log(f"run_all: {name}: {' '.join(cmd[1:])}")
    started = time.perf_counter()
    # Its own process group, so that a job that hangs is ended together with the Ray processes it started.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True
    )
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
    """One invocation of a job into a fresh JSON file under `tmp`; a job that cannot run is skipped, not fatal."""
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
    return MARGIN * (
        fit["fixed_s"] + fit["ms_per_note"] * n / 1e3 + GENERATE_S_PER_NOTE * n
    )  # fixed_s: process and Ray start


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
    return {
        **job,
        "command": merged["command"],
        "seconds": round(job["seconds"] + extra["seconds"], 1),
        "result": merged,
    }


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
    return {
        "file": f"docs/{SEPARATE_SCALE}",
        "command": separate["command"],
        "generated_at": separate.get("generated_at"),
        "git_commit": separate.get("git_commit"),
        "seconds": separate.get("seconds"),
        "notes": [r["notes"] for r in new],
        "sizes": [r["notes"] for r in separate["runs"]],
        "load_average_1m_at_start": (separate.get("machine") or {}).get("load_average_1m_at_start"),
        "process_peak_growth": fit(sorted(separate["runs"], key=lambda r: r["notes"])).get("process_peak_growth"),
    }


def headline(jobs: dict) -> dict:
    """The top-level figures of benchmarks.json: None where the job did not run or lacked its data."""
    ok = lambda name: jobs.get(name, {}).get("result") if jobs.get(name, {}).get("status") == "ok" else None  # noqa: E731
    padding, throughput = ok("padding"), ok("throughput")
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


def main() -> None:
    """Parse the flags, then either re-render from the JSON in --out or run the jobs and write both files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every job at tiny sizes (about 2 minutes): a smoke test")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where benchmarks.json and benchmarks.md go")
    parser.add_argument("--only", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    parser.add_argument(
        "--budget-min",
        type=float,
        default=20.0,
        help="minutes for the whole run: the larger sizes run only while they fit",
    )
    parser.add_argument("--gpu-json", type=Path, default=None, help=f"the GPU acceptance JSON, if not --out/{GPU_FILE}")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite benchmarks.md from the benchmarks.json in --out"
    )
    parser.add_argument(
        "--note", default="", help="a line printed at the top of benchmarks.md (e.g. how quiet the machine was)"
    )
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
        "command": "python bench/run_all.py"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only != ",".join(JOBS) else ""),
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
                skipped.append(
                    {
                        "job": "scale",
                        "size": n,
                        "predicted_s": None if predicted is None else round(predicted),
                        "budget_left_s": round(left),
                    }
                )
                log(
                    f"run_all: scale at {n:,}: skipped, predicted {predicted or 0:.0f} s with {left:.0f} s of the budget left"
                )
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
    log(
        f"run_all: wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.md'} in {document['total_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
