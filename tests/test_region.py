"""`embednv cohort MAP --region region.json`: every note of map.parquet inside a box or lasso, exactly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import typer
from matplotlib.path import Path as MplPath
from typer.testing import CliRunner

from embednv.cohort_cli import cohort_command
from embednv.errors import CohortError
from embednv.mapping.outputs import write_map
from embednv.region import Region, read_region, select_region

app = typer.Typer()
app.command("cohort")(cohort_command)


@app.callback()
def _root() -> None:
    """A group, as in the main app, so `cohort` is a subcommand."""


# A concave lasso (an L), as map.html writes it: vertices in map coordinates, any orientation.
L_SHAPE = [[0.0, 0.0], [4.0, 0.0], [4.0, 1.0], [1.0, 1.0], [1.0, 3.0], [0.0, 3.0]]


def invoke(*args):
    return CliRunner().invoke(app, ["cohort", *map(str, args)])


def test_points_on_either_side_of_every_lasso_edge_fall_on_the_right_side():
    region = Region("lasso", np.array(L_SHAPE))
    p = np.array(L_SHAPE)
    mids = (p + np.roll(p, -1, axis=0)) / 2  # the middle of each edge
    edge = np.roll(p, -1, axis=0) - p
    normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1) / np.linalg.norm(edge, axis=1, keepdims=True)
    # The L is drawn counter-clockwise, so (dy, -dx) points out of it; float32, as map.parquet stores them.
    eps = 1e-3
    outside = (mids + eps * normal).astype(np.float32)
    inside = (mids - eps * normal).astype(np.float32)
    assert region.contains(inside[:, 0], inside[:, 1]).all()
    assert not region.contains(outside[:, 0], outside[:, 1]).any()
    # Away from the edges, the same answer as matplotlib's point-in-polygon, an independent implementation.
    xy = np.random.default_rng(0).uniform(-1, 5, (20_000, 2)).astype(np.float32)
    expected = MplPath(np.array(L_SHAPE)).contains_points(xy.astype(np.float64))
    assert (region.contains(xy[:, 0], xy[:, 1]) == expected).all()
    assert 1_000 < expected.sum() < 19_000


def test_a_box_keeps_its_edges_as_the_page_does():
    box = Region("box", np.array([[1.0, 2.0], [3.0, 2.0], [3.0, 5.0], [1.0, 5.0]]))
    x = np.array([1.0, 3.0, 2.0, 2.0, np.nextafter(1.0, 0), np.nextafter(3.0, 4), 2.0])
    y = np.array([2.0, 5.0, 2.0, 5.0, 3.0, 3.0, np.nextafter(5.0, 6)])
    assert box.contains(x, y).tolist() == [True, True, True, True, False, False, False]


@pytest.fixture
def region_map(tmp_path):
    """A map of 3,000 notes (string ids) on a plane, written by the map's own writer."""
    out = tmp_path / "map"
    out.mkdir()
    y = np.random.default_rng(1).uniform(-1, 5, (3_000, 2))
    ids = pa.array([f"n{i:04d}" for i in range(3_000)])
    write_map(out / "map.parquet", "mrn", ids, y, np.zeros(3_000, np.int32))
    (out / "_manifest.json").write_text(json.dumps({"kind": "map", "inputs": {"id_column": "mrn"}}))
    return out, y.astype(np.float32)


def test_region_command_writes_every_note_inside(region_map, tmp_path):
    out, y = region_map
    path = tmp_path / "region.json"
    path.write_text(json.dumps({"embednv_region": 1, "shape": "lasso", "polygon": L_SHAPE, "drawn_selected": 7}))
    expected = [f"n{i:04d}" for i in np.flatnonzero(MplPath(np.array(L_SHAPE)).contains_points(y.astype(float)))]
    assert select_region(str(out), read_region(str(path)), "mrn").column("mrn").to_pylist() == expected
    result = invoke(out, "--region", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ['"mrn"'] + [f'"{i}"' for i in expected]
    assert 200 < len(expected) < 2_000


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not a JSON region file"),
        ('{"shape": "box"}', "has no 'polygon'"),
        ('{"polygon": [[0, 0], [1, 1]]}', "a polygon needs 3 to 100,000 [x, y] vertices, got 2"),
        ('{"polygon": [[0, 0], [1, 1], [1, NaN]]}', "vertex 2 is not a pair of finite numbers"),
        ('{"polygon": [[0, 0], [1, 1], [1, "2"]]}', "vertex 2 is not a pair of finite numbers"),
        ('{"shape": "circle", "polygon": [[0, 0], [1, 1], [1, 0]]}', "invalid shape 'circle'. Valid: box, lasso"),
    ],
)
def test_bad_region_files_are_one_line(region_map, tmp_path, content, message):
    out, _ = region_map
    path = tmp_path / "region.json"
    path.write_text(content)
    with pytest.raises(CohortError, match="region.json"):
        read_region(str(path))
    result = invoke(out, "--region", path)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_region_needs_a_map_and_no_k(region_map, tmp_path):
    out, _ = region_map
    result = invoke(out, "--region", tmp_path / "missing.json")
    assert result.exit_code == 2 and f"Region file not found: {tmp_path / 'missing.json'}" in result.output
    result = invoke(out, "--region", tmp_path / "r.json", "--k", 5)
    assert result.exit_code == 2 and "--k applies to --near and --query" in result.output
    result = invoke(out, "--region", tmp_path / "r.json", "--cluster", 0)
    assert result.exit_code == 2 and "Give exactly one of --cluster, --region, --near, --query" in result.output
