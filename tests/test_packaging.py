"""The package list in pyproject.toml is written by hand (cloud/ maps to offline_fix.cloud)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set()
    for init in (REPO / "offline_fix").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(REPO).parts))
    for init in (REPO / "cloud").rglob("__init__.py"):
        found.add(".".join(("offline_fix", "cloud") + init.parent.relative_to(REPO / "cloud").parts))
    assert found == listed


def test_cloud_is_importable_as_offline_fix_cloud():
    import offline_fix.cloud

    assert Path(offline_fix.cloud.__file__).resolve().parent == REPO / "cloud"
