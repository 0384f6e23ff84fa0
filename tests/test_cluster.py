"""Cluster mode: the job entry points submitted to a real Ray head, and the shape of cluster/*.yaml.

The head is a `ray start --head --block` of our own, dashboard on loopback, with free ports
and its own --temp-dir, so that it neither meets nor stops the local Ray instances that other
tests (and other people on the machine) start: `ray.init()` without an address looks in the
default temp dir, and `ray stop` would kill every Ray process on the machine. It runs with token
authentication and a token of its own, as a real cluster should. It is stopped through its own
`ray start` process and process group, then whatever still runs from its temp dir, by pid.
(Ray advertises the machine's address for the GCS even with --node-ip-address=127.0.0.1.)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
VERDICTS = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}  # as `ray job status` words them
N_NOTES, ROWS_PER_SHARD = 200, 80


# --------------------------------------------------------------------------- the Ray head


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a cluster address or token, so nothing joins the wrong Ray."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") and not k.startswith("RAY_AUTH")
    }
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **extra}


class Head:
    def __init__(self, root: Path, num_gpus: int = 0, **node_env: str):
        """A head with `num_gpus` GPU resources (advertised only: Ray believes the number it is given);
        `node_env` is the environment of the node, as an image would set it, seen by every worker."""
        self.root = root
        ports = _free_ports(9)
        gcs, dashboard, client, agent_listen, agent_grpc, node_manager, object_manager, metrics, runtime_env = ports
        self.dashboard = f"http://127.0.0.1:{dashboard}"
        self.gcs = f"127.0.0.1:{gcs}"  # what a driver outside `ray job submit` joins (RAY_ADDRESS)
        # Token authentication on, as on a real cluster, with a token of our own: Ray otherwise
        # switches it on or off depending on whether ~/.ray/auth_token happens to exist.
        self.token = secrets.token_hex(32)
        # `python` in a job's entrypoint is found on the PATH the head was started with.
        self.env = _clean_env(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            TOKENIZERS_PARALLELISM="false",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
            **node_env,
        )  # nothing to drain: stop at once
        command = [
            RAY, "start", "--head", "--block", "--num-cpus=2", f"--num-gpus={num_gpus}", "--node-ip-address=127.0.0.1",
            f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_listen}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}", f"--object-store-memory={256 << 20}",
            f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
        ]  # fmt: skip
        self.log = open(root / "ray-start.log", "wb")
        # Its own session and process group, so that stopping it can reach all it started and nothing else.
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with self.get("/api/version") as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the Ray dashboard did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def job_driver_pid(self, job_id: str) -> int:
        """The pid of the job's driver process, as the cluster recorded it when the driver connected."""
        with self.get(f"/api/jobs/{job_id}") as response:
            return int(json.load(response)["driver_info"]["pid"])

    def get(self, path: str):
        request = urllib.request.Request(f"{self.dashboard}{path}", headers={"Authorization": f"Bearer {self.token}"})
        return urllib.request.urlopen(request, timeout=10)

    def log_tail(self) -> str:
        return (self.root / "ray-start.log").read_text(errors="replace")[-3000:]

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO)

    def submit(self, *entrypoint: str, runtime_env: dict | None = None) -> str:
        """`ray job submit --working-dir <repo> --no-wait -- <entrypoint>`; returns the submission id.
        `runtime_env` (env_vars, say) applies to the job's driver and to every task it starts."""
        job_id = f"embednv-test-{uuid.uuid4().hex[:8]}"
        extra = ["--runtime-env-json", json.dumps(runtime_env)] if runtime_env else []
        result = self.ray(
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--working-dir",
            str(REPO),
            *extra,
            "--submission-id",
            job_id,
            "--no-wait",
            "--log-style",
            "record",
            "--",
            *entrypoint,
        )
        assert result.returncode == 0, f"ray job submit failed:\n{result.stdout}\n{result.stderr}"
        return job_id

    def wait_job(self, job_id: str, timeout: float = 240) -> tuple[str, str]:
        """Poll until the job is terminal; returns (status as `ray job status` says it, logs)."""
        deadline, status = time.time() + timeout, "PENDING"
        while time.time() < deadline:
            # The REST API is cheap to poll; the verdict below comes from the CLI.
            try:
                with self.get(f"/api/jobs/{job_id}") as response:
                    status = json.load(response).get("status", status)
            except OSError:
                pass
            if status in TERMINAL:
                break
            time.sleep(2)
        else:
            self.ray("job", "stop", "--address", self.dashboard, job_id)
        said = self.ray("job", "status", "--address", self.dashboard, "--log-style", "record", job_id)
        text = said.stdout + said.stderr
        ended = re.search(rf"Job '{re.escape(job_id)}' (succeeded|failed|was stopped)", text)
        verdict = VERDICTS[ended[1]] if ended else f"not finished after {timeout:.0f} s: {text.strip()[-300:]}"
        logs = self.ray("job", "logs", "--address", self.dashboard, job_id).stdout
        return verdict, logs

    def stop(self) -> None:
        """Stop this head only: `ray start` stops what it started on SIGTERM; then its group, then its temp dir."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
        _kill_started_under(self.root)


def _kill_started_under(root: Path) -> None:
    """Workers and job drivers that left the group carry the unique temp dir in their command line."""
    import psutil

    mine = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid != os.getpid() and str(root) in " ".join(process.info["cmdline"] or ()):
            mine.append(process)
    for process in mine:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(mine, timeout=10)


@pytest.fixture(scope="module")
def head():
    # A short path: Ray's unix sockets live under --temp-dir, and socket paths are capped at 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="embednv-rc-", dir="/tmp"))
    started = Head(root)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def embedded(head):
    """The sample corpus embedded through `jobs/embed_corpus.py`, file:// URIs in and out."""
    corpus = head.root / "corpus.parquet"
    made = subprocess.run(
        [sys.executable, "-m", "embednv.cli", "sample-corpus", str(corpus), "--n", str(N_NOTES)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    corpus_uri, out_uri = f"file://{corpus}", f"file://{head.root / 'emb'}"
    job_id = head.submit(
        "python",
        "jobs/embed_corpus.py",
        corpus_uri,
        "--out",
        out_uri,
        "--model",
        "minilm",
        "--rows-per-shard",
        str(ROWS_PER_SHARD),
    )
    status, logs = head.wait_job(job_id)
    return dict(corpus=corpus, corpus_uri=corpus_uri, out=head.root / "emb", out_uri=out_uri, status=status, logs=logs)


# --------------------------------------------------------------------------- the jobs


def test_embed_job_on_a_ray_cluster_with_file_uris(embedded, head):
    assert embedded["status"] == "SUCCEEDED", f"embed job {embedded['status']}; its logs:\n{embedded['logs'][-4000:]}"
    # The uploaded copy of the repository ran (not the one installed from this checkout), on our cluster.
    ran = re.search(r"embed_corpus\.py: embednv \S+ from (\S+), Ray at (\S+)", embedded["logs"])
    assert ran, embedded["logs"][-2000:]
    assert ran[1].startswith(str(head.root / "ray")), f"ran {ran[1]}, not the copy uploaded with --working-dir"
    assert ran[2] != "auto", "ray job submit should have set RAY_ADDRESS"

    out = embedded["out"]
    shards = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in shards] == [f"part-{i:05d}.parquet" for i in range(-(-N_NOTES // ROWS_PER_SHARD))]
    ids = Counter()
    for shard in shards:
        table = pq.read_table(shard)
        assert table.schema.field("embedding").type.list_size == 384  # all-MiniLM-L6-v2
        ids.update(table.column("note_id").to_pylist())
    ids.update(pq.read_table(out / "_errors" / "errors.parquet").column("note_id").to_pylist())
    assert ids == Counter(range(1, N_NOTES + 1)), "every input row exactly once, embedded or in _errors.parquet"
    assert (out / "_SUCCESS").exists()

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [f["uri"] for f in manifest["inputs"]] == [embedded["corpus_uri"]]
    assert manifest["config"]["out"] == embedded["out_uri"]
    assert manifest["rows_in"] == N_NOTES and manifest["shards"] == len(shards)


def test_map_job_on_a_ray_cluster_reads_the_file_uri_embed_wrote(embedded, head):
    """The map job on the embed job's file:// output; this head has no GPU, so it falls back to CPU in the driver."""
    assert embedded["status"] == "SUCCEEDED", "the map needs the embed job's output"
    out = head.root / "map"
    job_id = head.submit("python", "jobs/map_corpus.py", embedded["out_uri"], "--out", str(out),
                         "--texts", str(embedded["corpus"]))  # fmt: skip
    status, logs = head.wait_job(job_id)
    assert status == "SUCCEEDED", f"map job {status}; its logs:\n{logs[-4000:]}"
    embedded_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in embedded["out"].glob("part-*.parquet"))
    assert pq.read_table(out / "map.parquet").num_rows == embedded_rows
    # The fallback: one placement line that says why, the CPU path in the job's own driver, each phase logged.
    lines = _placement_lines(logs)
    assert len(lines) == 1 and re.search(
        r"placement: local \(the Ray cluster at \S+ has no GPU \(no autoscaler reports a GPU group it can start\), "
        r"so the CPU path runs in this driver\)$",
        lines[0],
    ), lines
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["placement"]["placement"] == "local" and manifest["backend"] == "cpu"
    assert manifest["placement"]["pid"] == manifest["driver"]["pid"] == head.job_driver_pid(job_id)
    for phase in HEAVY_PHASES:
        assert re.search(rf"{phase}: [\d.]+ s, local on \S+ \(pid \d+\), backend cpu", logs), phase


# --------------------------------------------------------------------------- the map's GPU task

FAKE_CUML = REPO / "tests" / "fake_cuml"  # stands in for cuML and CuPy; sees a GPU only where Ray grants one
N_MAP = 240
HEAVY_PHASES = ("pca", "kmeans", "tsne", "metrics")


@pytest.fixture(scope="module")
def gpu_head():
    """A head that advertises one GPU, whose node environment has (the fake) cuML: a GPU worker's image."""
    root = Path(tempfile.mkdtemp(prefix="embednv-rg-", dir="/tmp"))
    started = Head(root, num_gpus=1, PYTHONPATH=os.pathsep.join([str(FAKE_CUML), str(REPO)]))
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gpu_head_without_cuml():
    """A head that advertises one GPU, whose node environment has no cuML: a GPU worker's image without the gpu extra."""
    root = Path(tempfile.mkdtemp(prefix="embednv-rb-", dir="/tmp"))
    started = Head(root, num_gpus=1, PYTHONPATH=str(REPO))
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


def _planted_shards(emb_dir: Path, n: int = N_MAP, dim: int = 32) -> Path:
    """Embedding shards as `embednv embed` writes them: 4 planted clusters, 2 shards, a manifest."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, dim)) * 3
    x = (centres[rng.integers(0, 4, n)] + rng.standard_normal((n, dim))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    emb_dir.mkdir(parents=True)
    for s, rows in enumerate(np.array_split(np.arange(n), 2)):
        table = pa.table(
            {
                "note_id": pa.array(rows + 1, pa.int64()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].ravel()), dim),
                "n_tokens": pa.array(np.full(len(rows), 50, np.int32)),
                "n_chunks": pa.array(np.ones(len(rows), np.int32)),
            }
        )
        pq.write_table(table, emb_dir / f"part-{s:05d}.parquet")
    (emb_dir / "_manifest.json").write_text(json.dumps({"id_column": "note_id", "dim": dim}))
    return emb_dir


def _placement_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if "placement: " in line]


def test_map_job_runs_pca_kmeans_tsne_as_a_gpu_task_and_writes_from_the_driver(gpu_head):
    emb, out = _planted_shards(gpu_head.root / "emb"), gpu_head.root / "map"
    job_id = gpu_head.submit("python", "jobs/map_corpus.py", f"file://{emb}", "--out", str(out), "--clusters", "4")
    status, logs = gpu_head.wait_job(job_id)
    assert status == "SUCCEEDED", f"map job {status}; its logs:\n{logs[-4000:]}"
    manifest = json.loads((out / "_manifest.json").read_text())
    where = manifest["placement"]
    # Scheduled by Ray on the GPU it advertised, in another process than the job's driver ...
    assert where["placement"] == "gpu-worker" and where["gpu_ids"] == ["0"] and where["resources"].get("GPU") == 1
    assert manifest["driver"]["pid"] == gpu_head.job_driver_pid(job_id) != where["pid"]
    # ... where (the fake) cuML found that GPU: the driver, holding none, would have said CPU.
    assert manifest["backend"] == "cuml" and manifest["tsne"]["as_run"]["library"] == "cuML"
    # The job log: one placement line, then each heavy phase with its time, node, GPU and backend.
    lines = _placement_lines(logs)
    assert len(lines) == 1 and re.search(
        r"placement: gpu-worker \(the Ray cluster at \S+ has 1 GPU\(s\)\)$", lines[0]
    ), lines
    for phase in HEAVY_PHASES:
        assert re.search(
            rf"\] {phase}: [\d.]+ s, gpu-worker on \S+ \(node [0-9a-f]{{8}}, GPU 0\), backend cuml", logs
        ), phase
    assert set(manifest["timings_s"]) >= {*HEAVY_PHASES, "write", "render"}
    assert pq.read_table(out / "map.parquet").column("note_id").to_pylist() == list(range(1, N_MAP + 1))


def test_the_gpu_task_streams_the_shards_itself_never_the_driver(gpu_head):
    """A driver that cannot read a vector (its shard reader and its compute replaced by failures) still maps."""
    emb, out = _planted_shards(gpu_head.root / "emb-2"), gpu_head.root / "map-2"
    code = (
        "import sys\n"
        "import embednv.mapping.compute as compute, embednv.shards as reader\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('the driver touched the vectors')\n"
        "reader.iter_batches = compute.compute = refuse\n"
        "from embednv.cli import main\n"
        f"sys.argv = ['embednv', 'map', {str(emb)!r}, '--out', {str(out)!r}, '--placement', 'gpu-worker', '--clusters', '4']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**gpu_head.env, "RAY_ADDRESS": gpu_head.gcs},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["placement"]["placement"] == "gpu-worker" and manifest["backend"] == "cuml"
    assert pq.read_table(out / "map.parquet").num_rows == N_MAP


def test_the_gpu_task_checks_the_vectors_it_reads_and_fails_in_one_line(gpu_head):
    """The map's checks run where the vectors are read, on the GPU worker too: a NaN row is named, not a crash."""
    import numpy as np
    import pyarrow as pa

    emb, out = _planted_shards(gpu_head.root / "emb-nan"), gpu_head.root / "map-nan"
    shard = pq.read_table(emb / "part-00000.parquet")
    x = np.stack(shard.column("embedding").to_numpy(zero_copy_only=False))
    x[5] = np.nan
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel().astype(np.float32)), x.shape[1])
    pq.write_table(shard.set_column(1, "embedding", vectors), emb / "part-00000.parquet")
    done = subprocess.run(
        [sys.executable, "-m", "embednv.cli", "map", str(emb), "--out", str(out), "--placement", "gpu-worker"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**gpu_head.env, "RAY_ADDRESS": gpu_head.gcs},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: on the GPU worker: {emb}: 1 of {N_MAP} embeddings are not directions: 1 NaN or inf (note_id 6); "
        "a map needs every vector finite and non-zero: re-embed those notes or leave them out"
    ], done.stderr[-3000:]
    assert not out.exists()


def test_phase_lines_reach_the_job_log_while_the_gpu_task_runs(gpu_head):
    """Each phase's line is in `ray job logs` when the phase ends, not when the task does (its t-SNE held open)."""
    emb, out, gate = _planted_shards(gpu_head.root / "emb-3"), gpu_head.root / "map-3", gpu_head.root / "tsne-gate"
    job_id = gpu_head.submit("python", "jobs/map_corpus.py", f"file://{emb}", "--out", str(out), "--clusters", "4",
                             runtime_env={"env_vars": {"FAKE_CUML_TSNE_GATE": str(gate)}})  # fmt: skip
    deadline, logs = time.time() + 75, ""
    while time.time() < deadline and not re.search(r"\] kmeans: [\d.]+ s, gpu-worker", logs):
        time.sleep(2)
        logs = gpu_head.ray("job", "logs", "--address", gpu_head.dashboard, job_id).stdout
    with gpu_head.get(f"/api/jobs/{job_id}") as response:
        running = json.load(response)["status"]
    gate.touch()  # the t-SNE may end now
    assert re.search(r"\] pca: [\d.]+ s, gpu-worker", logs) and re.search(r"\] kmeans: [\d.]+ s, gpu-worker", logs), (
        logs[-3000:]
    )
    assert running == "RUNNING" and "] tsne: " not in logs, "the phase lines came only with the task's end"
    status, logs = gpu_head.wait_job(job_id)
    assert status == "SUCCEEDED", f"map job {status}; its logs:\n{logs[-4000:]}"
    assert re.search(r"\] tsne: [\d.]+ s, gpu-worker", logs)


def test_a_gpu_worker_without_cuml_fails_in_one_line_and_gives_its_gpu_back(gpu_head_without_cuml):
    """--placement gpu-worker on a worker whose environment has no cuML: one error line, no CPU map on the GPU."""
    head = gpu_head_without_cuml
    emb, out = _planted_shards(head.root / "emb"), head.root / "map"
    started = time.time()
    job_id = head.submit(
        "python", "jobs/map_corpus.py", f"file://{emb}", "--out", str(out), "--placement", "gpu-worker"
    )
    status, logs = head.wait_job(job_id)
    assert status == "FAILED", logs[-3000:]
    errors = [line for line in logs.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.fullmatch(
        r"error: on the GPU worker: \S+ has no cuML \(cuML is not installed\): install the gpu extra in the GPU "
        r"workers' environment \(cluster/README.md\), or use --placement local",
        errors[0],
    ), logs[-3000:]
    assert not re.search(r"\] (pca|kmeans|tsne): ", logs) and not (out / "map.parquet").exists()
    # The task ended, so Ray has the GPU back: a driver finds it free.
    code = (
        "import ray, time; ray.init(); deadline = time.time() + 30\n"
        "while ray.available_resources().get('GPU', 0) < 1 and time.time() < deadline: time.sleep(0.5)\n"
        "print(ray.available_resources().get('GPU', 0))"
    )
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**head.env, "RAY_ADDRESS": head.gcs})  # fmt: skip
    assert free.stdout.strip().splitlines()[-1] == "1.0", free.stderr[-2000:]
    assert time.time() - started < 120


