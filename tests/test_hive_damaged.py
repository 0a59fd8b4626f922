"""Damaged hives: typed errors in strict mode, skipped items with warnings in tolerant mode, never
a traceback of another kind and never a hang (every test here has a short timeout).

Real damaged samples come from yarp and regipy (MANIFEST.md); synthetic damage is made by
patching bytes of real hives in memory (offsets found with the reader, the damage checked
against python-registry where it can read the hive).
"""

from __future__ import annotations

import random
import struct

import pytest

from offline_fix.errors import OfflineFixError
from offline_fix.hive import BaseBlockError, CellError, Hive, HiveBinError, HiveError
from offline_fix.hive.regfile import export_lines

pytestmark = [pytest.mark.realdata, pytest.mark.timeout(30)]

HBIN = 4096


def read_everything(hive: Hive) -> tuple[int, int]:
    """Touch every key and value the way the commands do; (keys, values)."""
    keys = values = 0
    for key in hive.root.walk():
        keys += 1
        key.name, key.path, key.last_written, key.class_name  # noqa: B018
        for value in key.values():
            values += 1
            value.name, value.raw, value.data  # noqa: B018
    list(hive.iter_cells())
    list(export_lines(hive.root, "HKEY_LOCAL_MACHINE\\X"))
    return keys, values


def outcome(data: bytes, tolerant: bool):
    """("ok", counts, warnings) or ("error", exception type): anything else fails the test."""
    try:
        hive = Hive.open(data, tolerant=tolerant)
        return "ok", read_everything(hive), hive.warning_count
    except OfflineFixError as exc:
        assert isinstance(exc, HiveError), exc
        assert str(exc)
        return "error", type(exc)


# -- yarp's damaged samples -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["BadListHive", "BadSubkeyHive"])
def test_key_listed_under_the_wrong_parent(realdata, name):
    """Key "2" lists the node of "3\\subkey" (its Parent field names key "3", as python-registry's
    parent() shows too): strict mode refuses, tolerant mode keeps it only under "3"."""
    from Registry import Registry

    path = realdata(f"yarp/{name}")
    assert Registry.Registry(str(path)).open("3\\subkey").parent().name() == "3"
    with pytest.raises(CellError) as info:
        read_everything(Hive.open(path))
    assert info.value.field == "Parent" and info.value.offset is not None
    hive = Hive.open(path, tolerant=True)
    assert [k.path for k in hive.root.walk()] == ["", "1", "2", "3", "3\\subkey", "4"]
    assert hive.warning_count == 1 and "parent is another key" in hive.warnings[0]


def test_garbage_after_the_hive_bins(realdata):
    from Registry import Registry

    path = realdata("yarp/GarbageHive")
    assert path.stat().st_size == 262151  # MANIFEST: 7 bytes after the bins
    hive = Hive.open(path)
    reg = Registry.Registry(str(path))
    assert [k.name for k in hive.root.walk()] == [reg.root().name()]
    assert hive.warning_count == 0


def test_duplicate_subkeys_read_like_python_registry(realdata):
    from Registry import Registry

    path = realdata("yarp/DuplicateSubkeysHive")

    def count(key):
        return 1 + sum(count(k) for k in key.subkeys())

    expected = count(Registry.Registry(str(path)).root())
    assert read_everything(Hive.open(path))[0] == expected == 5003


def test_regipy_corrupted_system_hive(realdata):
    path = realdata("regipy/corrupted_system_hive.xz")
    with pytest.raises(HiveBinError) as info:
        Hive.open(path)
    assert info.value.exit_code == 5 and info.value.offset is not None
    hive = Hive.open(path, tolerant=True)
    keys, values = read_everything(hive)
    assert keys > 1000 and values > 1000 and hive.warning_count > 0
    # MANIFEST: Windows XP SYSTEM with ControlSet001 and 003, Select LKG=3
    assert {"ControlSet001", "ControlSet003", "Select"} <= {k.name for k in hive.root.subkeys()}
    assert hive.key("Select").get("LastKnownGood") == 3


# -- truncated and garbage files --------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(realdata):
    return realdata("yarp/MultiSzHive").read_bytes()


@pytest.fixture(scope="module")
def many(realdata):
    return realdata("yarp/ManySubkeysHive").read_bytes()


@pytest.mark.parametrize("cut", [0, 100, 511, 4095, 4096, 4100, 8191, 131072, 262143, 491519])
def test_truncated_hive(many, cut):
    """ManySubkeysHive: 487,424 bytes of hive bins data after the base block, then slack."""
    data = many[:cut]
    strict = outcome(data, tolerant=False)
    assert strict[0] == "error" and issubclass(strict[1], (BaseBlockError, HiveBinError))
    tolerant = outcome(data, tolerant=True)
    assert tolerant[0] in ("ok", "error")
    if cut > 8192:  # the bins that are there still read
        assert tolerant[0] == "ok" and tolerant[2] >= 1


@pytest.mark.parametrize("data", [
    b"",
    bytes(8192),
    b"regf" + bytes(8188),
    random.Random(3).randbytes(65536),
    b"regf" + random.Random(4).randbytes(65536),
])
def test_garbage_files(data):
    strict = outcome(data, tolerant=False)
    assert strict[0] == "error" and issubclass(strict[1], BaseBlockError)
    assert outcome(data, tolerant=True)[0] == "error"


