"""Our VHD and VHDX readers, checked against qemu-img (another implementation) byte for byte."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess

import pytest

from offline_fix.errors import NotFound, Unsupported
from offline_fix.target.disk import open_disk
from offline_fix.target.errors import ContainerError, VhdError, VhdxError

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img missing (make setup installs it)")

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def raw_disk(tmp_path_factory):
    """A 48 MiB raw disk with recognisable, non-zero content scattered over it, and holes."""
    path = tmp_path_factory.mktemp("containers") / "disk.raw"
    with open(path, "wb") as fh:
        fh.truncate(48 * MiB)
        for i, offset in enumerate((0, 3 * MiB + 123, 17 * MiB - 7, 31 * MiB, 48 * MiB - 4096)):
            fh.seek(offset)
            fh.write(hashlib.sha256(str(i).encode()).digest() * 128)
    return path


def _convert(raw, tmp_path, fmt, opts, suffix):
    out = tmp_path / f"disk{suffix}"
    cmd = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
    if opts:
        cmd += ["-o", opts]
    subprocess.run(cmd + [str(raw), str(out)], check=True)
    return out


@pytest.mark.parametrize(
    "fmt,opts,suffix,expect",
    [
        ("vpc", "subformat=fixed,force_size=on", ".vhd", ("vhd", "fixed")),
        ("vpc", "subformat=dynamic,force_size=on", ".vhd", ("vhd", "dynamic")),
        ("vhdx", "subformat=dynamic", ".vhdx", ("vhdx", "dynamic")),
        ("vhdx", "subformat=dynamic,block_size=1M", ".vhdx", ("vhdx", "dynamic")),
    ],
)
def test_reads_match_raw(raw_disk, tmp_path, fmt, opts, suffix, expect):
    image = _convert(raw_disk, tmp_path, fmt, opts, suffix)
    disk = open_disk(str(image))
    try:
        assert (disk.format, disk.subformat) == expect
        assert disk.size == os.path.getsize(raw_disk)
        with open(raw_disk, "rb") as fh:
            for offset, length in ((0, 4096), (3 * MiB, 2 * MiB + 5), (17 * MiB - 4096, 8192), (disk.size - 4096, 4096)):
                fh.seek(offset)
                assert disk.read(offset, length) == fh.read(length), (offset, length)
            h1, h2 = hashlib.sha256(), hashlib.sha256()
            stream = disk.stream()
            fh.seek(0)
            while chunk := fh.read(4 * MiB):
                h1.update(chunk)
                h2.update(stream.read(len(chunk)))
            assert h1.digest() == h2.digest()
    finally:
        disk.close()


def test_read_past_end_is_refused(raw_disk):
    disk = open_disk(str(raw_disk))
    with pytest.raises(ContainerError):
        disk.read(disk.size - 10, 20)
    disk.close()


def test_missing_file():
    with pytest.raises(NotFound):
        open_disk("/nonexistent/disk.vhdx")


def test_vhdx_bad_header_crc_falls_back_then_fails(raw_disk, tmp_path):
    image = _convert(raw_disk, tmp_path, "vhdx", "subformat=dynamic", ".vhdx")
    data = bytearray(image.read_bytes())
    # Break the CRC of both headers (64 KiB and 128 KiB): nothing trustworthy is left.
    first_only = bytearray(data)
    first_only[64 * 1024 + 100] ^= 0xFF
    one = tmp_path / "one.vhdx"
    one.write_bytes(first_only)
    disk = open_disk(str(one))  # the other header is intact: still opens
    assert disk.size == os.path.getsize(raw_disk)
    disk.close()
    data[64 * 1024 + 100] ^= 0xFF
    data[128 * 1024 + 100] ^= 0xFF
    both = tmp_path / "both.vhdx"
    both.write_bytes(data)
    with pytest.raises(VhdxError, match="header"):
        open_disk(str(both))


def test_vhdx_truncated(raw_disk, tmp_path):
    image = _convert(raw_disk, tmp_path, "vhdx", "subformat=dynamic", ".vhdx")
    cut = tmp_path / "cut.vhdx"
    cut.write_bytes(image.read_bytes()[: 3 * MiB])
    with pytest.raises(VhdxError):
        disk = open_disk(str(cut))
        disk.read(0, disk.size)


def test_vhdx_pending_log_is_reported(raw_disk, tmp_path):
    from dissect.util.hash.crc32c import crc32c

    image = _convert(raw_disk, tmp_path, "vhdx", "subformat=dynamic", ".vhdx")
    data = bytearray(image.read_bytes())
    for base in (64 * 1024, 128 * 1024):
        data[base + 48 : base + 64] = b"\x11" * 16  # LogGuid: a log that must be replayed
        data[base + 4 : base + 8] = b"\x00" * 4
        struct.pack_into("<I", data, base + 4, crc32c(bytes(data[base : base + 4096])))
    pending = tmp_path / "pending.vhdx"
    pending.write_bytes(data)
    disk = open_disk(str(pending))
    assert disk.vhdx.log_pending
    assert any("log" in w for w in disk.warnings)
    disk.close()


def test_vhd_footer_checksum_and_truncation(raw_disk, tmp_path):
    image = _convert(raw_disk, tmp_path, "vpc", "subformat=dynamic,force_size=on", ".vhd")
    data = image.read_bytes()
    bad = bytearray(data)
    bad[-512 + 40] ^= 0x01  # Original Size: the footer checksum no longer matches
    (tmp_path / "bad.vhd").write_bytes(bad)
    with pytest.raises(VhdError):
        open_disk(str(tmp_path / "bad.vhd"))
    (tmp_path / "cut.vhd").write_bytes(data[: len(data) // 2])
    with pytest.raises(VhdError, match="truncated"):
        open_disk(str(tmp_path / "cut.vhd"))


def test_differencing_vhd_is_unsupported(realdata, tmp_path):
    with pytest.raises(Unsupported, match="differencing"):
        open_disk(str(realdata("dfvfs/fat-differential.vhd.xz")))


def test_qcow2_through_dissect(realdata):
    disk = open_disk(str(realdata("plaso/vsstest.qcow2")))
    assert disk.format == "qcow2"
    assert disk.size == 1024 * MiB
    assert disk.read(3, 8) == b"NTFS    "
    disk.close()


def test_vhdx_huge_metadata_region_is_refused(raw_disk, tmp_path):
    """A region table claiming a metadata region far larger than Windows makes is refused before
    anything that size is read into memory."""
    from dissect.util.hash.crc32c import crc32c

    from offline_fix.target.vhdx import METADATA_GUID, REGION_ENTRY, REGION_HEADER, REGION_TABLE_OFFSETS

    image = _convert(raw_disk, tmp_path, "vhdx", "subformat=dynamic", ".vhdx")
    data = bytearray(image.read_bytes())
    data += bytes(80 * MiB)  # room, so that the region still lies inside the file
    for base in REGION_TABLE_OFFSETS:
        count = struct.unpack_from("<I", data, base + 8)[0]
        for i in range(count):
            at = base + REGION_HEADER.size + i * REGION_ENTRY.size
            guid, offset, length, required = REGION_ENTRY.unpack_from(data, at)
            if guid == METADATA_GUID.bytes_le:
                REGION_ENTRY.pack_into(data, at, guid, offset, 72 * MiB, required)
        data[base + 4:base + 8] = bytes(4)
        struct.pack_into("<I", data, base + 4, crc32c(bytes(data[base:base + 64 * 1024])))
    big = tmp_path / "big.vhdx"
    big.write_bytes(data)
    with pytest.raises(VhdxError, match="implausibly large"):
        open_disk(str(big))