def test_gpu_groups_an_autoscaler_reports_are_counted(head):
    """A GPU group at zero nodes, as an autoscaler reports it to the GCS, counts: the map would wait for it."""
    code = (
        "import json, os, sys\n"
        "from ray._raylet import GcsClient\n"
        "from ray.core.generated.autoscaler_pb2 import ClusterConfig\n"
        "from embednv.mapping.placement import decide, GpuCapacity\n"
        "from embednv.mapping.ray_stage import cluster_capacity, join\n"
        "address = os.environ['RAY_ADDRESS']; join(address); said = {'before': cluster_capacity(address)}\n"
        "config = ClusterConfig(); group = config.node_group_configs.add(); group.name = 'gpu-group'\n"
        "group.resources['CPU'] = 4; group.resources['GPU'] = 1; group.min_count = 0; group.max_count = 3\n"
        "GcsClient(address).report_cluster_config(config.SerializeToString())\n"
        "said['after'] = cluster_capacity(address)\n"
        "said['decision'] = decide('auto', address, lambda a: GpuCapacity(*cluster_capacity(a))).__dict__\n"
        "GcsClient(address).report_cluster_config(ClusterConfig().SerializeToString())  # as it was, for the other tests\n"
        "said['reset'] = cluster_capacity(address)\n"
        "print(json.dumps(said))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO,
                          env={**head.env, "RAY_ADDRESS": head.gcs})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["before"] == said["reset"] == [0, 0, ""]
    assert said["after"] == [0, 3, "the node groups it reports to Ray"]
    assert said["decision"] == {
        "placement": "gpu-worker",
        "reason": f"the Ray cluster at {head.gcs} has no GPU now; its autoscaler can start 3 (the node groups it "
        "reports to Ray): the map task waits for one",
    }


