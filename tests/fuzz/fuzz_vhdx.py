"""Fuzz target: VHDX headers, region tables, metadata and BAT (CRC-32C checked), then reads
through the block map. Input: flag byte, then a sparse file (``harness.sparse_encode``).
Flag bit 0 recomputes the CRC-32C of both headers and both region tables.
"""

from __future__ import annotations

import struct

from offline_fix.target.vhdx import VhdxFile
from tests.fuzz import seeds
from tests.fuzz.harness import SparseFile, Target, launch, read_through, sparse_encode, sparse_input

HEADERS = ((0x10000, 4096, 4), (0x20000, 4096, 4), (0x30000, 65536, 4), (0x40000, 65536, 4))  # offset, size, CRC at


def _crc32c(data: bytes) -> int:
    from dissect.util.hash.crc32c import crc32c  # a dependency of dissect.hypervisor

    return crc32c(data)


def _fix(f: SparseFile) -> None:
    for at, length, crc_at in HEADERS:
        f.seek(at)
        block = bytearray(f.read(length).ljust(length, b"\x00"))
        block[crc_at:crc_at + 4] = bytes(4)
        struct.pack_into("<I", block, crc_at, _crc32c(bytes(block)))
        f.records.append((at, bytes(block)))  # later records win
    f.seek(0)


def one_input(data: bytes) -> None:
    f = sparse_input(data, _fix)
    vhdx = VhdxFile(f, "fuzz.vhdx")
    vhdx.describe()
    read_through(vhdx, "VHDX", vhdx.virtual_size)


def make_seeds() -> list[bytes]:
    images = [seeds.qemu_image("vhdx", "subformat=dynamic"), seeds.qemu_image("vhdx", "subformat=fixed")]
    return [bytes([flag]) + sparse_encode(img) for img in images for flag in (1, 0)]


TARGET = Target("vhdx", one_input, make_seeds)

if __name__ == "__main__":
    launch(__spec__.name)
