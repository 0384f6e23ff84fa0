"""The shape the README's "How it works" describes holds: no import cycles, Ray in two named modules, short files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embednv"
MAX_LINES = 300
LONG_ON_PURPOSE = {"models/nvembed.py"}  # the whole model in one file, as nanoGPT does
# The Ray wiring of the embedding run, and the map's GPU task; everything else is plain Python that
# these two hand to Ray, so it runs and is tested without a cluster.
RAY_MODULES = ["embed/ray_job.py", "mapping/ray_stage.py"]
# The three wings stand on the shared floor (the top-level modules) and import none of each other,
# but for the map's GPU task joining Ray the way the embedding run does.
WINGS = ("embednv.embed", "embednv.mapping", "embednv.index")
WING_CROSSINGS = {("embednv.mapping.ray_stage", "embednv.embed.ray_job")}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """embednv modules that `path` imports anywhere (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n in modules and n != "embednv"}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_wings_import_only_the_floor_and_the_one_named_crossing():
    modules = _modules()

    def wing(name: str) -> str | None:
        return next((w for w in WINGS if name == w or name.startswith(w + ".")), None)

    crossings = {
        (name, target)
        for name, path in modules.items()
        for target in _imports(path, modules)
        if wing(name) and wing(target) and wing(name) != wing(target)
    }
    # A module's own import of a name counts once, under the module it names.
    crossings = {
        (a, b) for a, b in crossings if not any((a, c) in crossings and b.startswith(c + ".") for c in modules)
    }
    assert crossings == WING_CROSSINGS


def test_only_the_two_ray_modules_import_ray():
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "ray" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "ray")
            for n in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert importers == RAY_MODULES


def test_files_stay_short():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) <= LONG_ON_PURPOSE, f"over {MAX_LINES} lines: {long}"


def test_cli_imports_every_error_class_without_heavy_libraries():
    code = (
        "import sys, embednv.cli, embednv.errors as e; "
        "assert all(issubclass(c, e.EmbednvError) for c in (e.InputError, e.ModelError, "
        "e.OutputConflict, e.ClusterUnreachable, e.MapError)); "
        "print(sorted(m for m in ('ray', 'torch', 'numpy', 'pyarrow', 'transformers') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
