"""The map's `--out`: where it may write, and what `--overwrite` may remove there.

A map writes only the files in `directories.MAP_FILES`, and one of them is `_manifest.json`,
the name every embednv output gives its manifest. Written over an embeddings directory's, it
would leave the vectors without the manifest that `cohort --query`, a resumed `embed` and
the map itself read; written inside an input it would change what it reads. So `--out` is
refused, `--overwrite` or not, when it is or lies inside a directory the map reads (the
embeddings, a --texts or --labels directory), when a --texts or --labels file is one the map
would replace, and when it holds an embeddings directory's files. `--overwrite` then removes
the map's own files (and their temporaries), never anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

from embednv.directories import MANIFEST, MAP, MAP_FILES, OutputDir, embeddings_files, manifest_kind, own_temporary
from embednv.errors import MapError
from embednv.io import filesystem_and_path, is_uri


def check_out(out_dir: Path, overwrite: bool, emb_dir: str | Path, inputs: dict[str, str | Path | None]) -> None:
    """Fail in one line if the map cannot be written to `out_dir`, or could change or remove there
    anything it does not own. Cheap (a few stat calls), so `run_map` calls it before reading anything.

    `inputs` maps an option name ("--texts", "--labels") to its file or directory (None: not given).
    """
    out = Path(out_dir).expanduser().resolve()
    for option, source in {"the embeddings directory": emb_dir, **inputs}.items():
        path = _local(source)
        if path is None:
            continue
        if path.is_dir() and (out == path or path in out.parents):
            where = "is" if out == path else "is inside"
            raise MapError(
                f"--out {out_dir} {where} {_what(option)} {source}: give a directory outside the map's inputs"
            )
        if path.parent == out and path.name in MAP_FILES:
            raise MapError(f"{option} {source} is a file the map in --out {out_dir} replaces: copy it elsewhere first")
    if out.is_dir():
        found = embeddings_files(_names(out))
        if (out / MANIFEST).is_file() and not _map_manifest(out / MANIFEST):
            found.append(MANIFEST)
        if found:
            raise MapError(
                f"--out {out_dir} holds an embeddings directory ({', '.join(found[:3])}): a map never writes "
                "there, --overwrite or not; give another directory"
            )
    if out.exists() and not out.is_dir():
        raise MapError(f"Output path exists and is not a directory: {out_dir}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MapError(f"Output directory is not empty: {out_dir}; pass --overwrite to replace the map in it")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MapError(f"Cannot write to --out {out_dir}: {existing} is not writable")


def prepare(out_dir: Path) -> Path:
    """Create `out_dir`, or remove the files of the map already in it (once `check_out` has allowed it).

    Called once the heavy phases have succeeded, so a map that fails leaves no empty directory
    and does not cost the previous map.
    """
    if out_dir.is_dir():
        # Manifest first (MAP_FILES lists it first), so a half-removed map is never taken as complete.
        for name in MAP_FILES:
            (out_dir / name).unlink(missing_ok=True)
        for name in _names(out_dir):  # temporaries of our own files, left by a crash: `.map.png.1a2b3c4d.tmp`
            if own_temporary(name, MAP_FILES):
                (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _map_manifest(path: Path) -> bool:
    try:
        manifest = OutputDir(str(path.parent)).read_json(path.name)
    except (OSError, ValueError):
        return False  # not one we can read, so not one we may replace
    return isinstance(manifest, dict) and manifest_kind(manifest) == MAP


def _names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


def _local(source: str | Path | None) -> Path | None:
    """The resolved local path of an input (a path or a file:// URI); None for other URIs and for none."""
    if source is None:
        return None
    if is_uri(str(source)) and not str(source).startswith("file://"):
        return None  # s3://, gs://: never the local --out
    return Path(filesystem_and_path(str(source))[1]).resolve()


def _what(option: str) -> str:
    return option if option.startswith("the ") else f"the {option} directory"