def test_hive_bins_size_beyond_the_file(small):
    data = bytearray(small)
    struct.pack_into("<I", data, 40, 0x7FFFF000)  # Length
    with pytest.raises(HiveBinError) as info:
        Hive.open(bytes(data))
    assert info.value.field == "Length"
    assert outcome(bytes(data), tolerant=True)[0] == "ok"


# -- synthetic damage, patched into real hives -----------------------------------------------------
def patch(data: bytes, at: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def subkey_list_cell(hive: Hive, key) -> int:
    """File offset of the data of a key's subkey list cell."""
    return hive.cell(key.subkey_list_offset, "list")[0]


def test_subkey_list_pointing_back_at_its_own_key(many):
    """The first entry of key_with_many_subkeys' first leaf names key_with_many_subkeys: a cycle."""
    hive = Hive.open(many)
    key = hive.key("key_with_many_subkeys")
    at = subkey_list_cell(hive, key)
    sig, _count = struct.unpack_from("<2sH", many, at)
    assert sig == b"ri"  # ManySubkeysHive holds an index root (MANIFEST)
    (leaf,) = struct.unpack_from("<I", many, at + 4)
    leaf_at = hive.cell(leaf, "leaf")[0]
    data = patch(many, leaf_at + 4, "<I", key.offset)
    with pytest.raises(CellError) as info:
        read_everything(Hive.open(data))
    assert "cycle" in str(info.value)
    tolerant = Hive.open(data, tolerant=True)
    keys, _ = read_everything(tolerant)
    assert keys == 5003 - 1 and tolerant.warning_count >= 1


def test_index_root_listing_itself(many):
    hive = Hive.open(many)
    key = hive.key("key_with_many_subkeys")
    at = subkey_list_cell(hive, key)
    data = patch(many, at + 4, "<I", key.subkey_list_offset)  # first leaf := the ri itself
    with pytest.raises(CellError):
        read_everything(Hive.open(data))
    tolerant = Hive.open(data, tolerant=True)
    read_everything(tolerant)
    assert tolerant.warning_count >= 1


def test_list_pointing_at_an_ancestor(many):
    """A subkey's list made to be its grandparent's: every path back up is refused."""
    hive = Hive.open(many)
    parent = hive.key("key_with_many_subkeys")
    child = next(parent.subkeys())
    node = hive.cell(child.offset, "nk")[0]
    data = patch(many, node + 20, "<I", 1)  # SubKeyCounts[Stable]
    data = patch(data, node + 28, "<I", hive.base_block.root_cell)  # SubKeyLists[Stable] := the root key node
    for tolerant in (False, True):
        assert outcome(data, tolerant)[0] in ("ok", "error")
    with pytest.raises(CellError):
        read_everything(Hive.open(data))


def test_zero_cell_size_and_huge_counts(small):
    hive = Hive.open(small)
    key = next(k for k in hive.root.walk() if k.value_count)
    value = next(key.values())
    vk_cell = HBIN + value.offset
    cases = {
        "free vk cell": patch(small, vk_cell, "<i", 0),
        "positive vk cell": patch(small, vk_cell, "<i", 32),
        "huge value count": patch(small, HBIN + key.offset + 4 + 36, "<I", 0xFFFFFFFF),
        "value list out of range": patch(small, HBIN + key.offset + 4 + 40, "<I", 0x7FFFFFF8),
        "misaligned value list": patch(small, HBIN + key.offset + 4 + 40, "<I", key.value_list_offset + 4),
        "data longer than its cell": patch(small, vk_cell + 4 + 4, "<I", 0x7FFFFFF0),
        "inline data of 7 bytes": patch(small, vk_cell + 4 + 4, "<I", 0x80000007),
        "name longer than its cell": patch(small, vk_cell + 4 + 2, "<H", 0xFFFF),
        "root cell past the end": patch(small, 36, "<I", 0x7FFFFFF8),
        "hive bin size zero": patch(small, HBIN + 8, "<I", 0),
    }
    for name, data in cases.items():
        strict = outcome(data, tolerant=False)
        assert strict[0] == "error", name
        assert outcome(data, tolerant=True)[0] in ("ok", "error"), name


def test_big_data_with_too_many_segments(realdata):
    data = realdata("yarp/BigDataHive").read_bytes()
    hive = Hive.open(data)
    value = next(v for k in hive.root.walk() for v in k.values() if v.size > 16344)
    (data_off,) = struct.unpack_from("<I", data, HBIN + value.offset + 4 + 8)
    db = hive.cell(data_off, "db")[0]
    bad = patch(data, db + 2, "<H", 0xFFFF)  # Number of segments
    with pytest.raises(CellError):
        read_everything(Hive.open(bad))
    tolerant = Hive.open(bad, tolerant=True)
    keys, values = read_everything(tolerant)
    assert values == 1 and tolerant.warning_count >= 1  # the other value still reads


@pytest.mark.timeout(60)
def test_random_damage_gives_typed_errors_only(small, many, realdata):
    """Seeded random byte changes in the cells of real hives: every outcome is a result or a
    HiveError; nothing else escapes, nothing hangs."""
    samples = [small, realdata("yarp/BigDataHive").read_bytes(), realdata("regipy/BCD.xz").read_bytes(),
               many[: 4096 + 65536] + bytes(len(many) - 4096 - 65536)]
    rng = random.Random(20240521)
    for _ in range(150):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 12)):
            at = rng.randrange(HBIN, HBIN + 16384)
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                data[at:at + 4] = rng.randrange(1 << 32).to_bytes(4, "little")
        for tolerant in (False, True):
            assert outcome(bytes(data), tolerant)[0] in ("ok", "error")
