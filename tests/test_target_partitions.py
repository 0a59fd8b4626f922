"""Partition tables read by us, compared with sfdisk's own reading and with the MANIFEST."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess

import pytest

from offline_fix.target.partitions import read_partition_table

needs_sfdisk = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk missing (make setup installs it)")


def _reader(path):
    fh = open(path, "rb")

    def read(offset, length):
        fh.seek(offset)
        return fh.read(length)

    return read


def _sfdisk(path):
    return json.loads(subprocess.run(["sfdisk", "--json", str(path)], check=True, capture_output=True, text=True).stdout)["partitiontable"]


@pytest.fixture(scope="module")
def ntfs_index_raw(tmp_path_factory, realdata):
    out = tmp_path_factory.mktemp("pt") / "ntfs_index.raw"
    with gzip.open(realdata("dfir_ntfs/ntfs_index.raw.gz")) as fin, open(out, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return out


def test_windows_made_mbr(ntfs_index_raw):
    size = ntfs_index_raw.stat().st_size
    table = read_partition_table(_reader(ntfs_index_raw), size)
    assert table.scheme == "mbr"
    assert table.disk_signature == "5b8a2f18"  # MANIFEST: disk sig 0x5b8a2f18
    [part] = table.partitions
    assert (part.offset, part.size, part.type_code) == (128 * 512, 59392 * 512, "0x07")  # LBA 128, 59392 sectors


@needs_sfdisk
@pytest.mark.parametrize("layout", ["gpt", "mbr"])
def test_matches_sfdisk(tmp_path, layout):
    path = tmp_path / "d.raw"
    with open(path, "wb") as fh:
        fh.truncate(300 * 1024 * 1024)
    if layout == "gpt":
        script = "label: gpt\n,100M,U\n,16M,E3C9E316-0B5C-4DB8-817D-F92DF00215AE\n,,EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
    else:
        script = "label: dos\n,50M,7,*\n,100M,7\n,,5\n,20M,7\n,20M,83\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True)
    table = read_partition_table(_reader(path), path.stat().st_size)
    theirs = [p for p in _sfdisk(path)["partitions"] if p.get("type") not in ("5", "f")]
    assert table.scheme == layout
    assert [(p.offset // 512, p.size // 512) for p in table.partitions] == [(p["start"], p["size"]) for p in theirs]
    if layout == "mbr":
        assert [p.index for p in table.partitions] == [1, 2, 5, 6]
        assert table.partitions[0].bootable


@needs_sfdisk
def test_ebr_loop_is_bounded(tmp_path):
    path = tmp_path / "loop.raw"
    with open(path, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(path)], input="label: dos\n,,5\n,10M,7\n", text=True, check=True)
    table = read_partition_table(_reader(path), path.stat().st_size)
    first_ebr = next(p for p in _sfdisk(path)["partitions"] if p["type"] == "5")["start"]
    data = bytearray(path.read_bytes())
    # Make the first EBR's "next" entry point back at itself.
    struct.pack_into("<B3sB3sII", data, first_ebr * 512 + 446 + 16, 0, b"\0\0\0", 0x05, b"\0\0\0", 0, 2048)
    path.write_bytes(data)
    table = read_partition_table(_reader(path), path.stat().st_size)
    assert len(table.partitions) == 1
    assert any("loops" in w for w in table.warnings)


def test_partition_beyond_end_is_flagged(tmp_path):
    path = tmp_path / "trunc.raw"
    sector0 = bytearray(512)
    struct.pack_into("<B3sB3sII", sector0, 446, 0x80, b"\0\0\0", 0x07, b"\0\0\0", 2048, 1_000_000)
    sector0[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(sector0) + bytes(4 * 1024 * 1024))
    table = read_partition_table(_reader(path), path.stat().st_size)
    assert table.partitions[0].problems and "beyond the end" in table.partitions[0].problems[0]


def test_bare_volume(realdata):
    from offline_fix.target.disk import open_disk

    disk = open_disk(str(realdata("plaso/vsstest.qcow2")))
    table = read_partition_table(disk.read, disk.size)
    assert table.scheme == "none" and len(table.partitions) == 1 and table.partitions[0].size == disk.size
    disk.close()
