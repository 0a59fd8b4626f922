"""offline_fix/changes/independent.py: the re-read that confirms every write on an image.

Oracle: The Sleuth Kit's own path lookup (``FS_Info.open``), which ImageReader no longer uses per
file (it lists each folder once and opens files by MFT entry); both must give the same bytes, and
"missing" for what is not there.
"""

from __future__ import annotations

import pytest

from images import specs
from images.synth.system import system_hive
from offline_fix.changes.independent import ImageReader

CATROOT = r"Windows\System32\CatRoot\{F750E6C3-38EE-11D1-85E5-00C04FC295EE}"


@pytest.fixture(scope="module")
def disk(image_cache):
    catalogs = {f"Package_{i:03d}.cat": bytes([i]) * (100 + 37 * i) for i in range(40)}
    catalogs["Empty.cat"] = b""
    return image_cache(specs.windows_disk("bare", system_hive(), catalogs=catalogs), "raw"), catalogs


def tsk_path_read(img, path: str) -> bytes | None:
    import pytsk3

    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(img.path)), offset=img.windows.offset)
    try:
        f = fs.open("/" + path.replace("\\", "/"))
    except OSError:
        return None
    size = f.info.meta.size
    return f.read_random(0, size) if size else b""


def test_reads_equal_the_sleuth_kits_path_lookup(disk):
    img, catalogs = disk
    with ImageReader(str(img.path), "raw", img.virtual_size, img.windows.offset) as reader:
        for name, data in catalogs.items():
            path = f"{CATROOT}\\{name}"
            assert reader.read(path) == data == tsk_path_read(img, path)
            assert reader.read(path.upper()) == data  # Windows names: case-insensitive
        config = r"Windows\System32\config\SYSTEM"
        assert reader.read(config) == tsk_path_read(img, config) == system_hive()
        for missing in (f"{CATROOT}\\nope.cat", r"Windows\No such folder\x.cat",
                        f"{CATROOT}\\Package_001.cat\\inside", "nope.txt"):
            assert reader.read(missing) is None
            assert tsk_path_read(img, missing) is None