def test_gpu_worker_asked_for_on_a_cluster_without_gpu_fails_in_one_line(head, tmp_path):
    emb = _planted_shards(tmp_path / "emb")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "embednv.cli",
            "map",
            str(emb),
            "--out",
            str(tmp_path / "m"),
            "--placement",
            "gpu-worker",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**head.env, "RAY_ADDRESS": head.gcs},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        (
            f"error: --placement gpu-worker: the Ray cluster at {head.gcs} has no GPU (no autoscaler reports a GPU "
            "group it can start); start a GPU worker first, or use --placement auto to map on CPU in the driver"
        )
    ], done.stderr[-3000:]
    assert not (tmp_path / "m").exists()


def test_job_entry_points_take_the_cli_options():
    """Same options as the CLI, from the CLI itself: --help lists them, nothing is redefined."""
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "embed_corpus.py"), "--help"],
        capture_output=True,
        text=True,
        env=_clean_env(COLUMNS="200"),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--out", "--model", "--num-gpus", "--rows-per-shard", "--batch-tokens"):
        assert option in result.stdout
    for source in ("embed_corpus.py", "map_corpus.py", "_entry.py"):
        text = (REPO / "jobs" / source).read_text()
        assert "typer.Option" not in text and "typer.Argument" not in text
    assert 'os.environ.setdefault("RAY_ADDRESS", "auto")' in (REPO / "jobs" / "_entry.py").read_text()


