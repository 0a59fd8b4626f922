"""Share built images between tests: ``get(spec, cache_dir, fmt)`` builds once per key.

The key hashes the spec, the format, the builder version and each path source's real path,
size and mtime, so that changing a source rebuilds. Cached images are shared: a test that writes
must take a private copy first (``img.copy_to(tmp_path / "disk.img")``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from offline_fix.errors import NotFound

from images.builder import BUILDER_VERSION, BuiltImage, build
from images.spec import DiskSpec

SUFFIX = {"raw": "disk.img", "vhd-fixed": "disk.vhd", "vhd-dynamic": "disk.vhd", "vhdx": "disk.vhdx", "folder": "tree"}


def key(spec: DiskSpec, fmt: str) -> str:
    return spec.digest({"format": fmt, "builder": BUILDER_VERSION})[:32]


def get(spec: DiskSpec, cache_dir: str | os.PathLike, fmt: str | None = None) -> BuiltImage:
    """The image for SPEC in FMT under CACHE_DIR, built if missing (safe across processes)."""
    fmt = fmt or spec.format or "raw"
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    k = key(spec, fmt)
    final = cache_dir / k
    found = _load(final)
    if found is not None:
        return found
    with open(cache_dir / f"{k}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _load(final)
        if found is not None:
            return found
        work = Path(tempfile.mkdtemp(prefix=f".{k}-", dir=cache_dir))
        try:
            img = build(spec, work / SUFFIX[fmt], fmt)
            (work / "built.json").write_text(json.dumps(img.to_json(), indent=2))
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result = _load(final)
    if result is None:  # only if the folder vanished under us
        raise NotFound("cached image vanished after it was built", path=str(final))
    return result


def _load(folder: Path) -> BuiltImage | None:
    meta = folder / "built.json"
    if not meta.is_file():
        return None
    doc = json.loads(meta.read_text())
    img = BuiltImage.from_json(doc)
    # The folder was renamed after the build: point at where the image is now.
    path = folder / Path(doc["path"]).name
    if not path.exists():
        return None
    return replace(img, path=path)
