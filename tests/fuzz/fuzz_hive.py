"""Fuzz target: the REGF reader, strict and tolerant (every key, value, class name and cell).

Flag byte: bit 0 recomputes the base block checksum; bit 1 opens the hive in tolerant mode (as
``inspect`` and ``reg query`` do) instead of strict mode (as writers do).
"""

from __future__ import annotations

from offline_fix.hive import Hive
from offline_fix.hive.regfile import export_lines
from tests.fuzz import seeds
from tests.fuzz.harness import Target, fix_regf_base_block, flag_split, launch

MAX_KEYS = 20_000  # a walk visits each key node once; this only keeps one input fast


def one_input(data: bytes) -> None:
    flags, body = flag_split(data)
    buf = bytearray(body)
    if flags & 1:
        fix_regf_base_block(buf)
    hive = Hive.open(bytes(buf), tolerant=bool(flags & 2))
    for n, key in enumerate(hive.root.walk()):
        if n >= MAX_KEYS:
            break
        _ = key.path, key.last_written, key.class_name, key.security_offset
        for value in key.values():
            _ = value.raw, value.data, value.type_name, value.flags
        key.subkey("ControlSet001")
        key.value("Start")
    if flags & 4:
        for n, _line in enumerate(export_lines(hive.root, "HKEY_LOCAL_MACHINE\\FUZZ")):
            if n > 100_000:
                break
    for n, _cell in enumerate(hive.iter_cells()):
        if n > 200_000:
            break


def make_seeds() -> list[bytes]:
    return [bytes([flag]) + hive for hive in seeds.hive_seeds() for flag in (3, 0, 5)]


TARGET = Target("hive", one_input, make_seeds, max_len=1 << 20)

if __name__ == "__main__":
    launch(__spec__.name)