# --------------------------------------------------------------------------- the cluster configs


def _load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
GPU_LIMIT = {"type": "object", "required": ["nvidia.com/gpu"], "properties": {"nvidia.com/gpu": {"enum": [1, "1"]}}}
USAGE_STATS_OFF = {
    "type": "array",
    "contains": {
        "type": "object",
        "required": ["name", "value"],
        "properties": {"name": {"const": "RAY_USAGE_STATS_ENABLED"}, "value": {"const": "0"}},
    },
}


def _pod(container: dict, *required: str, **properties: dict) -> dict:
    """A pod template whose containers all match `container`, and whose spec has `required`."""
    spec = {
        "type": "object",
        "required": ["containers", *required],
        "properties": {"containers": {"type": "array", "minItems": 1, "items": container}, **properties},
    }
    return {"type": "object", "required": ["spec"], "properties": {"spec": spec}}


CONTAINER = {
    "type": "object",
    "required": ["name", "image", "resources", "env"],
    "properties": {
        "image": {"type": "string", "pattern": r"^rayproject/ray(-ml)?:\d+\.\d+\.\d+-py3\d+(-gpu|-cu\d+)?$"},
        "env": USAGE_STATS_OFF,
    },
}
GPU_CONTAINER = {
    **CONTAINER,
    "properties": {
        **CONTAINER["properties"],
        "resources": {"type": "object", "required": ["limits"], "properties": {"limits": GPU_LIMIT}},
    },
}
GPU_TOLERATION = {
    "type": "array",
    "contains": {"type": "object", "required": ["key"], "properties": {"key": {"const": "nvidia.com/gpu"}}},
}
# The fields of a KubeRay ray.io/v1 RayClusterSpec that we rely on (see KubeRay's raycluster_types.go).
RAY_CLUSTER_SPEC = {
    "type": "object",
    "required": ["rayVersion", "enableInTreeAutoscaling", "headGroupSpec", "workerGroupSpecs"],
    "properties": {
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "enableInTreeAutoscaling": {"const": True},
        "headGroupSpec": {
            "type": "object",
            "required": ["rayStartParams", "template"],
            "properties": {
                "serviceType": {"enum": ["ClusterIP"]},  # never exposed outside the cluster
                "rayStartParams": {**STRING_MAP, "required": ["num-gpus"], "properties": {"num-gpus": {"const": "0"}}},
                "template": _pod(CONTAINER),
            },
        },
        "workerGroupSpecs": {
            "type": "array",
            "contains": {  # at least one GPU group that can scale
                "type": "object",
                "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
                "properties": {
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "rayStartParams": STRING_MAP,
                    "template": _pod(GPU_CONTAINER, "tolerations", tolerations=GPU_TOLERATION),
                },
            },
        },
    },
}
RAY_CLUSTER = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"}, "spec": RAY_CLUSTER_SPEC},
}
RAY_JOB = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "spec": {
            "type": "object",
            "required": [
                "entrypoint",
                "shutdownAfterJobFinishes",
                "ttlSecondsAfterFinished",
                "runtimeEnvYAML",
                "rayClusterSpec",
            ],
            "properties": {
                # embed, then map only if embed succeeded
                "entrypoint": {"type": "string", "pattern": r"jobs/embed_corpus\.py .+ && python jobs/map_corpus\.py "},
                "shutdownAfterJobFinishes": {"const": True},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "runtimeEnvYAML": {"type": "string"},
                "rayClusterSpec": RAY_CLUSTER_SPEC,
            },
        },
    },
}


