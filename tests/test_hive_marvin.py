"""Marvin32 (offline_fix/hive/marvin.py).

Oracles: the test vectors .NET publishes for its Marvin implementation (dotnet/runtime,
src/libraries/Common/tests/Tests/System/MarvinTests.cs), and the Hash-1/Hash-2 values Windows
itself stored in the HvLE entries of real transaction logs (yarp's NewDirtyHive1, regipy's
transactions_NTUSER.DAT logs; MANIFEST.md section 1).
"""

from __future__ import annotations

import struct

import pytest

from offline_fix.hive import marvin
from offline_fix.hive.marvin import REGISTRY_SEED, marvin32, marvin32_bytes

SEED1 = 0x004FB61A001BDBCC
SEED2 = 0x804FB61A001BDBCC
SEED3 = 0x804FB61A801BDBCC

DOTNET_VECTORS = [
    (SEED1, "", 0x30ED35C100CD3C7D),
    (SEED1, "af", 0x48E73FC77D75DDC1),
    (SEED1, "e70f", 0xB5F6E1FC485DBFF8),
    (SEED1, "37f495", 0xF0B07C789B8CF7E8),
    (SEED1, "8642dc59", 0x7008F2E87E9CF556),
    (SEED1, "153fb79826", 0xE6C08C6DA2AFA997),
    (SEED1, "0932e6246c47", 0x6F04BF1A5EA24060),
    (SEED1, "ab427ea8d10fc7", 0xE11847E4F0678C41),
    (SEED2, "", 0x10A9D5D3996FD65D),
    (SEED2, "af", 0x68201F91960EBF91),
    (SEED2, "e70f", 0x64B581631F6AB378),
    (SEED2, "37f495", 0xE1F2DFA6E5131408),
    (SEED2, "8642dc59", 0x36289D9654FB49F6),
    (SEED2, "153fb79826", 0x0A06114B13464DBD),
    (SEED2, "0932e6246c47", 0xD6DD5E40AD1BC2ED),
    (SEED2, "ab427ea8d10fc7", 0xE203987DBA252FB3),
    (SEED3, "00", 0xA37FB0DA2ECAE06C),
    (SEED3, "FF", 0xFECEF370701AE054),
    (SEED3, "00FF", 0xA638E75700048880),
    (SEED3, "FF00", 0xBDFB46D969730E2A),
    (SEED3, "FF00FF", 0x9D8577C0FE0D30BF),
    (SEED3, "00FF00", 0x4F9FBDDE15099497),
    (SEED3, "00FF00FF", 0x24EAA279D9A529CA),
    (SEED3, "FF00FF00", 0xD3BEC7726B057943),
    (SEED3, "FF00FF00FF", 0x920B62BBCA3E0B72),
    (SEED3, "00FF00FF00", 0x1D7DDF9DFDF3C1BF),
    (SEED3, "00FF00FF00FF", 0xEC21276A17E821A5),
    (SEED3, "FF00FF00FF00", 0x6911A53CA8C12254),
    (SEED3, "FF00FF00FF00FF", 0xFDFD187B1D3CE784),
    (SEED3, "00FF00FF00FF00", 0x71876F2EFB1B0EE8),
]


@pytest.mark.parametrize("seed,data,expected", DOTNET_VECTORS)
def test_dotnet_published_vectors(seed, data, expected):
    assert marvin32(bytes.fromhex(data), seed) == expected


def _entries(log: bytes):
    """(offset, size, sequence, stored Hash-1, stored Hash-2) of the consecutive HvLE entries."""
    off = 512
    while off + 40 <= len(log) and log[off:off + 4] == b"HvLE":
        size, _flags, seq = struct.unpack_from("<III", log, off + 4)
        yield off, size, seq, log[off + 24:off + 32], log[off + 32:off + 40]
        off += size


def test_hashes_windows_stored_in_yarp_logs(realdata):
    seen = []
    for name in ("NewDirtyHive.LOG1", "NewDirtyHive.LOG2"):
        log = realdata(f"yarp/NewDirtyHive1/{name}").read_bytes()
        for off, size, seq, hash1, hash2 in _entries(log):
            assert marvin32_bytes(log[off:off + 32]) == hash2
            assert marvin32_bytes(log[off + 40:off + size]) == hash1
            seen.append(seq)
    assert seen == [2, 3, 4, 5]


def test_hashes_windows_stored_in_regipy_ntuser_logs(realdata):
    log1 = realdata("regipy/transactions_ntuser.dat.log1.xz").read_bytes()
    entries = list(_entries(log1))
    assert [e[2] for e in entries] == list(range(566, 589))
    for off, size, seq, hash1, hash2 in entries:
        assert marvin32_bytes(log1[off:off + 32]) == hash2, seq
    # Hash-1 of the small entries here; test_hive_log.py checks the big ones through recover().
    for off, size, seq, hash1, _hash2 in entries:
        if size <= 16384:
            assert marvin32_bytes(memoryview(log1)[off + 40:off + size]) == hash1, seq
    log2 = realdata("regipy/transactions_ntuser.dat.log2.xz").read_bytes()
    [(off, size, seq, hash1, hash2)] = list(_entries(log2))
    assert seq == 562
    assert marvin32_bytes(bytearray(log2[off + 40:off + size])) == hash1
    assert marvin32_bytes(log2[off:off + 32]) == hash2


def test_seed_is_the_spec_bytes_most_significant_first(realdata):
    log = realdata("yarp/NewDirtyHive1/NewDirtyHive.LOG1").read_bytes()
    stored = log[512 + 32:512 + 40]
    assert REGISTRY_SEED == int.from_bytes(bytes.fromhex("82EF4D887A4E55C5"), "big")
    assert marvin32_bytes(log[512:544]) == stored
    little = int.from_bytes(bytes.fromhex("82EF4D887A4E55C5"), "little")
    assert marvin32_bytes(log[512:544], little) != stored


def test_portable_word_reader_gives_the_same_hash(monkeypatch):
    data = bytes(range(256)) * 5 + b"\x01\x02\x03"
    native = marvin32(data, SEED3)
    monkeypatch.setattr(marvin, "_NATIVE_LE", False)
    assert marvin32(data, SEED3) == native
    assert marvin32(bytes.fromhex("00FF00FF00FF00"), SEED3) == 0x71876F2EFB1B0EE8


def test_one_flipped_bit_changes_the_hash():
    data = bytearray(4096)
    before = marvin32_bytes(data)
    data[1234] ^= 0x10
    assert marvin32_bytes(data) != before
    assert len(before) == 8
