"""Fuzz target: transaction-log replay (old DIRT and new HvLE formats), then a strict re-open.

Input: flag byte, then ``join(primary, LOG1, LOG2)``. Flag bit 0 recomputes the base block
checksums and the Marvin32 hashes of every HvLE entry, so that mutated entries are not simply
skipped; bit 1 passes ``allow_partial=True``.
"""

from __future__ import annotations

from offline_fix.hive import Hive
from offline_fix.hive.log import recover
from tests.fuzz import seeds
from tests.fuzz.harness import Target, fix_hvle_hashes, fix_regf_base_block, flag_split, join, launch, split


def one_input(data: bytes) -> None:
    flags, body = flag_split(data)
    primary, log1, log2 = (bytearray(p) for p in split(body, 3))
    if flags & 1:
        for buf in (primary, log1, log2):
            fix_regf_base_block(buf)
        fix_hvle_hashes(log1)
        fix_hvle_hashes(log2)
    result = recover(bytes(primary), [("SYSTEM.LOG1", bytes(log1)), ("SYSTEM.LOG2", bytes(log2))],
                     allow_partial=bool(flags & 2))
    result.to_dict()
    hive = Hive.open(result.data, tolerant=True)
    for n, key in enumerate(hive.root.walk()):
        if n > 5000:
            break
        list(key.values())


def make_seeds() -> list[bytes]:
    primary, log = seeds.dirty_hive_with_log()
    out = [b"\x01" + join(primary, log, b""), b"\x01" + join(primary, b"", log), b"\x00" + join(primary, log, log)]
    real = [seeds.realdata(p) for p in ("yarp/NewDirtyHive1/NewDirtyHive", "yarp/NewDirtyHive1/NewDirtyHive.LOG1",
                                        "yarp/NewDirtyHive1/NewDirtyHive.LOG2", "yarp/OldDirtyHive/OldDirtyHive",
                                        "yarp/OldDirtyHive/OldDirtyHive.LOG1")]
    if all(real):
        out += [b"\x01" + join(real[0], real[1], real[2]), b"\x01" + join(real[3], real[4], b"")]
    return out


TARGET = Target("hive_log", one_input, make_seeds, max_len=1 << 20)

if __name__ == "__main__":
    launch(__spec__.name)