def _validate(document, schema) -> None:
    import jsonschema

    jsonschema.validate(document, schema)


def test_cluster_yaml_files_parse():
    names = sorted(p.name for p in CLUSTER.glob("*.yaml"))
    assert names == ["ray-up-aws.yaml", "raycluster.yaml", "rayjob.yaml", "runtime_env.yaml"]
    for name in names:
        assert isinstance(_load(name), dict), name


def test_raycluster_has_a_cpu_head_and_an_autoscaling_gpu_group():
    cluster = _load("raycluster.yaml")
    _validate(cluster, RAY_CLUSTER)
    gpu_groups = [
        g
        for g in cluster["spec"]["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert gpu_groups
    for group in gpu_groups:
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["spec"]["authOptions"] == {"mode": "token"}, "the job API runs code: keep token authentication on"


def test_rayjob_runs_embed_then_map_on_the_same_cluster_spec():
    job = _load("rayjob.yaml")
    _validate(job, RAY_JOB)
    assert job["spec"]["rayClusterSpec"] == _load("raycluster.yaml")["spec"], "rayjob.yaml and raycluster.yaml drifted"
    runtime_env, shared = yaml.safe_load(job["spec"]["runtimeEnvYAML"]), _load("runtime_env.yaml")
    assert runtime_env["pip"] == shared["pip"] and runtime_env["env_vars"] == shared["env_vars"]
    assert re.match(r"^(s3|gs|https)://", runtime_env["working_dir"]), "a RayJob's working_dir must be a remote zip"


def _pins(requirements: list[str]) -> dict[str, str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: pin an exact version"
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_runtime_env_pins_satisfy_pyproject_and_match_the_launcher():
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins(_load("runtime_env.yaml")["pip"]["packages"])
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        if name == "ray":  # from the image, pinned by its tag
            continue
        assert name in pins, f"{wanted.name} is a dependency but not pinned in cluster/runtime_env.yaml"
        assert wanted.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy pyproject's {wanted}"
    launcher = _load("ray-up-aws.yaml")
    setup = _pins(re.findall(r"\S+==\S+", " ".join(launcher["setup_commands"])))
    workers = _pins(re.findall(r"\S+==\S+", " ".join(launcher["worker_setup_commands"])))
    assert setup | workers == pins, "ray-up-aws.yaml installs other versions than runtime_env.yaml"
    assert set(workers) == {"cuml-cu13"}, "only cuML is for the (GPU) workers alone"


def _dockerfile_pins() -> tuple[str, dict[str, str]]:
    text = (CLUSTER / "Dockerfile.gpu").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    return base, _pins(re.findall(r"(?<![\w-])([A-Za-z][\w.-]*==[\w.]+)", text))


def test_cuml_is_one_pin_everywhere_and_satisfies_the_gpu_extra():
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    (extra,) = [
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    ]
    name = canonicalize_name(extra.name)
    runtime_env = _pins(_load("runtime_env.yaml")["pip"]["packages"])
    job = _pins(yaml.safe_load(_load("rayjob.yaml")["spec"]["runtimeEnvYAML"])["pip"]["packages"])
    launcher = _pins(re.findall(r"\S+==\S+", " ".join(_load("ray-up-aws.yaml")["worker_setup_commands"])))
    image = _dockerfile_pins()[1]
    pins = {
        where: found.get(name)
        for where, found in [
            ("runtime_env.yaml", runtime_env),
            ("rayjob.yaml", job),
            ("ray-up-aws.yaml", launcher),
            ("Dockerfile.gpu", image),
        ]
    }
    assert len(set(pins.values())) == 1 and None not in pins.values(), f"{name} pins differ: {pins}"
    assert extra.specifier.contains(pins["runtime_env.yaml"]), (
        f"{name}=={pins['runtime_env.yaml']} is outside pyproject's {extra}"
    )


def test_gpu_image_has_the_runtime_env_pins_on_the_ray_image():
    from importlib.metadata import version

    base, pins = _dockerfile_pins()
    assert pins == _pins(_load("runtime_env.yaml")["pip"]["packages"]), (
        "Dockerfile.gpu installs other versions than runtime_env.yaml"
    )
    assert re.fullmatch(rf"rayproject/ray:{re.escape(version('ray'))}-py311-gpu", base), base


def test_ray_up_config_is_valid_for_ray_and_pinned():
    import jsonschema
    import ray.autoscaler

    config = _load("ray-up-aws.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the launcher's own schema, shipped with Ray
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head_type = types[config["head_node_type"]]
    assert head_type["resources"].get("GPU", 0) == 0
    gpu_types = [t for name, t in types.items() if name != config["head_node_type"] and t["resources"].get("GPU", 0)]
    assert gpu_types and all(0 <= t["min_workers"] <= t["max_workers"] for t in gpu_types)
    image = config["docker"]["image"]
    assert re.fullmatch(r"rayproject/ray(-ml)?:\d+\.\d+\.\d+-py3\d+-gpu", image), f"pin the image tag: {image}"
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("--disable-usage-stats") == 2 and "--dashboard-host=127.0.0.1" in starts


def test_one_ray_version_everywhere():
    from importlib.metadata import version

    installed = version("ray")
    cluster, job, launcher = _load("raycluster.yaml"), _load("rayjob.yaml"), _load("ray-up-aws.yaml")
    images = [launcher["docker"]["image"], job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"]]
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == installed
        images += [spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]]
        images += [g["template"]["spec"]["containers"][0]["image"] for g in spec["workerGroupSpecs"]]
    assert {image.split(":")[1].split("-")[0] for image in images} == {installed}, images
