"""Shared fixtures: one real local Ray instance per test session, the bundled model, small corpora."""

from __future__ import annotations

import functools
import inspect
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MTSAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mtsamples.parquet"

# `make test-fast` leaves out what costs seconds before the first assertion: a Ray start, a
# subprocess (a CLI run, the official tokenizer's environment), a browser. A test is marked by what
# it and its fixtures do, read from their source, so the marks cannot go stale as tests change.
HEAVY_PARTS = {
    "ray": re.compile(r"\bray_local\b|\bray\.init\(|\bexecutor=\"ray\""),
    "subprocess": re.compile(r"\bsubprocess\.|\bPopen\b|\bofficial_(python|ids|files)\b|\bcli\(|EMBEDNV\b"),
    "browser": re.compile(r"\bchromium\b|\bbrowser\b|playwright"),
}


# The files that take minutes, first: pytest-xdist (`make test`, --dist loadfile) hands out whole files
# in collection order, so these start at once and the workers finish together. Order only; nothing else.
SLOWEST_FIRST = (
    "benchmarks/test_run_all.py",
    "embed/test_reliability.py",
    "test_cluster.py",
    "embed/test_operations.py",
    "benchmarks/test_map.py",
    "benchmarks/test_device.py",
    "models/test_nvembed.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    tests = Path(__file__).parent
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))  # stable
    for item in items:
        functions = [getattr(item, "function", None)]
        for name in item.fixturenames:
            functions += [definition.func for definition in item._fixtureinfo.name2fixturedefs.get(name, ())]
        functions = [f for f in functions if f is not None]
        text = "\n".join([_source(f) for f in functions] + [_helpers_used(f) for f in functions])
        text += "\n" + "\n".join(item.fixturenames)
        for marker, pattern in HEAVY_PARTS.items():
            if pattern.search(text):
                item.add_marker(getattr(pytest.mark, marker))


# Cached per function: a fixture or a parametrized test is read once, not once per test that uses it
# (uncached, reading sources was half of collection: ~15 s of every pytest-xdist worker's start).
@functools.cache
def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


@functools.cache
def _helpers_used(function) -> str:
    """The source of the module's own functions and classes that `function`'s source names (one level down)."""
    module = inspect.getmodule(function)
    names = set(re.findall(r"\b([A-Za-z_]\w*)\(", _source(function)))
    helpers = [getattr(module, n, None) for n in names if not n.startswith("test_")]
    return "\n".join(_source(h) for h in helpers if inspect.isfunction(h) or inspect.isclass(h))


@pytest.fixture(autouse=True)
def _restore_logging():
    """The commands point logging at the test runner's stderr, closed after each invoke: undo that after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the pipeline tests (starting one costs seconds)."""
    import ray

    from embednv.embed.ray_job import init_ray, loopback_only

    if not ray.is_initialized():
        with loopback_only():  # as a private run: nothing on this machine's network interfaces
            # address="local": a new instance, never one found through /tmp/ray (another test process's)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")

    init_ray()  # applies embednv's DataContext settings to the running instance
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2: tokenizer and encoder as the pipeline loads them."""
    from embednv.models.registry import load_encoder, resolve_model

    ref = resolve_model("minilm", has_gpu=False)
    return ref, load_encoder(ref, "cpu", "float32")


@pytest.fixture(scope="session")
def mtsamples_path() -> Path:
    if not MTSAMPLES.is_file():
        pytest.skip(f"MTSamples not present at {MTSAMPLES} (shared data is optional)")
    return MTSAMPLES.resolve()
