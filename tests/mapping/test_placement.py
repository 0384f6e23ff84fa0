"""Where the heavy phases run (placement.py), and the cuML path end to end on the fake cuML (tests/fake_cuml).

The Ray side (a real head advertising a GPU, `ray job submit`) is in tests/test_cluster.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embednv.errors import ConfigError, MapError
from embednv.mapping.placement import Decision, GpuCapacity, decide

FAKE_CUML = Path(__file__).resolve().parents[1] / "fake_cuml"
REPO = Path(__file__).resolve().parents[2]


def _never(address: str) -> GpuCapacity:
    raise AssertionError("the cluster must not be asked")


def test_local_and_no_address_never_ask_a_cluster():
    assert decide("local", "10.0.0.1:6379", _never) == Decision("local", "requested")
    assert decide("auto", None, _never).placement == "local"
    assert "RAY_ADDRESS is not set" in decide("auto", "", _never).reason


def test_auto_takes_the_gpu_worker_only_when_the_cluster_has_a_gpu():
    assert decide("auto", "head:6379", lambda a: GpuCapacity(2)).placement == "gpu-worker"
    fallback = decide("auto", "head:6379", lambda a: GpuCapacity(0))
    assert fallback.placement == "local"
    assert "head:6379 has no GPU" in fallback.reason and "CPU path" in fallback.reason
    # Why an autoscaling group is not counted, when none says it can start one.
    assert "(no autoscaler reports a GPU group it can start)" in fallback.reason


def test_gpu_worker_asked_for_fails_in_one_line_without_a_cluster_or_a_gpu():
    with pytest.raises(MapError, match="needs a Ray cluster") as no_cluster:
        decide("gpu-worker", None, _never)
    with pytest.raises(MapError, match="has no GPU") as no_gpu:
        decide("gpu-worker", "head:6379", lambda a: GpuCapacity(0))
    for error in (no_cluster, no_gpu):
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="Valid: auto, local, gpu-worker"):
        decide("gpu", None, _never)


def test_an_autoscaling_gpu_group_at_zero_is_counted():
    """No GPU node now, but the autoscaler can start one: the map task goes there and waits, and says so."""
    scalable = GpuCapacity(0, 4, "the node groups it reports to Ray")
    for placement in ("auto", "gpu-worker"):
        decision = decide(placement, "head:6379", lambda a: scalable)
        assert decision.placement == "gpu-worker"
        assert decision.reason == (
            "the Ray cluster at head:6379 has no GPU now; its autoscaler can start 4 "
            "(the node groups it reports to Ray): the map task waits for one"
        )


def test_a_cpu_backend_never_holds_a_gpu():
    assert decide("auto", "head:6379", _never, backend="cpu") == Decision(
        "local", "--backend cpu: the CPU path runs in this driver"
    )
    with pytest.raises(ConfigError, match="--backend cpu needs --placement local"):
        decide("gpu-worker", "head:6379", _never, backend="cpu")


def test_the_cluster_launchers_config_gives_the_gpus_it_can_start(tmp_path):
    """`ray up` leaves its config on the head: GPU node types times their max_workers."""
    from embednv.mapping.ray_stage import autoscaler_gpus

    config = tmp_path / "ray_bootstrap_config.yaml"
    config.write_text(
        "available_node_types:\n"
        "  head: {resources: {CPU: 8}, max_workers: 0}\n"
        "  gpu: {resources: {CPU: 8, GPU: 1}, min_workers: 0, max_workers: 4}\n"
        "  gpu2: {resources: {CPU: 16, GPU: 2}, max_workers: 1}\n"
    )
    assert autoscaler_gpus(config) == (6, f"its cluster config {config}")
    assert autoscaler_gpus(tmp_path / "absent.yaml") == (0, "")


def test_a_local_map_does_not_import_ray(planted, tmp_path):
    """Without RAY_ADDRESS, auto is local: the one placement line, and Ray is never loaded."""
    code = (
        "import json, sys, logging; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
        "from embednv.mapping.run import MapConfig, run_map; from embednv.mapping.tsne_params import TSNEParams; "
        f"run_map(MapConfig(emb_dir={str(planted['emb_dir'])!r}, out_dir={str(tmp_path / 'm')!r}, clusters=4, "
        "backend='cpu', tsne=TSNEParams(early_exaggeration_iter=50, n_iter=50, n_jobs=1))); "
        "print(json.dumps('ray' in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "false", "a local map imported Ray"
    lines = [line for line in done.stderr.splitlines() if line.startswith("placement:")]
    assert lines == ["placement: local (no Ray cluster: RAY_ADDRESS is not set)"]
    manifest = json.loads((tmp_path / "m" / "_manifest.json").read_text())
    assert manifest["placement"]["placement"] == "local"
    assert manifest["placement"]["pid"] == manifest["driver"]["pid"]


@pytest.fixture
def fake_cuml(monkeypatch):
    """The fake cuML and CuPy importable in this process, with one 'visible GPU'."""
    monkeypatch.syspath_prepend(str(FAKE_CUML))
    for name in [m for m in sys.modules if m.split(".")[0] in ("cupy", "cuml")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    importlib.invalidate_caches()
    import cuml

    assert getattr(cuml, "FAKE", False), "the real cuML was imported instead of the stand-in"
    cuml.CALLS.clear()
    return cuml


def test_cuml_path_end_to_end_on_the_fake(planted_map, fake_cuml, tmp_path):
    """PCA on 'device' arrays, cuML KMeans and TSNE with our parameters; the manifest says what ran."""
    from embednv.mapping.backends import cuml_status
    from embednv.mapping.run import run_map
    from embednv.mapping.tsne_params import TSNEParams

    assert cuml_status()[0]
    tsne = TSNEParams(
        perplexity=5, multiscale=True, early_exaggeration_iter=100, n_iter=150
    )  # 600/100 > 5: two scales asked
    config = dataclasses.replace(
        planted_map["config"], out_dir=tmp_path / "gpu", backend="auto", placement="local", tsne=tsne
    )
    result = run_map(config)
    assert (result.backend, result.placement) == ("cuml", "local")
    calls = dict(fake_cuml.CALLS)
    assert calls["KMeans"]["n_clusters"] == 4 and calls["KMeans"]["output_type"] == "numpy"
    t = calls["TSNE"]
    assert (t["init"], t["method"], t["learning_rate_method"], t["random_state"]) == ("pca", "fft", None, 3)
    assert (t["learning_rate"], t["early_exaggeration"], t["exaggeration_iter"], t["max_iter"]) == (200, 12, 100, 250)
    assert (t["perplexity"], t["n_neighbors"]) == (5, 15)
    manifest = json.loads((tmp_path / "gpu" / "_manifest.json").read_text())
    assert manifest["backend"] == "cuml"
    # One scale ran on cuML, so the manifest says one scale, not the two that were asked for.
    assert manifest["tsne"]["perplexities"] == [5] and manifest["tsne"]["multiscale"] is False
    as_run = manifest["tsne"]["as_run"]
    assert as_run["library"] == "cuML" and as_run["learning_rate_late"] == 2 * as_run["learning_rate_early"] == 400
    # Same clusters as the CPU map of the same data (same 50-d vectors, k-means is scikit-learn's in the fake).
    import pyarrow.parquet as pq

    cpu = pq.read_table(planted_map["config"].out_dir / "map.parquet").column("cluster").to_pylist()
    assert pq.read_table(tmp_path / "gpu" / "map.parquet").column("cluster").to_pylist() == cpu


def test_a_worker_error_of_ours_is_said_as_from_the_worker_in_one_line():
    from embednv.errors import BackendUnavailable
    from embednv.mapping.ray_stage import from_worker

    missing = from_worker(MapError("Embedding directory not found: /mnt/emb"), "/mnt/emb")
    assert isinstance(missing, MapError) and "\n" not in str(missing)
    assert str(missing).startswith("on the GPU worker: Embedding directory not found: /mnt/emb (a local path must be")
    unavailable = from_worker(BackendUnavailable("--backend cuml cannot run here: cuML is not installed"), "s3://b/e")
    assert type(unavailable) is BackendUnavailable and "mounts" not in str(unavailable)
    assert from_worker(ZeroDivisionError("bug"), "/x") is None  # not ours: Ray's error, traceback and all, stays


def test_sampled_map_on_cuml_places_the_rest_by_knn(planted_map, fake_cuml, tmp_path):
    """cuML has no t-SNE transform: a sampled map on it places the rest by the kNN position, with cuML's kNN."""
    import pyarrow.parquet as pq

    from embednv.mapping.run import run_map

    config = dataclasses.replace(
        planted_map["config"], out_dir=tmp_path / "gpu", backend="cuml", placement="local", sample_above=300,
        sample_size=200,
    )  # fmt: skip
    run_map(config)
    calls = [name for name, _ in fake_cuml.CALLS]
    assert calls.count("TSNE") == 1 and "NearestNeighbors" in calls
    sampled = json.loads((tmp_path / "gpu" / "_manifest.json").read_text())["sampled"]
    assert sampled["method"] == "knn" and sampled["fitted"] + sampled["placed"] == 600
    assert sampled["refined"] is None  # cuML's t-SNE takes no starting layout: no refinement there
    assert pq.read_table(tmp_path / "gpu" / "map.parquet").num_rows == 600
