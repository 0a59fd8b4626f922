"""Shared fixtures. Real data is read from ../shared/realdata, never copied into the repo.

When that folder is missing, tests that need it skip locally and fail under CI=true.
"""

from __future__ import annotations

import lzma
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("OFFLINE_FIX_REALDATA", REPO.parent / "shared" / "realdata"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    message = f"real data missing: {what} (expected under {REALDATA})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    if not REALDATA.is_dir():
        _missing("the folder")
    return REALDATA


_cache: dict[str, Path] = {}


@pytest.fixture(scope="session")
def realdata(tmp_path_factory):
    """realdata("regipy/SYSTEM.xz") -> a readable Path; .xz files are decompressed once per session
    into a temporary folder (never into the repository or ../shared)."""
    cache_dir = tmp_path_factory.mktemp("realdata")

    def get(relpath: str) -> Path:
        src = REALDATA / relpath
        if not src.is_file():
            _missing(relpath)
        if not relpath.endswith(".xz"):
            return src
        if relpath not in _cache:
            dst = cache_dir / relpath[: -len(".xz")].replace("/", "__")
            with lzma.open(src) as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            _cache[relpath] = dst
        return _cache[relpath]

    return get


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory):
    """image_cache(spec, fmt="raw") -> images.BuiltImage, built once per session and shared.
    Tests that write must take a private copy: img.copy_to(tmp_path / "disk.vhdx")."""
    from images import cache

    cache_dir = Path(os.environ.get("OFFLINE_FIX_IMAGE_CACHE") or tmp_path_factory.mktemp("images"))
    return lambda spec, fmt="raw": cache.get(spec, cache_dir, fmt)


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """Journals and backups of write tests go to a temporary folder, never to ~/.local/state."""
    path = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(path))
    return path
