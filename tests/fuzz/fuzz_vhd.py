"""Fuzz target: VHD footers, dynamic headers and BATs (fixed and dynamic disks), then reads
through the block map. Input: flag byte, then a sparse file (``harness.sparse_encode``).
Flag bit 0 recomputes the footer (at the end and at offset 0) and dynamic header checksums.
"""

from __future__ import annotations

import struct

from offline_fix.target.vhd import DYNAMIC_CHECKSUM_OFFSET, FOOTER_CHECKSUM_OFFSET, VhdFile, vhd_checksum
from tests.fuzz import seeds
from tests.fuzz.harness import SparseFile, Target, launch, read_through, sparse_encode, sparse_input

READ_LIMIT = 1 << 20


def _fix(f: SparseFile) -> None:
    """Recompute checksums in place, in the records that hold them."""
    def patch(at: int, length: int, checksum_offset: int) -> None:
        for i, (offset, chunk) in enumerate(f.records):
            if offset <= at and at + length <= offset + len(chunk):
                block = bytearray(chunk[at - offset:at - offset + length])
                struct.pack_into(">I", block, checksum_offset, vhd_checksum(bytes(block), checksum_offset))
                f.records[i] = (offset, chunk[:at - offset] + bytes(block) + chunk[at - offset + length:])

    if f.size >= 512:
        patch(f.size - 512, 512, FOOTER_CHECKSUM_OFFSET)
        patch(0, 512, FOOTER_CHECKSUM_OFFSET)
        f.seek(f.size - 512)
        (data_offset,) = struct.unpack_from(">Q", f.read(512), 16)
        patch(data_offset, 1024, DYNAMIC_CHECKSUM_OFFSET)
        f.seek(0)


def one_input(data: bytes) -> None:
    f = sparse_input(data, _fix)
    vhd = VhdFile(f, "fuzz.vhd")
    vhd.describe()
    read_through(vhd, "VHD", vhd.virtual_size)
    for _ in vhd.extents(0, min(vhd.virtual_size, READ_LIMIT)):
        pass


def make_seeds() -> list[bytes]:
    images = [seeds.qemu_image("vpc", "subformat=dynamic"), seeds.qemu_image("vpc", "subformat=fixed,force_size=on", 1)]
    return [bytes([flag]) + sparse_encode(img) for img in images for flag in (1, 0)]


TARGET = Target("vhd", one_input, make_seeds)

if __name__ == "__main__":
    launch(__spec__.name)
