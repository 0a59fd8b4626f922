"""Fuzz target: MBR (with EBR chains) and GPT partition tables, read through a bounded reader.

Flag byte: bit 0 recomputes the primary GPT header and entry-array CRC32s; bits 1-2 pick the
sector size the disk claims (512, 4096). The disk is the input itself (often shorter than its
table claims: every read past its end must be refused, never served).
"""

from __future__ import annotations

from offline_fix.target.errors import ContainerError
from offline_fix.target.partitions import read_partition_table
from tests.fuzz import seeds
from tests.fuzz.harness import Target, fix_gpt, flag_split, launch


def one_input(data: bytes) -> None:
    flags, body = flag_split(data)
    disk = bytearray(body)
    sector = 4096 if flags & 2 else 512
    if flags & 1:
        fix_gpt(disk, sector)
    size = len(disk)

    def read(offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > size:
            raise ContainerError("read outside the disk", offset=offset, expected=f"end <= {size}", found=offset + length)
        return bytes(disk[offset:offset + length])

    table = read_partition_table(read, size, sector)
    for part in table.partitions:
        part.to_dict()
        if part.offset < 0 or part.size < 0:
            raise AssertionError(f"negative partition geometry: {part}")


def make_seeds() -> list[bytes]:
    return [bytes([flag]) + disk for disk in seeds.partition_seeds() for flag in (1, 0)]


TARGET = Target("partitions", one_input, make_seeds, max_len=1 << 22)

if __name__ == "__main__":
    launch(__spec__.name)
