"""Fuzz target: NTFS file-extent mapping (the offsets an in-place write would patch) and reads
through the same records with dissect.ntfs.

A small NTFS volume (mkntfs + libntfs-3g, via the images builder) is built once per process. The
input replaces the 1024-byte MFT records of one file (``dir\\file.bin``, non-resident, several
runs) and of its folder, as they lie on disk. Flag bit 0 re-applies the update sequence fixups
(the last two bytes of each sector must carry the record's update sequence number), so that the
mutated record is not refused at the first check. The rule beyond the error hierarchy: every
extent the mapper returns lies inside the volume.
"""

from __future__ import annotations

import functools
import io
import struct
import tempfile
from pathlib import Path

from offline_fix.target import Volume
from offline_fix.target.disk import Disk
from offline_fix.target.extents import ntfs_file_layout
from tests.fuzz.harness import Target, flag_split, launch

FILE = "dir\\file.bin"
RECORD = 1024


@functools.lru_cache(maxsize=None)
def base_volume() -> tuple[bytes, int, int]:
    """(volume bytes, file record offset, folder record offset)."""
    import images
    from dissect.ntfs import NTFS

    spec = images.DiskSpec(layout="bare", volumes=(images.VolumeSpec(
        kind="data", size_mib=8, files={FILE: images.random(150_000, 1), "dir\\small.txt": b"resident",
                                        "dir\\zero.bin": images.zeros(20_000)}),))
    with tempfile.TemporaryDirectory(prefix="offline-fix-fuzz-") as tmp:
        built = images.build(spec, Path(tmp, "v.raw"), "raw", check=False)
        volume = built.path.read_bytes()
    ntfs = NTFS(io.BytesIO(volume))
    cluster = struct.unpack_from("<H", volume, 0x0B)[0] * volume[0x0D]
    mft = struct.unpack_from("<Q", volume, 0x30)[0] * cluster

    def offset(path: str) -> int:
        at = mft + ntfs.mft.get(path).segment * RECORD
        if volume[at:at + 4] != b"FILE":
            raise RuntimeError(f"MFT record of {path} not where the boot sector says")
        return at

    return volume, offset(FILE.replace("\\", "/")), offset("dir")


_buf: bytearray | None = None


def _fixups(record: bytearray) -> None:
    usa_offset, usa_count = struct.unpack_from("<HH", record, 4)
    if usa_count < 2 or usa_offset + 2 * usa_count > len(record):
        return
    usn = record[usa_offset:usa_offset + 2]
    for i in range(1, usa_count):
        end = i * 512
        if end <= len(record):
            record[end - 2:end] = usn


def one_input(data: bytes) -> None:
    global _buf
    volume, file_at, dir_at = base_volume()
    if _buf is None:
        _buf = bytearray(volume)
    flags, body = flag_split(data)
    patches = []
    for at, chunk in ((file_at, body[:RECORD]), (dir_at, body[RECORD:2 * RECORD])):
        record = bytearray(chunk + volume[at + len(chunk):at + RECORD])
        if flags & 1:
            _fixups(record)
        patches.append((at, record))
    for at, record in patches:
        _buf[at:at + RECORD] = record
    try:
        disk = Disk("fuzz.raw", io.BytesIO(_buf), len(_buf))
        vol = Volume(1, 0, len(_buf), "ntfs", _disk=disk)
        fs = vol.fs()
        fs.listdir("dir")
        layout = ntfs_file_layout(vol, FILE)
        for ext in layout.extents:
            if ext.disk_offset < 0 or ext.disk_offset + ext.length > len(_buf):
                raise AssertionError(f"extent outside the volume: {ext}")
        if layout.size:
            layout.disk_ranges(0, min(layout.size, 4096))
        fs.read_bytes(FILE, 1 << 20)
    finally:
        for at, _record in patches:
            _buf[at:at + RECORD] = volume[at:at + RECORD]


def make_seeds() -> list[bytes]:
    volume, file_at, dir_at = base_volume()
    records = volume[file_at:file_at + RECORD] + volume[dir_at:dir_at + RECORD]
    return [b"\x01" + records, b"\x00" + records]


TARGET = Target("ntfs", one_input, make_seeds, max_len=1 + 2 * RECORD)

if __name__ == "__main__":
    launch(__spec__.name)
